//! FIPA-ACL messages: the only thing agents and clients exchange.
//!
//! The wire form is JSON. Performatives are upper-case (`ACCEPT_PROPOSAL`), as in the FIPA
//! ACL specification's communicative-act library (SC00037J), which defines exactly 22 of them.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// The 22 communicative acts of FIPA SC00037J.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Performative {
    AcceptProposal,
    Agree,
    Cancel,
    /// Call for proposal; FIPA spells it `cfp`.
    #[serde(rename = "CFP", alias = "CALL_FOR_PROPOSAL")]
    Cfp,
    Confirm,
    Disconfirm,
    Failure,
    Inform,
    InformIf,
    InformRef,
    NotUnderstood,
    Propagate,
    Propose,
    Proxy,
    QueryIf,
    QueryRef,
    Refuse,
    RejectProposal,
    Request,
    RequestWhen,
    RequestWhenever,
    Subscribe,
}

impl Performative {
    /// Every performative, in the specification's alphabetical order.
    pub(crate) const ALL: [Performative; 22] = [
        Self::AcceptProposal,
        Self::Agree,
        Self::Cancel,
        Self::Cfp,
        Self::Confirm,
        Self::Disconfirm,
        Self::Failure,
        Self::Inform,
        Self::InformIf,
        Self::InformRef,
        Self::NotUnderstood,
        Self::Propagate,
        Self::Propose,
        Self::Proxy,
        Self::QueryIf,
        Self::QueryRef,
        Self::Refuse,
        Self::RejectProposal,
        Self::Request,
        Self::RequestWhen,
        Self::RequestWhenever,
        Self::Subscribe,
    ];

    /// The wire name, also used as the `message_type` metric label (no allocation).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::AcceptProposal => "ACCEPT_PROPOSAL",
            Self::Agree => "AGREE",
            Self::Cancel => "CANCEL",
            Self::Cfp => "CFP",
            Self::Confirm => "CONFIRM",
            Self::Disconfirm => "DISCONFIRM",
            Self::Failure => "FAILURE",
            Self::Inform => "INFORM",
            Self::InformIf => "INFORM_IF",
            Self::InformRef => "INFORM_REF",
            Self::NotUnderstood => "NOT_UNDERSTOOD",
            Self::Propagate => "PROPAGATE",
            Self::Propose => "PROPOSE",
            Self::Proxy => "PROXY",
            Self::QueryIf => "QUERY_IF",
            Self::QueryRef => "QUERY_REF",
            Self::Refuse => "REFUSE",
            Self::RejectProposal => "REJECT_PROPOSAL",
            Self::Request => "REQUEST",
            Self::RequestWhen => "REQUEST_WHEN",
            Self::RequestWhenever => "REQUEST_WHENEVER",
            Self::Subscribe => "SUBSCRIBE",
        }
    }
}

impl fmt::Display for Performative {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One FIPA-ACL message.
///
/// Field order matters: the runtime serializes `performative` first, so a WebAssembly agent
/// can dispatch on a fixed prefix without a JSON parser (see `agents/builtin.rs`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AclMessage {
    pub(crate) performative: Performative,
    /// Agent id, or the name of an external client. The runtime overwrites it with the
    /// agent's own id for messages an agent sends, so agents cannot spoof each other.
    #[serde(default)]
    pub sender: String,
    /// One or more receivers; the wire accepts a string or an array (`receivers` too).
    #[serde(
        default,
        alias = "receivers",
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    #[schema(value_type = Receivers)]
    pub receiver: Vec<String>,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub content: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) ontology: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_with: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) in_reply_to: Option<String>,
    /// Deadline for a reply, RFC 3339; carried, not enforced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) reply_by: Option<String>,
    /// Free-form string metadata; W3C trace context (`traceparent`, `tracestate`) rides here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// The `metadata` key of a message's hop count: how many agent executions led to it. A
/// client's message is hop 0 (the key absent); what an agent sends while handling hop `n`
/// is hop `n + 1`, set by the runtime whatever the agent wrote.
pub(crate) const HOPS_KEY: &str = "caxton-hops";

/// The wire forms of [`AclMessage::receiver`]: one id or a list.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub(crate) enum Receivers {
    One(String),
    Many(Vec<String>),
}

