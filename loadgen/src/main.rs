//! The `loadgen` binary: parses the command line and calls the library.
//!
//! `loadgen [run] [flags]` runs one scenario (`run` is the default, so `loadgen --users 10000`
//! works); `loadgen compare` runs the scenario set against the engine, nats-server and Redis.

use clap::{Parser, Subcommand};

use loadgen::compare::CompareArgs;
use loadgen::Config;

/// Open-loop fan-out load generator for NATS-protocol servers and Redis pub/sub.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    #[command(flatten)]
    run: Config,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run one scenario (the default).
    Run(Config),
    /// Run the scenario set against the engine, nats-server and Redis.
    Compare(CompareArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let command_line: Vec<String> = std::env::args().collect();
    match cli.command {
        Some(Cmd::Compare(args)) => {
            loadgen::compare::compare(&args, &command_line.join(" "))?;
        }
        Some(Cmd::Run(config)) => run(config, command_line)?,
        None => run(cli.run, command_line)?,
    }
    Ok(())
}

fn run(mut config: Config, command_line: Vec<String>) -> anyhow::Result<()> {
    config.command_line = command_line;
    let report = loadgen::run(&config)?;
    print!("{}", report.summary());
    Ok(())
}
