use std::path::PathBuf;

use anyhow::Context;
use caxton_runtime::config::Config;
use clap::{Parser, Subcommand};

/// The Caxton runtime: WebAssembly agents talking FIPA-ACL behind an HTTP API.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API and /metrics until Ctrl-C or SIGTERM.
    Serve {
        /// TOML configuration; without it the documented defaults serve on 127.0.0.1:8080
        /// (API) and 127.0.0.1:9090 (metrics). See runtime/caxton.example.toml.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Parse and validate a configuration file, print the effective configuration (secrets
    /// redacted), and exit.
    CheckConfig {
        /// The TOML file to check.
        config: PathBuf,
    },
}

// jemalloc is the allocator (feature `jemalloc`, on by default): it made the message path
// faster than glibc malloc (BENCHMARKS.md has the ratio) and it is what `/debug/pprof/heap`
// reads; its sampler idles until `[profiling] profile_types` names a heap type.
#[cfg(feature = "jemalloc")]
caxton_profiles::jemalloc_global_allocator!();

fn load(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    match path {
        Some(p) => Ok(Config::load(p)?),
        None => Ok(Config::default()),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::CheckConfig { config } => {
            let cfg = load(Some(&config))?;
            println!(
                "{}",
                toml::to_string_pretty(&cfg.redacted()).context("printing the configuration")?
            );
            println!("# {}: ok", config.display());
            Ok(())
        }
        Command::Serve { config } => {
            let cfg = load(config.as_ref())?;
            let server = caxton_runtime::start(cfg).await?;
            shutdown_signal().await;
            tracing::info!("shutting down");
            server.shutdown().await;
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