/// Room for a typical message's JSON: addressing, small content and a `traceparent`.
pub(crate) const JSON_CAPACITY: usize = 512;

impl AclMessage {
    /// A message with only a performative; the builder-style setters fill the rest.
    pub fn new(performative: Performative) -> Self {
        Self {
            performative,
            sender: String::new(),
            receiver: Vec::new(),
            content: serde_json::Value::Null,
            language: None,
            ontology: None,
            protocol: None,
            conversation_id: None,
            reply_with: None,
            in_reply_to: None,
            reply_by: None,
            metadata: BTreeMap::new(),
        }
    }

    /// The `fipa_decode` fuzz target (fuzz/) and its corpus replay: any bytes either fail
    /// to decode or give a message that encodes and decodes back to itself.
    pub(crate) fn fuzz_decode(data: &[u8]) {
        let Ok(msg) = serde_json::from_slice::<AclMessage>(data) else {
            return;
        };
        let json = msg.to_json().expect("a decoded message encodes");
        let back: AclMessage = serde_json::from_slice(&json).expect("an encoded message decodes");
        assert_eq!(
            back,
            msg,
            "round trip of {}",
            String::from_utf8_lossy(&json)
        );
    }

    /// The message's JSON, as agents and HTTP clients receive it. The buffer starts at
    /// [`JSON_CAPACITY`] bytes: serde_json's 128 grew twice for a reply carrying its trace
    /// context, two reallocations and copies per serialization.
    pub fn to_json(&self) -> serde_json::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(JSON_CAPACITY);
        serde_json::to_writer(&mut out, self)?;
        Ok(out)
    }

    /// The message's hop count (see [`HOPS_KEY`]); absent or unreadable is 0.
    pub(crate) fn hops(&self) -> u32 {
        self.metadata
            .get(HOPS_KEY)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    pub(crate) fn set_hops(&mut self, hops: u32) {
        self.metadata.insert(HOPS_KEY.to_owned(), hops.to_string());
    }

    /// True for the performatives nobody answers: a reply to a FAILURE or NOT_UNDERSTOOD
    /// could only be another one, and two agents would answer each other forever.
    pub(crate) fn ends_conversation(&self) -> bool {
        matches!(
            self.performative,
            Performative::Failure | Performative::NotUnderstood
        )
    }

    /// Roughly the heap memory this message holds: every string's bytes plus a JSON node's
    /// size per content value. What the byte budgets count: a JSON array of `0`s is
    /// two bytes a value on the wire and a JSON node's size a value parsed.
    pub(crate) fn heap_bytes(&self) -> usize {
        let strings = [
            &self.language,
            &self.ontology,
            &self.protocol,
            &self.conversation_id,
            &self.reply_with,
            &self.in_reply_to,
            &self.reply_by,
        ];
        std::mem::size_of::<Self>()
            + self.sender.len()
            + self
                .receiver
                .iter()
                .map(|r| r.len() + std::mem::size_of::<String>())
                .sum::<usize>()
            + strings
                .iter()
                .map(|s| s.as_ref().map_or(0, String::len))
                .sum::<usize>()
            + self
                .metadata
                .iter()
                .map(|(k, v)| k.len() + v.len() + 2 * std::mem::size_of::<String>())
                .sum::<usize>()
            + json_heap_bytes(&self.content)
    }

    /// A reply to `self`: addressed to its sender, in its conversation, answering its
    /// `reply_with`, carrying its metadata (and so its trace context).
    pub(crate) fn reply(&self, performative: Performative, from: &str) -> AclMessage {
        let mut reply = AclMessage::new(performative);
        reply.sender = from.to_owned();
        self.address_reply(&mut reply);
        reply
    }

    /// Fills the addressing fields `reply` left empty from `self`, the message being answered.
    /// Agents rely on this: `{"performative":"INFORM","content":..}` is a complete reply.
    pub(crate) fn address_reply(&self, reply: &mut AclMessage) {
        if reply.receiver.is_empty() {
            reply.receiver = vec![self.sender.clone()];
        }
        if reply.conversation_id.is_none() {
            reply.conversation_id = self.conversation_id.clone();
        }
        if reply.in_reply_to.is_none() {
            reply.in_reply_to = self.reply_with.clone();
        }
        if reply.protocol.is_none() {
            reply.protocol = self.protocol.clone();
        }
        for (k, v) in &self.metadata {
            reply.metadata.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
}

fn json_heap_bytes(v: &serde_json::Value) -> usize {
    use serde_json::Value;
    let node = std::mem::size_of::<Value>();
    match v {
        Value::String(s) => node + s.len(),
        // Numbers keep their digits (serde_json's arbitrary_precision).
        Value::Number(n) => node + n.as_str().len(),
        Value::Array(a) => node + a.iter().map(json_heap_bytes).sum::<usize>(),
        Value::Object(o) => {
            node + o
                .iter()
                .map(|(k, v)| k.len() + std::mem::size_of::<String>() + json_heap_bytes(v))
                .sum::<usize>()
        }
        _ => node,
    }
}

fn one_or_many<'de, D: Deserializer<'de>>(de: D) -> Result<Vec<String>, D::Error> {
    Ok(match Receivers::deserialize(de)? {
        Receivers::One(s) => vec![s],
        Receivers::Many(v) => v,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_22_performatives_round_trip_upper_case() {
        for p in Performative::ALL {
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{}\"", p.as_str()));
            assert_eq!(serde_json::from_str::<Performative>(&json).unwrap(), p);
            assert_eq!(p.as_str().to_uppercase(), p.as_str());
        }
        let distinct: std::collections::HashSet<_> =
            Performative::ALL.iter().map(|p| p.as_str()).collect();
        assert_eq!(distinct.len(), 22);
        assert_eq!(
            serde_json::from_str::<Performative>("\"CALL_FOR_PROPOSAL\"").unwrap(),
            Performative::Cfp
        );
    }

    #[test]
    fn receiver_accepts_string_or_array_and_performative_serializes_first() {
        let one: AclMessage =
            serde_json::from_str(r#"{"performative":"REQUEST","receiver":"a","sender":"c"}"#)
                .unwrap();
        assert_eq!(one.receiver, vec!["a"]);
        let many: AclMessage =
            serde_json::from_str(r#"{"performative":"INFORM","receivers":["a","b"]}"#).unwrap();
        assert_eq!(many.receiver, vec!["a", "b"]);
        let wire = serde_json::to_string(&one).unwrap();
        assert!(wire.starts_with(r#"{"performative":"REQUEST","#), "{wire}");
    }

    #[test]
    fn unknown_fields_and_performatives_are_rejected() {
        assert!(serde_json::from_str::<AclMessage>(r#"{"performative":"SHOUT"}"#).is_err());
        let err = serde_json::from_str::<AclMessage>(r#"{"performative":"INFORM","x":1}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `x`"), "{err}");
    }

    #[test]
    fn hops_default_to_zero_and_heap_bytes_count_parsed_nodes() {
        let mut m = AclMessage::new(Performative::Inform);
        assert_eq!(m.hops(), 0);
        m.set_hops(3);
        assert_eq!(m.hops(), 3);
        m.metadata.insert(HOPS_KEY.into(), "junk".into());
        assert_eq!(m.hops(), 0);
        let small = m.heap_bytes();
        m.content = serde_json::Value::Array(vec![serde_json::Value::from(0); 1000]);
        assert!(m.heap_bytes() >= small + 1000 * std::mem::size_of::<serde_json::Value>());
        m.content = serde_json::Value::from("x".repeat(1 << 20));
        assert!(m.heap_bytes() > 1 << 20);
    }

    #[test]
    fn reply_addresses_the_sender_in_the_same_conversation() {
        let mut req = AclMessage::new(Performative::Request);
        req.sender = "client".into();
        req.receiver = vec!["agent-1".into()];
        req.conversation_id = Some("c1".into());
        req.reply_with = Some("r1".into());
        req.metadata
            .insert("traceparent".into(), "00-abc-def-01".into());
        let reply = req.reply(Performative::Inform, "agent-1");
        assert_eq!(reply.receiver, vec!["client"]);
        assert_eq!(reply.sender, "agent-1");
        assert_eq!(reply.conversation_id.as_deref(), Some("c1"));
        assert_eq!(reply.in_reply_to.as_deref(), Some("r1"));
        assert_eq!(reply.metadata["traceparent"], "00-abc-def-01");
    }
}
