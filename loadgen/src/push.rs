//! Delivery of the `caxton_bench_*` series: remote write to Prometheus and/or a
//! Pushgateway (the sinks of `caxton-reports`), every 10 s during a run and once at the end.
//!
//! A push that fails (after the sinks' own retries) or does not finish within
//! [`PUSH_BOUND`] never fails nor stretches the run: the samples are appended to
//! `unsent-samples.jsonl` beside the report and `caxton-bench push REPORT.json` sends them
//! later.

use std::path::Path;
use std::time::Duration;

use caxton_reports::model::RunReport;
use caxton_reports::pushgateway::{Pushgateway, PushgatewayOptions};
use caxton_reports::remote_write::{
    HistogramSample, RemoteWriteOptions, RemoteWriter, Sample, SinkError, load_spool, now_ms, spool,
};
use thiserror::Error;

use crate::run_dir::spool_path;
use crate::series;

/// Interval of the live pushes.
pub(crate) const PUSH_INTERVAL: Duration = Duration::from_secs(10);

/// The longest one push may take, retries included, before its samples are spooled: a
/// hanging receiver adds at most this to a run's end.
pub const PUSH_BOUND: Duration = Duration::from_secs(5);

#[derive(Debug, Error)]
pub enum PushError {
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Report(#[from] caxton_reports::model::ReportError),
    #[error("nothing to push to: give --report-to-prometheus URL and/or --pushgateway URL")]
    NoSink,
    #[error(transparent)]
    Failed(#[from] SendFailed),
}

/// What [`Sinks::send`] could not deliver.
#[derive(Debug, Error)]
pub enum SendFailed {
    /// Each sink that failed, with its error.
    #[error("{}", join(.0))]
    Sinks(Vec<SinkError>),
    #[error("no answer within {0:?}")]
    Timeout(std::time::Duration),
}

fn join(errors: &[SinkError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The configured sinks.
#[derive(Debug, Clone)]
pub struct Sinks {
    remote: Option<RemoteWriter>,
    pushgateway: Option<Pushgateway>,
}

impl Sinks {
    /// `None` when no sink is configured.
    pub fn new(
        prometheus: Option<&str>,
        pushgateway: Option<&str>,
    ) -> Result<Option<Sinks>, SinkError> {
        Self::with_pushgateway_options(prometheus, pushgateway, PushgatewayOptions::default())
    }

    /// Like [`new`](Self::new), with the Pushgateway's job and grouping given.
    pub fn with_pushgateway_options(
        prometheus: Option<&str>,
        pushgateway: Option<&str>,
        options: PushgatewayOptions,
    ) -> Result<Option<Sinks>, SinkError> {
        if prometheus.is_none() && pushgateway.is_none() {
            return Ok(None);
        }
        Ok(Some(Sinks {
            remote: prometheus
                .map(|u| RemoteWriter::new(u, RemoteWriteOptions::default()))
                .transpose()?,
            pushgateway: pushgateway
                .map(|u| Pushgateway::new(u, options))
                .transpose()?,
        }))
    }

    /// Sends to every sink; the error lists each sink that failed. `histograms` (native) go
    /// only to a remote-write receiver that takes them; the samples' classic `_bucket` series
    /// carry the same latency everywhere.
    pub async fn send(
        &self,
        samples: &[Sample],
        histograms: &[HistogramSample],
    ) -> Result<(), SendFailed> {
        let mut failures = Vec::new();
        if let Some(w) = &self.remote {
            let written = if !histograms.is_empty() && w.accepts_native_histograms().await {
                w.write_with_histograms(samples, histograms).await
            } else {
                w.write(samples).await
            };
            if let Err(e) = written {
                failures.push(e);
            }
        }
        if let Some(p) = &self.pushgateway
            && let Err(e) = p.push(samples).await
        {
            failures.push(e);
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(SendFailed::Sinks(failures))
        }
    }

    /// Sends within [`PUSH_BOUND`], or keeps the samples in `spool_path` and says so on
    /// stderr. (Native histograms are not spooled: the classic buckets among the samples
    /// hold the same counts.)
    pub async fn send_or_spool(
        &self,
        samples: &[Sample],
        histograms: &[HistogramSample],
        spool_path: &Path,
    ) -> bool {
        let sent = tokio::time::timeout(PUSH_BOUND, self.send(samples, histograms))
            .await
            .unwrap_or_else(|_| Err(SendFailed::Timeout(PUSH_BOUND)));
        match sent {
            Ok(()) => true,
            Err(e) => {
                let kept = match spool_path.parent().map(std::fs::create_dir_all) {
                    Some(Err(err)) => Err(SinkError::SpoolIo {
                        path: spool_path.to_path_buf(),
                        source: err,
                    }),
                    _ => spool(samples, spool_path),
                };
                match kept {
                    Ok(()) => eprintln!(
                        "caxton-bench: push failed: {e}\ncaxton-bench: {} samples kept in {}; send them later with `caxton-bench push REPORT.json`",
                        samples.len(),
                        spool_path.display()
                    ),
                    Err(s) => eprintln!(
                        "caxton-bench: push failed: {e}; and the samples could not be kept: {s}"
                    ),
                }
                false
            }
        }
    }
}

/// The final push of a finished run.
pub(crate) async fn push_final(sinks: &Sinks, report: &RunReport, report_path: &Path) -> bool {
    let ts = now_ms();
    let samples = series::final_samples(report, ts);
    let histograms = series::final_native_histograms(report, ts);
    sinks
        .send_or_spool(&samples, &histograms, &spool_path(report_path))
        .await
}

/// `caxton-bench push REPORT.json`: sends what a run could not deliver (its spool), or the
/// report's final figures when nothing is pending. Returns the number of samples sent.
pub async fn push_later(report_path: &Path, sinks: Option<Sinks>) -> Result<usize, PushError> {
    let sinks = sinks.ok_or(PushError::NoSink)?;
    let report = RunReport::read(report_path)?;
    let spool = spool_path(report_path);
    let ts = now_ms();
    let (samples, histograms) = if spool.exists() {
        (load_spool(&spool)?, Vec::new())
    } else {
        (
            series::final_samples(&report, ts),
            series::final_native_histograms(&report, ts),
        )
    };
    sinks.send(&samples, &histograms).await?;
    if spool.exists() {
        let sent = spool.with_extension("jsonl.sent");
        std::fs::rename(&spool, &sent).map_err(|source| SinkError::SpoolIo {
            path: spool.clone(),
            source,
        })?;
    }
    Ok(samples.len())
}
