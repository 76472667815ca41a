//! The result of one run: every figure, self-described (machine, revision, command line,
//! config), as JSON for `results/` and as a short human summary.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::chat::ChatSetup;
use crate::config::Resolved;
use crate::stats::{LatencySummary, PercentileRow};
use crate::sysinfo::{GitInfo, Machine, ProcSample};
use crate::Error;

/// Version of the JSON layout; bump when a field changes meaning.
pub const SCHEMA: &str = "loadgen-run/1";

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Layout version ([`SCHEMA`]).
    pub schema: String,
    /// The run's label (from `--label`, or derived from the scenario).
    pub label: String,
    /// UTC date and time the run started (`YYYY-MM-DDTHH:MM:SSZ`).
    pub started_utc: String,
    /// Source revision.
    pub git: GitInfo,
    /// Machine.
    pub machine: Machine,
    /// The full command line that reproduces the run.
    pub command_line: String,
    /// The scenario with every default filled in (`config.chat`: rooms of the chat layer).
    pub config: Resolved,
    /// How the chat rooms were set up (`--chat` runs; `null` otherwise).
    pub chat_setup: Option<ChatSetup>,
    /// Connections.
    pub connections: Connections,
    /// Publishing.
    pub publish: Publish,
    /// Deliveries.
    pub deliveries: Deliveries,
    /// End-to-end latency from each message's scheduled send time to each recipient.
    pub latency: Latency,
    /// Loss, duplicates and reordering from sequence numbers.
    pub integrity: Integrity,
    /// Connections the server closed during the run.
    pub disconnects: Disconnects,
    /// The server's CPU and memory (with `--server-pid`).
    pub server: Option<ProcessFigures>,
    /// This process's CPU and memory.
    pub loadgen: Option<ProcessFigures>,
    /// One entry per second of the run (warmup, measurement and drain).
    pub timeline: Vec<Second>,
}

/// Connection figures.
#[derive(Debug, Clone, Serialize)]
pub struct Connections {
    /// Connections opened and confirmed (subscribers plus publishers).
    pub made: usize,
    /// Subscriber connections.
    pub subscribers: usize,
    /// Publisher connections.
    pub publishers: usize,
    /// Seconds from the first connect to the last confirmation.
    pub connect_secs: f64,
    /// Connections confirmed per second.
    pub per_sec: f64,
}

/// Publishing figures.
#[derive(Debug, Clone, Serialize)]
pub struct Publish {
    /// `open` (scheduled) or `closed` (`--max`, windowed).
    pub mode: String,
    /// Offered publishes/s (open loop only).
    pub offered_per_sec: Option<f64>,
    /// Publishes scheduled inside the measurement window and sent, per second.
    pub achieved_per_sec: f64,
    /// Publishes scheduled inside the measurement window and sent.
    pub sent_in_window: u64,
    /// Publishes sent in total (warmup included).
    pub sent_total: u64,
    /// Scheduled publishes dropped because the server stopped reading (or the publisher was
    /// disconnected).
    pub dropped: u64,
    /// How late the load generator queued each window message after its scheduled time, in
    /// microseconds (zero in closed loop, where the send time is the schedule). This is part
    /// of every open-loop latency: if it is large, the load generator, not the server, was
    /// behind.
    pub send_lag: LatencySummary,
}

/// Delivery figures (measurement window only).
#[derive(Debug, Clone, Serialize)]
pub struct Deliveries {
    /// Deliveries the window's publishes should cause (each to every member of its room).
    pub expected: u64,
    /// Distinct deliveries received of messages scheduled inside the window.
    pub received: u64,
    /// `received` per second of the window.
    pub per_sec: f64,
    /// Payload bytes of `received` per second of the window.
    pub payload_bytes_per_sec: f64,
    /// Distinct deliveries received in total, warmup included.
    pub received_total: u64,
    /// Seconds spent waiting for in-flight deliveries after publishing stopped.
    pub drain_secs: f64,
}

/// Latency figures.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// What the latency is measured from.
    pub measured_from: String,
    /// Headline percentiles, in microseconds.
    pub summary: LatencySummary,
    /// The percentile table.
    pub percentiles: Vec<PercentileRow>,
}

