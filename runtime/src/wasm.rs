//! The WebAssembly side of an agent: engine set-up, the host ABI, and one bounded execution.
//!
//! # Agent ABI
//! A module is an agent when it
//! - exports `memory` and an allocator `alloc(len: i32) -> i32` (returns a pointer to `len`
//!   free bytes, 0 when out of memory),
//! - exports `handle_message(ptr: i32, len: i32) -> i32`, called with one FIPA-ACL message as
//!   UTF-8 JSON (performative first); 0 means handled, anything else is a failure,
//! - may export `agent_init() -> i32`, called once when the agent is created (0 = ready),
//! - imports only from module `caxton`:
//!   `send_message(ptr, len) -> i32` (one JSON FIPA message; 0 ok, -1 invalid JSON,
//!   -2 out of bounds, -3 outbox full), `current_timestamp() -> i64` (ms since the Unix
//!   epoch) and `console_log(ptr, len)`.
//!
//! Host calls are not free: `send_message` and `console_log` cost one unit of fuel per byte
//! they read, so a loop of host calls ends with the fuel budget like any other loop. One
//! execution may send at most [`MAX_OUTBOX`] messages of [`MAX_OUTBOX_BYTES`] in all, and
//! log `log_lines_per_execution` lines of `log_bytes_per_execution` bytes; log lines past
//! that are dropped and counted in one rate-limited warning.
//!
//! A sent message may leave `receiver`, `conversation_id` and `in_reply_to` out: they default
//! to a reply to the message being handled, so `{"performative":"INFORM"}` is a valid reply.
//!
//! # Isolation
//! Instances are ephemeral: each execution instantiates from a pre-linked `InstancePre` in the
//! pooling allocator, so an idle agent holds no instance and no linear memory. Each execution
//! has a fuel budget, an epoch deadline (wall-clock timeout) and a memory cap; running out of
//! any of them fails that execution only. Consecutive executions on a thread may share a
//! `Store` (see `SpareStore`), never an instance: nothing an agent leaves in its memory,
//! globals or table reaches the next message.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use thiserror::Error;
use wasmtime::{
    Caller, Engine, ExternType, InstanceAllocationStrategy, InstancePre, Linker, Memory, Module,
    ModuleExport, PoolConcurrencyLimitError, PoolingAllocationConfig, Store, StoreLimits,
    StoreLimitsBuilder, Trap, ValType,
};

use crate::config::AgentsConfig;
use crate::fipa::AclMessage;

/// How often the epoch advances; the execution timeout is counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(5);
/// An agent may send at most this many messages per execution (a loop of sends is a bug,
/// and the outbox lives in host memory).
const MAX_OUTBOX: usize = 1024;
/// Most bytes of messages one execution may send (the outbox lives in host memory, out of
/// reach of the agent's memory cap).
const MAX_OUTBOX_BYTES: usize = 16 << 20;
/// Longest `console_log` line kept; the rest is cut so an agent cannot flood the logs.
const MAX_LOG_BYTES: usize = 4096;

static LOG_BUDGET_SPENT: crate::telemetry::log_throttle::Throttle =
    crate::telemetry::log_throttle::Throttle::new();
/// Most executions one store serves (see [`SpareStore`]).
const STORE_REUSE: u32 = 8;
/// A store is only kept for another execution while its instances' memories total at most
/// this: a spare store's spent instances keep their pool slots and pages until it drops.
const SPARE_MEMORY_BYTES: u64 = 1 << 20;

/// A store kept by a thread for its next execution. Creating and dropping a store (its
/// module registry, limits, fuel and host state) was a measurable share of a message's
/// instructions (callgrind, BENCHMARKS.md). Every execution still gets a fresh instance,
/// so no memory, global or table passes between messages, whatever the load; what is
/// shared is the store's bookkeeping, and fuel, deadline, agent id and outbox are set anew
/// each time. Spent instances keep their pool slots until the store drops, hence the caps:
/// [`STORE_REUSE`] executions, [`SPARE_MEMORY_BYTES`] of memory, no failed execution.
struct SpareStore {
    store: Store<HostState>,
    uses: u32,
    memory_bytes: u64,
}

