//! Message movement: client sends, mailbox delivery, the per-agent drain task, execution,
//! and replies to waiting clients. Every accepted message ends in exactly one of: an
//! execution, a FAILURE reply to its sender, or a counted error.

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use thiserror::Error;
use tokio::sync::oneshot;

use crate::agent::{Agent, AgentState};
use crate::events::Event;
use crate::fipa::{AclMessage, Performative};
use crate::runtime::Runtime;
use crate::trace_context;

#[derive(Debug, Error, PartialEq)]
pub enum SendError {
    #[error("the message has no receiver")]
    NoReceiver,
    #[error("no agent `{0}`")]
    UnknownReceiver(String),
    #[error("agent `{id}` is {state:?} and takes no messages")]
    NotAccepting { id: String, state: AgentState },
    #[error("mailbox of `{receiver}` is full ({capacity} messages)")]
    MailboxFull {
        receiver: String,
        capacity: usize,
        accepted: Vec<String>,
    },
}

/// Removes a client's reply slot when its request ends, however it ends.
pub struct ReplyWaiter {
    runtime: Arc<Runtime>,
    key: String,
    pub rx: oneshot::Receiver<AclMessage>,
}

impl Drop for ReplyWaiter {
    fn drop(&mut self) {
        self.runtime.pending_slots().remove(&self.key);
    }
}

/// Messages one agent executes before its drain task yields to other tasks.
const DRAIN_TURN: u32 = 8;

