//! `caxton-bench history`: the change points of a run history (a directory of reports, or
//! the series a Prometheus holds), printed as text, Markdown or JSON, and the verdict pushed
//! where asked. Exit 0, or 1 when the newest run starts a regression; every error is the
//! caller's exit 2, so an unreadable history is never mistaken for a regression.

use caxton_reports::compare::{self, CompareError};
use caxton_reports::history::{self, HistoryError};
use caxton_reports::html::{self, HtmlError};
use caxton_reports::remote_write::SinkError;
use thiserror::Error;

use crate::cli::HistoryArgs;
use crate::prometheus_history::{self, PrometheusHistoryError};
use crate::{profile_diff, push, verdict};

/// Why a history gave no verdict.
#[derive(Debug, Error)]
pub enum HistoryCheckError {
    #[error(transparent)]
    Flag(#[from] CompareError),
    #[error(transparent)]
    Prometheus(#[from] PrometheusHistoryError),
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error("no valid, readable run under {dir} ({invalid} invalid, {unreadable} unreadable)")]
    Empty {
        dir: String,
        invalid: usize,
        unreadable: usize,
    },
    #[error("give a history directory or --prometheus URL")]
    NoSource,
    #[error("encoding the JSON verdict: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Html(#[from] HtmlError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// A nightly whose verdict never reached Prometheus must not look green.
    #[error("pushing the verdict: {0}")]
    Push(push::SendFailed),
}

/// Loads and judges the history, prints it, writes the HTML page and pushes the verdict
/// when asked; returns the exit code.
pub async fn check(args: &HistoryArgs) -> Result<u8, HistoryCheckError> {
    let options = history::DetectOptions {
        p_value: args.p_value,
        min_magnitude: compare::parse_percent(&args.min_change, "--min-change")?,
        ..Default::default()
    };
    let result = match (&args.dir, &args.prometheus) {
        (_, Some(url)) => {
            let found = prometheus_history::load(url, &args.prometheus_range).await?;
            let mut result = history::analyse(found.runs, &found.per_run, &options);
            result.invalid = found.invalid;
            result
        }
        (Some(dir), None) => {
            let loaded = history::load_dir(dir, args.skip_unreadable)?;
            for u in &loaded.unreadable {
                eprintln!("caxton-bench: warning: left out: {u}");
            }
            if loaded.is_empty() {
                return Err(HistoryCheckError::Empty {
                    dir: dir.display().to_string(),
                    invalid: loaded.invalid.len(),
                    unreadable: loaded.unreadable.len(),
                });
            }
            let (runs, per_run) = loaded.observations();
            let mut result = history::analyse(runs, &per_run, &options);
            result.profile_diffs = profile_diff::at_change_points(&result, &loaded.runs);
            let paired: Vec<_> = loaded.paired.iter().map(|(_, ab)| ab).collect();
            result.confirmed = history::confirmed::find(&paired);
            result.invalid = loaded.invalid;
            result.unreadable = loaded.unreadable;
            result
        }
        (None, None) => return Err(HistoryCheckError::NoSource),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result.to_json())?);
    } else if args.markdown {
        print!("{}", result.to_markdown());
    } else {
        print!("{}", result.to_text());
    }
    if let Some(out) = &args.html {
        html::write_file(out, &history::html::render(&result))?;
        eprintln!("caxton-bench: html: {}", out.display());
    }
    push_verdict(args, &result).await?;
    Ok(result.exit_code())
}

/// The verdict to the sinks given, if any.
async fn push_verdict(
    args: &HistoryArgs,
    result: &history::History,
) -> Result<(), HistoryCheckError> {
    let options = caxton_reports::pushgateway::PushgatewayOptions {
        job: verdict::PUSHGATEWAY_JOB.to_owned(),
        grouping_labels: Vec::new(),
        ..Default::default()
    };
    let Some(sinks) = push::Sinks::with_pushgateway_options(
        args.report_to_prometheus.as_deref(),
        args.pushgateway.as_deref(),
        options,
    )?
    else {
        return Ok(());
    };
    let samples = verdict::verdict_samples(result, caxton_reports::remote_write::now_ms());
    tokio::time::timeout(push::PUSH_BOUND, sinks.send(&samples, &[]))
        .await
        .unwrap_or_else(|_| Err(push::SendFailed::Timeout(push::PUSH_BOUND)))
        .map_err(HistoryCheckError::Push)?;
    eprintln!("caxton-bench: pushed {} verdict samples", samples.len());
    Ok(())
}
