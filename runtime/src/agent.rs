//! One agent: identity, lifecycle state and bounded mailbox. No wasm instance lives here:
//! an idle agent is its struct and mailbox, which is what lets 100k of them fit in the memory
//! goal (BENCHMARKS.md has the bytes per agent).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use serde::Serialize;

use crate::budget::Charge;
use crate::fipa::AclMessage;
use crate::metrics::AgentSeries;
use crate::wasm::AgentType;

/// Lifecycle: Loaded (created, `agent_init` pending) -> Running -> Draining (deleted: its
/// mailbox discarded, its current execution finishing) -> Stopped; Failed when `agent_init`
/// fails. Only a Running agent takes messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub enum AgentState {
    Loaded,
    Running,
    Draining,
    Stopped,
    Failed,
}

impl AgentState {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Loaded,
            1 => Self::Running,
            2 => Self::Draining,
            3 => Self::Stopped,
            _ => Self::Failed,
        }
    }
}

/// Why a mailbox refused a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// It holds this many messages already.
    Messages(usize),
    /// The message would take it past this many bytes.
    Bytes(usize),
    /// The agent is not Running.
    State(AgentState),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Messages(n) => write!(f, "{n} messages"),
            Self::Bytes(n) => write!(f, "{n} bytes, agents.mailbox_bytes"),
            Self::State(s) => write!(f, "agent is {s:?}"),
        }
    }
}

/// What a mailbox holds: one accepted message, shared by all its receivers (`Arc`), with its
/// size and its share of the runtime's in-flight byte budget (released when the last
/// receiver is done with it).
pub struct Envelope {
    pub(crate) msg: AclMessage,
    /// [`AclMessage::heap_bytes`], counted against each receiver's mailbox.
    pub(crate) bytes: usize,
    /// The JSON agents receive, written once for all receivers: a 1 MiB message to 1024
    /// receivers is otherwise serialized 1024 times.
    json: OnceLock<Result<Vec<u8>, String>>,
    _charge: Option<Charge>,
    /// The request this message serves: the one whose handling accepted it (an HTTP request,
    /// or the message whose execution sent it), for the profiler's request tags.
    pub request: u64,
}

impl Envelope {
    pub fn new(msg: AclMessage, bytes: usize, charge: Option<Charge>) -> Arc<Self> {
        Arc::new(Self {
            msg,
            bytes,
            json: OnceLock::new(),
            _charge: charge,
            request: caxton_profiles::request_tag::current(),
        })
    }

    /// [`AclMessage::to_json`] of the message, computed by the first receiver.
    pub(crate) fn json(&self) -> Result<&[u8], &str> {
        match self
            .json
            .get_or_init(|| self.msg.to_json().map_err(|e| e.to_string()))
        {
            Ok(bytes) => Ok(bytes),
            Err(e) => Err(e),
        }
    }
}

/// A mailbox's bounds: `[agents] mailbox_capacity` and `mailbox_bytes`.
#[derive(Debug, Clone, Copy)]
pub struct MailboxLimits {
    pub messages: usize,
    pub bytes: usize,
}

#[derive(Default)]
struct Mailbox {
    queue: VecDeque<Arc<Envelope>>,
    /// Sum of the queued envelopes' `bytes`.
    bytes: usize,
    /// The execution pool owns this agent's queue (it is in the ready queue or executing);
    /// at most one thread runs an agent at a time, so per-agent order holds.
    scheduled: bool,
}

pub struct Agent {
    pub id: Arc<str>,
    pub(crate) name: Option<String>,
    pub(crate) agent_type: Arc<AgentType>,
    /// The client's opaque `config`, kept as compact JSON text: a parsed map costs several
    /// times more, and 100k idle agents must stay small.
    pub(crate) config: Option<Box<str>>,
    /// Creation order, for stable paging.
    pub(crate) seq: u64,
    /// Milliseconds since the Unix epoch.
    pub(crate) created_at_ms: u64,
    state: AtomicU8,
    mailbox: Mutex<Mailbox>,
    /// Its metric series, from its first execution on (boxed: idle agents stay small).
    pub(crate) series: OnceLock<Box<AgentSeries>>,
}

impl Agent {
    pub(crate) fn new(
        id: Arc<str>,
        name: Option<String>,
        agent_type: Arc<AgentType>,
        config: Option<Box<str>>,
        seq: u64,
        created_at_ms: u64,
    ) -> Self {
        Self {
            id,
            name,
            agent_type,
            config,
            seq,
            created_at_ms,
            state: AtomicU8::new(AgentState::Loaded as u8),
            mailbox: Mutex::new(Mailbox::default()),
            series: OnceLock::new(),
        }
    }

