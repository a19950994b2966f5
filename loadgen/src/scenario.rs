//! What a virtual user does: the Caxton Monitoring and Observability Guide's `create-agent` script
//! and the `messaging` scenario, as goose scenarios whose transactions measure and record their own
//! requests.
//!
//! Requests go through the run's shared [`Transport`], not the goose user's reqwest client
//! nor goose's request metrics: latency is taken with `Instant` from just before sending
//! to the end of the body (goose stops at the first byte and rounds to milliseconds) and
//! goes to the run's [`Hub`].

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use goose::prelude::*;
use serde::Deserialize;
use thiserror::Error;

use crate::arrival::Arrivals;
use crate::collector::LiveCounters;
use crate::plan::Plan;
use crate::recorder::{Cadence, Correction, ErrorKind, Hub, Outcome};
use crate::run_clock::RunClock;
use crate::transport::{Endpoint, Failure, Transport, TransportError};
use crate::turns::Turns;

/// Request names as the report shows them (index = `Outcome::name`).
pub(crate) const REQUEST_NAMES: [&str; 2] = ["create-agent", "send-message"];
const CREATE_AGENT: usize = 0;
const SEND_MESSAGE: usize = 1;

/// The body of the guide's k6 script (`http.post('/api/agents', {agent_type, config})`).
const CREATE_AGENT_BODY: &str = r#"{"agent_type":"test-agent","config":{"test":true}}"#;

/// The agent type of the guide's script.
pub(crate) const DEFAULT_AGENT_TYPE: &str = "test-agent";

/// The create body for agents of `agent_type`, running `module` when given: the guide's own
/// body for its type, so the default load is byte for byte the guide's.
pub(crate) fn create_agent_body(agent_type: &str, module: Option<&[u8]>) -> bytes::Bytes {
    use base64::Engine as _;
    match module {
        None if agent_type == DEFAULT_AGENT_TYPE => {
            bytes::Bytes::from_static(CREATE_AGENT_BODY.as_bytes())
        }
        None => serde_json::json!({ "agent_type": agent_type })
            .to_string()
            .into(),
        Some(bytes) => serde_json::json!({
            "agent_type": agent_type,
            "wasm_module": base64::engine::general_purpose::STANDARD.encode(bytes),
        })
        .to_string()
        .into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScenarioKind {
    /// The guide's k6 script: POST /api/agents, checks, sleep.
    CreateAgent,
    /// Create an agent once per user, then send it FIPA REQUESTs and wait for the reply.
    Messaging,
}

impl ScenarioKind {
    pub fn name(self) -> &'static str {
        match self {
            ScenarioKind::CreateAgent => "create-agent",
            ScenarioKind::Messaging => "messaging",
        }
    }
}

#[derive(Debug, Error, PartialEq)]
pub enum ScenarioError {
    #[error("unknown scenario `{0}` (known: create-agent, messaging)")]
    Unknown(String),
    #[error("scenario `{0}`: weight must be a whole number from 1, as in `messaging:3`")]
    Weight(String),
    #[error("scenario `{0}` is listed twice")]
    Duplicate(String),
}

/// A scenario and its weight (share of users).
#[derive(Debug, Clone, PartialEq)]
pub struct WeightedScenario {
    pub kind: ScenarioKind,
    pub weight: u32,
}

/// Parses `create-agent`, `messaging:1,create-agent:3`.
pub(crate) fn parse_scenarios(text: &str) -> Result<Vec<WeightedScenario>, ScenarioError> {
    let mut out: Vec<WeightedScenario> = Vec::new();
    for part in text.split(',').map(str::trim) {
        let (name, weight) = match part.split_once(':') {
            Some((name, weight)) => {
                let w = weight
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|w| *w >= 1)
                    .ok_or_else(|| ScenarioError::Weight(part.to_string()))?;
                (name.trim(), w)
            }
            None => (part, 1),
        };
        let kind = ScenarioKind::from_str(name)?;
        if out.iter().any(|s| s.kind == kind) {
            return Err(ScenarioError::Duplicate(name.to_string()));
        }
        out.push(WeightedScenario { kind, weight });
    }
    Ok(out)
}