thread_local! {
    static SPARE: RefCell<Option<SpareStore>> = const { RefCell::new(None) };
}

/// Why an execution failed; `kind()` is the metric label.
#[derive(Debug, Error)]
pub enum ExecError {
    #[error("fuel exhausted: the agent used more than its per-message budget")]
    FuelExhausted,
    #[error("execution timed out")]
    Timeout,
    #[error("memory limit exceeded: {0}")]
    MemoryLimit(String),
    #[error("trap: {0}")]
    Trap(String),
    #[error("agent does not follow the ABI: {0}")]
    Abi(String),
    #[error("handle_message returned status {0}")]
    Status(i32),
}

impl ExecError {
    /// Short label for metrics and FAILURE replies.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::FuelExhausted => "fuel_exhausted",
            Self::Timeout => "timeout",
            Self::MemoryLimit(_) => "memory_limit",
            Self::Trap(_) => "trap",
            Self::Abi(_) => "abi",
            Self::Status(_) => "status",
        }
    }

    fn classify(err: wasmtime::Error) -> Self {
        if let Some(trap) = err.downcast_ref::<Trap>() {
            return match trap {
                Trap::OutOfFuel => Self::FuelExhausted,
                Trap::Interrupt => Self::Timeout,
                other => Self::Trap(other.to_string()),
            };
        }
        // StoreLimits with trap_on_grow_failure reports growth past the cap as a plain error.
        let text = format!("{err:#}");
        if text.contains("growing memory") || text.contains("memory growth") {
            Self::MemoryLimit(text)
        } else {
            Self::Trap(text)
        }
    }
}

/// A module that cannot become an agent type.
#[derive(Debug, Error)]
pub enum ModuleError {
    #[error("invalid WebAssembly module: {0}")]
    Compile(String),
    #[error("module does not follow the Caxton agent ABI: {0}")]
    Abi(String),
}

/// Per-store host state.
pub(crate) struct HostState {
    limits: StoreLimits,
    agent_id: Arc<str>,
    outbox: Vec<AclMessage>,
    /// Bytes of JSON behind `outbox`.
    outbox_bytes: usize,
    /// This execution's `console_log` use and what its budget turned away.
    log: LogUse,
    log_budget: LogBudget,
    /// The running instance's memory, set right after instantiation; host calls read the
    /// guest through it instead of looking the export up by name on every call. `None`
    /// sends them to that lookup (a store shared by executions must never keep another
    /// instance's memory here).
    memory: Option<Memory>,
}

/// `[agents] log_lines_per_execution` and `log_bytes_per_execution`.
#[derive(Clone, Copy)]
struct LogBudget {
    lines: u32,
    bytes: usize,
}

#[derive(Default, Clone, Copy)]
struct LogUse {
    lines: u32,
    bytes: usize,
    suppressed: u32,
}

/// A compiled, pre-linked agent type; cheap to instantiate many times.
pub struct AgentType {
    pub(crate) name: String,
    pub builtin: bool,
    pre: InstancePre<HostState>,
    has_init: bool,
    /// Export indices resolved once at compile time: looking exports up by name on every
    /// execution showed in the message path's profile (BENCHMARKS.md).
    memory: ModuleExport,
    alloc: ModuleExport,
    handle: ModuleExport,
    /// Names the compiled code for the CPU profiler while this type exists.
    _jit: caxton_profiles::jit::Registration,
}

impl std::fmt::Debug for AgentType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentType")
            .field("name", &self.name)
            .finish()
    }
}

impl AgentType {
    /// Bytes of compiled code and data this type keeps mapped: what caching it costs.
    pub(crate) fn code_bytes(&self) -> u64 {
        let range = self.pre.module().image_range();
        (range.end as usize).saturating_sub(range.start as usize) as u64
    }
}