    pub(crate) fn state(&self) -> AgentState {
        AgentState::from_u8(self.state.load(Ordering::Acquire))
    }

    pub(crate) fn set_state(&self, state: AgentState) {
        self.state.store(state as u8, Ordering::Release);
    }

    fn mailbox(&self) -> MutexGuard<'_, Mailbox> {
        // A panic while holding this lock cannot leave the queue half-updated (every critical
        // section is a VecDeque call and a byte count), so a poisoned lock is still consistent.
        self.mailbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `env` if the agent is Running and it fits. Returns true when the caller must
    /// hand the agent to the execution pool. The state is read under the mailbox lock, so a
    /// message cannot slip in after `take_all` emptied a deleted agent's mailbox.
    pub fn enqueue(&self, env: Arc<Envelope>, limits: MailboxLimits) -> Result<bool, Refused> {
        let mut mb = self.mailbox();
        match self.state() {
            AgentState::Running => {}
            state => return Err(Refused::State(state)),
        }
        if mb.queue.len() >= limits.messages {
            return Err(Refused::Messages(limits.messages));
        }
        if mb.bytes.saturating_add(env.bytes) > limits.bytes {
            return Err(Refused::Bytes(limits.bytes));
        }
        mb.bytes += env.bytes;
        mb.queue.push_back(env);
        Ok(!std::mem::replace(&mut mb.scheduled, true))
    }

    /// Next message for the pool. On `None` the agent leaves the pool: the mailbox is marked
    /// unscheduled in the same critical section, so no message can be stranded.
    pub fn next_message(&self) -> Option<Arc<Envelope>> {
        let mut mb = self.mailbox();
        let next = mb.queue.pop_front();
        match &next {
            Some(env) => mb.bytes -= env.bytes,
            None => {
                mb.scheduled = false;
                // A burst may have grown the queue; an idle agent should not keep that memory.
                if mb.queue.capacity() > 16 {
                    mb.queue.shrink_to_fit();
                }
            }
        }
        next
    }

    /// Empties the mailbox (a deleted agent, shutdown) and returns what it held.
    pub(crate) fn take_all(&self) -> VecDeque<Arc<Envelope>> {
        let mut mb = self.mailbox();
        mb.bytes = 0;
        std::mem::take(&mut mb.queue)
    }

    pub fn queue_len(&self) -> usize {
        self.mailbox().queue.len()
    }

    /// True while the agent is in the execution pool (ready or executing).
    pub fn busy(&self) -> bool {
        self.mailbox().scheduled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AgentsConfig;
    use crate::fipa::Performative;
    use crate::wasm::WasmEngine;

    fn agent() -> Agent {
        let e = WasmEngine::new(&AgentsConfig {
            max_instances: 4,
            ..AgentsConfig::default()
        })
        .unwrap();
        let ty = e
            .compile("echo", crate::builtin::ECHO.wat().as_bytes(), true)
            .unwrap();
        let a = Agent::new("a".into(), None, Arc::new(ty), None, 0, 0);
        a.set_state(AgentState::Running);
        a
    }

    fn env(bytes: usize) -> Arc<Envelope> {
        Envelope::new(AclMessage::new(Performative::Inform), bytes, None)
    }

    #[test]
    fn mailbox_is_bounded_and_schedules_one_drain_at_a_time() {
        let a = agent();
        let limits = MailboxLimits {
            messages: 2,
            bytes: 1000,
        };
        assert_eq!(a.enqueue(env(10), limits), Ok(true));
        assert_eq!(a.enqueue(env(10), limits), Ok(false));
        assert_eq!(a.enqueue(env(10), limits), Err(Refused::Messages(2)));
        assert!(a.next_message().is_some());
        assert!(a.next_message().is_some());
        assert!(a.busy());
        assert!(a.next_message().is_none());
        assert!(!a.busy());
        assert_eq!(
            a.enqueue(env(10), limits),
            Ok(true),
            "an emptied mailbox needs a new drain task"
        );
    }

    #[test]
    fn mailbox_bytes_are_bounded_and_only_running_agents_take_messages() {
        let a = agent();
        let limits = MailboxLimits {
            messages: 100,
            bytes: 1000,
        };
        assert_eq!(a.enqueue(env(600), limits), Ok(true));
        assert_eq!(a.enqueue(env(600), limits), Err(Refused::Bytes(1000)));
        assert_eq!(a.enqueue(env(400), limits), Ok(false));
        assert_eq!(a.take_all().len(), 2);
        assert_eq!(
            a.enqueue(env(1000), limits),
            Ok(false),
            "take_all freed the bytes"
        );
        a.set_state(AgentState::Draining);
        assert_eq!(
            a.enqueue(env(1), limits),
            Err(Refused::State(AgentState::Draining))
        );
    }
}