impl Runtime {
    fn pending_slots(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, oneshot::Sender<AclMessage>>>
    {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers interest in the reply to a message with `reply_with = key`; register before
    /// sending so a fast reply cannot be missed.
    pub fn wait_for_reply(self: &Arc<Self>, key: &str) -> ReplyWaiter {
        let (tx, rx) = oneshot::channel();
        self.pending_slots().insert(key.to_owned(), tx);
        ReplyWaiter {
            runtime: self.clone(),
            key: key.to_owned(),
            rx,
        }
    }

    /// A message from a client (the HTTP API). All receivers must be agents that take
    /// messages; they are checked before anything is queued, so a refused send queued nothing
    /// unless the error lists `accepted` receivers (a later mailbox was full).
    pub fn send(self: &Arc<Self>, mut msg: AclMessage) -> Result<(), SendError> {
        if msg.receiver.is_empty() {
            return Err(SendError::NoReceiver);
        }
        let mut targets = Vec::with_capacity(msg.receiver.len());
        for r in &msg.receiver {
            let agent = self
                .agent(r)
                .ok_or_else(|| SendError::UnknownReceiver(r.clone()))?;
            match agent.state() {
                AgentState::Running => targets.push(agent),
                state => {
                    return Err(SendError::NotAccepting {
                        id: r.clone(),
                        state,
                    });
                }
            }
        }
        let span = trace_context::route_span(&mut msg, false);
        let _in_span = span.enter();
        tracing::debug!(
            performative = msg.performative.as_str(),
            receivers = msg.receiver.len(),
            "message accepted"
        );
        self.metrics.message_sent(msg.performative);
        self.events.publish(|| Event::Message {
            message: Box::new(msg.clone()),
        });
        let mut accepted = Vec::new();
        let last = targets.len() - 1;
        let mut msg = Some(msg);
        for (i, agent) in targets.into_iter().enumerate() {
            // The last receiver takes the message itself; the others get copies.
            let copy = if i == last { msg.take() } else { msg.clone() };
            let Some(copy) = copy else { break };
            if let Err(full) = self.enqueue(&agent, copy) {
                self.metrics.message_error("mailbox_full");
                return Err(SendError::MailboxFull {
                    receiver: agent.id.to_string(),
                    capacity: full.capacity,
                    accepted,
                });
            }
            accepted.push(agent.id.to_string());
        }
        Ok(())
    }

    fn enqueue(
        self: &Arc<Self>,
        agent: &Arc<Agent>,
        msg: AclMessage,
    ) -> Result<(), crate::agent::MailboxFull> {
        let perf = msg.performative;
        if agent.enqueue(msg, self.agents_cfg.mailbox_capacity)? {
            let rt = self.clone();
            let agent = agent.clone();
            tokio::spawn(async move { rt.drain(agent).await });
        }
        self.metrics.message_received(perf);
        self.metrics.message_queue().inc();
        Ok(())
    }

    /// A message an agent sent (or a FAILURE the runtime sent on its behalf): delivered to
    /// agent receivers, handed to a waiting client, and published; other receivers are
    /// external clients that read the event stream.
    fn route(self: &Arc<Self>, msg: AclMessage) {
        self.route_from(msg, false);
    }

    /// [`Runtime::route`] for a message of an execution; `unsampled` when that execution
    /// belonged to an unsampled trace (it built no span).
    fn route_from(self: &Arc<Self>, mut msg: AclMessage, unsampled: bool) {
        let span = trace_context::route_span(&mut msg, unsampled);
        let _in_span = span.enter();
        self.metrics.message_sent(msg.performative);
        self.events.publish(|| Event::Message {
            message: Box::new(msg.clone()),
        });
        for r in &msg.receiver {
            let Some(agent) = self.agent(r) else { continue };
            let refused = match agent.state() {
                AgentState::Running | AgentState::Draining => self
                    .enqueue(&agent, msg.clone())
                    .err()
                    .map(|_| "mailbox_full"),
                _ => Some("receiver_stopped"),
            };
            if let Some(kind) = refused {
                self.metrics.message_error(kind);
                self.bounce(&msg, &agent.id, kind);
            }
        }
        if let Some(key) = &msg.in_reply_to {
            let waiter = self.pending_slots().remove(key);
            if let Some(tx) = waiter {
                self.metrics.message_received(msg.performative);
                let _ = tx.send(msg);
            }
        }
    }

    /// Tells the sender of an undeliverable message why, once: a FAILURE is never bounced.
    fn bounce(self: &Arc<Self>, msg: &AclMessage, receiver: &str, why: &str) {
        if msg.performative == Performative::Failure {
            tracing::warn!(sender = %msg.sender, receiver, why, "undeliverable FAILURE dropped");
            return;
        }
        let mut failure = msg.reply(Performative::Failure, receiver);
        failure.content = json!({"error": why, "receiver": receiver});
        self.route(failure);
    }

    /// Runs one agent's mailbox until it is empty. One drain task per agent at a time keeps
    /// per-agent order; executions are short (fuel and epoch bounded) so they run inline.
    async fn drain(self: Arc<Self>, agent: Arc<Agent>) {
        let mut in_turn = 0;
        while let Some(msg) = agent.next_message() {
            self.metrics.message_queue().dec();
            self.process(&agent, msg);
            in_turn += 1;
            // Let other agents' tasks and the HTTP server run every few messages. Not after
            // each one: a busy agent's replies then leave in bursts, and each burst costs
            // the clients one wake-up instead of one per reply (measured: BENCHMARKS.md).
            if in_turn == DRAIN_TURN {
                in_turn = 0;
                tokio::task::yield_now().await;
            }
        }
        if agent.state() == AgentState::Draining {
            self.finish_stop(&agent);
        }
    }

    fn process(self: &Arc<Self>, agent: &Arc<Agent>, msg: AclMessage) {
        let started = Instant::now();
        let ty = &agent.agent_type.name;
        let span = trace_context::execute_span(&msg, &agent.id, ty);
        // With tracing on, no span means the trigger's trace is unsampled: so are the replies.
        let unsampled = span.is_none();
        let _in_span = span.enter();
        let result = match msg.to_json() {
            Ok(bytes) => self.engine.execute(&agent.agent_type, &agent.id, &bytes),
            // A message that deserialized always serializes; keep the branch total anyway.
            Err(e) => Err(crate::wasm::ExecError::Abi(e.to_string())),
        };
        let seconds = started.elapsed().as_secs_f64();
        let series = agent
            .series
            .get_or_init(|| Box::new(self.metrics.agent_series(ty, &agent.id)));
        self.metrics.execution(series, result.is_ok(), seconds);
        self.metrics.message_processed(msg.performative, seconds);
        match result {
            Ok(exec) => {
                self.metrics
                    .wasm_memory(series, &agent.id, exec.memory_bytes);
                for mut out in exec.outgoing {
                    msg.address_reply(&mut out);
                    self.route_from(out, unsampled);
                }
            }
            Err(e) => {
                span.set_error();
                span.set_attribute(opentelemetry::KeyValue::new("error.kind", e.kind()));
                self.metrics.message_error("execution_failed");
                tracing::warn!(agent_id = %agent.id, agent_type = %ty, error = %e, "execution failed");
                let mut failure = msg.reply(Performative::Failure, &agent.id);
                failure.content = json!({"error": e.kind(), "detail": e.to_string()});
                self.route_from(failure, unsampled);
            }
        }
    }
}