/// What one successful execution produced.
#[derive(Debug)]
pub struct Execution {
    /// Messages the agent sent, sender already set to the agent; addressing defaults are
    /// applied by the router, which knows the message being answered.
    pub(crate) outgoing: Vec<AclMessage>,
    /// Linear memory size at the end of the execution.
    pub(crate) memory_bytes: u64,
}

/// Stops the epoch thread when the engine goes away.
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The wasmtime engine with Caxton's limits and linker.
pub struct WasmEngine {
    engine: Engine,
    linker: Linker<HostState>,
    fuel: u64,
    deadline_ticks: u64,
    memory_limit: usize,
    /// Executions a store may serve: [`STORE_REUSE`], less where the pool is small enough
    /// that spare stores' spent instances could exhaust it (1 turns reuse off).
    store_reuse: u32,
    log_budget: LogBudget,
    _ticker: EpochTicker,
}

impl WasmEngine {
    pub fn new(cfg: &AgentsConfig) -> Result<Self, ModuleError> {
        let memory_limit = usize::try_from(cfg.memory_limit).unwrap_or(usize::MAX);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_core_instances(cfg.max_instances)
            .total_memories(cfg.max_instances)
            .total_tables(cfg.max_instances)
            .max_memory_size(memory_limit)
            // Every message instantiates and tears down an instance. Measured under wrk (see
            // BENCHMARKS.md), the madvise that decommits a slot's memory on teardown was the
            // largest single cost; keeping the first 16 KiB resident turns it into a memset
            // for agents whose message fits there (the built-ins' heap starts at 4 KiB), and
            // batching amortizes the rest. A whole 64 KiB page memset showed in the profile;
            // PAGEMAP_SCAN with the whole page resident (restore only dirtied pages) measured
            // no better, its ioctl being a syscall per teardown.
            .linear_memory_keep_resident(16 * 1024)
            .table_keep_resident(4096)
            .decommit_batch_size(32);
        let mut wcfg = wasmtime::Config::new();
        wcfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .consume_fuel(true)
            .epoch_interruption(true)
            // Reserve only what the cap allows: thousands of pool slots of the default 4 GiB
            // reservation would exhaust the address space. Costs explicit bounds checks.
            .memory_reservation(cfg.memory_limit.max(65536))
            .memory_guard_size(65536)
            .memory_reservation_for_growth(0);
        let engine = Engine::new(&wcfg).map_err(|e| ModuleError::Compile(format!("{e:#}")))?;
        let linker = host_linker(&engine).map_err(|e| ModuleError::Compile(format!("{e:#}")))?;
        let ticks = cfg.execution_timeout.as_nanos() / EPOCH_TICK.as_nanos();
        Ok(Self {
            _ticker: spawn_epoch_ticker(&engine),
            engine,
            linker,
            fuel: cfg.fuel_per_message,
            deadline_ticks: u64::try_from(ticks).unwrap_or(u64::MAX).max(1),
            memory_limit,
            store_reuse: store_reuse(cfg.max_instances, cfg.execution_pool_size()),
            log_budget: LogBudget {
                lines: cfg.log_lines_per_execution,
                bytes: usize::try_from(cfg.log_bytes_per_execution).unwrap_or(usize::MAX),
            },
        })
    }

    /// Compiles and links `bytes` (binary wasm or WAT text) as agent type `name`, checking the
    /// ABI so that a bad module is refused at registration, not at its first message.
    pub fn compile(
        &self,
        name: &str,
        bytes: &[u8],
        builtin: bool,
    ) -> Result<AgentType, ModuleError> {
        let module =
            Module::new(&self.engine, bytes).map_err(|e| ModuleError::Compile(format!("{e:#}")))?;
        check_abi(&module)?;
        let has_init = module.get_export("agent_init").is_some();
        let index = |export: &str| {
            module
                .get_export_index(export)
                .ok_or_else(|| ModuleError::Abi(format!("missing export `{export}`")))
        };
        let (memory, alloc, handle) = (index("memory")?, index("alloc")?, index("handle_message")?);
        let pre = self
            .linker
            .instantiate_pre(&module)
            .map_err(|e| ModuleError::Abi(format!("{e:#}")))?;
        let jit = register_code(&module, name);
        Ok(AgentType {
            name: name.to_owned(),
            builtin,
            pre,
            has_init,
            memory,
            alloc,
            handle,
            _jit: jit,
        })
    }

