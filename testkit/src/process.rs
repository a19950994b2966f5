//! One child server process: its output in a file of its own temp dir, a readiness wait that
//! returns as soon as the child exits (with its status and the end of its output) instead of
//! at the deadline, and kill on drop.

use std::fs::File;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::Error;

/// How often readiness and exit are checked.
const POLL: Duration = Duration::from_millis(50);
/// Lines of output an error quotes.
const TAIL_LINES: usize = 40;
/// The file under the process's dir that takes its stdout and stderr.
const OUTPUT_FILE: &str = "output.log";

type Check = Box<dyn FnMut() -> Pin<Box<dyn Future<Output = bool> + Send>> + Send>;

/// The last lines of a server's output, as errors quote it.
pub fn tail(output: &str) -> String {
    let lines: Vec<&str> = output.lines().collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}

/// When a started server counts as ready.
pub enum Readiness {
    /// `GET url` answers 2xx.
    Http(String),
    /// A TCP connection to the address is accepted.
    Listening(SocketAddr),
    /// The check answers true; `what` names it in errors.
    Check { what: String, check: Check },
}

impl Readiness {
    /// Readiness by an async predicate, polled until it holds.
    pub fn check<F, Fut>(what: impl Into<String>, mut check: F) -> Readiness
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = bool> + Send + 'static,
    {
        Readiness::Check {
            what: what.into(),
            check: Box::new(move || Box::pin(check())),
        }
    }

    fn describe(&self) -> String {
        match self {
            Readiness::Http(url) => format!("GET {url}"),
            Readiness::Listening(addr) => format!("listening on {addr}"),
            Readiness::Check { what, .. } => what.clone(),
        }
    }

    async fn holds(&mut self, http: &reqwest::Client) -> bool {
        match self {
            Readiness::Http(url) => http
                .get(url.as_str())
                .send()
                .await
                .is_ok_and(|r| r.status().is_success()),
            Readiness::Listening(addr) => tokio::net::TcpStream::connect(*addr).await.is_ok(),
            Readiness::Check { check, .. } => check().await,
        }
    }
}

/// A running child server; killed and reaped when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    name: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl ServerProcess {
    /// A fresh temp dir for a server called `name`, to hold its config before it starts.
    pub fn temp_dir(name: &str) -> std::io::Result<tempfile::TempDir> {
        tempfile::Builder::new()
            .prefix(&format!("caxton-{name}-"))
            .tempdir()
    }

    /// Spawns `command` (stdin closed, stdout and stderr into `output.log` in `dir`) and waits
    /// until `ready` holds, at most `deadline`. The process owns `dir` from here on.
    pub async fn start(
        name: &str,
        dir: tempfile::TempDir,
        mut command: Command,
        mut ready: Readiness,
        deadline: Duration,
    ) -> Result<ServerProcess, Error> {
        let output = File::create(dir.path().join(OUTPUT_FILE))?;
        let program = command.get_program().to_string_lossy().into_owned();
        let child = command
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output)
            .spawn()
            .map_err(|source| Error::Spawn { program, source })?;
        let mut process = ServerProcess {
            name: name.to_owned(),
            child,
            dir,
        };
        process.wait_ready(&mut ready, deadline).await?;
        Ok(process)
    }

    async fn wait_ready(&mut self, ready: &mut Readiness, deadline: Duration) -> Result<(), Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|source| Error::Http {
                url: ready.describe(),
                source,
            })?;
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(Error::Exited {
                    name: self.name.clone(),
                    probe: ready.describe(),
                    status,
                    output: self.output(),
                });
            }
            if ready.holds(&http).await {
                return Ok(());
            }
            if started.elapsed() > deadline {
                return Err(Error::NotReady {
                    name: self.name.clone(),
                    probe: ready.describe(),
                    waited: deadline,
                    tail: self.tail(),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The temp dir the process was started in; removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything the process wrote to stdout and stderr so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(OUTPUT_FILE))
            .unwrap_or_else(|e| format!("(output unreadable: {e})"))
    }

    /// The last lines of [`output`](Self::output), for error messages.
    pub fn tail(&self) -> String {
        tail(&self.output())
    }

    /// The exit status, if the process has exited.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, Error> {
        Ok(self.child.try_wait()?)
    }

    /// Sends SIGTERM and returns at once (the process shuts down while the test looks on).
    pub fn sigterm(&self) -> Result<(), Error> {
        let pid = self.pid().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status()?;
        if !status.success() {
            return Err(std::io::Error::other(format!("kill -TERM {pid}: {status}")).into());
        }
        Ok(())
    }

    /// SIGTERM, then waits up to `deadline` for the exit; past it the process is killed and
    /// that is an error.
    pub fn terminate(&mut self, deadline: Duration) -> Result<ExitStatus, Error> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        self.sigterm()?;
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if started.elapsed() > deadline {
                self.kill()?;
                return Err(Error::DidNotStop {
                    name: self.name.clone(),
                    waited: deadline,
                    tail: self.tail(),
                });
            }
            std::thread::sleep(POLL / 5);
        }
    }

    /// SIGKILL (an abrupt death, as `kill -9`) and reaps the process.
    pub fn kill(&mut self) -> Result<ExitStatus, Error> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        self.child.kill()?;
        Ok(self.child.wait()?)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Already exited is fine; nothing else can be done about a failure in a destructor.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
