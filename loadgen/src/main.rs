//! The `loadgen` binary: parses the command line and calls the library.
//!
//! `loadgen [run] [flags]` runs one scenario (`run` is the default, so `loadgen --users 10000`
//! works); `loadgen compare` runs the scenario set against the engine, nats-server and Redis;
//! `loadgen js` measures JetStream (confirmed publishes, or a pull consumer's drain).

use clap::{Parser, Subcommand};

use loadgen::compare::CompareArgs;
use loadgen::js::JsArgs;
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
    /// Measure JetStream: confirmed publishes with W acks in flight, or a pull consumer's
    /// drain with explicit acks.
    Js(JsArgs),
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
        Some(Cmd::Js(mut args)) => {
            args.command_line = command_line;
            let report = loadgen::js::run(&args)?;
            print!("{}", report.summary());
        }
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
