//! The body of `POST /api/agents`, as JSON or as an HTML form.
//!
//! The Caxton Monitoring and Observability Guide's k6 script posts a plain JavaScript object, which
//! k6 sends as `application/x-www-form-urlencoded`
//! (`agent_type=test-agent&config=map%5Btest%3Atrue%5D`). Both encodings go through the same fields
//! and the same validation, so a form gets the same answers and errors as the equivalent JSON.
//!
//! A form has only strings, so a form's `config` is read as JSON when it parses as JSON
//! (`config={"test":true}` is the object) and is otherwise kept as a JSON string: k6 writes a
//! nested object with Go's `%v` formatting (`map[test:true]`), which is not reversible in
//! general (nested maps, strings containing `:` or spaces), so the agent's config is the text
//! `"map[test:true]"` as sent.

use serde::Deserialize;
use thiserror::Error;

/// Longest `agent_type` or `name` in bytes. Both become metric labels and log fields; a
/// longer one is refused (422) rather than written into every series of the agent.
pub const MAX_NAME_BYTES: usize = 128;

/// What a client asked for, after decoding and validation.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct CreateAgent {
    pub(crate) agent_type: Option<String>,
    pub(crate) name: Option<String>,
    /// Opaque agent configuration, kept and returned as given.
    pub(crate) config: Option<serde_json::Value>,
    /// Base64 of a wasm binary (or WAT text) following the agent ABI.
    pub(crate) wasm_module: Option<String>,
}

/// `POST /api/agents` as JSON: `agent_type` (a built-in or an uploaded type's name) or
/// `wasm_module`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct JsonBody {
    /// test-agent, echo, cpu-heavy, or the name of an uploaded type; with `wasm_module`,
    /// the name to register it under.
    #[schema(max_length = 128)]
    agent_type: Option<String>,
    #[schema(max_length = 128)]
    name: Option<String>,
    /// Opaque agent configuration, kept and returned as given.
    config: Option<serde_json::Value>,
    /// Base64 of a wasm binary (or WAT text) following the agent ABI.
    wasm_module: Option<String>,
}

/// `POST /api/agents` as a form: the same fields; `config` is JSON text, or any other text
/// kept as a JSON string.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FormBody {
    #[schema(max_length = 128)]
    agent_type: Option<String>,
    #[schema(max_length = 128)]
    name: Option<String>,
    config: Option<String>,
    wasm_module: Option<String>,
}

/// How the body was encoded, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Json,
    Form,
}

impl Encoding {
    /// `application/x-www-form-urlencoded` (any parameters) is a form; anything else,
    /// including no header, is JSON, which is what the API documents.
    pub(crate) fn of(content_type: Option<&str>) -> Self {
        let essence = content_type
            .and_then(|c| c.split(';').next())
            .map(str::trim)
            .unwrap_or("");
        if essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
            Self::Form
        } else {
            Self::Json
        }
    }
}

/// Why a body was refused; `Display` says what was expected and where it broke.
#[derive(Debug, Error)]
pub(crate) enum BodyError {
    /// Not text at all: the client sent something other than the documented encodings.
    #[error(
        "expected {expected}, but the body is not UTF-8 text (invalid byte at offset {offset})"
    )]
    NotText {
        expected: &'static str,
        offset: usize,
    },
    /// Well-formed JSON text, but not the shape asked for.
    #[error("{0}")]
    JsonData(serde_json::Error),
    /// Not JSON (serde_json's text ends in "at line L column C").
    #[error("expected a JSON object: {0}")]
    JsonSyntax(serde_json::Error),
    #[error("form body: {0}")]
    Form(serde_urlencoded::de::Error),
    #[error("`{field}` is {len} bytes; the limit is {MAX_NAME_BYTES}")]
    NameTooLong { field: &'static str, len: usize },
}

impl BodyError {
    /// True when the body decoded but a field's value is refused (HTTP 422, not 400).
    pub(crate) fn is_invalid_value(&self) -> bool {
        matches!(self, Self::NameTooLong { .. })
    }

    /// A short class for the `error` field of the API's JSON errors.
    pub(crate) fn class(&self) -> &'static str {
        match self {
            Self::NotText { .. } | Self::JsonSyntax(_) => "malformed body",
            Self::JsonData(_) | Self::Form(_) => "invalid request",
            Self::NameTooLong { .. } => "name too long",
        }
    }
}

const EXPECTED_JSON: &str = "a JSON object (Content-Type: application/json)";
const EXPECTED_FORM: &str = "a URL-encoded form (Content-Type: application/x-www-form-urlencoded)";

