//! The registry's store at scale: creates N agents through the runtime's own create and
//! persist path (concurrently, so creates share group commits), then times a new
//! `Runtime` restoring them from the file. The peer, in the same run, is creating the same
//! N agents in memory only.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use caxton_runtime::Runtime;
use caxton_runtime::config::Config;
use caxton_runtime::internals::AgentSource;
use caxton_runtime::internals::Metrics;
use caxton_runtime::internals::Tracing;
use clap::Parser;

caxton_profiles::jemalloc_global_allocator!();

#[derive(Parser)]
#[command(about = "Persist N test-agents, then time their restore on start")]
struct Cli {
    /// How many agents.
    #[arg(long, default_value_t = 100_000)]
    agents: usize,
    /// Creates in flight at once while filling the store.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
}

fn runtime(cfg: &Config) -> anyhow::Result<Arc<Runtime>> {
    let metrics = Arc::new(Metrics::new(&cfg.observability.metrics)?);
    Ok(Arc::new(Runtime::new(cfg, metrics, Tracing::off())?))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let dir = std::env::temp_dir().join(format!("caxton-restore-agents-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cfg = Config::default();
    cfg.server.max_agents = cli.agents.max(1) * 2;
    cfg.server.data_dir = dir.clone();

    let mut memory_cfg = cfg.clone();
    memory_cfg.server.persist_agents = false;
    let rt = runtime(&memory_cfg)?;
    let ty = rt.resolve_type(AgentSource::Builtin("test-agent".into()))?;
    let started = Instant::now();
    for _ in 0..cli.agents {
        rt.create_agent(ty.clone(), None, Some(r#"{"test":true}"#.into()))
            .map_err(|(_, e)| e)?;
    }
    let in_memory = started.elapsed().as_secs_f64();
    drop(rt);

    let rt = runtime(&cfg)?;
    let ty = rt.resolve_type(AgentSource::Builtin("test-agent".into()))?;
    let started = Instant::now();
    let per_task = cli.agents.div_ceil(cli.concurrency.max(1));
    let mut tasks = Vec::new();
    for t in 0..cli.concurrency.max(1) {
        let (rt, ty) = (rt.clone(), ty.clone());
        let n = per_task.min(cli.agents.saturating_sub(t * per_task));
        tasks.push(tokio::spawn(async move {
            for _ in 0..n {
                let agent = rt
                    .create_agent(ty.clone(), None, Some(r#"{"test":true}"#.into()))
                    .map_err(|(_, e)| e)?;
                rt.persist_created(&agent).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await.context("a create task panicked")??;
    }
    let persisted = started.elapsed().as_secs_f64();
    drop(rt);

    let started = Instant::now();
    let rt = runtime(&cfg)?;
    let restore = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        rt.agent_count() == cli.agents,
        "restored {} of {} agents",
        rt.agent_count(),
        cli.agents
    );
    let bytes = std::fs::metadata(dir.join(caxton_runtime::internals::STORE_FILE_NAME))?.len();
    println!(
        "agents {}  in-memory create {in_memory:.3} s  durable create {persisted:.3} s ({:.0}/s at {} in flight)  restore {restore:.3} s  restore / in-memory create {:.2}  store {:.1} MB",
        cli.agents,
        cli.agents as f64 / persisted,
        cli.concurrency,
        restore / in_memory,
        bytes as f64 / 1e6
    );
    drop(rt);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
