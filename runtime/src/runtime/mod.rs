//! The runtime proper: agent types, the agent registry and the lifecycle. Message movement
//! is in `routing.rs`, the other half of `impl Runtime`; the HTTP API (`http/api.rs`) calls
//! only what is public here.

pub(crate) mod routing;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use thiserror::Error;
use tokio::sync::oneshot;

use crate::agent::{Agent, AgentState};
use crate::budget::ByteBudget;
use crate::builtin;
use crate::config::{AgentsConfig, Config};
use crate::events::{Event, Events};
use crate::execution::ExecPool;
use crate::fipa::AclMessage;
use crate::metrics::Metrics;
use crate::module_cache::{self, CacheFull, Lookup, ModuleCache};
use crate::store::{self, AgentRecord, Contents, ModuleRecord, Store, StoreError};
use crate::telemetry::Tracing;
use crate::wasm::{AgentType, ExecError, ModuleError, WasmEngine};

#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error("unknown agent type `{0}`; built-in types are test-agent, echo, cpu-heavy")]
    UnknownType(String),
    #[error(transparent)]
    Module(#[from] ModuleError),
    #[error("agent type `{0}` already exists with a different module")]
    TypeConflict(String),
    #[error("max_agents ({0}) reached")]
    TooManyAgents(usize),
    #[error("agent_init failed: {0}")]
    Init(ExecError),
    #[error("no agent `{0}`")]
    NoSuchAgent(String),
    #[error(transparent)]
    CacheFull(#[from] CacheFull),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Everything the API needs, shared behind one `Arc`.
pub struct Runtime {
    pub(crate) engine: WasmEngine,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) events: Events,
    pub(crate) agents_cfg: AgentsConfig,
    agents: RwLock<Registry>,
    /// The built-in types, compiled at start and never evicted.
    builtins: HashMap<String, Arc<AgentType>>,
    /// Custom types, bounded in bytes (module_cache.rs).
    modules: ModuleCache,
    /// Serializes custom-module compilation so one module is compiled once.
    compile_lock: Mutex<()>,
    /// The registry on disk (`[server] persist_agents`).
    store: Option<Store>,
    /// Clients waiting for a reply, by the `reply_with` of their message.
    pub(crate) pending: Mutex<HashMap<String, oneshot::Sender<AclMessage>>>,
    seq: AtomicU64,
    max_agents: usize,
    /// Runs executions off the async workers.
    pub(crate) pool: ExecPool,
    /// Bytes of messages queued or executing (`[agents] in_flight_bytes`).
    pub(crate) in_flight: Arc<ByteBudget>,
    /// False once shutdown has begun: clients' messages are refused.
    pub(crate) accepting: AtomicBool,
    /// The server's trace pipeline, for the spans of its message path.
    pub(crate) tracing: Tracing,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The agents, by id and in creation order: a page of `GET /api/agents` walks the ordered
/// index from its offset instead of copying and sorting the registry.
#[derive(Default)]
struct Registry {
    by_id: HashMap<Arc<str>, Arc<Agent>>,
    by_seq: BTreeMap<u64, Arc<Agent>>,
}

/// How a new agent gets its code.
pub enum AgentSource {
    Builtin(String),
    /// Module bytes (binary or WAT), registered under `name` or `custom-<digest>`.
    Module {
        name: Option<String>,
        bytes: Vec<u8>,
    },
}

impl Runtime {
    /// Compiles the built-in types and, with `[server] persist_agents`, opens the store
    /// and restores its agents. Fails if the engine cannot be set up or the store cannot
    /// be read (the error names the file). Its spans go to `tracing` (the server's pipeline,
    /// or [`Tracing::off`]).
    pub fn new(
        config: &Config,
        metrics: Arc<Metrics>,
        tracing: Tracing,
    ) -> Result<Self, RuntimeError> {
        let engine = WasmEngine::new(&config.agents)?;
        let mut builtins = HashMap::new();
        for b in builtin::ALL {
            let ty = engine.compile(b.name, b.wat().as_bytes(), true)?;
            builtins.insert(b.name.to_owned(), Arc::new(ty));
        }
        let (store, contents) = if config.server.persist_agents {
            let path = config.server.data_dir.join(store::FILE_NAME);
            let (store, contents) = Store::open(
                &path,
                config.server.store_sync,
                metrics.clone(),
                tracing.clone(),
            )?;
            (Some(store), Some(contents))
        } else {
            (None, None)
        };
        let runtime = Self {
            engine,
            events: Events::default(),
            agents_cfg: config.agents.clone(),
            agents: RwLock::new(Registry::default()),
            builtins,
            modules: ModuleCache::new(config.agents.module_cache_bytes),
            compile_lock: Mutex::new(()),
            store,
            pending: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(0),
            max_agents: config.server.max_agents,
            pool: ExecPool::new(config.agents.execution_pool_size()),
            in_flight: ByteBudget::new(
                usize::try_from(config.agents.in_flight_bytes).unwrap_or(usize::MAX),
                metrics.message_bytes_in_flight().clone(),
            ),
            accepting: AtomicBool::new(true),
            metrics,
            tracing,
        };
        if let Some(contents) = contents {
            runtime.restore(contents)?;
        }
        Ok(runtime)
    }

    /// Rebuilds the registry from the store: each module compiled once, each agent in the
    /// state its creation left it in (its `agent_init` already ran).
    fn restore(&self, contents: Contents) -> Result<(), RuntimeError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let started = std::time::Instant::now();
        let fail = |detail: String| StoreError::Restore {
            path: store.path().to_path_buf(),
            detail,
        };
        let modules = contents.modules.len();
        let used: std::collections::HashSet<&str> = contents
            .agents
            .iter()
            .map(|a| a.agent_type.as_str())
            .collect();
        // Held here until the agents hold them, so restoring one module never evicts
        // another that a restored agent needs.
        let mut types: HashMap<String, Arc<AgentType>> = HashMap::new();
        for m in contents.modules {
            if self.builtins.contains_key(&m.type_name) {
                return Err(fail(format!(
                    "module {} has the built-in type name `{}`",
                    m.hash, m.type_name
                ))
                .into());
            }
            let ty = self
                .engine
                .compile(&m.type_name, &m.bytes, false)
                .map_err(|e| fail(format!("module {} (type `{}`): {e}", m.hash, m.type_name)))?;
            let ty = Arc::new(ty);
            let size = ty.code_bytes() + m.bytes.len() as u64;
            let digest = module_cache::digest(&m.bytes);
            if let Err(e) = self
                .modules
                .insert(m.type_name.clone(), digest, ty.clone(), size)
            {
                if used.contains(m.type_name.as_str()) {
                    return Err(
                        fail(format!("module {} (type `{}`): {e}", m.hash, m.type_name)).into(),
                    );
                }
                tracing::warn!(agent_type = %m.type_name, error = %e, "stored module not restored");
                continue;
            }
            types.insert(m.type_name, ty);
        }
        let mut agents = write(&self.agents);
        let mut next_seq = 0;
        let mut running = 0;
        for rec in contents.agents {
            let ty = self
                .builtins
                .get(&rec.agent_type)
                .or_else(|| types.get(&rec.agent_type))
                .cloned()
                .ok_or_else(|| {
                    fail(format!(
                        "agent {} has type `{}`, neither built in nor stored",
                        rec.id, rec.agent_type
                    ))
                })?;
            let state = match rec.state.as_str() {
                "Running" => AgentState::Running,
                "Failed" => AgentState::Failed,
                other => return Err(fail(format!("agent {} has state `{other}`", rec.id)).into()),
            };
            next_seq = next_seq.max(rec.seq + 1);
            let id: Arc<str> = rec.id.into();
            let agent = Agent::new(
                id.clone(),
                rec.name,
                ty,
                rec.config.map(String::into_boxed_str),
                rec.seq,
                rec.created_at_ms,
            );
            agent.set_state(state);
            running += u64::from(state == AgentState::Running);
            let agent = Arc::new(agent);
            agents.by_seq.insert(rec.seq, agent.clone());
            agents.by_id.insert(id, agent);
        }
        self.seq.store(next_seq, Ordering::Relaxed);
        self.metrics.agents_active().add(running as i64);
        tracing::info!(
            agents = agents.by_id.len(),
            modules,
            seconds = started.elapsed().as_secs_f64(),
            store = %store.path().display(),
            "agent registry restored"
        );
        Ok(())
    }

    /// Makes a created agent durable; the create is acknowledged only after this. If the
    /// store cannot take it, the agent is taken out of the registry again.
    pub async fn persist_created(&self, agent: &Agent) -> Result<(), RuntimeError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let record = AgentRecord {
            id: agent.id.to_string(),
            seq: agent.seq,
            agent_type: agent.agent_type.name.clone(),
            module_hash: if self.builtins.contains_key(&agent.agent_type.name) {
                None
            } else {
                self.modules
                    .digest_of(&agent.agent_type.name)
                    .map(|d| module_cache::hex(&d))
            },
            name: agent.name.clone(),
            config: agent.config.as_deref().map(str::to_owned),
            state: format!("{:?}", agent.state()),
            created_at_ms: agent.created_at_ms,
        };
        if let Err(e) = store.insert(record).await {
            let removed = {
                let mut agents = write(&self.agents);
                agents.by_seq.remove(&agent.seq);
                agents.by_id.remove(&agent.id).is_some()
            };
            if removed {
                if agent.state() == AgentState::Running {
                    self.metrics.agents_active().dec();
                }
                agent.set_state(AgentState::Stopped);
                self.metrics.forget_agent(&agent.agent_type.name, &agent.id);
                self.lifecycle(agent);
            }
            return Err(e.into());
        }
        Ok(())
    }

    /// Makes a delete durable: the agent is not restored after a restart.
    pub(crate) async fn persist_deleted(&self, id: &str) -> Result<(), RuntimeError> {
        match &self.store {
            Some(store) => Ok(store.delete(id).await?),
            None => Ok(()),
        }
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub(crate) fn events(&self) -> &Events {
        &self.events
    }

    /// Resolves (and for modules, compiles once) the type of a new agent. Compilation is
    /// CPU-heavy: async callers run this on a blocking thread. What would refuse the agent
    /// anyway (`max_agents`, a full module cache) is checked before compiling.
    pub fn resolve_type(&self, source: AgentSource) -> Result<Arc<AgentType>, RuntimeError> {
        match source {
            AgentSource::Builtin(name) => self
                .builtins
                .get(&name)
                .cloned()
                .or_else(|| self.modules.by_name(&name))
                .ok_or(RuntimeError::UnknownType(name)),
            AgentSource::Module { name, bytes } => {
                let digest = module_cache::digest(&bytes);
                let name = name.unwrap_or_else(|| module_cache::anonymous_name(&digest));
                if self.builtins.contains_key(&name) {
                    return Err(RuntimeError::TypeConflict(name));
                }
                let _one_at_a_time = self.compile_lock.lock().unwrap_or_else(|p| p.into_inner());
                match self.modules.lookup(&name, &digest) {
                    Lookup::Hit(ty) => return Ok(ty),
                    Lookup::Conflict => return Err(RuntimeError::TypeConflict(name)),
                    Lookup::Miss => {}
                }
                if self.agent_count() >= self.max_agents {
                    return Err(RuntimeError::TooManyAgents(self.max_agents));
                }
                self.modules.precheck(bytes.len() as u64)?;
                let ty = Arc::new(self.engine.compile(&name, &bytes, false)?);
                let size = ty.code_bytes() + bytes.len() as u64;
                // Stored before it is usable: an agent of this type is never written
                // without its module.
                if let Some(store) = &self.store {
                    store.insert_module_blocking(ModuleRecord {
                        hash: module_cache::hex(&digest),
                        type_name: name.clone(),
                        bytes,
                    })?;
                }
                self.modules.insert(name, digest, ty.clone(), size)?;
                Ok(ty)
            }
        }
    }

    /// Custom types cached and their bytes.
    pub fn module_cache_usage(&self) -> (usize, u64) {
        self.modules.usage()
    }

    /// Creates an agent of `ty` and runs its `agent_init`. An agent whose init fails stays
    /// registered in state Failed (so it can be inspected and deleted) and the error says why.
    pub fn create_agent(
        &self,
        ty: Arc<AgentType>,
        name: Option<String>,
        config: Option<Box<str>>,
    ) -> Result<Arc<Agent>, (Option<Arc<Agent>>, RuntimeError)> {
        let span = crate::telemetry::trace_context::create_span(&self.tracing, &ty.name);
        let _in_span = span.enter();
        let id: Arc<str> = uuid::Uuid::new_v4().to_string().into();
        if !span.is_none() {
            span.set_attribute(opentelemetry::KeyValue::new("agent.id", id.to_string()));
        }
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let agent = Arc::new(Agent::new(id.clone(), name, ty, config, seq, now_ms()));
        {
            let mut agents = write(&self.agents);
            if agents.by_id.len() >= self.max_agents {
                return Err((None, RuntimeError::TooManyAgents(self.max_agents)));
            }
            agents.by_id.insert(id.clone(), agent.clone());
            agents.by_seq.insert(seq, agent.clone());
        }
        self.metrics.agent_created(&agent.agent_type.name);
        match self.engine.init(&agent.agent_type, &id) {
            Ok(()) => {
                agent.set_state(AgentState::Running);
                self.metrics.agents_active().inc();
            }
            Err(e) => {
                span.set_error();
                agent.set_state(AgentState::Failed);
                self.lifecycle(&agent);
                return Err((Some(agent), RuntimeError::Init(e)));
            }
        }
        self.lifecycle(&agent);
        Ok(agent)
    }

    pub(crate) fn agent(&self, id: &str) -> Option<Arc<Agent>> {
        read(&self.agents).by_id.get(id).cloned()
    }

    pub fn agent_count(&self) -> usize {
        read(&self.agents).by_id.len()
    }

    /// Every registered agent, in no order.
    pub fn all_agents(&self) -> Vec<Arc<Agent>> {
        read(&self.agents).by_id.values().cloned().collect()
    }

    /// A page of agents in creation order: `offset` agents skipped, at most `limit` taken.
    pub(crate) fn list_agents(&self, offset: usize, limit: usize) -> Vec<Arc<Agent>> {
        read(&self.agents)
            .by_seq
            .values()
            .skip(offset)
            .take(limit)
            .cloned()
            .collect()
    }

    /// A page of agents created after the one with sequence number `after` (the `next`
    /// cursor of the previous page): O(log n + limit) however deep the page is.
    pub(crate) fn list_agents_after(&self, after: u64, limit: usize) -> Vec<Arc<Agent>> {
        read(&self.agents)
            .by_seq
            .range(after.saturating_add(1)..)
            .take(limit)
            .map(|(_, a)| a.clone())
            .collect()
    }

    /// Deletes an agent: it stops taking messages, its queued messages are dropped (each
    /// sender gets a FAILURE), and once its current execution ends (within
    /// `execution_timeout`) it leaves the registry (Draining -> Stopped). Returns the state
    /// it reached now.
    pub(crate) fn stop_agent(self: &Arc<Self>, id: &str) -> Result<AgentState, RuntimeError> {
        let agent = self
            .agent(id)
            .ok_or_else(|| RuntimeError::NoSuchAgent(id.to_owned()))?;
        match agent.state() {
            AgentState::Running => {
                agent.set_state(AgentState::Draining);
                self.metrics.agents_active().dec();
                self.lifecycle(&agent);
            }
            AgentState::Loaded | AgentState::Failed => agent.set_state(AgentState::Draining),
            AgentState::Draining | AgentState::Stopped => {}
        }
        self.discard_mailbox(&agent);
        if !agent.busy() {
            self.finish_stop(&agent);
        }
        Ok(agent.state())
    }

    /// Draining -> Stopped, once; called by `stop_agent` or by the drain task that empties
    /// the mailbox of a draining agent.
    pub(crate) fn finish_stop(&self, agent: &Arc<Agent>) {
        let removed = {
            let mut agents = write(&self.agents);
            if agent.state() != AgentState::Draining {
                return;
            }
            agent.set_state(AgentState::Stopped);
            agents.by_seq.remove(&agent.seq);
            agents.by_id.remove(&agent.id).is_some()
        };
        if removed {
            self.metrics.forget_agent(&agent.agent_type.name, &agent.id);
            self.lifecycle(agent);
        }
    }

    fn lifecycle(&self, agent: &Agent) {
        self.events.publish(|| Event::Lifecycle {
            agent_id: agent.id.to_string(),
            agent_type: agent.agent_type.name.clone(),
            state: agent.state(),
        });
    }
}

// Lock poisoning: every critical section above is a single map operation, so the data is
// consistent even if a holder panicked; keep serving rather than cascading the panic.
fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}
