//! The peer for caxton-bench's generator-efficiency benchmark: a plain goose scenario (the
//! POST /api/agents of the Caxton Monitoring and Observability Guide's k6 script, no think
//! time) with goose's own metrics, nothing else. caxton-bench must cost no more CPU per
//! request than this.

use anyhow::Context;
use clap::Parser;
use goose::config::GooseConfiguration;
use goose::prelude::*;

#[derive(Parser)]
#[command(about = "Bare goose load: N users POSTing /api/agents with no think time")]
struct Cli {
    /// Target base URL (loopback).
    #[arg(long, default_value = "http://127.0.0.1:18082")]
    target: String,
    /// Virtual users.
    #[arg(long, default_value_t = 50)]
    users: usize,
    /// Run time in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: usize,
}

async fn create_agent(user: &mut GooseUser) -> TransactionResult {
    user.post(
        "/api/agents",
        r#"{"agent_type":"test-agent","config":{"test":true}}"#,
    )
    .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut config = GooseConfiguration::default();
    config.host = Some(cli.target);
    config.users = Some(cli.users);
    config.increase_rate = Some(cli.users.to_string());
    config.run_time = Some(cli.seconds.to_string());
    config.no_telnet = true;
    config.no_websocket = true;
    config.quiet = 1;
    let metrics = GooseAttack::initialize_with_config(config)
        .context("goose set-up")?
        .register_scenario(scenario!("bare").register_transaction(transaction!(create_agent)))
        .execute()
        .await
        .context("goose run")?;
    let requests: usize = metrics
        .requests
        .values()
        .map(|r| r.success_count + r.fail_count)
        .sum();
    println!("bare-goose requests={requests}");
    Ok(())
}
