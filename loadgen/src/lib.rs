//! `loadgen`: an open-loop load generator that measures fan-out latency and throughput of a
//! pub/sub server — the engine, nats-server, or Redis — with one instrument.
//!
//! Users are spread over rooms; each subscribes to its room; some publish to theirs at a
//! scheduled rate. Every payload carries its scheduled send time, its publisher and a
//! sequence number, so each delivery yields a latency measured from when the message *should*
//! have been sent (coordinated omission avoided) and loss, duplicates and reordering per
//! (publisher, subscriber) pair.
//!
//! # Layout
//! - [`config`]: the scenario (the `loadgen run` flags) and its resolution.
//! - [`chat`]: the chat scenario (`--chat`): names, requests, room creation, reply checks.
//! - [`schedule`]: the open-loop schedule and the closed-loop in-flight window.
//! - [`payload`]: the stamp at the front of every payload.
//! - [`seq`]: sequence-gap accounting per (publisher, subscriber).
//! - [`stats`]: HdrHistogram helpers: merge, summaries, percentile table.
//! - [`resp`]: the small RESP2 codec used to drive Redis.
//! - `worker`: one mio thread owning a share of the connections.
//! - [`report`]: the per-run report, its JSON and its human summary.
//! - [`sysinfo`]: machine, git revision and `/proc` samples.
//! - [`compare`]: runs the scenario set against the engine, nats-server and Redis.
//! - [`js`]: `loadgen js`, JetStream's confirmed publishes and pull-consumer drain.
//! - [`svg`]: the hand-written latency-percentile plot.
//! - [`limits`]: every cap and default, with its reason.
//!
//! # Never
//! loadgen never parses NATS itself (it uses `net::proto`), never measures latency from the
//! actual send time in open-loop mode, and has no unsafe code.
#![forbid(unsafe_code)]

pub mod chat;
pub mod compare;
pub mod config;
pub mod js;
pub mod limits;
pub mod payload;
pub mod report;
pub mod resp;
pub mod schedule;
pub mod seq;
pub mod stats;
pub mod svg;
pub mod sysinfo;
mod worker;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;

pub use config::{Config, Protocol};
pub use report::Report;

use crate::report::{
    Connections, Deliveries, Disconnects, Integrity, Latency, ProcessFigures, Publish, Second,
};
use crate::stats::{merge, new_histogram, percentile_table, summarise};
use crate::worker::{Clock, Cmd, Plan, Report as ThreadReport, ThreadResult};