/// Sequence-number accounting, summed over (publisher, subscriber) pairs.
#[derive(Debug, Clone, Serialize)]
pub struct Integrity {
    /// Pairs tracked.
    pub pairs: u64,
    /// Window messages never delivered to a subscriber that should have had them.
    pub lost: u64,
    /// Pairs that lost at least one message.
    pub pairs_with_loss: u64,
    /// Largest loss of one pair.
    pub max_pair_loss: u64,
    /// Deliveries of a sequence number already received.
    pub duplicates: u64,
    /// Deliveries that arrived after a later sequence number (filled a gap).
    pub reordered: u64,
    /// Sequence numbers skipped at the time (later filled or lost).
    pub gaps: u64,
    /// Payloads without a valid stamp.
    pub bad_payloads: u64,
}

/// Disconnections by the server.
#[derive(Debug, Clone, Serialize)]
pub struct Disconnects {
    /// Subscriber connections the server closed mid-run. In these scenarios nothing but a
    /// slow-consumer cut-off closes a subscriber (nats-server and Redis close without an
    /// error message), so this is the slow-consumer count.
    pub slow_consumer: u64,
    /// Of those, how many were announced with an `-ERR` naming a slow consumer.
    pub slow_consumer_errs: u64,
    /// Publisher connections the server closed mid-run.
    pub publishers: u64,
    /// The first few errors or close reasons seen.
    pub errors: Vec<String>,
}

/// CPU and memory of a process over the measurement window.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessFigures {
    /// Process id.
    pub pid: u32,
    /// CPU time over the window divided by its length (100 = one core busy).
    pub cpu_percent: f64,
    /// RSS at the end of the window, in bytes.
    pub rss_bytes: u64,
    /// Largest RSS sampled (once per second), in bytes.
    pub rss_peak_bytes: u64,
}

impl ProcessFigures {
    /// A process's figures between two samples `window_secs` apart; `peak_rss_bytes` is the
    /// largest RSS sampled in between (0 if not sampled).
    pub fn over(
        pid: u32,
        begin: ProcSample,
        end: ProcSample,
        window_secs: f64,
        peak_rss_bytes: u64,
    ) -> ProcessFigures {
        ProcessFigures {
            pid,
            cpu_percent: 100.0 * (end.cpu_secs - begin.cpu_secs) / window_secs.max(1e-9),
            rss_bytes: end.rss_bytes,
            rss_peak_bytes: peak_rss_bytes.max(end.rss_bytes),
        }
    }
}

/// One second of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Second {
    /// End of this second, in seconds since the start of publishing.
    pub t: u64,
    /// `warmup`, `measure` or `drain`.
    pub phase: String,
    /// Publishes sent in this second.
    pub sent: u64,
    /// Deliveries received in this second.
    pub delivered: u64,
    /// p99 latency of this second's deliveries, in microseconds.
    pub p99_us: f64,
    /// Largest latency of this second's deliveries, in microseconds.
    pub max_us: f64,
}