    fn store(&self, agent_id: &Arc<str>) -> Store<HostState> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.memory_limit)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(
            &self.engine,
            HostState {
                limits,
                agent_id: agent_id.clone(),
                outbox: Vec::new(),
                outbox_bytes: 0,
                log: LogUse::default(),
                log_budget: self.log_budget,
                memory: None,
            },
        );
        store.limiter(|s| &mut s.limits);
        // Fuel is enabled in the engine config, so this cannot fail.
        let _ = store.set_fuel(self.fuel);
        store.set_epoch_deadline(self.deadline_ticks);
        store
    }

    /// Runs `agent_init` when the type has one: the Loaded -> Running transition.
    pub(crate) fn init(&self, ty: &AgentType, agent_id: &Arc<str>) -> Result<(), ExecError> {
        if !ty.has_init {
            return Ok(());
        }
        let mut store = self.store(agent_id);
        let instance = ty
            .pre
            .instantiate(&mut store)
            .map_err(ExecError::classify)?;
        let init = instance
            .get_typed_func::<(), i32>(&mut store, "agent_init")
            .map_err(|e| ExecError::Abi(format!("{e:#}")))?;
        match init.call(&mut store, ()).map_err(ExecError::classify)? {
            0 => Ok(()),
            status => Err(ExecError::Status(status)),
        }
    }

    /// Delivers one message (already serialized) to a fresh instance of `ty`.
    pub fn execute(
        &self,
        ty: &AgentType,
        agent_id: &Arc<str>,
        message: &[u8],
    ) -> Result<Execution, ExecError> {
        let mut spare = self.spare_store(agent_id);
        let result = self.run(ty, &mut spare, message);
        let log = spare.store.data().log;
        if log.suppressed > 0
            && let Some(suppressed) = LOG_BUDGET_SPENT.admit()
        {
            tracing::warn!(agent_id = %agent_id, lines_dropped = log.suppressed,
                lines_kept = log.lines, suppressed,
                "console_log budget of the execution spent; lines dropped");
        }
        let keep = match &result {
            Ok(exec) => {
                spare.uses += 1;
                spare.memory_bytes += exec.memory_bytes;
                spare.uses < self.store_reuse && spare.memory_bytes <= SPARE_MEMORY_BYTES
            }
            Err(_) => false,
        };
        if keep {
            SPARE.with(|s| *s.borrow_mut() = Some(spare));
        }
        result
    }

    /// This thread's spare store if it belongs to this engine, else a new one; set up for
    /// one execution by `agent_id`.
    fn spare_store(&self, agent_id: &Arc<str>) -> SpareStore {
        let spare = SPARE
            .with(|s| s.borrow_mut().take())
            .filter(|s| Engine::same(s.store.engine(), &self.engine));
        match spare {
            Some(mut spare) => {
                let store = &mut spare.store;
                let _ = store.set_fuel(self.fuel);
                store.set_epoch_deadline(self.deadline_ticks);
                let state = store.data_mut();
                state.agent_id = agent_id.clone();
                state.outbox.clear();
                state.outbox_bytes = 0;
                state.log = LogUse::default();
                state.memory = None;
                spare
            }
            None => self.fresh_spare(agent_id),
        }
    }

    fn fresh_spare(&self, agent_id: &Arc<str>) -> SpareStore {
        SpareStore {
            store: self.store(agent_id),
            uses: 0,
            memory_bytes: 0,
        }
    }

    fn run(
        &self,
        ty: &AgentType,
        spare: &mut SpareStore,
        message: &[u8],
    ) -> Result<Execution, ExecError> {
        let instance = match ty.pre.instantiate(&mut spare.store) {
            Ok(instance) => instance,
            // The pool is full, possibly of spare stores' spent instances: this thread's go
            // with its store; a fresh store tries once more.
            Err(e) if spare.uses > 0 && e.is::<PoolConcurrencyLimitError>() => {
                let agent_id = spare.store.data().agent_id.clone();
                *spare = self.fresh_spare(&agent_id);
                ty.pre
                    .instantiate(&mut spare.store)
                    .map_err(ExecError::classify)?
            }
            Err(e) => return Err(ExecError::classify(e)),
        };
        let store = &mut spare.store;
        let export = |store: &mut Store<HostState>, e: &ModuleExport, what: &str| {
            instance
                .get_module_export(&mut *store, e)
                .ok_or_else(|| ExecError::Abi(format!("export `{what}` missing at run time")))
        };
        let memory = export(store, &ty.memory, "memory")?
            .into_memory()
            .ok_or_else(|| ExecError::Abi("`memory` is not a memory".into()))?;
        store.data_mut().memory = Some(memory);
        let func = |store: &mut Store<HostState>, e: &ModuleExport, what: &str| {
            export(store, e, what)?
                .into_func()
                .ok_or_else(|| ExecError::Abi(format!("`{what}` is not a function")))
        };
        // Signatures were checked by `check_abi` at compile time; `typed` re-checks cheaply.
        let alloc = func(store, &ty.alloc, "alloc")?
            .typed::<i32, i32>(&*store)
            .map_err(|e| ExecError::Abi(format!("{e:#}")))?;
        let handle = func(store, &ty.handle, "handle_message")?
            .typed::<(i32, i32), i32>(&*store)
            .map_err(|e| ExecError::Abi(format!("{e:#}")))?;
        let len = i32::try_from(message.len())
            .map_err(|_| ExecError::Abi("message larger than 2 GiB".into()))?;
        let ptr = alloc.call(&mut *store, len).map_err(ExecError::classify)?;
        if ptr <= 0 {
            return Err(ExecError::MemoryLimit(format!(
                "alloc({len}) returned {ptr}: no room for the message"
            )));
        }
        memory
            .write(&mut *store, ptr as usize, message)
            .map_err(|e| ExecError::Abi(format!("alloc returned an out-of-bounds pointer: {e}")))?;
        let status = handle
            .call(&mut *store, (ptr, len))
            .map_err(ExecError::classify)?;
        if status != 0 {
            return Err(ExecError::Status(status));
        }
        let memory_bytes = memory.data_size(&*store) as u64;
        Ok(Execution {
            outgoing: std::mem::take(&mut store.data_mut().outbox),
            memory_bytes,
        })
    }
}

