//! Log set-up from `[observability.logging]`: level, json or text, stdout/stderr/file.
//! Trace-id correlation, renamed keys and level sampling arrive with the telemetry work.

use std::fs::OpenOptions;
use std::sync::Mutex;

use thiserror::Error;
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogOutput, LoggingConfig};

#[derive(Debug, Error)]
pub enum LoggingError {
    #[error("cannot open log file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("logging already initialised: {0}")]
    Init(String),
}

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `level`.
pub fn init(cfg: &LoggingConfig) -> Result<(), LoggingError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = match (&cfg.output, cfg.format) {
        (LogOutput::Stdout, LogFormat::Json) => {
            builder.json().with_writer(std::io::stdout).try_init()
        }
        (LogOutput::Stdout, LogFormat::Text) => builder.with_writer(std::io::stdout).try_init(),
        (LogOutput::Stderr, LogFormat::Json) => {
            builder.json().with_writer(std::io::stderr).try_init()
        }
        (LogOutput::Stderr, LogFormat::Text) => builder.with_writer(std::io::stderr).try_init(),
        (LogOutput::File(path), format) => {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| LoggingError::File {
                    path: path.display().to_string(),
                    source,
                })?;
            let writer = Mutex::new(file);
            match format {
                LogFormat::Json => builder
                    .json()
                    .with_ansi(false)
                    .with_writer(writer)
                    .try_init(),
                LogFormat::Text => builder.with_ansi(false).with_writer(writer).try_init(),
            }
        }
    };
    result.map_err(|e| LoggingError::Init(e.to_string()))
}