impl Report {
    /// The human summary.
    pub fn summary(&self) -> String {
        let c = &self.config;
        let l = &self.latency.summary;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "loadgen {} -> {} ({:?}): {} users in {} rooms, {} publishers, {} B payload",
            self.label, c.url, c.protocol, c.users, c.rooms, c.publishers, c.payload
        );
        let _ = writeln!(s, "  scenario     {}", self.scenario());
        let _ = writeln!(s, "  threads      {}", c.threads_note);
        let _ = writeln!(
            s,
            "  connections  {} in {:.2} s ({:.0}/s)",
            self.connections.made, self.connections.connect_secs, self.connections.per_sec
        );
        let offered = match self.publish.offered_per_sec {
            Some(r) => format!("offered {r:.0}/s"),
            None => format!("closed loop, window {}", c.window),
        };
        let _ = writeln!(
            s,
            "  publish      {offered}, achieved {:.0}/s ({} in {:.1} s window, {} dropped)",
            self.publish.achieved_per_sec,
            self.publish.sent_in_window,
            c.duration,
            self.publish.dropped
        );
        if self.publish.offered_per_sec.is_some() {
            let lag = &self.publish.send_lag;
            let _ = writeln!(
                s,
                "  send lag     p50 {}  p99 {}  max {}  (how late loadgen queued messages)",
                fmt_us(lag.p50_us),
                fmt_us(lag.p99_us),
                fmt_us(lag.max_us)
            );
        }
        let _ = writeln!(
            s,
            "  deliveries   {:.0}/s, {:.1} MB/s payload ({} of {} expected)",
            self.deliveries.per_sec,
            self.deliveries.payload_bytes_per_sec / 1e6,
            self.deliveries.received,
            self.deliveries.expected
        );
        let _ = writeln!(
            s,
            "  latency      p50 {}  p90 {}  p99 {}  p99.9 {}  p99.99 {}  max {}  (from {})",
            fmt_us(l.p50_us),
            fmt_us(l.p90_us),
            fmt_us(l.p99_us),
            fmt_us(l.p99_9_us),
            fmt_us(l.p99_99_us),
            fmt_us(l.max_us),
            self.latency.measured_from
        );
        let i = &self.integrity;
        let _ = writeln!(
            s,
            "  integrity    lost {} ({} of {} pairs), duplicates {}, reordered {}",
            i.lost, i.pairs_with_loss, i.pairs, i.duplicates, i.reordered
        );
        let _ = writeln!(
            s,
            "  disconnects  {} slow consumers ({} announced), {} publishers",
            self.disconnects.slow_consumer,
            self.disconnects.slow_consumer_errs,
            self.disconnects.publishers
        );
        if let Some(sv) = &self.server {
            let _ = writeln!(
                s,
                "  server       pid {}: CPU {:.0} %, RSS {:.1} MB (peak {:.1} MB)",
                sv.pid,
                sv.cpu_percent,
                sv.rss_bytes as f64 / 1e6,
                sv.rss_peak_bytes as f64 / 1e6
            );
        }
        if let Some(lg) = &self.loadgen {
            let _ = writeln!(
                s,
                "  loadgen      CPU {:.0} %, RSS {:.1} MB",
                lg.cpu_percent,
                lg.rss_bytes as f64 / 1e6
            );
        }
        s
    }

    /// One line on what the rooms were: plain subjects or rooms of the chat layer.
    pub fn scenario(&self) -> String {
        if !self.config.chat {
            return "plain subjects room.<r>".to_string();
        }
        let mut s = "chat: rooms $CHAT.MSG.lg<r> of the chat layer, users u<id>, deliveries \
                     stamped by the server (HMSG)"
            .to_string();
        if let Some(setup) = &self.chat_setup {
            s += &format!(
                "; {} rooms created, {} already existed",
                setup.rooms_created, setup.rooms_existed
            );
        }
        s
    }

    /// Writes the JSON into `dir` as `<date>-<label>-<time>.json`; returns its path.
    pub fn write_json(&self, dir: &Path) -> Result<PathBuf, Error> {
        write_json(self, &self.label, dir)
    }
}

/// Writes `report` as pretty JSON into `dir` as `<date>-<label>-<time>.json` (`-2`, `-3`, …
/// if taken: results are added, never overwritten); returns its path.
pub fn write_json<T: Serialize>(report: &T, label: &str, dir: &Path) -> Result<PathBuf, Error> {
    std::fs::create_dir_all(dir)?;
    let (date, time) = crate::sysinfo::utc_stamp();
    let name: String = label
        .chars()
        .map(|ch| {
            if ch.is_ascii_alphanumeric() || ch == '-' {
                ch
            } else {
                '_'
            }
        })
        .collect();
    let mut path = dir.join(format!("{date}-{name}-{time}.json"));
    let mut n = 1;
    while path.exists() {
        n += 1;
        path = dir.join(format!("{date}-{name}-{time}-{n}.json"));
    }
    let json =
        serde_json::to_string_pretty(report).map_err(|e| Error::Io(std::io::Error::other(e)))?;
    std::fs::write(&path, json + "\n")?;
    Ok(path)
}

/// Formats microseconds with a unit that keeps 3 significant digits readable.
pub fn fmt_us(us: f64) -> String {
    if us >= 1_000_000.0 {
        format!("{:.2}s", us / 1e6)
    } else if us >= 1000.0 {
        format!("{:.2}ms", us / 1000.0)
    } else {
        format!("{us:.0}us")
    }
}