/// [`STORE_REUSE`], cut so that every thread's spare store together holds at most half of
/// the pool's `max_instances` slots. Executions run on the execution pool's threads, but
/// tests and benches call `execute` from others too: count whichever is more.
fn store_reuse(max_instances: u32, pool_threads: usize) -> u32 {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = u32::try_from(cpus.max(pool_threads)).unwrap_or(u32::MAX);
    (max_instances / threads.saturating_mul(2)).clamp(1, STORE_REUSE)
}

fn spawn_epoch_ticker(engine: &Engine) -> EpochTicker {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let weak = engine.weak();
    // A plain thread: the deadline must advance even when every thread that runs
    // executions is busy with a runaway agent.
    let _ = std::thread::Builder::new()
        .name(crate::threads::EPOCH_TICKER.into())
        .spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        });
    EpochTicker { stop }
}

/// Registers `module`'s compiled functions with the profiler, so that samples in them are
/// named after the module's name section (else `wasm-function[N]`) under `agent:<name>`.
fn register_code(module: &Module, agent_type: &str) -> caxton_profiles::jit::Registration {
    let text = module.text().as_ptr_range();
    let functions = module
        .functions()
        .map(|f| caxton_profiles::jit::JitFunction {
            offset: f.offset,
            len: f.len,
            index: f.index.as_u32(),
            name: f.name,
        })
        .collect();
    caxton_profiles::jit::register(caxton_profiles::jit::JitCode {
        code: text.start as usize..text.end as usize,
        agent_type: agent_type.to_owned(),
        functions,
    })
}

