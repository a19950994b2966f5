//! Memory probe: creates N idle agents through the runtime's own API and prints the
//! resident set before and after, read from /proc/self/status.

use std::sync::Arc;

use anyhow::Context;
use caxton_runtime::Runtime;
use caxton_runtime::config::Config;
use caxton_runtime::internals::AgentSource;
use caxton_runtime::internals::Metrics;
use caxton_runtime::internals::Tracing;
use clap::Parser;

// The shipped `caxton` binary's allocator and options: RSS depends on the allocator.
caxton_profiles::jemalloc_global_allocator!();

#[derive(Parser)]
#[command(about = "Create N idle test-agents and report the RSS they cost")]
struct Cli {
    /// How many agents to create.
    #[arg(long, default_value_t = 100_000)]
    agents: usize,
}

fn rss_bytes() -> anyhow::Result<u64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    Ok(caxton_runtime::internals::parse_rss_bytes(&status)?)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut cfg = Config::default();
    cfg.server.max_agents = cli.agents.max(1);
    // Memory of agents in the registry, not of a store under ./data.
    cfg.server.persist_agents = false;
    let metrics = Arc::new(Metrics::new(&cfg.observability.metrics)?);
    let rt = Runtime::new(&cfg, metrics, Tracing::off())?;
    let ty = rt.resolve_type(AgentSource::Builtin("test-agent".into()))?;
    let before = rss_bytes()?;
    for _ in 0..cli.agents {
        rt.create_agent(ty.clone(), None, Some(r#"{"test":true}"#.into()))
            .map_err(|(_, e)| e)?;
    }
    let after = rss_bytes()?;
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "agents={} rss_before={:.1}MiB rss_after={:.1}MiB delta={:.1}MiB per_agent={}B",
        rt.agent_count(),
        mib(before),
        mib(after),
        mib(after - before),
        (after - before) / cli.agents.max(1) as u64
    );
    Ok(())
}
