//! The `engine` binary: parse flags, install logging, bind, run until SIGINT/SIGTERM or the
//! end of lame-duck mode (SIGUSR2).

use anyhow::Context;
use clap::Parser;
use engine::cli::{Cli, Command};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::iterator::Signals;
use tracing::{info, warn};

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
    let signals = Signals::new([SIGINT, SIGTERM, SIGUSR1, SIGUSR2, SIGHUP])
        .context("installing signal handlers")?;
    let listener =
        engine::server::bind(args.listen).with_context(|| format!("binding {}", args.listen))?;
    let workers = config.workers;
    let handle = engine::server::spawn(listener, config).context("starting the server")?;
    info!(addr = %handle.local_addr(), workers, "listening for NATS clients");
    // Signals are handled on their own thread, so that this one can wait for the server to
    // stop, whether a signal stopped it or lame-duck mode ran to its end.
    let control = handle.control();
    let closer = signals.handle();
    let on_signals = {
        let control = control.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || handle_signals(signals, &control))
            .context("starting the signal thread")?
    };
    let total = handle.wait().context("running the server")?;
    closer.close();
    let _ = on_signals.join();
    for (i, s) in control.worker_stats().iter().enumerate() {
        info!(worker = i, ?s, "final counters");
    }
    info!(?total, "stopped");
    Ok(())
}

/// What each signal does. None of those an operator sends to nats-server stops the server
/// abruptly: SIGINT/SIGTERM shut down gracefully, SIGUSR2 enters lame-duck mode, SIGUSR1
/// logs counters (nats-server reopens its log file), SIGHUP is logged and ignored
/// (nats-server reloads its config file; there is none here).
fn handle_signals(mut signals: Signals, control: &engine::server::Control) {
    for signal in signals.forever() {
        match signal {
            SIGUSR1 => {
                for (i, s) in control.worker_stats().iter().enumerate() {
                    info!(worker = i, ?s, "counters");
                }
            }
            SIGUSR2 => {
                info!("SIGUSR2: entering lame duck mode");
                control.lame_duck();
            }
            SIGHUP => warn!(
                "SIGHUP: no config file to reload (engine serve takes flags only); nothing changed"
            ),
            _ => {
                info!("shutting down");
                control.shutdown();
                return;
            }
        }
    }
}