fn check_abi(module: &Module) -> Result<(), ModuleError> {
    let func = |name: &str, params: &[ValType], results: &[ValType]| -> Result<(), ModuleError> {
        match module.get_export(name) {
            Some(ExternType::Func(f)) => {
                let ok = f.params().len() == params.len()
                    && f.results().len() == results.len()
                    && f.params().zip(params).all(|(a, b)| a.matches(b))
                    && f.results().zip(results).all(|(a, b)| a.matches(b));
                if ok {
                    Ok(())
                } else {
                    Err(ModuleError::Abi(format!(
                        "export `{name}` has the wrong signature: {f}"
                    )))
                }
            }
            Some(_) => Err(ModuleError::Abi(format!(
                "export `{name}` is not a function"
            ))),
            None => Err(ModuleError::Abi(format!("missing export `{name}`"))),
        }
    };
    match module.get_export("memory") {
        Some(ExternType::Memory(_)) => {}
        _ => return Err(ModuleError::Abi("missing export `memory`".into())),
    }
    func("alloc", &[ValType::I32], &[ValType::I32])?;
    func(
        "handle_message",
        &[ValType::I32, ValType::I32],
        &[ValType::I32],
    )?;
    if module.get_export("agent_init").is_some() {
        func("agent_init", &[], &[ValType::I32])?;
    }
    for import in module.imports() {
        if import.module() != "caxton" {
            return Err(ModuleError::Abi(format!(
                "import `{}.{}`: agents may import only from module `caxton`",
                import.module(),
                import.name()
            )));
        }
    }
    Ok(())
}

/// Reads `len` bytes at `ptr` of the caller's exported memory.
fn guest_bytes<'c>(caller: &'c mut Caller<'_, HostState>, ptr: i32, len: i32) -> Option<&'c [u8]> {
    let memory = match caller.data().memory {
        Some(memory) => memory,
        None => caller.get_export("memory")?.into_memory()?,
    };
    let start = usize::try_from(ptr).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    memory.data(&*caller).get(start..end)
}

/// Takes `bytes` units of fuel for host work on the guest's behalf; at zero, the guest's
/// next instruction fails the execution with `fuel_exhausted`.
fn charge_fuel(caller: &mut Caller<'_, HostState>, bytes: usize) {
    if let Ok(fuel) = caller.get_fuel() {
        let _ = caller.set_fuel(fuel.saturating_sub(bytes as u64));
    }
}

