//! Kernel symbols from `/proc/kallsyms`, for the kernel frames of the perf_event sampler.
//!
//! The file lists every kernel and module text symbol with its address; with
//! `kernel.kptr_restrict` set (or without the privilege to see them) every address reads 0,
//! and kernel frames are then named `[kernel]` only.

use std::sync::OnceLock;

/// Name given to a kernel frame whose symbol is unknown.
pub const UNKNOWN_KERNEL: &str = "[kernel]";

/// The kernel's text symbols, sorted by address.
#[derive(Debug, Default)]
pub struct Kallsyms {
    symbols: Vec<(u64, String)>,
}

impl Kallsyms {
    /// Parses the text of `/proc/kallsyms`: `address type name [module]` per line. Only text
    /// symbols (`t`/`T`) are kept; lines that do not parse are skipped.
    pub fn parse(text: &str) -> Self {
        let mut symbols: Vec<(u64, String)> = text
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let addr = u64::from_str_radix(fields.next()?, 16).ok()?;
                let kind = fields.next()?;
                let name = fields.next()?;
                (addr != 0 && matches!(kind, "t" | "T")).then(|| (addr, name.to_owned()))
            })
            .collect();
        symbols.sort_unstable_by_key(|(addr, _)| *addr);
        Self { symbols }
    }

    /// The symbol `ip` falls in (the last one starting at or below it); `None` below the first
    /// or when the table is empty (addresses hidden).
    pub fn lookup(&self, ip: u64) -> Option<&str> {
        let after = self.symbols.partition_point(|(addr, _)| *addr <= ip);
        after.checked_sub(1).map(|i| self.symbols[i].1.as_str())
    }

    /// Whether any symbol was readable.
    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }
}

/// This machine's table, read once on first use (empty when unreadable).
pub fn kernel() -> &'static Kallsyms {
    static TABLE: OnceLock<Kallsyms> = OnceLock::new();
    TABLE.get_or_init(|| match std::fs::read_to_string("/proc/kallsyms") {
        Ok(text) => {
            let table = Kallsyms::parse(&text);
            if table.is_empty() {
                tracing::info!(
                    "/proc/kallsyms shows no addresses (kernel.kptr_restrict); kernel frames \
                     are named {UNKNOWN_KERNEL}"
                );
            }
            table
        }
        Err(e) => {
            tracing::info!(error = %e, "/proc/kallsyms unreadable; kernel frames are named {UNKNOWN_KERNEL}");
            Kallsyms::default()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_finds_the_enclosing_text_symbol() {
        let table = Kallsyms::parse(
            "ffffffff81000000 T _stext\n\
             ffffffff81001000 t do_syscall_64\n\
             ffffffff81002000 D some_data\n\
             ffffffff81003000 T tcp_sendmsg\t[tcp]\n\
             garbage\n",
        );
        assert_eq!(table.lookup(0xffffffff81001234), Some("do_syscall_64"));
        // Data symbols are no function: the text symbol before them still encloses the address.
        assert_eq!(table.lookup(0xffffffff81002010), Some("do_syscall_64"));
        assert_eq!(table.lookup(0xffffffff81003000), Some("tcp_sendmsg"));
        assert_eq!(table.lookup(0x1000), None);
    }

    #[test]
    fn hidden_addresses_give_an_empty_table() {
        let table = Kallsyms::parse("0000000000000000 T _stext\n0000000000000000 t foo\n");
        assert!(table.is_empty());
        assert_eq!(table.lookup(0xffffffff81000000), None);
    }
}
