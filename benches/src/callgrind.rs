//! Instruction counts of the key paths under `valgrind --tool=callgrind`.
//!
//! Wall time on a shared two-core machine moves by several percent between runs; the number
//! of instructions a path executes does not. Each key path runs in its own process
//! (`callgrind-paths <path> <iterations>`) under callgrind with collection switched on only
//! inside [`measured`] (`--collect-atstart=no --toggle-collect=*measured*`), so set-up, input
//! preparation and process start-up are not counted. Instructions per iteration = the
//! file's `totals:` / `summary:` figure divided by the iterations.
//!
//! Valgrind rather than the gungraun crate: valgrind is one Debian package already used by
//! CI, while gungraun needs its runner binary installed at the crate's exact version and its
//! own bench harness; a process per path plus a two-line parser is all this gate needs.

use caxton_runtime::internals::Performative;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use caxton_runtime::config::Config;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::workloads::{self, Routing, WorkloadError};

/// The key paths, by the name used in the JSON, the gate and the `caxton_bench_instructions`
/// series.
pub const KEY_PATHS: [&str; 5] = [
    "fipa_decode_4k",
    "routing_100_agents",
    "metrics_histogram_observe",
    "handle_message",
    "config_parse_seed",
];

/// Iterations per path by default: enough that one-off effects inside the measured
/// function (a first allocation, a hash-map resize) stay far below the 2% threshold.
pub const DEFAULT_ITERATIONS: u64 = 2000;

#[derive(Debug, Error)]
pub enum CallgrindError {
    #[error("unknown key path `{0}`; known: {known}", known = KEY_PATHS.join(", "))]
    UnknownPath(String),
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    #[error("{path}: no `totals:` or `summary:` line; is it a callgrind output file?")]
    NoTotals { path: String },
    #[error("{path}:{line}: cannot read the instruction count from {text:?}")]
    BadTotals {
        path: String,
        line: usize,
        text: String,
    },
    #[error("cannot run {program}: {source} (valgrind is installed by ci/install-tools)")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{command} failed with {status}:\n{stderr}")]
    Failed {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not an instruction-count file: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// Runs `f` where callgrind counts (see the module docs). Never inlined, so the symbol exists.
#[inline(never)]
pub fn measured<T>(f: impl FnOnce() -> T) -> T {
    f()
}

/// Runs key path `name` `iterations` times, each inside [`measured`], after a few uncounted
/// warm-up iterations (lazy statics, first label creation). Used by `callgrind-paths`.
pub fn run_path(name: &str, iterations: u64) -> Result<(), CallgrindError> {
    const WARM_UP: u64 = 3;
    match name {
        "fipa_decode_4k" => {
            let bytes = serde_json::to_vec(&workloads::fipa_message(4096)).unwrap_or_default();
            for i in 0..WARM_UP + iterations {
                let decode = || {
                    serde_json::from_slice::<caxton_runtime::internals::AclMessage>(&bytes).is_ok()
                };
                std::hint::black_box(if i < WARM_UP {
                    decode()
                } else {
                    measured(decode)
                });
            }
        }
        "routing_100_agents" => {
            let routing = Routing::new(100)?;
            for i in 0..WARM_UP + iterations {
                let msgs = routing.messages(100);
                let route = || routing.route(msgs);
                std::hint::black_box(if i < WARM_UP {
                    route()
                } else {
                    measured(route)
                });
            }
        }
        "metrics_histogram_observe" => {
            let metrics = workloads::seed_metrics()?;
            for i in 0..WARM_UP + iterations {
                let observe = || metrics.message_processed(Performative::Request, 0.0042);
                if i < WARM_UP {
                    observe()
                } else {
                    measured(observe)
                }
            }
        }
        "handle_message" => {
            let (engine, ty) = workloads::test_agent()?;
            let bytes = workloads::test_agent_request();
            let id: Arc<str> = "agent".into();
            for i in 0..WARM_UP + iterations {
                let exec = || engine.execute(&ty, &id, &bytes).is_ok();
                std::hint::black_box(if i < WARM_UP { exec() } else { measured(exec) });
            }
        }
        "config_parse_seed" => {
            for i in 0..WARM_UP + iterations {
                let parse = || {
                    Config::from_toml_str(workloads::SEED_TABLES_TOML, "seed-tables.toml").is_ok()
                };
                std::hint::black_box(if i < WARM_UP {
                    parse()
                } else {
                    measured(parse)
                });
            }
        }
        other => return Err(CallgrindError::UnknownPath(other.to_owned())),
    }
    Ok(())
}

/// The event count of a callgrind output file: its `totals:` line, else `summary:` (both
/// hold the Ir count first when only instructions are collected, callgrind's default).
pub fn parse_totals(text: &str, path: &str) -> Result<u64, CallgrindError> {
    let line = text
        .lines()
        .enumerate()
        .find(|(_, l)| l.starts_with("totals:"))
        .or_else(|| {
            text.lines()
                .enumerate()
                .find(|(_, l)| l.starts_with("summary:"))
        });
    let Some((index, line)) = line else {
        return Err(CallgrindError::NoTotals {
            path: path.to_owned(),
        });
    };
    let value = line
        .split_once(':')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok());
    value.ok_or_else(|| CallgrindError::BadTotals {
        path: path.to_owned(),
        line: index + 1,
        text: line.to_owned(),
    })
}

/// Instructions per iteration of each key path: the JSON the instruction gate compares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstructionCounts {
    /// Iterations each path ran under callgrind.
    pub iterations: u64,
    /// Path -> instructions per iteration.
    pub paths: BTreeMap<String, f64>,
}

