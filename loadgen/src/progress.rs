//! Live progress on stderr: a line rewritten every second on a terminal, plain lines
//! (every 10 s and at each stage change) otherwise, so CI logs stay readable.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use crate::collector::Tick;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// A live line on a terminal, plain lines otherwise.
    Auto,
    /// One line per second, rewritten in place.
    Live,
    /// Periodic plain lines.
    Plain,
    Off,
}

const PLAIN_EVERY: Duration = Duration::from_secs(10);

pub(crate) struct Progress {
    mode: ProgressMode,
    total: Duration,
    last_stage: Option<String>,
    last_plain: Option<Duration>,
    live_open: bool,
}

impl Progress {
    pub(crate) fn new(mode: ProgressMode, total: Duration) -> Progress {
        let mode = match mode {
            ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Live,
            ProgressMode::Auto => ProgressMode::Plain,
            m => m,
        };
        Progress {
            mode,
            total,
            last_stage: None,
            last_plain: None,
            live_open: false,
        }
    }

    pub(crate) fn line(&self, t: &Tick) -> String {
        let err = if t.requests == 0 {
            0.0
        } else {
            t.failures as f64 * 100.0 / t.requests as f64
        };
        format!(
            "[{:>6.1}s/{:.0}s] stage {:<12} users {:>5}  rps {:>8.1}  p95 {:>9.2}ms  errors {} ({:.2}%)  requests {}{}",
            t.elapsed.as_secs_f64(),
            self.total.as_secs_f64(),
            t.stage,
            t.users,
            t.rps,
            t.p95_ms,
            t.failures,
            err,
            t.requests,
            if t.dropped > 0 {
                format!("  dropped {}", t.dropped)
            } else {
                String::new()
            }
        )
    }

    pub(crate) fn show(&mut self, t: &Tick) {
        let mut err = std::io::stderr().lock();
        match self.mode {
            ProgressMode::Live => {
                let _ = write!(err, "\r\x1b[2K{}", self.line(t));
                let _ = err.flush();
                self.live_open = true;
            }
            ProgressMode::Plain => {
                let stage_changed = self.last_stage.as_deref() != Some(t.stage.as_str());
                let due = self
                    .last_plain
                    .is_none_or(|last| t.elapsed.saturating_sub(last) >= PLAIN_EVERY);
                if stage_changed || due {
                    let _ = writeln!(err, "{}", self.line(t));
                    self.last_plain = Some(t.elapsed);
                }
            }
            ProgressMode::Auto | ProgressMode::Off => {}
        }
        self.last_stage = Some(t.stage.clone());
    }

    /// Ends a live line so what follows starts on its own line.
    pub(crate) fn finish(&mut self) {
        if self.live_open {
            let _ = writeln!(std::io::stderr());
            self.live_open = false;
        }
    }
}
