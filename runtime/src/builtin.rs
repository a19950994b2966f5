//! The built-in agent types, written in WAT and compiled when the runtime starts.
//!
//! No JSON parser lives in these modules: the runtime serializes `performative` first, so a
//! prefix compare dispatches, and replies are constant templates or byte concatenations that
//! rely on the runtime's reply-addressing defaults (see `wasm.rs`).

/// A built-in type: its name on the API and how to build its WAT text.
pub struct Builtin {
    pub name: &'static str,
    source: fn() -> String,
}

impl Builtin {
    pub fn wat(&self) -> String {
        (self.source)()
    }
}

/// The type the Caxton Monitoring and Observability Guide's load test creates: answers REQUEST with
/// INFORM, anything else with NOT_UNDERSTOOD.
pub const TEST_AGENT: Builtin = Builtin {
    name: "test-agent",
    source: test_agent,
};
/// Replies INFORM whose content is the whole received message.
pub const ECHO: Builtin = Builtin {
    name: "echo",
    source: echo,
};
/// Burns a fixed amount of CPU (FNV-1a over the message, then 100k mixing rounds) before
/// replying INFORM with the digest: the benchmark type for execution-bound load.
pub const CPU_HEAVY: Builtin = Builtin {
    name: "cpu-heavy",
    source: cpu_heavy,
};

pub const ALL: [Builtin; 3] = [TEST_AGENT, ECHO, CPU_HEAVY];

/// Rounds of the cpu-heavy mixing loop; about 0.6 M fuel, well inside the default budget.
pub const CPU_HEAVY_ROUNDS: u32 = 100_000;

const REQUEST_PREFIX: &str = r#"{"performative":"REQUEST","#;
const INFORM_DONE: &str = r#"{"performative":"INFORM","content":{"status":"done"}}"#;
const NOT_UNDERSTOOD: &str =
    r#"{"performative":"NOT_UNDERSTOOD","content":{"error":"test-agent answers REQUEST only"}}"#;
const ECHO_PREFIX: &str = r#"{"performative":"INFORM","content":"#;
const DIGEST_TEMPLATE: &str = r#"{"performative":"INFORM","content":{"fnv1a":"00000000"}}"#;

/// Data segments live below this address; the bump heap starts here.
const HEAP_BASE: usize = 4096;

fn wat_string(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'"' => "\\\"".to_owned(),
            b'\\' => "\\\\".to_owned(),
            0x20..=0x7e => (b as char).to_string(),
            _ => format!("\\{b:02x}"),
        })
        .collect()
}