impl FromStr for ScenarioKind {
    type Err = ScenarioError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "create-agent" => Ok(ScenarioKind::CreateAgent),
            "messaging" => Ok(ScenarioKind::Messaging),
            other => Err(ScenarioError::Unknown(other.to_string())),
        }
    }
}

/// Everything a transaction needs, shared by all users of a run.
pub(crate) struct RunContext {
    pub hub: Arc<Hub>,
    pub counters: Arc<LiveCounters>,
    pub plan: Plan,
    pub think_time: Duration,
    /// The instant stage 0 starts: set just before goose starts (closed model) or once
    /// the user pool is up (open model).
    pub started: RunClock,
    /// Open model: the arrival schedule users take their iterations from.
    pub arrivals: Option<Arc<Arrivals>>,
    /// An interleaved A/B arm sends only in its own slices.
    turns: Option<Turns>,
    transport: Transport,
    agents: Endpoint,
    create_agent_body: bytes::Bytes,
    messages: Endpoint,
}

impl RunContext {
    pub(crate) fn new(
        target: &str,
        plan: Plan,
        think_time: Duration,
        arrivals: Option<Arc<Arrivals>>,
        request_timeout: Duration,
        headers: Vec<(http::HeaderName, http::HeaderValue)>,
        max_body: usize,
    ) -> Result<RunContext, TransportError> {
        let base = target.trim_end_matches('/');
        Ok(RunContext {
            hub: Arc::new(Hub::new()),
            counters: Arc::new(LiveCounters::default()),
            plan,
            think_time,
            started: RunClock::new(),
            arrivals,
            turns: None,
            transport: Transport::new(base, request_timeout, headers, max_body)?,
            agents: Endpoint::parse(&format!("{base}/api/agents"))?,
            create_agent_body: bytes::Bytes::from_static(CREATE_AGENT_BODY.as_bytes()),
            messages: Endpoint::parse(&format!("{base}/api/messages?wait=true"))?,
        })
    }

    pub(crate) fn taking_turns(mut self, turns: Option<Turns>) -> RunContext {
        self.turns = turns;
        self
    }

    /// Whether an iteration due at `at` may go now: always, except for an interleaved arm
    /// outside its turn. Closed model: waits for the turn (within the plan; past its end
    /// the iteration is dropped). Open model: an arrival due in the other arm's turn is
    /// skipped.
    async fn my_turn(&self, at: Option<Instant>) -> bool {
        let (Some(turns), Some(started)) = (&self.turns, self.started.get()) else {
            return true;
        };
        if let Some(due) = at {
            return turns.owns(due.saturating_duration_since(started));
        }
        let since = started.elapsed();
        let wait = turns.wait(since);
        if wait.is_zero() {
            return true;
        }
        if since + wait >= self.plan.total_duration() {
            tokio::time::sleep(self.plan.total_duration().saturating_sub(since)).await;
            return false;
        }
        tokio::time::sleep(wait).await;
        true
    }

    /// The scenarios create agents with `body` (`--agent-type`, `--agent-module`) instead of
    /// the guide's.
    pub(crate) fn with_create_agent_body(mut self, body: bytes::Bytes) -> Self {
        self.create_agent_body = body;
        self
    }

    /// Responses so far whose body was longer than `--max-body`.
    pub(crate) fn oversized_bodies(&self) -> u64 {
        self.transport.oversized()
    }

    fn stage_at(&self, at: Instant) -> usize {
        match self.started.get() {
            Some(started) => self.plan.stage_at(at.saturating_duration_since(started)),
            None => 0,
        }
    }
}

/// Counts a running user for as long as it lives (goose drops a user's session data when
/// the user stops).
struct LiveUser(Arc<LiveCounters>);

impl LiveUser {
    fn new(counters: Arc<LiveCounters>) -> LiveUser {
        counters.users.fetch_add(1, Ordering::Relaxed);
        LiveUser(counters)
    }
}

