//! The `engine` binary: parse flags, install logging, bind, run until SIGINT/SIGTERM.

use anyhow::Context;
use clap::Parser;
use engine::cli::{Cli, Command};
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;
use tracing::info;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Command::Serve(args) => serve(&args),
    }
}

fn serve(args: &engine::cli::ServeArgs) -> anyhow::Result<()> {
    let config = args.to_config()?;
    // A panic is a bug; a server missing a worker would keep accepting connections it can
    // never serve. Report it and exit, so that a supervisor restarts a whole server.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |panic| {
        default_hook(panic);
        tracing::error!(%panic, "a thread panicked; exiting");
        std::process::exit(70);
    }));
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => info!(limit = n, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }
    let mut signals =
        Signals::new([SIGINT, SIGTERM, SIGUSR1]).context("installing signal handlers")?;
    let listener =
        engine::server::bind(args.listen).with_context(|| format!("binding {}", args.listen))?;
    let workers = config.workers;
    let handle = engine::server::spawn(listener, config).context("starting the server")?;
    info!(addr = %handle.local_addr(), workers, "listening for NATS clients");
    for signal in signals.forever() {
        if signal == SIGUSR1 {
            for (i, s) in handle.worker_stats().iter().enumerate() {
                info!(worker = i, ?s, "counters");
            }
            continue;
        }
        break;
    }
    info!("shutting down");
    let per_worker = handle.worker_stats();
    let total = handle.shutdown().context("shutting down")?;
    for (i, s) in per_worker.iter().enumerate() {
        info!(worker = i, ?s, "final counters");
    }
    info!(?total, "stopped");
    Ok(())
}
