//! Names for code compiled at run time (the agents' WebAssembly), which has no ELF symbols.
//!
//! The runtime registers each compiled module's code range, its functions (offset, length
//! and name within that range) and the agent type it serves when it compiles the module
//! ([`register`]), and unregisters it when the module is freed (dropping the
//! [`Registration`]). The symbolizer of both samplers consults this registry before the
//! binary's symbols: a sample inside an agent's code then names the WebAssembly function
//! (from the module's name section, else `wasm-function[N]`) and, above the outermost of a
//! run of such frames, an `agent:<type>` frame.
//!
//! Addresses are named when a capture ends: a module freed during a capture leaves its
//! samples unnamed (their frames are dropped, as before this registry).

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Prefix of the frame that names the agent type above its WebAssembly frames.
pub const AGENT_FRAME_PREFIX: &str = "agent:";

/// Name of code inside a registered range that is no listed function (wasmtime's
/// trampolines between host and guest).
pub const TRAMPOLINE: &str = "wasm-trampoline";

/// One compiled function of a module: where it lies relative to the module's code start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JitFunction {
    /// Byte offset from [`JitCode::code`]'s start.
    pub offset: usize,
    /// Length in bytes.
    pub len: usize,
    /// The function's index in its module (for `wasm-function[N]` when it has no name).
    pub index: u32,
    /// Its name from the module's name section, if any.
    pub name: Option<String>,
}

impl JitFunction {
    /// The frame name: the name section's, else `wasm-function[N]`.
    pub fn display_name(&self) -> String {
        match &self.name {
            Some(n) if !n.is_empty() => n.clone(),
            _ => format!("wasm-function[{}]", self.index),
        }
    }
}

/// A module's compiled code, as the runtime registers it.
#[derive(Debug, Clone)]
pub struct JitCode {
    /// Absolute addresses of the executable code (`.text`).
    pub code: Range<usize>,
    /// The agent type the module implements.
    pub agent_type: String,
    /// Its functions, in any order.
    pub functions: Vec<JitFunction>,
}

/// Where an address inside registered code lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JitFrame {
    /// The function's frame name ([`JitFunction::display_name`] or [`TRAMPOLINE`]).
    pub function: Arc<str>,
    /// The agent type's frame name, `agent:<type>`.
    pub agent: Arc<str>,
}

/// A registered module, prepared for lookups.
struct Entry {
    id: u64,
    end: usize,
    agent: Arc<str>,
    /// Absolute start, end and frame name, sorted by start.
    functions: Vec<(usize, usize, Arc<str>)>,
}

static REGISTRY: RwLock<BTreeMap<usize, Entry>> = RwLock::new(BTreeMap::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Keeps a module's names registered; dropping it unregisters them. Drop it no later than the
/// code is freed: the range may then be reused by another module.
#[derive(Debug)]
#[must_use = "dropping the registration unregisters the code at once"]
pub struct Registration {
    start: usize,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut registry = REGISTRY.write().unwrap_or_else(|p| p.into_inner());
        if registry.get(&self.start).is_some_and(|e| e.id == self.id) {
            registry.remove(&self.start);
        }
    }
}

/// Registers `code` for the symbolizer until the returned [`Registration`] is dropped.
/// Functions lying outside `code` are ignored; a range registered again (the same
/// address reused) replaces the older entry.
pub fn register(code: JitCode) -> Registration {
    let start = code.code.start;
    let end = code.code.end;
    let mut functions: Vec<(usize, usize, Arc<str>)> = code
        .functions
        .iter()
        .filter_map(|f| {
            let s = start.checked_add(f.offset)?;
            let e = s.checked_add(f.len)?;
            (e <= end).then(|| (s, e, Arc::from(f.display_name())))
        })
        .collect();
    functions.sort_by_key(|f| f.0);
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let entry = Entry {
        id,
        end,
        agent: Arc::from(format!("{AGENT_FRAME_PREFIX}{}", code.agent_type)),
        functions,
    };
    let mut registry = REGISTRY.write().unwrap_or_else(|p| p.into_inner());
    // Overlapping older ranges belong to freed code whose registration was leaked or is
    // about to drop: the newest registration wins.
    let stale: Vec<usize> = registry
        .range(..end)
        .filter(|(s, e)| **s < end && e.end > start)
        .map(|(&s, _)| s)
        .collect();
    for s in stale {
        registry.remove(&s);
    }
    registry.insert(start, entry);
    Registration { start, id }
}

/// The registered function `ip` lies in, if any.
pub fn lookup(ip: u64) -> Option<JitFrame> {
    let ip = usize::try_from(ip).ok()?;
    let registry = REGISTRY.read().unwrap_or_else(|p| p.into_inner());
    let (_, entry) = registry.range(..=ip).next_back()?;
    if ip >= entry.end {
        return None;
    }
    let at = entry.functions.partition_point(|f| f.0 <= ip);
    let function = at
        .checked_sub(1)
        .map(|i| &entry.functions[i])
        .filter(|f| ip < f.1)
        .map_or_else(|| Arc::from(TRAMPOLINE), |f| f.2.clone());
    Some(JitFrame {
        function,
        agent: entry.agent.clone(),
    })
}

/// Whether any code is registered (the symbolizer skips lookups otherwise).
pub fn any_registered() -> bool {
    !REGISTRY
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(start: usize, agent: &str) -> JitCode {
        JitCode {
            code: start..start + 0x100,
            agent_type: agent.into(),
            functions: vec![
                JitFunction {
                    offset: 0x10,
                    len: 0x20,
                    index: 3,
                    name: Some("burn".into()),
                },
                JitFunction {
                    offset: 0x40,
                    len: 0x10,
                    index: 4,
                    name: None,
                },
                // Past the code's end: ignored.
                JitFunction {
                    offset: 0xf0,
                    len: 0x20,
                    index: 5,
                    name: Some("outside".into()),
                },
            ],
        }
    }

    #[test]
    fn functions_trampolines_and_unregistration() {
        // Addresses no real mapping uses, so parallel tests cannot collide.
        let base = 0x7a5a_0000_0000usize;
        let reg = register(code(base, "burner"));
        let at = |off: usize| lookup((base + off) as u64);
        let burn = at(0x15).unwrap();
        assert_eq!(&*burn.function, "burn");
        assert_eq!(&*burn.agent, "agent:burner");
        assert_eq!(&*at(0x45).unwrap().function, "wasm-function[4]");
        assert_eq!(&*at(0x0).unwrap().function, TRAMPOLINE);
        assert_eq!(&*at(0xf5).unwrap().function, TRAMPOLINE);
        assert_eq!(at(0x100), None);
        assert_eq!(lookup(base as u64 - 1), None);
        drop(reg);
        assert_eq!(at(0x15), None);
    }

    #[test]
    fn a_reused_range_names_the_newest_module() {
        let base = 0x7a5b_0000_0000usize;
        let old = register(code(base, "old"));
        let new = register(code(base + 0x80, "new"));
        assert_eq!(lookup((base + 0x10) as u64), None, "the old entry is gone");
        assert_eq!(&*lookup((base + 0x90) as u64).unwrap().agent, "agent:new");
        // Dropping the replaced registration must not remove the newer one.
        drop(old);
        assert!(lookup((base + 0x90) as u64).is_some());
        drop(new);
        assert_eq!(lookup((base + 0x90) as u64), None);
    }
}
