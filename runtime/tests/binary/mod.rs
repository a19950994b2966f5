//! The shipped `caxton` binary as a child process, for the tests that need what only the
//! binary sets up: its global allocator, its subscriber and OTLP pipelines from a config file.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `caxton serve --config <file>`, killed when dropped.
pub struct Serving {
    pub child: Child,
    /// `http://127.0.0.1:<api port>`.
    pub api: String,
}

impl Serving {
    /// Spawns the binary on `config` (whose `api_address` is 127.0.0.1:`api_port`) with `envs`
    /// set and `RUST_LOG` unset, and returns once `/ready` answers 200.
    pub async fn start(
        config: &Path,
        api_port: u16,
        envs: &[(&str, &str)],
        deadline: Duration,
    ) -> Serving {
        let child = Command::new(env!("CARGO_BIN_EXE_caxton"))
            .args(["serve", "--config"])
            .arg(config)
            .envs(envs.iter().copied())
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let serving = Serving {
            child,
            api: format!("http://127.0.0.1:{api_port}"),
        };
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Ok(r) = client.get(format!("{}/ready", serving.api)).send().await
                && r.status() == 200
            {
                return serving;
            }
            assert!(started.elapsed() < deadline, "caxton never became ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
