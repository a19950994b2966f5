//! The event stream behind `GET /ws`: every routed message and every lifecycle change.

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::broadcast;

use crate::agent::AgentState;
use crate::fipa::AclMessage;

/// Slow WebSocket clients lag and skip events (reported to them); the runtime never waits.
/// The ring is shared by all subscribers; with [`MAX_EVENT_CONTENT_BYTES`] it bounds what a
/// client that never reads can keep alive.
const EVENT_BUFFER: usize = 1024;
/// A message event carries its content up to this many bytes of JSON; a larger content is
/// replaced by `{"truncated": true, "bytes": N}` (the message itself is delivered whole).
pub const MAX_EVENT_CONTENT_BYTES: usize = 16 * 1024;

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Event {
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
    pub(crate) fn matches(&self, agent: Option<&str>, conversation: Option<&str>) -> bool {
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

/// An event as subscribers get it: serialized once, however many clients watch.
pub(crate) struct Published {
    pub(crate) event: Event,
    pub(crate) json: String,
}

impl Event {
    fn bound_content(&mut self) {
        if let Event::Message { message } = self {
            let mut counter = ByteCount(0);
            if serde_json::to_writer(&mut counter, &message.content).is_ok()
                && counter.0 > MAX_EVENT_CONTENT_BYTES
            {
                message.content = serde_json::json!({"truncated": true, "bytes": counter.0});
            }
        }
    }
}

/// Counts what serde_json writes without keeping it.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub(crate) struct Events {
    tx: broadcast::Sender<Arc<Published>>,
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
    pub(crate) fn publish(&self, make: impl FnOnce() -> Event) {
        if self.tx.receiver_count() > 0 {
            let mut event = make();
            event.bound_content();
            // An event's fields are strings, states and JSON values: serializing cannot fail.
            let json = serde_json::to_string(&event).unwrap_or_default();
            let _ = self.tx.send(Arc::new(Published { event, json }));
        }
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Arc<Published>> {
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

    #[test]
    fn large_contents_are_truncated_in_events_only() {
        let events = Events::default();
        let mut rx = events.subscribe();
        let mut m = AclMessage::new(Performative::Inform);
        m.content = serde_json::Value::String("x".repeat(MAX_EVENT_CONTENT_BYTES * 4));
        events.publish(|| Event::Message {
            message: Box::new(m),
        });
        let got = rx.try_recv().unwrap();
        assert!(
            got.json.len() < MAX_EVENT_CONTENT_BYTES,
            "{}",
            got.json.len()
        );
        assert!(got.json.contains("\"truncated\":true"), "{}", got.json);
    }
}
