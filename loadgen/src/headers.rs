//! Headers every request of a run carries: `--header 'Name: value'` (repeatable) and
//! `--token-file FILE` (`Authorization: Bearer <the file's contents>`), for targets with
//! `[server] api_token`. Their values never reach the report: [`redact_argv`] is what the
//! report records as the command line.

use std::path::Path;

use http::{HeaderName, HeaderValue, header};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum HeaderError {
    #[error("--header `{0}`: expected 'Name: value'")]
    Syntax(String),
    #[error("--header `{name}`: {detail}")]
    Invalid { name: String, detail: String },
    #[error("--token-file {path}: {detail}")]
    TokenFile { path: String, detail: String },
}

/// Shown instead of a header's value in the recorded command line.
const REDACTED: &str = "<redacted>";

/// Parses the `--header` flags and reads `--token-file`; every value is marked sensitive
/// (hyper and reqwest then keep it out of their debug output).
pub(crate) fn parse(
    flags: &[String],
    token_file: Option<&Path>,
) -> Result<Vec<(HeaderName, HeaderValue)>, HeaderError> {
    let mut out = Vec::new();
    for flag in flags {
        let (name, value) = flag
            .split_once(':')
            .ok_or_else(|| HeaderError::Syntax(name_only(flag)))?;
        let name = name.trim();
        let invalid = |detail: String| HeaderError::Invalid {
            name: name.to_string(),
            detail,
        };
        let parsed = HeaderName::from_bytes(name.as_bytes()).map_err(|e| invalid(e.to_string()))?;
        let mut value = HeaderValue::from_str(value.trim())
            .map_err(|_| invalid("the value is not a valid header value".into()))?;
        value.set_sensitive(true);
        out.push((parsed, value));
    }
    if let Some(path) = token_file {
        let fail = |detail: String| HeaderError::TokenFile {
            path: path.display().to_string(),
            detail,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let token = text.trim_end_matches(['\n', '\r']);
        if token.is_empty() {
            return Err(fail("the file is empty".into()));
        }
        let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| fail("the token is not a valid header value".into()))?;
        value.set_sensitive(true);
        out.push((header::AUTHORIZATION, value));
    }
    Ok(out)
}

/// A `--header` flag without its value, for messages.
fn name_only(flag: &str) -> String {
    match flag.split_once(':') {
        Some((name, _)) => format!("{}: {REDACTED}", name.trim()),
        None if flag.len() > 20 => REDACTED.to_string(),
        None => flag.to_string(),
    }
}

/// The command line with every `--header` value replaced by `<redacted>`.
pub(crate) fn redact_argv(argv: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(argv.len());
    let mut value_next = false;
    for arg in argv {
        if value_next {
            out.push(name_only(&arg));
            value_next = false;
        } else if arg == "--header" {
            out.push(arg);
            value_next = true;
        } else if let Some(v) = arg.strip_prefix("--header=") {
            out.push(format!("--header={}", name_only(v)));
        } else {
            out.push(arg);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_and_values_stay_out_of_the_command_line() {
        let h = parse(
            &["Authorization: Bearer s3cret".into(), "X-Tenant:a".into()],
            None,
        )
        .unwrap();
        assert_eq!(h[0].0, header::AUTHORIZATION);
        assert_eq!(h[0].1, "Bearer s3cret");
        assert!(h[0].1.is_sensitive());
        assert_eq!(
            (h[1].0.as_str(), h[1].1.to_str().unwrap()),
            ("x-tenant", "a")
        );
        let argv = redact_argv(
            [
                "caxton-bench",
                "--header",
                "Authorization: Bearer s3cret",
                "--header=X-Tenant: a",
            ]
            .map(String::from)
            .to_vec(),
        );
        assert_eq!(
            argv,
            [
                "caxton-bench",
                "--header",
                "Authorization: <redacted>",
                "--header=X-Tenant: <redacted>"
            ]
        );
        let err = parse(&["no colon here".into()], None).unwrap_err();
        assert!(
            err.to_string().starts_with("--header `no colon here`"),
            "{err}"
        );
        let err = parse(&["Bad Name: x".into()], None).unwrap_err();
        assert!(err.to_string().starts_with("--header `Bad Name`"), "{err}");
    }

    #[test]
    fn a_token_file_becomes_a_bearer_header() {
        let file = std::env::temp_dir().join(format!("caxton-bench-token-{}", std::process::id()));
        std::fs::write(&file, "t0ken\n").unwrap();
        let h = parse(&[], Some(&file)).unwrap();
        assert_eq!(
            h[0],
            (
                header::AUTHORIZATION,
                HeaderValue::from_static("Bearer t0ken")
            )
        );
        std::fs::write(&file, "").unwrap();
        let err = parse(&[], Some(&file)).unwrap_err();
        assert!(err.to_string().contains("the file is empty"), "{err}");
        let _ = std::fs::remove_file(file);
    }
}
