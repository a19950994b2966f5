//! Message movement: client sends, admission (receiver cap, hop limit, byte budgets, agent
//! state), mailbox delivery, execution on the pool (`execution.rs`), FAILURE bounces, and
//! replies to waiting clients.
//!
//! Every message accepted into a mailbox (`caxton_messages_accepted_total`, one per
//! receiver) ends in exactly one of: executed (`caxton_message_processing_duration_seconds`
//! counts it), dropped with a reason (`caxton_messages_dropped_total`: its agent was
//! deleted, or shutdown came first), or it is still queued (`caxton_message_queue_size`).
//! A message refused before a mailbox took it is answered instead: the client with a 4xx,
//! an agent with a FAILURE, both counted in `caxton_message_errors_total{kind}`; a refused
//! FAILURE or NOT_UNDERSTOOD is only counted, since nobody answers those.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;
use thiserror::Error;
use tokio::sync::oneshot;

use crate::agent::{Agent, AgentState, Envelope, MailboxLimits, Refused};
use crate::events::Event;
use crate::execution::Executor;
use crate::fipa::{AclMessage, Performative};
use crate::metrics::{DropReason, MessageErrorKind};
use crate::runtime::Runtime;
use crate::telemetry::log_throttle::Throttle;
use crate::telemetry::trace_context;

#[derive(Debug, Error, PartialEq)]
pub enum SendError {
    #[error("the message has no receiver")]
    NoReceiver,
    #[error("{count} receivers; at most {max} (agents.max_receivers)")]
    TooManyReceivers { count: usize, max: usize },
    #[error("no agent `{0}`")]
    UnknownReceiver(String),
    #[error("agent `{id}` is {state:?} and takes no messages")]
    NotAccepting { id: String, state: AgentState },
    #[error("the message is hop {hops}; at most {max} (agents.max_hops)")]
    HopLimit { hops: u32, max: u32 },
    #[error(
        "the message takes {bytes} bytes; a mailbox holds at most {limit} (agents.mailbox_bytes)"
    )]
    TooLarge { bytes: usize, limit: usize },
    #[error("{limit} bytes of messages are in flight already (agents.in_flight_bytes)")]
    InFlightFull { limit: usize },
    #[error("mailbox of `{receiver}` is full ({full})")]
    MailboxFull {
        receiver: String,
        full: Refused,
        accepted: Vec<String>,
    },
    #[error("the runtime is shutting down")]
    ShuttingDown,
}

/// Removes a client's reply slot when its request ends, however it ends.
pub(crate) struct ReplyWaiter {
    runtime: Arc<Runtime>,
    key: String,
    pub(crate) rx: oneshot::Receiver<AclMessage>,
}

impl Drop for ReplyWaiter {
    fn drop(&mut self) {
        self.runtime.pending_slots().remove(&self.key);
    }
}

/// What shutdown did with the messages it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Every mailbox emptied by execution before `shutdown_timeout`.
    pub(crate) drained: bool,
    /// Accepted messages that were never executed.
    pub(crate) dropped: u64,
    /// Clients still waiting for a reply, answered 503.
    pub(crate) waiting_clients: usize,
}

static UNDELIVERABLE: Throttle = Throttle::new();
static EXEC_FAILED: Throttle = Throttle::new();

impl Executor for Runtime {
    fn execute_queued(self: &Arc<Self>, agent: &Arc<Agent>, env: &Envelope) {
        self.metrics.message_queue().dec();
        self.process(agent, env);
    }

    fn unscheduled(&self, agent: &Arc<Agent>) {
        if agent.state() == AgentState::Draining {
            self.finish_stop(agent);
        }
    }
}