fn host_linker(engine: &Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    linker.func_wrap(
        "caxton",
        "send_message",
        |mut caller: Caller<'_, HostState>, ptr: i32, len: i32| -> i32 {
            let state = caller.data();
            let full = state.outbox.len() >= MAX_OUTBOX
                || state
                    .outbox_bytes
                    .saturating_add(usize::try_from(len).unwrap_or(0))
                    > MAX_OUTBOX_BYTES;
            if full {
                return -3;
            }
            let Some(bytes) = guest_bytes(&mut caller, ptr, len) else {
                return -2;
            };
            let parsed = serde_json::from_slice::<AclMessage>(bytes);
            let n = bytes.len();
            charge_fuel(&mut caller, n);
            let Ok(mut msg) = parsed else {
                return -1;
            };
            let state = caller.data_mut();
            msg.sender = state.agent_id.to_string();
            state.outbox_bytes += n;
            state.outbox.push(msg);
            0
        },
    )?;
    linker.func_wrap("caxton", "current_timestamp", || -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    })?;
    linker.func_wrap(
        "caxton",
        "console_log",
        |mut caller: Caller<'_, HostState>, ptr: i32, len: i32| {
            let len = len.clamp(0, MAX_LOG_BYTES as i32);
            let state = caller.data_mut();
            let (used, budget) = (state.log, state.log_budget);
            if used.lines >= budget.lines || used.bytes + len as usize > budget.bytes {
                state.log.suppressed += 1;
                charge_fuel(&mut caller, len as usize);
                return;
            }
            state.log.lines += 1;
            state.log.bytes += len as usize;
            charge_fuel(&mut caller, len as usize);
            if let Some(bytes) = guest_bytes(&mut caller, ptr, len) {
                let line = String::from_utf8_lossy(bytes).into_owned();
                tracing::info!(agent_id = %caller.data().agent_id, "{line}");
            }
        },
    )?;
    Ok(linker)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin;
    use crate::fipa::Performative;

    fn engine() -> WasmEngine {
        let cfg = AgentsConfig {
            max_instances: 16,
            execution_threads: 1,
            ..AgentsConfig::default()
        };
        WasmEngine::new(&cfg).unwrap()
    }

    fn request() -> Vec<u8> {
        let mut m = AclMessage::new(Performative::Request);
        m.sender = "client".into();
        m.content = serde_json::json!({"n": 1});
        serde_json::to_vec(&m).unwrap()
    }

    #[test]
    fn test_agent_answers_request_with_inform() {
        let e = engine();
        let ty = e
            .compile("test-agent", builtin::TEST_AGENT.wat().as_bytes(), true)
            .unwrap();
        let id: Arc<str> = "a1".into();
        let out = e.execute(&ty, &id, &request()).unwrap();
        assert_eq!(out.outgoing.len(), 1);
        assert_eq!(out.outgoing[0].performative, Performative::Inform);
        assert_eq!(out.outgoing[0].sender, "a1");
        assert!(out.memory_bytes >= 65536);
    }

    #[test]
    fn runaway_agents_fail_their_execution_only() {
        let e = engine();
        let cases = [
            ("loop", "(loop $l (br $l))", "fuel_exhausted"),
            ("trap", "unreachable", "trap"),
            (
                "bomb",
                "(loop $l (drop (memory.grow (i32.const 16))) (br $l))",
                "memory_limit",
            ),
        ];
        for (name, body, kind) in cases {
            let wat = format!(
                r#"(module (memory (export "memory") 1)
                   (func (export "alloc") (param i32) (result i32) (i32.const 1024))
                   (func (export "handle_message") (param i32 i32) (result i32) {body} (i32.const 0)))"#
            );
            let ty = e.compile(name, wat.as_bytes(), false).unwrap();
            let err = e.execute(&ty, &"x".into(), &request()).unwrap_err();
            assert_eq!(err.kind(), kind, "{name}: {err}");
        }
    }

    /// Teardown memsets the resident part of a slot and decommits the rest; pool slots are
    /// reused, so a page missed by either would leak one message's memory into the next
    /// agent's execution. Consecutive executions on this thread also share a store
    /// ([`SpareStore`]): a global set by one must not be seen by the next.
    #[test]
    fn every_message_sees_a_fresh_instance() {
        let e = engine();
        assert!(e.store_reuse > 1, "the test must cover reused stores");
        let wat = r#"(module (memory (export "memory") 1)
            (data (i32.const 100) "\07")
            (global $seen (mut i32) (i32.const 0))
            (func (export "alloc") (param i32) (result i32) (i32.const 1024))
            (func (export "handle_message") (param i32 i32) (result i32) (local $i i32)
              (if (global.get $seen) (then (return (i32.const 5))))
              (global.set $seen (i32.const 1))
              (if (i32.ne (i32.load8_u (i32.const 100)) (i32.const 7)) (then (return (i32.const 1))))
              (if (i32.ne (memory.size) (i32.const 1)) (then (return (i32.const 2))))
              (if (i32.ne (i32.load (i32.const 40960)) (i32.const 0)) (then (return (i32.const 3))))
              ;; dirty the data byte, every 4 KiB page of the first wasm page, and a grown one
              (i32.store8 (i32.const 100) (i32.const 8))
              (loop $l
                (i32.store (local.get $i) (i32.const -1))
                (local.set $i (i32.add (local.get $i) (i32.const 4096)))
                (br_if $l (i32.lt_u (local.get $i) (i32.const 65536))))
              (if (i32.ne (memory.grow (i32.const 1)) (i32.const 1)) (then (return (i32.const 4))))
              (i32.store (i32.const 70000) (i32.const -1))
              (i32.const 0)))"#;
        let ty = e.compile("dirty", wat.as_bytes(), false).unwrap();
        // More executions than the engine has slots, so every slot is reused.
        for n in 0..64 {
            let out = e.execute(&ty, &"a".into(), &request());
            assert!(out.is_ok(), "execution {n} saw a used instance: {out:?}");
        }
    }

    /// Spare stores keep spent instances' slots. When they have filled the pool, the
    /// thread's own spare makes room instead of failing the message.
    #[test]
    fn a_full_pool_of_spent_instances_does_not_fail_a_message() {
        let threads =
            u32::try_from(std::thread::available_parallelism().map_or(1, |n| n.get())).unwrap();
        let cfg = AgentsConfig {
            max_instances: threads * 4,
            execution_threads: 1,
            ..AgentsConfig::default()
        };
        let e = Arc::new(WasmEngine::new(&cfg).unwrap());
        assert_eq!(e.store_reuse, 2);
        let ty = Arc::new(
            e.compile("test-agent", builtin::TEST_AGENT.wat().as_bytes(), true)
                .unwrap(),
        );
        // Other threads' spare stores hold all slots but one, and keep them while we run.
        let holders = cfg.max_instances as usize - 1;
        let held = Arc::new(std::sync::Barrier::new(holders + 1));
        let done = Arc::new(std::sync::Barrier::new(holders + 1));
        let handles: Vec<_> = (0..holders)
            .map(|_| {
                let (e, ty, held, done) = (e.clone(), ty.clone(), held.clone(), done.clone());
                std::thread::spawn(move || {
                    let ok = e.execute(&ty, &"h".into(), &request()).is_ok();
                    held.wait();
                    done.wait();
                    ok
                })
            })
            .collect();
        held.wait();
        // The first takes the last slot and keeps it in this thread's spare store; the
        // second finds the pool full.
        for n in 0..2 {
            let out = e.execute(&ty, &"a".into(), &request());
            assert!(out.is_ok(), "execution {n}: {out:?}");
        }
        done.wait();
        for h in handles {
            assert!(h.join().unwrap(), "a holder's execution failed");
        }
    }

    /// A loop of host calls used to cost almost no fuel and ran to the wall-clock deadline;
    /// now each call pays for the bytes it reads, and the fuel budget ends the loop.
    #[test]
    fn host_calls_pay_fuel_for_their_bytes() {
        let e = engine();
        let wat = format!(
            r#"(module (import "caxton" "console_log" (func $log (param i32 i32)))
               (memory (export "memory") 1) (data (i32.const 0) "{}")
               (func (export "alloc") (param i32) (result i32) (i32.const 8192))
               (func (export "handle_message") (param i32 i32) (result i32)
                 (loop $l (call $log (i32.const 0) (i32.const 4096)) (br $l)) (i32.const 0)))"#,
            "z".repeat(4096)
        );
        let ty = e.compile("logger", wat.as_bytes(), false).unwrap();
        // Without the charge this loop runs to the deadline and fails with `timeout`.
        let err = e.execute(&ty, &"x".into(), &request()).unwrap_err();
        assert_eq!(err.kind(), "fuel_exhausted", "{err}");
    }

    #[test]
    fn modules_breaking_the_abi_are_refused_with_the_reason() {
        let e = engine();
        let err = e
            .compile("m", br#"(module (memory (export "memory") 1))"#, false)
            .unwrap_err();
        assert!(err.to_string().contains("missing export `alloc`"), "{err}");
        let err = e
            .compile(
                "m",
                br#"(module (import "env" "f" (func)) (memory (export "memory") 1)
                    (func (export "alloc") (param i32) (result i32) (i32.const 0))
                    (func (export "handle_message") (param i32 i32) (result i32) (i32.const 0)))"#,
                false,
            )
            .unwrap_err();
        assert!(err.to_string().contains("env.f"), "{err}");
        assert!(matches!(
            e.compile("m", b"\0asm garbage", false),
            Err(ModuleError::Compile(_))
        ));
    }
}
