//! The runtime proper: agent types, the agent registry and the lifecycle. Message movement
//! is in `routing.rs`; the HTTP API in `api.rs` calls only what is public here.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use thiserror::Error;
use tokio::sync::oneshot;

use crate::agent::{Agent, AgentState};
use crate::builtin;
use crate::config::{AgentsConfig, Config};
use crate::events::{Event, Events};
use crate::fipa::AclMessage;
use crate::metrics::Metrics;
use crate::store::{self, AgentRecord, Contents, ModuleRecord, Store, StoreError};
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
    Store(#[from] StoreError),
}

/// Everything the API needs, shared behind one `Arc`.
pub struct Runtime {
    pub(crate) engine: WasmEngine,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) events: Events,
    pub(crate) agents_cfg: AgentsConfig,
    agents: RwLock<HashMap<Arc<str>, Arc<Agent>>>,
    /// Type name -> (hash of the module bytes, compiled type).
    types: RwLock<HashMap<String, (u64, Arc<AgentType>)>>,
    /// Serializes custom-module compilation so one module is compiled once.
    compile_lock: Mutex<()>,
    /// Custom type name -> SHA-256 of its module, as the store keys modules.
    module_hashes: RwLock<HashMap<String, String>>,
    /// The registry on disk (`[server] persist_agents`).
    store: Option<Store>,
    /// Clients waiting for a reply, by the `reply_with` of their message.
    pub(crate) pending: Mutex<HashMap<String, oneshot::Sender<AclMessage>>>,
    seq: AtomicU64,
    max_agents: usize,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn module_hash(bytes: &[u8]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// How a new agent gets its code.
pub enum AgentSource {
    Builtin(String),
    /// Module bytes (binary or WAT), registered under `name` or `custom-<hash>`.
    Module {
        name: Option<String>,
        bytes: Vec<u8>,
    },
}

impl Runtime {
    /// Compiles the built-in types and, with `[server] persist_agents`, opens the store
    /// and restores its agents. Fails if the engine cannot be set up or the store cannot
    /// be read (the error names the file).
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Result<Self, RuntimeError> {
        let engine = WasmEngine::new(&config.agents)?;
        let mut types = HashMap::new();
        for b in builtin::ALL {
            let wat = b.wat();
            let ty = engine.compile(b.name, wat.as_bytes(), true)?;
            types.insert(
                b.name.to_owned(),
                (module_hash(wat.as_bytes()), Arc::new(ty)),
            );
        }
        let (store, contents) = if config.server.persist_agents {
            let path = config.server.data_dir.join(store::FILE_NAME);
            let (store, contents) = Store::open(&path, config.server.store_sync, metrics.clone())?;
            (Some(store), Some(contents))
        } else {
            (None, None)
        };
        let runtime = Self {
            engine,
            metrics,
            events: Events::default(),
            agents_cfg: config.agents.clone(),
            agents: RwLock::new(HashMap::new()),
            types: RwLock::new(types),
            compile_lock: Mutex::new(()),
            module_hashes: RwLock::new(HashMap::new()),
            store,
            pending: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(0),
            max_agents: config.server.max_agents,
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
        for m in contents.modules {
            let ty = self
                .engine
                .compile(&m.type_name, &m.bytes, false)
                .map_err(|e| fail(format!("module {} (type `{}`): {e}", m.hash, m.type_name)))?;
            write(&self.types).insert(m.type_name.clone(), (module_hash(&m.bytes), Arc::new(ty)));
            write(&self.module_hashes).insert(m.type_name, m.hash);
        }
        let types = read(&self.types);
        let mut agents = write(&self.agents);
        let mut next_seq = 0;
        let mut running = 0;
        for rec in contents.agents {
            let ty = types
                .get(&rec.agent_type)
                .map(|(_, t)| t.clone())
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
            agents.insert(id, Arc::new(agent));
        }
        self.seq.store(next_seq, Ordering::Relaxed);
        self.metrics.agents_active().add(running as i64);
        tracing::info!(
            agents = agents.len(),
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
            module_hash: read(&self.module_hashes)
                .get(&agent.agent_type.name)
                .cloned(),
            name: agent.name.clone(),
            config: agent.config.as_deref().map(str::to_owned),
            state: format!("{:?}", agent.state()),
            created_at_ms: agent.created_at_ms,
        };
        if let Err(e) = store.insert(record).await {
            let removed = write(&self.agents).remove(&agent.id).is_some();
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
    pub async fn persist_deleted(&self, id: &str) -> Result<(), RuntimeError> {
        match &self.store {
            Some(store) => Ok(store.delete(id).await?),
            None => Ok(()),
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn events(&self) -> &Events {
        &self.events
    }

    /// Resolves (and for modules, compiles once) the type of a new agent. Compilation is
    /// CPU-heavy: async callers run this on a blocking thread.
    pub fn resolve_type(&self, source: AgentSource) -> Result<Arc<AgentType>, RuntimeError> {
        match source {
            AgentSource::Builtin(name) => read(&self.types)
                .get(&name)
                .map(|(_, t)| t.clone())
                .ok_or(RuntimeError::UnknownType(name)),
            AgentSource::Module { name, bytes } => {
                let hash = module_hash(&bytes);
                let name = name.unwrap_or_else(|| format!("custom-{hash:016x}"));
                let _one_at_a_time = self.compile_lock.lock().unwrap_or_else(|p| p.into_inner());
                if let Some((h, t)) = read(&self.types).get(&name) {
                    return if *h == hash {
                        Ok(t.clone())
                    } else {
                        Err(RuntimeError::TypeConflict(name))
                    };
                }
                let ty = Arc::new(self.engine.compile(&name, &bytes, false)?);
                // Stored before it is usable: an agent of this type is never written
                // without its module.
                let content_hash = store::module_hash(&bytes);
                if let Some(store) = &self.store {
                    store.insert_module_blocking(ModuleRecord {
                        hash: content_hash.clone(),
                        type_name: name.clone(),
                        bytes,
                    })?;
                }
                write(&self.module_hashes).insert(name.clone(), content_hash);
                write(&self.types).insert(name, (hash, ty.clone()));
                Ok(ty)
            }
        }
    }

    /// Creates an agent of `ty` and runs its `agent_init`. An agent whose init fails stays
    /// registered in state Failed (so it can be inspected and deleted) and the error says why.
    pub fn create_agent(
        &self,
        ty: Arc<AgentType>,
        name: Option<String>,
        config: Option<Box<str>>,
    ) -> Result<Arc<Agent>, (Option<Arc<Agent>>, RuntimeError)> {
        let span = crate::trace_context::create_span(&ty.name);
        let _in_span = span.enter();
        let id: Arc<str> = uuid::Uuid::new_v4().to_string().into();
        if !span.is_none() {
            span.set_attribute(opentelemetry::KeyValue::new("agent.id", id.to_string()));
        }
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let agent = Arc::new(Agent::new(id.clone(), name, ty, config, seq, now_ms()));
        {
            let mut agents = write(&self.agents);
            if agents.len() >= self.max_agents {
                return Err((None, RuntimeError::TooManyAgents(self.max_agents)));
            }
            agents.insert(id.clone(), agent.clone());
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

    pub fn agent(&self, id: &str) -> Option<Arc<Agent>> {
        read(&self.agents).get(id).cloned()
    }

    pub fn agent_count(&self) -> usize {
        read(&self.agents).len()
    }

    /// A page of agents in creation order.
    pub fn list_agents(&self, offset: usize, limit: usize) -> Vec<Arc<Agent>> {
        let mut all: Vec<Arc<Agent>> = read(&self.agents).values().cloned().collect();
        all.sort_unstable_by_key(|a| a.seq);
        all.into_iter().skip(offset).take(limit).collect()
    }

    /// Deletes an agent: it stops taking messages, finishes its mailbox (Draining), then
    /// leaves the registry (Stopped). Returns the state it reached now.
    pub fn stop_agent(&self, id: &str) -> Result<AgentState, RuntimeError> {
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
            agents.remove(&agent.id).is_some()
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