/// Imports, memory and the bump allocator shared by every built-in; `data` are
/// `(offset, bytes)` segments below HEAP_BASE.
fn module(data: &[(usize, &str)], body: &str) -> String {
    let segments: String = data
        .iter()
        .map(|(at, s)| format!("  (data (i32.const {at}) \"{}\")\n", wat_string(s)))
        .collect();
    format!(
        r#"(module
  (import "caxton" "send_message" (func $send (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const {HEAP_BASE}))
{segments}
  ;; Bump allocator: instances live for one message, so nothing is ever freed.
  (func $alloc (export "alloc") (param $len i32) (result i32)
    (local $ptr i32) (local $end i32) (local $have i32)
    (local.set $ptr (global.get $heap))
    (local.set $end (i32.and (i32.add (i32.add (local.get $ptr) (local.get $len)) (i32.const 7))
                             (i32.const -8)))
    (local.set $have (i32.mul (memory.size) (i32.const 65536)))
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then
        (if (i32.eq (memory.grow (i32.shr_u (i32.add (i32.sub (local.get $end) (local.get $have))
                                                     (i32.const 65535))
                                            (i32.const 16)))
                    (i32.const -1))
          (then (return (i32.const 0))))))
    (global.set $heap (local.get $end))
    (local.get $ptr))

  ;; 1 when the `n` bytes at $a equal those at $b.
  (func $eq (param $a i32) (param $b i32) (param $n i32) (result i32)
    (local $i i32)
    (block $no
      (loop $next
        (if (i32.ge_u (local.get $i) (local.get $n)) (then (return (i32.const 1))))
        (br_if $no (i32.ne (i32.load8_u (i32.add (local.get $a) (local.get $i)))
                           (i32.load8_u (i32.add (local.get $b) (local.get $i)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 0))
{body})
"#
    )
}

fn test_agent() -> String {
    let (req, inform, nu) = (0, 64, 256);
    module(
        &[
            (req, REQUEST_PREFIX),
            (inform, INFORM_DONE),
            (nu, NOT_UNDERSTOOD),
        ],
        &format!(
            r#"  (func (export "handle_message") (param $ptr i32) (param $len i32) (result i32)
    (if (i32.and (i32.ge_u (local.get $len) (i32.const {rl}))
                 (call $eq (local.get $ptr) (i32.const {req}) (i32.const {rl})))
      (then (drop (call $send (i32.const {inform}) (i32.const {il}))))
      (else (drop (call $send (i32.const {nu}) (i32.const {nl})))))
    (i32.const 0))
"#,
            rl = REQUEST_PREFIX.len(),
            il = INFORM_DONE.len(),
            nl = NOT_UNDERSTOOD.len(),
        ),
    )
}

fn echo() -> String {
    module(
        &[(0, ECHO_PREFIX)],
        &format!(
            r#"  (func (export "handle_message") (param $ptr i32) (param $len i32) (result i32)
    (local $out i32) (local $total i32)
    (local.set $total (i32.add (local.get $len) (i32.const {total_extra})))
    (local.set $out (call $alloc (local.get $total)))
    (if (i32.eqz (local.get $out)) (then (return (i32.const 1))))
    (memory.copy (local.get $out) (i32.const 0) (i32.const {pl}))
    (memory.copy (i32.add (local.get $out) (i32.const {pl})) (local.get $ptr) (local.get $len))
    (i32.store8 (i32.add (local.get $out) (i32.sub (local.get $total) (i32.const 1)))
                (i32.const 125))
    (call $send (local.get $out) (local.get $total)))
"#,
            pl = ECHO_PREFIX.len(),
            total_extra = ECHO_PREFIX.len() + 1,
        ),
    )
}

fn cpu_heavy() -> String {
    let digits = DIGEST_TEMPLATE.find("00000000").unwrap_or(0);
    module(
        &[(0, DIGEST_TEMPLATE)],
        &format!(
            r#"  (func (export "handle_message") (param $ptr i32) (param $len i32) (result i32)
    (local $h i32) (local $i i32) (local $n i32)
    (local.set $h (i32.const 0x811c9dc5))
    (block $done
      (loop $bytes
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        (local.set $h (i32.mul (i32.xor (local.get $h)
                                        (i32.load8_u (i32.add (local.get $ptr) (local.get $i))))
                               (i32.const 0x01000193)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $bytes)))
    (local.set $i (i32.const {rounds}))
    (loop $mix
      (local.set $h (i32.mul (i32.xor (local.get $h) (i32.shr_u (local.get $h) (i32.const 13)))
                             (i32.const 0x01000193)))
      (local.set $i (i32.sub (local.get $i) (i32.const 1)))
      (br_if $mix (i32.gt_s (local.get $i) (i32.const 0))))
    (local.set $i (i32.const 0))
    (block $written
      (loop $hex
        (br_if $written (i32.ge_u (local.get $i) (i32.const 8)))
        (local.set $n (i32.and (i32.shr_u (local.get $h)
                                          (i32.sub (i32.const 28) (i32.mul (local.get $i) (i32.const 4))))
                               (i32.const 15)))
        (i32.store8 (i32.add (i32.const {digits}) (local.get $i))
                    (select (i32.add (local.get $n) (i32.const 48))
                            (i32.add (local.get $n) (i32.const 87))
                            (i32.lt_u (local.get $n) (i32.const 10))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $hex)))
    (call $send (i32.const 0) (i32.const {tl})))
"#,
            rounds = CPU_HEAVY_ROUNDS,
            tl = DIGEST_TEMPLATE.len(),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fit_below_the_heap_and_do_not_overlap() {
        assert!(REQUEST_PREFIX.len() <= 64);
        assert!(64 + INFORM_DONE.len() <= 256);
        assert!(256 + NOT_UNDERSTOOD.len() <= HEAP_BASE);
        for t in [INFORM_DONE, NOT_UNDERSTOOD, DIGEST_TEMPLATE] {
            serde_json::from_str::<crate::fipa::AclMessage>(t).unwrap();
        }
    }

    #[test]
    fn every_builtin_is_valid_wat() {
        for b in ALL {
            wat::parse_str(b.wat()).unwrap_or_else(|e| panic!("{}: {e}", b.name));
        }
    }
}