impl InstructionCounts {
    pub fn load(path: &Path) -> Result<InstructionCounts, CallgrindError> {
        let text = std::fs::read_to_string(path).map_err(|source| CallgrindError::Io {
            what: "read",
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| CallgrindError::Json {
            path: path.to_owned(),
            source,
        })
    }

    pub fn save(&self, path: &Path) -> Result<(), CallgrindError> {
        let io = |source| CallgrindError::Io {
            what: "write",
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let text = serde_json::to_string_pretty(self).unwrap_or_default();
        std::fs::write(path, text + "\n").map_err(|source| CallgrindError::Io {
            what: "write",
            path: path.to_owned(),
            source,
        })
    }
}

/// Runs `binary` (the `callgrind-paths` executable) under callgrind for one key path and
/// returns instructions per iteration. The callgrind file is left in `out_dir`.
pub fn count_path(
    binary: &Path,
    path: &str,
    iterations: u64,
    out_dir: &Path,
) -> Result<f64, CallgrindError> {
    std::fs::create_dir_all(out_dir).map_err(|source| CallgrindError::Io {
        what: "create",
        path: out_dir.to_owned(),
        source,
    })?;
    let out_file = out_dir.join(format!("callgrind.{path}.out"));
    let mut cmd = Command::new("valgrind");
    cmd.arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out_file.display()))
        .arg("--collect-atstart=no")
        .arg("--toggle-collect=*measured*")
        .arg(binary)
        .arg(path)
        .arg(iterations.to_string());
    let output = cmd.output().map_err(|source| CallgrindError::Spawn {
        program: "valgrind".into(),
        source,
    })?;
    if !output.status.success() {
        return Err(CallgrindError::Failed {
            command: format!("{cmd:?}"),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    let text = std::fs::read_to_string(&out_file).map_err(|source| CallgrindError::Io {
        what: "read",
        path: out_file.clone(),
        source,
    })?;
    let total = parse_totals(&text, &out_file.display().to_string())?;
    Ok(total as f64 / iterations.max(1) as f64)
}

/// Counts every path in `paths`.
pub fn count_paths(
    binary: &Path,
    paths: &[&str],
    iterations: u64,
    out_dir: &Path,
) -> Result<InstructionCounts, CallgrindError> {
    let mut counts = BTreeMap::new();
    for path in paths {
        counts.insert(
            (*path).to_owned(),
            count_path(binary, path, iterations, out_dir)?,
        );
    }
    Ok(InstructionCounts {
        iterations,
        paths: counts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_line_wins_over_summary_and_errors_name_the_line() {
        let text = "version: 1\ncreator: callgrind-3.19.0\nevents: Ir\nsummary: 1234\nfl=x\n0 5\ntotals: 1200\n";
        assert_eq!(parse_totals(text, "f").unwrap(), 1200);
        assert_eq!(parse_totals("events: Ir\nsummary: 77\n", "f").unwrap(), 77);
        let err = parse_totals("events: Ir\n", "x.out")
            .unwrap_err()
            .to_string();
        assert!(err.contains("x.out"), "{err}");
        let err = parse_totals("events: Ir\ntotals: lots\n", "x.out")
            .unwrap_err()
            .to_string();
        assert!(err.contains("x.out:2"), "{err}");
    }

    #[test]
    fn every_key_path_runs_and_unknown_paths_are_refused() {
        for path in KEY_PATHS {
            run_path(path, 2).unwrap();
        }
        assert!(matches!(
            run_path("nope", 1),
            Err(CallgrindError::UnknownPath(_))
        ));
    }
}