/// Parses a JSON body of any shape, saying what was expected when the bytes are not text.
/// Used for every JSON body of the API, not only agent creation.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, BodyError> {
    serde_json::from_slice(body).map_err(|e| {
        if let Err(u) = std::str::from_utf8(body) {
            BodyError::NotText {
                expected: EXPECTED_JSON,
                offset: u.valid_up_to(),
            }
        } else if e.is_data() {
            BodyError::JsonData(e)
        } else {
            BodyError::JsonSyntax(e)
        }
    })
}

/// Decodes and validates a create-agent body.
pub(crate) fn parse(encoding: Encoding, body: &[u8]) -> Result<CreateAgent, BodyError> {
    let req = match encoding {
        Encoding::Json => {
            let b: JsonBody = parse_json(body)?;
            CreateAgent {
                agent_type: b.agent_type,
                name: b.name,
                config: b.config,
                wasm_module: b.wasm_module,
            }
        }
        Encoding::Form => {
            if let Err(u) = std::str::from_utf8(body) {
                return Err(BodyError::NotText {
                    expected: EXPECTED_FORM,
                    offset: u.valid_up_to(),
                });
            }
            let b: FormBody = serde_urlencoded::from_bytes(body).map_err(BodyError::Form)?;
            CreateAgent {
                agent_type: b.agent_type,
                name: b.name,
                config: b.config.map(|text| {
                    serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
                }),
                wasm_module: b.wasm_module,
            }
        }
    };
    check_len("agent_type", req.agent_type.as_deref())?;
    check_len("name", req.name.as_deref())?;
    Ok(req)
}

/// The `create_agent_body` fuzz target (fuzz/) and its corpus replay: the first byte picks
/// the encoding, the rest is the body; any body parses or is refused with an error.
pub(crate) fn fuzz_parse(data: &[u8]) {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let encoding = if first % 2 == 0 {
        Encoding::Json
    } else {
        Encoding::Form
    };
    if let Err(e) = parse(encoding, body) {
        assert!(!e.to_string().is_empty());
    }
}

fn check_len(field: &'static str, value: Option<&str>) -> Result<(), BodyError> {
    match value {
        Some(v) if v.len() > MAX_NAME_BYTES => Err(BodyError::NameTooLong {
            field,
            len: v.len(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_seed_k6_form_body_is_the_same_request_as_json() {
        let form = parse(
            Encoding::Form,
            b"agent_type=test-agent&config=map%5Btest%3Atrue%5D",
        )
        .unwrap();
        assert_eq!(form.agent_type.as_deref(), Some("test-agent"));
        assert_eq!(form.config, Some(json!("map[test:true]")));
        let json_config = parse(
            Encoding::Form,
            b"agent_type=echo&config=%7B%22test%22%3Atrue%7D",
        )
        .unwrap();
        assert_eq!(json_config.config, Some(json!({"test": true})));
    }

    #[test]
    fn both_encodings_refuse_the_same_mistakes() {
        for (enc, body) in [
            (Encoding::Json, &b"{\"agent_typo\":\"x\"}"[..]),
            (Encoding::Form, b"agent_typo=x"),
        ] {
            let e = parse(enc, body).unwrap_err();
            assert!(e.to_string().contains("agent_typo"), "{e}");
        }
        let long = "a".repeat(MAX_NAME_BYTES + 1);
        let e = parse(Encoding::Form, format!("agent_type={long}").as_bytes()).unwrap_err();
        assert!(e.is_invalid_value(), "{e}");
        let e = parse(Encoding::Json, json!({"name": long}).to_string().as_bytes()).unwrap_err();
        assert!(e.is_invalid_value(), "{e}");
    }

    #[test]
    fn binary_bodies_are_told_what_was_expected() {
        let e = parse(Encoding::Json, &[0x7b, 0xff, 0xfe, 0x00]).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("expected a JSON object"), "{text}");
        assert!(text.contains("offset 1"), "{text}");
        assert!(
            !parse(Encoding::Form, &[0xff])
                .unwrap_err()
                .is_invalid_value()
        );
    }

    #[test]
    fn content_type_parameters_and_case_are_ignored() {
        assert_eq!(
            Encoding::of(Some("Application/X-WWW-Form-Urlencoded; charset=utf-8")),
            Encoding::Form
        );
        assert_eq!(Encoding::of(Some("application/json")), Encoding::Json);
        assert_eq!(Encoding::of(None), Encoding::Json);
    }
}