impl Clone for LiveUser {
    fn clone(&self) -> Self {
        LiveUser::new(self.0.clone())
    }
}

impl Drop for LiveUser {
    fn drop(&mut self) {
        self.0.users.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One user's own state.
#[derive(Clone)]
struct UserState {
    _live: LiveUser,
    cadence: Cadence,
    agent_id: Option<String>,
    sent: u64,
}

#[derive(Deserialize)]
struct CreatedAgent {
    id: String,
}

/// Builds the goose scenarios of a run.
pub(crate) fn goose_scenarios(
    ctx: &Arc<RunContext>,
    scenarios: &[WeightedScenario],
) -> Result<Vec<Scenario>, GooseError> {
    let mut out = Vec::new();
    for s in scenarios {
        let start = {
            let ctx = ctx.clone();
            Transaction::new(Arc::new(move |user: &mut GooseUser| {
                let ctx = ctx.clone();
                Box::pin(async move {
                    user.set_session_data(UserState {
                        _live: LiveUser::new(ctx.counters.clone()),
                        cadence: Cadence::default(),
                        agent_id: None,
                        sent: 0,
                    });
                    Ok(())
                })
            }))
            .set_name("start")
            .set_on_start()
        };
        let kind = s.kind;
        let iteration = {
            let ctx = ctx.clone();
            Transaction::new(Arc::new(move |user: &mut GooseUser| {
                let ctx = ctx.clone();
                Box::pin(async move {
                    iterate(&ctx, kind, user).await;
                    Ok(())
                })
            }))
            .set_name(kind.name())
        };
        let mut scenario = Scenario::new(kind.name())
            .set_weight(s.weight as usize)?
            .register_transaction(start)
            .register_transaction(iteration);
        // Think time is goose's wait between transactions: users sleeping in it leave
        // promptly when a stage lowers the user count. The open model paces by arrivals.
        if ctx.arrivals.is_none() && !ctx.think_time.is_zero() {
            scenario = scenario.set_wait_time(ctx.think_time, ctx.think_time)?;
        }
        out.push(scenario);
    }
    Ok(out)
}

/// One iteration of a scenario.
async fn iterate(ctx: &RunContext, kind: ScenarioKind, user: &mut GooseUser) {
    if ctx.arrivals.is_none() {
        ctx.started.start_now();
    }
    let intended = match &ctx.arrivals {
        Some(arrivals) => match arrivals.next().await {
            Some(at) => Some(at),
            // The schedule is over: idle until goose stops this user.
            None => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                return;
            }
        },
        None => None,
    };
    if !ctx.my_turn(intended).await {
        return;
    }
    match kind {
        ScenarioKind::CreateAgent => {
            request(
                ctx,
                user,
                CREATE_AGENT,
                ctx.create_agent_body.clone(),
                intended,
                Expect::Id,
            )
            .await;
        }
        ScenarioKind::Messaging => {
            let agent = user
                .get_session_data::<UserState>()
                .and_then(|s| s.agent_id.clone());
            let agent = match agent {
                Some(id) => id,
                None => {
                    // The first iteration creates this user's agent; that request is
                    // measured as `create-agent`. Without an id the next iteration tries
                    // again, and this one counts as failed (`no_agent_id`).
                    let id = request(
                        ctx,
                        user,
                        CREATE_AGENT,
                        ctx.create_agent_body.clone(),
                        intended,
                        Expect::IdToContinue,
                    )
                    .await;
                    if let Some(id) = id
                        && let Some(state) = user.get_session_data_mut::<UserState>()
                    {
                        state.agent_id = Some(id);
                    }
                    return;
                }
            };
            send_message(ctx, user, &agent, intended).await;
        }
    }
}

async fn send_message(
    ctx: &RunContext,
    user: &mut GooseUser,
    agent: &str,
    intended: Option<Instant>,
) {
    let user_no = user.weighted_users_index;
    let n = match user.get_session_data_mut::<UserState>() {
        Some(state) => {
            state.sent += 1;
            state.sent
        }
        None => 0,
    };
    let body = format!(
        r#"{{"performative":"REQUEST","sender":"bench-{user_no}","receiver":"{agent}","content":{{"n":{n}}},"conversation_id":"c-{user_no}","reply_with":"r-{user_no}-{n}"}}"#
    );
    request(
        ctx,
        user,
        SEND_MESSAGE,
        body.into(),
        intended,
        Expect::Nothing,
    )
    .await;
}

/// What a request's reply must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Nothing,
    /// The created agent's id: the `body has an id` check.
    Id,
    /// The id, which the next step needs: without it the request fails (`no_agent_id`).
    IdToContinue,
}

