//! The rotel OTLP collector (`pip install rotel`, by `ci/install-tools`): a real third-party
//! receiver, blackholing what it receives, on free loopback gRPC and HTTP ports.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::{Error, Readiness, ServerProcess, free_addr};

const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running rotel; killed on drop.
#[derive(Debug)]
pub struct Rotel {
    process: ServerProcess,
    grpc: SocketAddr,
    log: PathBuf,
}

/// Where pip put rotel's collector binary.
fn agent_binary() -> Result<PathBuf, Error> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import rotel, os; print(os.path.join(os.path.dirname(rotel.__file__), 'rotel-agent'))",
        ])
        .output()
        .map_err(|source| Error::Spawn {
            program: "python3".to_owned(),
            source,
        })?;
    if !out.status.success() {
        return Err(Error::NotInstalled {
            name: "rotel".to_owned(),
            detail: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

impl Rotel {
    /// `rotel-agent start --exporter blackhole` with `extra_args` (e.g. `["--debug-log",
    /// "traces"]` to log what it receives), ready once its gRPC port accepts connections.
    pub async fn start(extra_args: &[&str]) -> Result<Rotel, Error> {
        let dir = ServerProcess::temp_dir("rotel")?;
        let (grpc, http) = (free_addr()?, free_addr()?);
        let log = dir.path().join("rotel.log");
        let mut command = Command::new(agent_binary()?);
        command
            .args(["start", "--exporter", "blackhole"])
            .args(["--otlp-grpc-endpoint", &grpc.to_string()])
            .args(["--otlp-http-endpoint", &http.to_string()])
            .arg("--log-file")
            .arg(&log)
            .arg("--pid-file")
            .arg(dir.path().join("rotel.pid"))
            .args(extra_args);
        let ready = Readiness::Listening(grpc);
        let process = ServerProcess::start("rotel", dir, command, ready, READY_TIMEOUT).await?;
        Ok(Rotel { process, grpc, log })
    }

    /// The OTLP/gRPC address.
    pub fn grpc(&self) -> SocketAddr {
        self.grpc
    }

    /// Its log file and its output so far.
    pub fn output(&self) -> String {
        format!(
            "{}{}",
            std::fs::read_to_string(&self.log).unwrap_or_default(),
            self.process.output()
        )
    }

    /// SIGTERM (rotel flushes its debug log), then everything it logged.
    pub fn stop(mut self) -> Result<String, Error> {
        self.process.terminate(READY_TIMEOUT)?;
        Ok(self.output())
    }
}
