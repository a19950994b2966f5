//! The event stream behind `GET /ws`: every routed message and every lifecycle change.

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::broadcast;

use crate::agent::AgentState;
use crate::fipa::AclMessage;

/// Slow WebSocket clients lag and skip events (reported to them); the runtime never waits.
const EVENT_BUFFER: usize = 4096;

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    Message {
        message: Box<AclMessage>,
    },
    Lifecycle {
        agent_id: String,
        agent_type: String,
        state: AgentState,
    },
}

impl Event {
    /// Whether a subscriber filtering on `agent` and/or `conversation` wants this event.
    pub fn matches(&self, agent: Option<&str>, conversation: Option<&str>) -> bool {
        match self {
            Event::Message { message } => {
                agent.is_none_or(|a| message.sender == a || message.receiver.iter().any(|r| r == a))
                    && conversation.is_none_or(|c| message.conversation_id.as_deref() == Some(c))
            }
            Event::Lifecycle { agent_id, .. } => {
                conversation.is_none() && agent.is_none_or(|a| agent_id == a)
            }
        }
    }
}

pub struct Events {
    tx: broadcast::Sender<Arc<Event>>,
}

impl Default for Events {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(EVENT_BUFFER).0,
        }
    }
}

impl Events {
    /// Publishes lazily: with no subscriber the event is never built (the hot path).
    pub fn publish(&self, make: impl FnOnce() -> Event) {
        if self.tx.receiver_count() > 0 {
            let _ = self.tx.send(Arc::new(make()));
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fipa::Performative;

    #[test]
    fn filters_by_agent_and_conversation() {
        let mut m = AclMessage::new(Performative::Inform);
        m.sender = "a".into();
        m.receiver = vec!["b".into()];
        m.conversation_id = Some("c".into());
        let e = Event::Message {
            message: Box::new(m),
        };
        assert!(e.matches(Some("b"), None));
        assert!(e.matches(Some("a"), Some("c")));
        assert!(!e.matches(Some("z"), None));
        assert!(!e.matches(None, Some("other")));
        let l = Event::Lifecycle {
            agent_id: "a".into(),
            agent_type: "echo".into(),
            state: AgentState::Running,
        };
        assert!(l.matches(Some("a"), None));
        assert!(!l.matches(None, Some("c")));
    }
}