/// Sends one POST, reads the whole body, records the outcome; returns the created agent's
/// id when one is expected and present.
async fn request(
    ctx: &RunContext,
    user: &mut GooseUser,
    name: usize,
    body: bytes::Bytes,
    intended: Option<Instant>,
    expect: Expect,
) -> Option<String> {
    let to = if name == SEND_MESSAGE {
        &ctx.messages
    } else {
        &ctx.agents
    };
    let started = Instant::now();
    let (status, mut error, id) = match ctx.transport.post_json(to, body).await {
        Ok(reply) if reply.status < 400 => (
            Some(reply.status),
            None,
            (expect != Expect::Nothing)
                .then(|| serde_json::from_slice::<CreatedAgent>(&reply.body).ok())
                .flatten()
                .map(|c| c.id)
                .filter(|id| !id.is_empty()),
        ),
        Ok(reply) => (Some(reply.status), Some(ErrorKind::Status), None),
        Err(Failure { status, kind }) => (status, Some(kind), None),
    };
    let ended = Instant::now();
    let has_id = (expect != Expect::Nothing).then_some(id.is_some());
    if expect == Expect::IdToContinue && error.is_none() && id.is_none() {
        error = Some(ErrorKind::NoAgentId);
    }
    let latency_us = micros(ended - started);
    let correction = match intended {
        Some(at) => Correction::IntendedStart(micros(ended.saturating_duration_since(at))),
        None => {
            let think = micros(ctx.think_time);
            let interval = user
                .get_session_data_mut::<UserState>()
                .map_or(0, |s| s.cadence.interval_for(think, latency_us));
            Correction::ExpectedInterval(interval)
        }
    };
    ctx.hub.record(&Outcome {
        name,
        stage: ctx.stage_at(intended.unwrap_or(started)),
        latency_us,
        correction,
        status,
        error,
        has_id,
    });
    id
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_bodies_are_the_guides_or_name_the_type_and_module() {
        assert_eq!(
            create_agent_body(DEFAULT_AGENT_TYPE, None),
            CREATE_AGENT_BODY.as_bytes()
        );
        assert_eq!(
            create_agent_body("echo", None),
            br#"{"agent_type":"echo"}"#.as_slice()
        );
        let body: serde_json::Value =
            serde_json::from_slice(&create_agent_body("mine", Some(b"(module)"))).unwrap();
        assert_eq!(body["agent_type"], "mine");
        assert_eq!(body["wasm_module"], "KG1vZHVsZSk=");
    }

    #[test]
    fn scenarios_parse_with_weights() {
        assert_eq!(
            parse_scenarios("create-agent").unwrap(),
            vec![WeightedScenario {
                kind: ScenarioKind::CreateAgent,
                weight: 1
            }]
        );
        let both = parse_scenarios("create-agent:3, messaging:1").unwrap();
        assert_eq!(both[0].weight, 3);
        assert_eq!(both[1].kind, ScenarioKind::Messaging);
        assert_eq!(
            parse_scenarios("chat"),
            Err(ScenarioError::Unknown("chat".into()))
        );
        assert!(matches!(
            parse_scenarios("messaging:0"),
            Err(ScenarioError::Weight(_))
        ));
        assert!(matches!(
            parse_scenarios("messaging,messaging:2"),
            Err(ScenarioError::Duplicate(_))
        ));
    }
}