/// Why a run failed.
#[derive(Debug, Error)]
pub enum Error {
    /// The scenario makes no sense.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The open-file limit cannot be raised far enough.
    #[error("{0}")]
    FileLimit(String),
    /// Connections could not be opened or confirmed.
    #[error("connecting: {0}")]
    Connect(String),
    /// The chat rooms could not be set up (`--chat`).
    #[error("chat setup: {0}")]
    Chat(String),
    /// A JetStream request failed, was refused, or the measurement went wrong
    /// (`loadgen js`).
    #[error("jetstream: {0}")]
    Js(String),
    /// A load-generator thread stopped unexpectedly.
    #[error("a load-generator thread stopped: {0}")]
    Thread(String),
    /// An I/O error outside any one connection.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Runs one scenario and returns its report. Writes the JSON into `config.out` unless
/// `config.no_save`, and prints progress on stderr unless `config.quiet`.
pub fn run(config: &Config) -> Result<Report, Error> {
    let resolved = Arc::new(config.resolve()?);
    let progress = !config.quiet;
    let say = |line: String| {
        if progress {
            eprintln!("{line}");
        }
    };
    let conns = resolved.users + resolved.publishers;
    raise_file_limit(conns as u64 + limits::SPARE_FDS, &say)?;
    let started = sysinfo::utc_started();
    let label = config
        .label
        .clone()
        .unwrap_or_else(|| default_label(&resolved));
    say(format!(
        "loadgen {label}: {} users, {} {}rooms, {} publishers, {} -> {}; threads {}",
        resolved.users,
        resolved.rooms,
        if resolved.chat { "chat " } else { "" },
        resolved.publishers,
        match resolved.rate {
            Some(r) => format!("{r} publishes/s offered"),
            None => format!("closed loop (window {})", resolved.window),
        },
        resolved.url,
        resolved.threads_note
    ));

    // Chat rooms exist before anyone joins them: every room is created (and answered)
    // before the first connection of the run opens.
    let chat_setup = if resolved.chat {
        let setup = chat::create_rooms(resolved.addr, resolved.rooms)?;
        say(format!(
            "  chat rooms   {} created, {} already existed ({:.2} s)",
            setup.rooms_created, setup.rooms_existed, setup.create_secs
        ));
        Some(setup)
    } else {
        None
    };

    // Spread connections over threads round-robin.
    let threads = resolved.threads;
    let mut plans = vec![Plan::default(); threads];
    // User u and publisher u land on the same thread, so a publisher's window can be acked
    // by its own user's subscription without crossing threads.
    for u in 0..resolved.users {
        plans[u % threads]
            .subscribers
            .push((u as u32, u % resolved.rooms));
    }
    for p in 0..resolved.publishers {
        plans[p % threads].publishers.push(p as u32);
    }
    let clock = Clock::new();
    let (tx, rx) = flume::unbounded();
    let mut cmd_txs = Vec::new();
    let mut handles = Vec::new();
    let connect_began = clock.now_ns();
    for (t, plan) in plans.into_iter().enumerate() {
        let (ctx, crx) = flume::unbounded();
        cmd_txs.push(ctx);
        let tx = tx.clone();
        let cfg = Arc::clone(&resolved);
        let handle = std::thread::Builder::new()
            .name(format!("loadgen-{t}"))
            .spawn(move || worker::run_thread(t, plan, cfg, clock, crx, tx))?;
        handles.push(handle);
    }
    drop(tx);
    let mut coordinator = Coordinator {
        rx,
        cmd_txs,
        handles,
    };
    let outcome = coordinator.drive(&resolved, clock, connect_began, &say);
    coordinator.stop();
    let mut outcome = outcome?;
    outcome.started = started;
    let report = build_report(config, &resolved, label, outcome, chat_setup);
    if !config.no_save {
        let path = report.write_json(&config.out)?;
        say(format!("  wrote        {}", path.display()));
    }
    Ok(report)
}

/// The label of a run without `--label`.
fn default_label(r: &config::Resolved) -> String {
    let load = match r.rate {
        Some(rate) => format!("{rate}ps"),
        None => "max".to_string(),
    };
    format!(
        "{:?}{}-{}u-{}r-{}p-{}-{}B",
        r.protocol,
        if r.chat { "-chat" } else { "" },
        r.users,
        r.rooms,
        r.publishers,
        load,
        r.payload
    )
    .to_lowercase()
}

/// Raises the soft open-file limit to `need`, or explains why it cannot.
pub(crate) fn raise_file_limit(need: u64, say: &dyn Fn(String)) -> Result<(), Error> {
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    if soft >= need {
        return Ok(());
    }
    let got = rlimit::increase_nofile_limit(need)?;
    if got < need {
        return Err(Error::FileLimit(format!(
            "this run needs {need} open files but the hard limit is {hard} (soft was {soft}); \
             use fewer --users/--publishers or raise the hard limit (limits.conf, or \
             `ulimit -Hn` as root before starting)"
        )));
    }
    say(format!(
        "raised the open-file soft limit from {soft} to {got}"
    ));
    Ok(())
}

/// Everything the coordinator gathered.
struct Outcome {
    started: String,
    connect_secs: f64,
    window_secs: f64,
    results: Vec<ThreadResult>,
    sent_in_window: u64,
    sent_total: u64,
    dropped: u64,
    timeline: Vec<Second>,
    server: Option<ProcessFigures>,
    loadgen: Option<ProcessFigures>,
}

struct Coordinator {
    rx: flume::Receiver<ThreadReport>,
    cmd_txs: Vec<flume::Sender<Cmd>>,
    handles: Vec<std::thread::JoinHandle<()>>,
}

/// Per-second figures gathered from the threads.
#[derive(Default)]
struct SecondAcc {
    threads: usize,
    sent: u64,
    delivered: u64,
    hist: Option<hdrhistogram::Histogram<u64>>,
}

impl Coordinator {
    fn recv(&self, timeout: Duration) -> Result<Option<ThreadReport>, Error> {
        match self.rx.recv_timeout(timeout) {
            Ok(ThreadReport::Failed(e)) => Err(e),
            Ok(r) => Ok(Some(r)),
            Err(flume::RecvTimeoutError::Timeout) => Ok(None),
            Err(flume::RecvTimeoutError::Disconnected) => {
                Err(Error::Thread("every thread exited early".to_string()))
            }
        }
    }

