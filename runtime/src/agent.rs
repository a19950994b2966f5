//! One agent: identity, lifecycle state and bounded mailbox. No wasm instance lives here:
//! an idle agent is a few hundred bytes, which is what lets 100k of them fit in ~100 MB.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use serde::Serialize;

use crate::fipa::AclMessage;
use crate::metrics::AgentSeries;
use crate::wasm::AgentType;

/// Lifecycle: Loaded (created, `agent_init` pending) -> Running -> Draining (deleted, finishing
/// its mailbox) -> Stopped; Failed when `agent_init` fails.
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

/// The mailbox refused a message because it holds `capacity` already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxFull {
    pub capacity: usize,
}

#[derive(Default)]
struct Mailbox {
    queue: VecDeque<AclMessage>,
    /// A drain task owns this agent's queue; at most one runs, so per-agent order holds.
    scheduled: bool,
}

pub struct Agent {
    pub id: Arc<str>,
    pub name: Option<String>,
    pub agent_type: Arc<AgentType>,
    /// The client's opaque `config`, kept as compact JSON text: a parsed map costs ~10x more,
    /// and 100k idle agents must stay small.
    pub config: Option<Box<str>>,
    /// Creation order, for stable paging.
    pub seq: u64,
    /// Milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    state: AtomicU8,
    mailbox: Mutex<Mailbox>,
    /// Its metric series, from its first execution on (boxed: idle agents stay small).
    pub series: OnceLock<Box<AgentSeries>>,
}

impl Agent {
    pub fn new(
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

    pub fn state(&self) -> AgentState {
        AgentState::from_u8(self.state.load(Ordering::Acquire))
    }

    pub fn set_state(&self, state: AgentState) {
        self.state.store(state as u8, Ordering::Release);
    }

    fn mailbox(&self) -> MutexGuard<'_, Mailbox> {
        // A panic while holding this lock cannot leave the queue half-updated (every critical
        // section is a single VecDeque call), so a poisoned lock is still consistent.
        self.mailbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `msg`. Returns true when the caller must start a drain task for this agent.
    pub fn enqueue(&self, msg: AclMessage, capacity: usize) -> Result<bool, MailboxFull> {
        let mut mb = self.mailbox();
        if mb.queue.len() >= capacity {
            return Err(MailboxFull { capacity });
        }
        mb.queue.push_back(msg);
        Ok(!std::mem::replace(&mut mb.scheduled, true))
    }

    /// Next message for the drain task. On `None` the task must stop: the mailbox is marked
    /// unscheduled in the same critical section, so no message can be stranded.
    pub fn next_message(&self) -> Option<AclMessage> {
        let mut mb = self.mailbox();
        let next = mb.queue.pop_front();
        if next.is_none() {
            mb.scheduled = false;
            // A burst may have grown the queue; an idle agent should not keep that memory.
            if mb.queue.capacity() > 16 {
                mb.queue.shrink_to_fit();
            }
        }
        next
    }

    pub fn queue_len(&self) -> usize {
        self.mailbox().queue.len()
    }

    /// True while a drain task is running or queued for this agent.
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
        Agent::new("a".into(), None, Arc::new(ty), None, 0, 0)
    }

    #[test]
    fn mailbox_is_bounded_and_schedules_one_drain_at_a_time() {
        let a = agent();
        let m = AclMessage::new(Performative::Inform);
        assert_eq!(a.enqueue(m.clone(), 2), Ok(true));
        assert_eq!(a.enqueue(m.clone(), 2), Ok(false));
        assert_eq!(a.enqueue(m.clone(), 2), Err(MailboxFull { capacity: 2 }));
        assert!(a.next_message().is_some());
        assert!(a.next_message().is_some());
        assert!(a.busy());
        assert!(a.next_message().is_none());
        assert!(!a.busy());
        assert_eq!(
            a.enqueue(m, 2),
            Ok(true),
            "an emptied mailbox needs a new drain task"
        );
    }
}