impl Runtime {
    fn pending_slots(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, oneshot::Sender<AclMessage>>>
    {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers interest in the reply to a message with `reply_with = key`; register before
    /// sending so a fast reply cannot be missed.
    pub(crate) fn wait_for_reply(self: &Arc<Self>, key: &str) -> ReplyWaiter {
        let (tx, rx) = oneshot::channel();
        self.pending_slots().insert(key.to_owned(), tx);
        ReplyWaiter {
            runtime: self.clone(),
            key: key.to_owned(),
            rx,
        }
    }

    fn limits(&self) -> MailboxLimits {
        MailboxLimits {
            messages: self.agents_cfg.mailbox_capacity,
            bytes: usize::try_from(self.agents_cfg.mailbox_bytes).unwrap_or(usize::MAX),
        }
    }

    /// A message from a client (the HTTP API). All receivers must be agents that take
    /// messages; they are checked before anything is queued, so a refused send queued nothing
    /// unless the error lists `accepted` receivers (a later mailbox was full).
    pub fn send(self: &Arc<Self>, mut msg: AclMessage) -> Result<(), SendError> {
        if !self.accepting.load(Ordering::Relaxed) {
            return Err(SendError::ShuttingDown);
        }
        if msg.receiver.is_empty() {
            return Err(SendError::NoReceiver);
        }
        let max = self.agents_cfg.max_receivers;
        if msg.receiver.len() > max {
            self.metrics
                .message_error(MessageErrorKind::TooManyReceivers);
            return Err(SendError::TooManyReceivers {
                count: msg.receiver.len(),
                max,
            });
        }
        let (hops, max_hops) = (msg.hops(), self.agents_cfg.max_hops);
        if hops > max_hops {
            self.metrics.message_error(MessageErrorKind::HopLimit);
            return Err(SendError::HopLimit {
                hops,
                max: max_hops,
            });
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
        let limits = self.limits();
        let bytes = msg.heap_bytes();
        if bytes > limits.bytes {
            self.metrics
                .message_error(MessageErrorKind::MessageTooLarge);
            return Err(SendError::TooLarge {
                bytes,
                limit: limits.bytes,
            });
        }
        let Some(charge) = self.in_flight.charge(bytes, false) else {
            self.metrics.message_error(MessageErrorKind::InFlightBytes);
            return Err(SendError::InFlightFull {
                limit: self.in_flight.limit(),
            });
        };
        let span = trace_context::route_span(&self.tracing, &mut msg, false);
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
        let env = Envelope::new(msg, bytes, Some(charge));
        let mut accepted = Vec::new();
        for agent in targets {
            if let Err(full) = self.enqueue(&agent, env.clone(), limits) {
                return Err(match full {
                    Refused::State(state) => SendError::NotAccepting {
                        id: agent.id.to_string(),
                        state,
                    },
                    full => SendError::MailboxFull {
                        receiver: agent.id.to_string(),
                        full,
                        accepted,
                    },
                });
            }
            accepted.push(agent.id.to_string());
        }
        Ok(())
    }

    /// Queues one receiver's reference to `env`; refusals are counted here.
    fn enqueue(
        self: &Arc<Self>,
        agent: &Arc<Agent>,
        env: Arc<Envelope>,
        limits: MailboxLimits,
    ) -> Result<(), Refused> {
        let perf = env.msg.performative;
        match agent.enqueue(env, limits) {
            Ok(schedule) => {
                if schedule {
                    self.pool.schedule(self, agent.clone());
                }
                self.metrics.message_accepted();
                self.metrics.message_received(perf);
                self.metrics.message_queue().inc();
                Ok(())
            }
            Err(refused) => {
                self.metrics.message_error(refused_kind(refused));
                Err(refused)
            }
        }
    }

    /// A message the runtime sent on an agent's behalf (a FAILURE bounce).
    fn route(self: &Arc<Self>, msg: AclMessage) {
        self.route_from(msg, false, true);
    }

    /// A message an agent sent (or a FAILURE the runtime sent, `runtime_made`): delivered to
    /// agent receivers, handed to a waiting client, and published; other receivers are
    /// external clients that read the event stream. `unsampled` when the execution that
    /// sent it belonged to an unsampled trace (it built no span).
    fn route_from(self: &Arc<Self>, mut msg: AclMessage, unsampled: bool, runtime_made: bool) {
        let span = trace_context::route_span(&self.tracing, &mut msg, unsampled);
        let _in_span = span.enter();
        self.metrics.message_sent(msg.performative);
        self.events.publish(|| Event::Message {
            message: Box::new(msg.clone()),
        });
        let waiter = msg
            .in_reply_to
            .as_ref()
            .and_then(|key| self.pending_slots().remove(key));
        let agents: Vec<Arc<Agent>> = msg.receiver.iter().filter_map(|r| self.agent(r)).collect();
        let Some(tx) = waiter else {
            if !agents.is_empty() {
                self.deliver(msg, &agents, runtime_made);
            }
            return;
        };
        if !agents.is_empty() {
            self.deliver(msg.clone(), &agents, runtime_made);
        }
        self.metrics.message_received(msg.performative);
        let _ = tx.send(msg);
    }

    /// Admission and delivery of an agent's (or the runtime's) message to its agent
    /// receivers; each refusal is bounced to the sender.
    fn deliver(self: &Arc<Self>, msg: AclMessage, agents: &[Arc<Agent>], runtime_made: bool) {
        let cfg = &self.agents_cfg;
        // A FAILURE one hop past the limit still arrives: it is how the sender learns, and
        // nobody answers it.
        let hop_limit = cfg.max_hops + u32::from(msg.ends_conversation());
        let limits = self.limits();
        let bytes = msg.heap_bytes();
        let refused = if msg.hops() > hop_limit {
            Some(MessageErrorKind::HopLimit)
        } else if msg.receiver.len() > cfg.max_receivers {
            Some(MessageErrorKind::TooManyReceivers)
        } else if bytes > limits.bytes {
            Some(MessageErrorKind::MessageTooLarge)
        } else {
            None
        };
        if let Some(why) = refused {
            self.metrics.message_error(why);
            self.bounce(&msg, &msg.receiver.join(","), why);
            return;
        }
        let Some(charge) = self.in_flight.charge(bytes, runtime_made) else {
            self.metrics.message_error(MessageErrorKind::InFlightBytes);
            self.bounce(
                &msg,
                &msg.receiver.join(","),
                MessageErrorKind::InFlightBytes,
            );
            return;
        };
        let env = Envelope::new(msg, bytes, Some(charge));
        for agent in agents {
            if let Err(refused) = self.enqueue(agent, env.clone(), limits) {
                self.bounce(&env.msg, &agent.id, refused_kind(refused));
            }
        }
    }

    /// Tells the sender of an undeliverable message why, once: a FAILURE or NOT_UNDERSTOOD
    /// is never answered, only counted (where it was refused) and logged at a bounded rate.
    fn bounce(self: &Arc<Self>, msg: &AclMessage, receiver: &str, why: MessageErrorKind) {
        if msg.ends_conversation() {
            if let Some(suppressed) = UNDELIVERABLE.admit() {
                tracing::warn!(sender = %msg.sender, receiver, why = why.as_str(), suppressed,
                    "undeliverable {} dropped", msg.performative);
            }
            return;
        }
        let mut failure = msg.reply(Performative::Failure, receiver);
        failure.content = json!({"error": why.as_str(), "receiver": receiver});
        self.route(failure);
    }

    /// Drops a deleted agent's queued messages: each is counted as dropped and its sender
    /// gets a FAILURE, so DELETE does not wait for a backlog to execute.
    pub(crate) fn discard_mailbox(self: &Arc<Self>, agent: &Arc<Agent>) {
        let queued = agent.take_all();
        if queued.is_empty() {
            return;
        }
        let n = queued.len();
        self.metrics.message_queue().sub(n as i64);
        self.metrics
            .messages_dropped(DropReason::AgentDeleted, n as u64);
        for env in queued {
            self.bounce(&env.msg, &agent.id, MessageErrorKind::ReceiverStopped);
        }
    }

    fn process(self: &Arc<Self>, agent: &Arc<Agent>, env: &Envelope) {
        let msg = &env.msg;
        let started = Instant::now();
        let ty = &agent.agent_type.name;
        let span = trace_context::execute_span(&self.tracing, msg, &agent.id, ty);
        // With tracing on, no span means the trigger's trace is unsampled: so are the replies.
        let unsampled = span.is_none();
        let _in_span = span.enter();
        let result = match env.json() {
            Ok(bytes) => self.engine.execute(&agent.agent_type, &agent.id, bytes),
            // A message that deserialized always serializes; keep the branch total anyway.
            Err(e) => Err(crate::wasm::ExecError::Abi(e.to_owned())),
        };
        let seconds = started.elapsed().as_secs_f64();
        let series = agent
            .series
            .get_or_init(|| Box::new(self.metrics.agent_series(ty, &agent.id)));
        self.metrics.execution(series, result.is_ok(), seconds);
        self.metrics.message_processed(msg.performative, seconds);
        let hops = msg.hops().saturating_add(1);
        match result {
            Ok(exec) => {
                self.metrics
                    .wasm_memory(series, &agent.id, exec.memory_bytes);
                for mut out in exec.outgoing {
                    msg.address_reply(&mut out);
                    // The agent's own value does not count: the runtime keeps the chain.
                    out.set_hops(hops);
                    if msg.ends_conversation() {
                        out.receiver.retain(|r| *r != msg.sender);
                        if out.receiver.is_empty() {
                            self.metrics.message_error(MessageErrorKind::ReplyToFailure);
                            continue;
                        }
                    }
                    self.route_from(out, unsampled, false);
                }
            }
            Err(e) => {
                span.set_error();
                span.set_attribute(opentelemetry::KeyValue::new("error.kind", e.kind()));
                self.metrics
                    .message_error(MessageErrorKind::ExecutionFailed);
                if let Some(suppressed) = EXEC_FAILED.admit() {
                    tracing::warn!(agent_id = %agent.id, agent_type = %ty, error = %e,
                        suppressed, "execution failed");
                }
                if !msg.ends_conversation() {
                    let mut failure = msg.reply(Performative::Failure, &agent.id);
                    failure.content = json!({"error": e.kind(), "detail": e.to_string()});
                    failure.set_hops(hops);
                    self.route_from(failure, unsampled, true);
                }
            }
        }
    }

    /// Shutdown's part of the runtime: takes no more client messages, lets the pool execute
    /// what is queued for up to `timeout`, stops it, and drops (counting) what is left.
    /// Clients still waiting for a reply are answered (their requests end with 503).
    /// Blocking: call it off the async workers.
    pub fn drain_for_shutdown(self: &Arc<Self>, timeout: Duration) -> ShutdownReport {
        self.accepting.store(false, Ordering::Relaxed);
        let drained = self.pool.wait_quiet(Instant::now() + timeout);
        // A turn in progress ends within one execution: give it that long.
        let running_deadline =
            Instant::now() + self.agents_cfg.execution_timeout + Duration::from_millis(100);
        drop(self.pool.stop(running_deadline));
        let mut dropped = 0u64;
        for agent in self.all_agents() {
            let left = agent.take_all().len() as u64;
            dropped += left;
        }
        self.metrics.message_queue().sub(dropped as i64);
        self.metrics.messages_dropped(DropReason::Shutdown, dropped);
        let waiting_clients = {
            let mut pending = self.pending_slots();
            let n = pending.len();
            pending.clear();
            n
        };
        ShutdownReport {
            drained,
            dropped,
            waiting_clients,
        }
    }
}

fn refused_kind(refused: Refused) -> MessageErrorKind {
    match refused {
        Refused::Messages(_) => MessageErrorKind::MailboxFull,
        Refused::Bytes(_) => MessageErrorKind::MailboxBytes,
        Refused::State(_) => MessageErrorKind::ReceiverStopped,
    }
}
