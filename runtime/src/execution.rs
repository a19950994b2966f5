//! The execution pool: dedicated threads that run agents' messages, apart from the async
//! workers that serve HTTP. A runaway agent holds one of these threads for at most
//! `execution_timeout`; `/health`, `/metrics` and replies to clients never wait behind it.
//!
//! Scheduling is round-robin over agents with work: an agent with messages is in the ready
//! queue once (its mailbox's `scheduled` flag), a thread takes it for one turn (a few
//! messages or a time slice, whichever ends first) and puts it back at the end of the queue
//! when messages remain. One agent's backlog therefore delays another agent by at most one
//! turn per thread, and one agent never runs on two threads at once (per-agent order).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Once, Weak};
use std::time::{Duration, Instant};

use crate::agent::{Agent, Envelope};

/// Most messages of one agent per turn. A busy agent's replies then leave in bursts, which
/// costs its clients fewer wake-ups than one reply per turn (measured: BENCHMARKS.md).
const TURN_MESSAGES: u32 = 8;
/// A turn ends after this much time even if messages remain.
const TURN_SLICE: Duration = Duration::from_millis(2);

/// What the pool runs agents' messages with (the runtime, which implements it). The pool
/// owns the threads and the queue; the work of one message stays with its owner, so the pool
/// needs no knowledge of the runtime. Its threads hold it weakly: a dropped runtime ends them.
pub(crate) trait Executor: Send + Sync + 'static {
    /// Runs one message the pool took from `agent`'s mailbox.
    fn execute_queued(self: &Arc<Self>, agent: &Arc<Agent>, env: &Envelope);
    /// The pool found `agent`'s mailbox empty and took it out of the ready queue.
    fn unscheduled(&self, agent: &Arc<Agent>);
}

#[derive(Default)]
struct Queue {
    ready: VecDeque<Arc<Agent>>,
    /// Threads waiting for work.
    idle: usize,
    /// Of the `idle` threads, those already signalled and not yet awake. A schedule wakes a
    /// thread only when the ready queue outgrows them: on a busy pool, threads go from one
    /// turn to the next without sleeping, and each wake-up avoided is a context switch the
    /// message path does not pay.
    woken: usize,
    /// Turns being run right now.
    running: usize,
    stopped: bool,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    /// Signalled when an agent becomes ready or the pool stops.
    work: Condvar,
    /// Signalled when the pool may have become quiet (nothing ready, nothing running).
    quiet: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Every critical section is a few field updates: a poisoned lock is consistent.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits on `quiet` until `done` holds or `deadline` passes; says whether `done` held.
    fn wait_for<'q>(
        &self,
        mut q: MutexGuard<'q, Queue>,
        deadline: Instant,
        done: impl Fn(&Queue) -> bool,
    ) -> (MutexGuard<'q, Queue>, bool) {
        loop {
            if done(&q) {
                return (q, true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return (q, false);
            }
            q = self
                .quiet
                .wait_timeout(q, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

pub(crate) struct ExecPool {
    shared: Arc<Shared>,
    threads: usize,
    started: Once,
}

impl ExecPool {
    pub(crate) fn new(threads: usize) -> Self {
        Self {
            shared: Arc::default(),
            threads: threads.max(1),
            started: Once::new(),
        }
    }

    /// Puts `agent` at the end of the ready queue. Its mailbox must have just become
    /// scheduled (`Agent::enqueue` returned true). Threads start with the first message.
    pub(crate) fn schedule<E: Executor>(&self, runtime: &Arc<E>, agent: Arc<Agent>) {
        self.started
            .call_once(|| self.spawn(Arc::downgrade(runtime)));
        let mut q = self.shared.lock();
        q.ready.push_back(agent);
        if q.idle > q.woken && q.ready.len() > q.woken {
            q.woken += 1;
            self.shared.work.notify_one();
        }
    }

    fn spawn<E: Executor>(&self, runtime: Weak<E>) {
        for n in 0..self.threads {
            let shared = self.shared.clone();
            let runtime = runtime.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("{}-{n}", crate::threads::EXECUTOR))
                .spawn(move || {
                    batch_policy();
                    work(&shared, &runtime)
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, thread = n, "cannot start an execution thread");
            }
        }
    }

    /// Waits until nothing is ready or running, or until `deadline`; true when quiet.
    pub(crate) fn wait_quiet(&self, deadline: Instant) -> bool {
        let q = self.shared.lock();
        self.shared
            .wait_for(q, deadline, |q| q.ready.is_empty() && q.running == 0)
            .1
    }

    /// Stops taking turns: threads finish the turn they run (waited for until
    /// `running_deadline`) and exit. Returns the agents still in the ready queue; their
    /// mailboxes keep their messages.
    pub(crate) fn stop(&self, running_deadline: Instant) -> Vec<Arc<Agent>> {
        let mut q = self.shared.lock();
        q.stopped = true;
        self.shared.work.notify_all();
        let (mut q, _) = self
            .shared
            .wait_for(q, running_deadline, |q| q.running == 0);
        q.ready.drain(..).collect()
    }
}

impl Drop for ExecPool {
    fn drop(&mut self) {
        let mut q = self.shared.lock();
        q.stopped = true;
        self.shared.work.notify_all();
    }
}

/// Puts the calling thread under `SCHED_BATCH`. A thread woken by a new message then does
/// not preempt the HTTP worker that scheduled it: the worker finishes its batch of requests
/// and the execution thread runs their messages in one go, instead of two context switches
/// per message on a shared CPU. It also ranks executions, which are CPU-bound, behind the
/// worker threads that answer `/health` and `/metrics`. Where the policy cannot be set, the
/// thread keeps the default one, which is correct and only slower (BENCHMARKS.md, "HTTP API").
fn batch_policy() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `sched_setscheduler` reads `param` and changes only the calling thread
        // (pid 0); it has no other memory effect.
        let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
        if rc != 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "execution thread keeps the default scheduling policy"
            );
        }
    }
}

fn work<E: Executor>(shared: &Shared, runtime: &Weak<E>) {
    let mut q = shared.lock();
    loop {
        if q.stopped {
            return;
        }
        let Some(agent) = q.ready.pop_front() else {
            q.idle += 1;
            q = shared.work.wait(q).unwrap_or_else(|p| p.into_inner());
            q.idle -= 1;
            // A spurious wake-up may take a signalled thread's place: the count only ever
            // errs low, which costs a wake-up, never a stalled agent.
            q.woken = q.woken.saturating_sub(1).min(q.idle);
            continue;
        };
        q.running += 1;
        drop(q);
        let again = match runtime.upgrade() {
            Some(rt) => turn(&rt, &agent),
            None => return,
        };
        q = shared.lock();
        q.running -= 1;
        if again {
            q.ready.push_back(agent);
        } else if q.ready.is_empty() && q.running == 0 {
            shared.quiet.notify_all();
        }
        if q.stopped {
            shared.quiet.notify_all();
        }
    }
}

/// One turn of `agent`; true when it still has messages and goes back in the queue.
fn turn<E: Executor>(rt: &Arc<E>, agent: &Arc<Agent>) -> bool {
    let started = Instant::now();
    for _ in 0..TURN_MESSAGES {
        let Some(env) = agent.next_message() else {
            rt.unscheduled(agent);
            return false;
        };
        {
            let _tag = caxton_profiles::request_tag::Tagged::enter(env.request);
            rt.execute_queued(agent, &env);
        }
        if started.elapsed() >= TURN_SLICE {
            break;
        }
    }
    true
}