    fn broadcast(&self, make: impl Fn() -> Cmd) {
        for tx in &self.cmd_txs {
            let _ = tx.send(make());
        }
    }

    fn stop(&mut self) {
        self.broadcast(|| Cmd::Abort);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }

    fn drive(
        &mut self,
        cfg: &config::Resolved,
        clock: Clock,
        connect_began: u64,
        say: &dyn Fn(String),
    ) -> Result<Outcome, Error> {
        let threads = cfg.threads;
        let total = cfg.users + cfg.publishers;
        // Phase 1: connections.
        let mut confirmed = vec![0usize; threads];
        let mut ready = 0;
        let mut last_line = Instant::now();
        while ready < threads {
            match self.recv(Duration::from_millis(200))? {
                Some(ThreadReport::Confirmed {
                    thread,
                    confirmed: n,
                }) => confirmed[thread] = n,
                Some(ThreadReport::Ready { thread }) => {
                    ready += 1;
                    let _ = thread;
                }
                Some(_) | None => {}
            }
            if last_line.elapsed() >= Duration::from_secs(1) {
                last_line = Instant::now();
                let done: usize = confirmed.iter().sum();
                say(format!(
                    "  connecting   {done}/{total} confirmed ({:.1} s)",
                    (clock.now_ns() - connect_began) as f64 / 1e9
                ));
            }
        }
        let connect_secs = (clock.now_ns() - connect_began) as f64 / 1e9;
        say(format!(
            "  connected    {total} connections confirmed in {connect_secs:.2} s"
        ));

        // Phase 2: publish.
        let start_ns = clock.now_ns() + limits::START_DELAY_NS;
        let measure_ns = start_ns + (cfg.warmup * 1e9) as u64;
        let end_ns = measure_ns + (cfg.duration * 1e9) as u64;
        self.broadcast(|| Cmd::Start {
            start_ns,
            measure_ns,
            end_ns,
        });
        let mut seconds: BTreeMap<u64, SecondAcc> = BTreeMap::new();
        let mut timeline = Vec::new();
        let mut sent_in_window = vec![0u64; cfg.publishers];
        let mut published = 0;
        let mut sent_total = 0;
        let mut dropped = 0;
        let mut server_begin = None;
        let mut server_peak = 0;
        let mut self_begin = None;
        let mut results = Vec::new();
        let mut drain_sent = false;
        let mut server_cache: Option<(Option<ProcessFigures>, Option<ProcessFigures>)> = None;
        let phase = |t: u64| {
            let at = start_ns + t * 1_000_000_000;
            if at <= measure_ns {
                "warmup"
            } else if at <= end_ns {
                "measure"
            } else {
                "drain"
            }
        };
        while results.len() < threads {
            let now = clock.now_ns();
            if server_begin.is_none() && now >= measure_ns {
                server_begin = Some((now, cfg_server_sample(cfg)));
                self_begin = sysinfo::sample_self();
            }
            let report = self.recv(Duration::from_millis(100))?;
            match report {
                Some(ThreadReport::Tick(tick)) => {
                    let acc = seconds.entry(tick.second).or_default();
                    acc.threads += 1;
                    acc.sent += tick.sent;
                    acc.delivered += tick.delivered;
                    match &mut acc.hist {
                        Some(h) => merge(h, &tick.hist),
                        None => acc.hist = Some(tick.hist),
                    }
                    if acc.threads == threads {
                        if let Some(acc) = seconds.remove(&tick.second) {
                            let hist = acc.hist.unwrap_or_else(new_histogram);
                            let s = summarise(&hist);
                            let sec = Second {
                                t: tick.second,
                                phase: phase(tick.second).to_string(),
                                sent: acc.sent,
                                delivered: acc.delivered,
                                p99_us: s.p99_us,
                                max_us: s.max_us,
                            };
                            say(format!(
                                "  [{:>3}s {:<7}] publish {:>8}/s  deliveries {:>9}/s  p99 {:>9}  max {:>9}",
                                sec.t,
                                sec.phase,
                                sec.sent,
                                sec.delivered,
                                report::fmt_us(sec.p99_us),
                                report::fmt_us(sec.max_us)
                            ));
                            if let Some(pid) = cfg_server_pid(cfg) {
                                if let Some(s) = sysinfo::sample(pid) {
                                    server_peak = server_peak.max(s.rss_bytes);
                                }
                            }
                            timeline.push(sec);
                        }
                    }
                }
                Some(ThreadReport::Published {
                    sent_in_window: sent,
                    sent_total: st,
                    dropped: d,
                }) => {
                    for (p, n) in sent {
                        if let Some(slot) = sent_in_window.get_mut(p as usize) {
                            *slot = n;
                        }
                    }
                    sent_total += st;
                    dropped += d;
                    published += 1;
                }
                Some(ThreadReport::Done(r)) => results.push(*r),
                Some(_) | None => {}
            }
            if published == threads && !drain_sent {
                drain_sent = true;
                let shared = Arc::new(sent_in_window.clone());
                self.broadcast(|| Cmd::Drain {
                    sent_in_window: Arc::clone(&shared),
                });
                // The window's CPU figures end when publishing ends.
                let now = clock.now_ns();
                let window_secs = (now.saturating_sub(measure_ns)) as f64 / 1e9;
                let server_end = cfg_server_sample(cfg);
                let server = match (cfg_server_pid(cfg), server_begin, server_end) {
                    (Some(pid), Some((_, Some(b))), Some(e)) => {
                        Some(ProcessFigures::over(pid, b, e, window_secs, server_peak))
                    }
                    _ => None,
                };
                let loadgen = match (self_begin, sysinfo::sample_self()) {
                    (Some(b), Some(e)) => Some(ProcessFigures::over(
                        std::process::id(),
                        b,
                        e,
                        window_secs,
                        0,
                    )),
                    _ => None,
                };
                server_cache = Some((server, loadgen));
            }
        }
        let (server, loadgen) = server_cache.take().unwrap_or((None, None));
        // Flush seconds some thread did not report (it finished first).
        for (t, acc) in seconds {
            let hist = acc.hist.unwrap_or_else(new_histogram);
            let s = summarise(&hist);
            timeline.push(Second {
                t,
                phase: phase(t).to_string(),
                sent: acc.sent,
                delivered: acc.delivered,
                p99_us: s.p99_us,
                max_us: s.max_us,
            });
        }
        Ok(Outcome {
            started: String::new(),
            connect_secs,
            window_secs: cfg.duration,
            results,
            sent_in_window: sent_in_window.iter().sum(),
            sent_total,
            dropped,
            timeline,
            server,
            loadgen,
        })
    }
}

fn cfg_server_pid(cfg: &config::Resolved) -> Option<u32> {
    cfg.server_pid
}

fn cfg_server_sample(cfg: &config::Resolved) -> Option<sysinfo::ProcSample> {
    cfg.server_pid.and_then(sysinfo::sample)
}

fn build_report(
    config: &Config,
    r: &config::Resolved,
    label: String,
    o: Outcome,
    chat_setup: Option<chat::ChatSetup>,
) -> Report {
    let mut hist = new_histogram();
    let sum = |f: fn(&ThreadResult) -> u64| o.results.iter().map(f).sum::<u64>();
    let delivered = sum(|t| t.delivered_in_window);
    let expected = sum(|t| t.expected_in_window);
    let bytes = sum(|t| t.bytes_in_window);
    let delivered_total = sum(|t| t.delivered_total);
    let integrity = Integrity {
        pairs: sum(|t| t.pairs),
        lost: sum(|t| t.lost),
        pairs_with_loss: sum(|t| t.pairs_with_loss),
        max_pair_loss: o.results.iter().map(|t| t.max_pair_loss).max().unwrap_or(0),
        duplicates: sum(|t| t.duplicates),
        reordered: sum(|t| t.reordered),
        gaps: sum(|t| t.gaps),
        bad_payloads: sum(|t| t.bad_payloads),
    };
    let disconnects = Disconnects {
        slow_consumer: sum(|t| t.sub_disconnects),
        slow_consumer_errs: sum(|t| t.slow_consumer_errs),
        publishers: sum(|t| t.pub_disconnects),
        errors: o
            .results
            .iter()
            .flat_map(|t| t.errors.iter().cloned())
            .take(16)
            .collect(),
    };
    let mut lag = new_histogram();
    for t in &o.results {
        merge(&mut hist, &t.hist);
        merge(&mut lag, &t.lag_hist);
    }
    let drain_secs = o.results.iter().map(|t| t.drain_secs).fold(0.0, f64::max);
    let window = o.window_secs.max(1e-9);
    let command_line = if config.command_line.is_empty() {
        equivalent_command(config)
    } else {
        config.command_line.join(" ")
    };
    Report {
        schema: report::SCHEMA.to_string(),
        label,
        started_utc: o.started,
        git: sysinfo::git(),
        machine: sysinfo::machine(),
        command_line,
        config: r.clone(),
        chat_setup,
        connections: Connections {
            made: o.results.iter().map(|t| t.connections).sum(),
            subscribers: r.users,
            publishers: r.publishers,
            connect_secs: o.connect_secs,
            per_sec: (r.users + r.publishers) as f64 / o.connect_secs.max(1e-9),
        },
        publish: Publish {
            mode: if r.max { "closed" } else { "open" }.to_string(),
            offered_per_sec: r.rate,
            achieved_per_sec: o.sent_in_window as f64 / window,
            sent_in_window: o.sent_in_window,
            sent_total: o.sent_total,
            dropped: o.dropped,
            send_lag: summarise(&lag),
        },
        deliveries: Deliveries {
            expected,
            received: delivered,
            per_sec: delivered as f64 / window,
            payload_bytes_per_sec: bytes as f64 / window,
            received_total: delivered_total,
            drain_secs,
        },
        latency: Latency {
            measured_from: if r.max {
                "actual send time (closed loop)".to_string()
            } else {
                "scheduled send time (open loop)".to_string()
            },
            summary: summarise(&hist),
            percentiles: percentile_table(&hist),
        },
        integrity,
        disconnects,
        server: o.server,
        loadgen: o.loadgen,
        timeline: o.timeline,
    }
}

/// The `loadgen run` command line equivalent to `config` (for runs started in-process).
pub fn equivalent_command(c: &Config) -> String {
    let mut s = format!("loadgen run --protocol {:?}", c.protocol).to_lowercase();
    if let Some(u) = &c.url {
        s += &format!(" --url {u}");
    }
    s += &format!(" --users {}", c.users);
    if c.chat {
        s += " --chat";
    }
    if let Some(r) = c.rooms {
        s += &format!(" --rooms {r}");
    }
    if let Some(p) = c.publishers {
        s += &format!(" --publishers {p}");
    }
    if c.max {
        s += " --max";
        if let Some(w) = c.window {
            s += &format!(" --window {w}");
        }
    } else {
        s += &format!(" --rate {}", c.rate);
    }
    s += &format!(
        " --payload {} --duration {} --warmup {} --drain {}",
        c.payload, c.duration, c.warmup, c.drain
    );
    if let Some(t) = c.threads {
        s += &format!(" --threads {t}");
    }
    if let Some(l) = &c.label {
        s += &format!(" --label {l}");
    }
    if c.server_pid.is_some() {
        s += " --server-pid <pid>";
    }
    s
}
