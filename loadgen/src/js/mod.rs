//! `loadgen js`: JetStream measured through its API over the raw protocol (issue 11).
//!
//! - `--mode publish`: confirmed publishes. One connection publishes `PUB <prefix>.<i>
//!   <inbox>.k.<n> <size>` round-robin over `--subjects` subjects of one stream, each with its
//!   own reply subject, and keeps `--window` W publishes unconfirmed at most. Without
//!   `--rate` that is a **closed loop**: the confirm latency of a message is its PubAck's
//!   arrival minus its actual send time, and a slow confirm holds the next send back, so
//!   coordinated omission is there by construction (the issue asks for exactly this figure);
//!   the report says so. With `--rate R` it is an **open loop**: publish `n` is scheduled at
//!   `n / R` seconds after the start, sent once that time has come, and its latency is
//!   measured from the scheduled time, as the core-NATS runs do; W stays the cap, and a
//!   publish the cap holds back is late and counted. PubAcks that are errors (`{"error":…}`,
//!   or a 503 status when no stream captured the subject) are counted apart and fail the
//!   run unless `--allow-errors`.
//! - `--mode consume`: a durable pull consumer with explicit acks drains the stream, filled
//!   beforehand (`--fill N` confirmed publishes into the purged stream, or a `--mode publish
//!   --keep` run). `--pulls` requests of `--batch` messages each stay outstanding
//!   (`$JS.API.CONSUMER.MSG.NEXT`); every message is acked with `+ACK` on its reply subject
//!   at once. The drain rate is distinct messages received over the time from the first
//!   pull to the last message; the latency is each full batch's, from its request to its
//!   last message.
//!
//! Setup goes through the JetStream API on the same connection: the stream is created if
//! missing (`--storage`, `--max-bytes`), purged before a publish run or a fill, and deleted
//! afterwards unless `--keep`. After a publish run the stream's `STREAM.INFO` is recorded:
//! with nothing else publishing, its message count equals the confirmed publishes.
//!
//! - [`api`]: request subjects and bodies, answers read back.
//! - `client`: the one connection and its request/answer.
//! - [`publish`]: the confirmed-publish loop, windowed (closed) or scheduled (open).
//! - [`consume`]: the pull-consumer drain.
//! - [`report`]: the `loadgen-js/1` JSON and its summary.

pub mod api;
mod client;
pub mod consume;
pub mod publish;
pub mod report;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::limits::{JS_DEFAULT_MAX_BYTES, SPARE_FDS};
use crate::report::Second;
use crate::sysinfo::{self, WindowCpu};
use crate::worker::Clock;
use crate::Error;

pub use report::JsReport;

use self::api::{StreamState, STREAM_NOT_FOUND};
use self::client::Client;
use self::publish::Stop;

/// What `loadgen js` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum JsMode {
    /// Confirmed publishes with a window of PubAcks outstanding.
    Publish,
    /// A durable pull consumer with explicit acks drains the stream.
    Consume,
}

/// Where the stream keeps its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// On disk (the server's fsync policy applies).
    File,
    /// In memory.
    Memory,
}

/// The `loadgen js` flags.
#[derive(Debug, Clone, Serialize, clap::Args)]
pub struct JsArgs {
    /// Server URL (nats://host:port).
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    pub url: String,

    /// What to measure.
    #[arg(long, value_enum, default_value = "publish")]
    pub mode: JsMode,

    /// The stream's name.
    #[arg(long, default_value = "LOADGEN")]
    pub stream: String,

    /// Subject prefix: the stream captures `<prefix>.>`, messages go to `<prefix>.<i>`.
    #[arg(long, default_value = "loadgen")]
    pub prefix: String,

    /// Subjects published to round-robin (`<prefix>.0` … `<prefix>.<N-1>`).
    #[arg(long, default_value_t = 1)]
    pub subjects: usize,

    /// The stream's storage when this run creates it (an existing stream must match).
    #[arg(long, value_enum, default_value = "file")]
    pub storage: Storage,

    /// The stream's `max_bytes` when this run creates it (discard old beyond it).
    #[arg(long, default_value_t = JS_DEFAULT_MAX_BYTES)]
    pub max_bytes: u64,

    /// Payload size in bytes.
    #[arg(long, default_value_t = 128)]
    pub size: usize,

    /// Publishes sent and not yet confirmed, at most (W).
    #[arg(long, default_value_t = 64)]
    pub window: u64,

    /// Publish mode: publish open-loop at this many messages per second (publish `n` is
    /// scheduled at start + n / rate, its latency measured from then; `--window` stays the
    /// cap on PubAcks outstanding) [default: closed loop, as fast as the window allows].
    #[arg(long)]
    pub rate: Option<f64>,

    /// Measured seconds (publish); longest drain (consume).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,

    /// Seconds published before measuring (publish mode; confirmed, not counted).
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,

    /// Longest wait for outstanding PubAcks after publishing stops, and for the consumer's
    /// acks to settle after a drain, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub drain: f64,

    /// Consume mode: purge the stream and fill it with this many confirmed publishes
    /// (window `--window`) before draining [default: drain what the stream holds].
    #[arg(long)]
    pub fill: Option<u64>,

    /// Consume mode: messages asked for per pull request.
    #[arg(long, default_value_t = 256)]
    pub batch: u64,

    /// Consume mode: pull requests outstanding at once.
    #[arg(long, default_value_t = 2)]
    pub pulls: usize,

    /// Consume mode: the durable consumer's name (deleted first if it exists).
    #[arg(long, default_value = "loadgen")]
    pub consumer: String,

    /// Keep the stream (and consumer) afterwards instead of deleting them.
    #[arg(long)]
    pub keep: bool,

    /// Record PubAck errors instead of failing the run on the first report of them.
    #[arg(long)]
    pub allow_errors: bool,

    /// Directory the JSON result is written to.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,

    /// Do not write a JSON result.
    #[arg(long)]
    pub no_save: bool,

    /// A name for this run, used in the file name and the report.
    #[arg(long)]
    pub label: Option<String>,

    /// The server's process id: report its CPU % and RSS (from /proc).
    #[arg(long)]
    pub server_pid: Option<u32>,

    /// How the server under test was started (recorded in the JSON, e.g. its command line
    /// with its fsync mode).
    #[arg(long)]
    pub server_note: Option<String>,

    /// No progress lines on stderr.
    #[arg(long)]
    pub quiet: bool,

    /// The full command line, as recorded in the report (filled in by the binary).
    #[arg(skip)]
    pub command_line: Vec<String>,
}

impl Default for JsArgs {
    fn default() -> JsArgs {
        JsArgs {
            url: "nats://127.0.0.1:4222".to_string(),
            mode: JsMode::Publish,
            stream: "LOADGEN".to_string(),
            prefix: "loadgen".to_string(),
            subjects: 1,
            storage: Storage::File,
            max_bytes: JS_DEFAULT_MAX_BYTES,
            size: 128,
            window: 64,
            rate: None,
            duration: 10.0,
            warmup: 2.0,
            drain: 10.0,
            fill: None,
            batch: 256,
            pulls: 2,
            consumer: "loadgen".to_string(),
            keep: false,
            allow_errors: false,
            out: PathBuf::from("results"),
            no_save: false,
            label: None,
            server_pid: None,
            server_note: None,
            quiet: false,
            command_line: Vec::new(),
        }
    }
}

/// What one phase (a publish run, a fill, a drain) measured.
#[derive(Debug, Clone)]
pub struct Measured<F> {
    /// The figures the JSON shows.
    pub figures: F,
    /// The phase's latencies, in nanoseconds.
    pub hist: Histogram<u64>,
    /// One line per second.
    pub timeline: Vec<Second>,
    /// The server's and this process's CPU over the measured window.
    pub cpu: Option<WindowCpu>,
}

/// The per-second accounting of a phase: counts and latencies since the last second, and
/// the [`Second`] they make once it has passed.
#[derive(Debug)]
pub struct Ticker {
    start_ns: u64,
    next_ns: u64,
    /// What the second's `sent` counts (publishes, pull requests).
    pub sent: u64,
    /// What the second's `delivered` counts (confirmations, messages drained).
    pub delivered: u64,
    hist: Histogram<u64>,
}

impl Ticker {
    /// Seconds counted from `start_ns`.
    pub fn new(start_ns: u64) -> Ticker {
        Ticker {
            start_ns,
            next_ns: start_ns + 1_000_000_000,
            sent: 0,
            delivered: 0,
            hist: crate::stats::new_histogram(),
        }
    }

    /// Records one latency of this second, in nanoseconds.
    pub fn record(&mut self, latency_ns: u64) {
        self.hist.saturating_record(latency_ns);
    }

    /// Once a second has passed at `now`: that second, its phase named by `phase` from its
    /// end time, and the counts started afresh.
    pub fn poll_second(&mut self, now: u64, phase: impl Fn(u64) -> &'static str) -> Option<Second> {
        if now < self.next_ns {
            return None;
        }
        let at = self.next_ns;
        self.next_ns += 1_000_000_000;
        let s = crate::stats::summarise(&self.hist);
        self.hist.reset();
        Some(Second {
            t: (at - self.start_ns) / 1_000_000_000,
            phase: phase(at).to_string(),
            sent: std::mem::take(&mut self.sent),
            delivered: std::mem::take(&mut self.delivered),
            p99_us: s.p99_us,
            max_us: s.max_us,
        })
    }

    /// How long to wait at `now` before the next second is due, at most 100 ms.
    pub fn wait(&self, now: u64) -> std::time::Duration {
        std::time::Duration::from_nanos(self.next_ns.saturating_sub(now).min(100_000_000))
    }
}

/// [`JsArgs`] checked, with the server address resolved.
#[derive(Debug, Clone, Serialize)]
pub struct JsConfig {
    /// The server URL.
    pub url: String,
    /// The resolved address.
    pub addr: SocketAddr,
    /// What was measured.
    pub mode: JsMode,
    /// The stream.
    pub stream: String,
    /// The stream's subjects (`<prefix>.>`).
    pub stream_subjects: String,
    /// Subjects published to round-robin.
    pub subjects: usize,
    /// The stream's storage.
    pub storage: Storage,
    /// The stream's `max_bytes` when created by the run.
    pub max_bytes: u64,
    /// Payload bytes.
    pub size: usize,
    /// PubAcks outstanding at most.
    pub window: u64,
    /// Publishes per second scheduled (publish mode, open loop); `None`: closed loop.
    pub rate: Option<f64>,
    /// Measured seconds (publish), longest drain (consume).
    pub duration: f64,
    /// Warmup seconds (publish).
    pub warmup: f64,
    /// Longest wait for outstanding confirmations, seconds.
    pub drain: f64,
    /// Messages published into the purged stream before draining (consume).
    pub fill: Option<u64>,
    /// Messages per pull request (consume).
    pub batch: u64,
    /// Pull requests outstanding (consume).
    pub pulls: usize,
    /// The durable consumer (consume).
    pub consumer: String,
    /// The stream and consumer were kept.
    pub keep: bool,
    /// PubAck errors were allowed.
    pub allow_errors: bool,
    /// Connections and threads: one of each, leaving the other core of a 2-core machine to
    /// the server.
    pub threads: usize,
    /// How the server was started (`--server-note`).
    pub server_note: Option<String>,
    /// The server's process id, sampled for CPU and RSS.
    pub server_pid: Option<u32>,
}

impl JsArgs {
    /// Checks the flags and resolves the address.
    pub fn resolve(&self) -> Result<JsConfig, Error> {
        let bad = |m: &str| Err(Error::Config(m.to_string()));
        let token_ok = |s: &str| {
            !s.is_empty()
                && !s
                    .bytes()
                    .any(|b| b.is_ascii_whitespace() || matches!(b, b'.' | b'*' | b'>'))
        };
        if !token_ok(&self.stream) || self.stream.contains(['/', '\\']) {
            return bad("--stream must be one subject token (no '.', '*', '>', '/', blanks)");
        }
        if !token_ok(&self.consumer) {
            return bad("--consumer must be one subject token");
        }
        if self.prefix.is_empty()
            || self
                .prefix
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b == b'*' || b == b'>')
            || self.prefix.starts_with('.')
            || self.prefix.ends_with('.')
        {
            return bad("--prefix must be a literal subject (no wildcards, blanks or edge dots)");
        }
        if self.subjects == 0 || self.window == 0 || self.batch == 0 || self.pulls == 0 {
            return bad("--subjects, --window, --batch and --pulls must be at least 1");
        }
        if !(self.duration > 0.0 && self.duration.is_finite()) {
            return bad("--duration must be positive");
        }
        let non_negative = |v: f64| v >= 0.0 && v.is_finite();
        if !non_negative(self.warmup) || !non_negative(self.drain) {
            return bad("--warmup and --drain must be zero or positive");
        }
        if self.fill == Some(0) {
            return bad("--fill must be at least 1");
        }
        if self.fill.is_some() && self.mode != JsMode::Consume {
            return bad("--fill belongs to --mode consume");
        }
        if let Some(rate) = self.rate {
            if self.mode != JsMode::Publish {
                return bad("--rate belongs to --mode publish");
            }
            if !(rate > 0.0 && rate.is_finite()) {
                return bad("--rate must be a positive number of messages per second");
            }
        }
        let host_port = self
            .url
            .split_once("://")
            .map_or(self.url.as_str(), |(_, rest)| rest)
            .trim_end_matches('/');
        let addr = host_port
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| Error::Config(format!("cannot resolve --url {}", self.url)))?;
        Ok(JsConfig {
            url: self.url.clone(),
            addr,
            mode: self.mode,
            stream: self.stream.clone(),
            stream_subjects: format!("{}.>", self.prefix),
            subjects: self.subjects,
            storage: self.storage,
            max_bytes: self.max_bytes,
            size: self.size,
            window: self.window,
            rate: self.rate,
            duration: self.duration,
            warmup: self.warmup,
            drain: self.drain,
            fill: self.fill,
            batch: self.batch,
            pulls: self.pulls,
            consumer: self.consumer.clone(),
            keep: self.keep,
            allow_errors: self.allow_errors,
            threads: 1,
            server_note: self.server_note.clone(),
            server_pid: self.server_pid,
        })
    }

    /// The label of a run without `--label`.
    fn default_label(&self) -> String {
        let storage = match self.storage {
            Storage::File => "file",
            Storage::Memory => "memory",
        };
        match self.mode {
            JsMode::Publish => match self.rate {
                None => format!("js-publish-{storage}-w{}-{}B", self.window, self.size),
                Some(rate) => format!(
                    "js-publish-{storage}-w{}-r{rate}-{}B",
                    self.window, self.size
                ),
            },
            JsMode::Consume => format!(
                "js-consume-{storage}-b{}x{}-{}B",
                self.batch, self.pulls, self.size
            ),
        }
    }
}

/// Runs one JetStream measurement and returns its report. Writes the JSON into `args.out`
/// unless `args.no_save`; prints progress on stderr unless `args.quiet`.
pub fn run(args: &JsArgs) -> Result<JsReport, Error> {
    let cfg = args.resolve()?;
    let progress = !args.quiet;
    let say = |line: String| {
        if progress {
            eprintln!("{line}");
        }
    };
    crate::raise_file_limit(1 + SPARE_FDS, &say)?;
    let label = args.label.clone().unwrap_or_else(|| args.default_label());
    let started_utc = sysinfo::utc_started();
    say(format!(
        "loadgen js {label}: {:?} on stream {} ({}, {:?}), {} B, window {}{} -> {}; one \
         connection, one thread",
        cfg.mode,
        cfg.stream,
        cfg.stream_subjects,
        cfg.storage,
        cfg.size,
        cfg.window,
        cfg.rate
            .map(|r| format!(", open loop at {r}/s"))
            .unwrap_or_default(),
        cfg.url
    ));
    let clock = Clock::new();
    let mut client = Client::connect(cfg.addr)?;
    let created = ensure_stream(&mut client, &cfg)?;
    say(format!(
        "  stream       {} {}",
        cfg.stream,
        if created {
            "created"
        } else {
            "already existed"
        }
    ));
    let outcome = measure(&mut client, &cfg, clock, &say);
    if !cfg.keep {
        // Deleted after a failed run too; its own error says more than a failed clean-up.
        let deleted = client.request_ok(&api::stream_subject("DELETE", &cfg.stream), b"");
        if outcome.is_ok() {
            deleted?;
        }
    }
    let report = JsReport::new(args, cfg, label, started_utc, created, outcome?);
    if let Some(e) = report.refusal() {
        return Err(e);
    }
    if !args.no_save {
        let path = crate::report::write_json(&report, &report.label, &args.out)?;
        say(format!("  wrote        {}", path.display()));
    }
    Ok(report)
}

/// Purges the stream when the mode needs it empty, then publishes or drains.
fn measure(
    client: &mut Client,
    cfg: &JsConfig,
    clock: Clock,
    say: &dyn Fn(String),
) -> Result<report::Outcome, Error> {
    let purge = cfg.mode == JsMode::Publish || cfg.fill.is_some();
    if purge {
        client.request_ok(&api::stream_subject("PURGE", &cfg.stream), b"")?;
    }
    let outcome = match cfg.mode {
        JsMode::Publish => {
            let stop = Stop::Window {
                warmup_secs: cfg.warmup,
                measure_secs: cfg.duration,
                rate_per_sec: cfg.rate,
            };
            let published = publish::run(client, cfg, stop, clock, say)?;
            let after = stream_state(client, &cfg.stream)?;
            report::Outcome::Publish { published, after }
        }
        JsMode::Consume => {
            let fill = match cfg.fill {
                Some(n) => {
                    say(format!(
                        "  filling      {n} confirmed publishes, window {}",
                        cfg.window
                    ));
                    Some(publish::run(client, cfg, Stop::Count(n), clock, say)?)
                }
                None => None,
            };
            let before = stream_state(client, &cfg.stream)?;
            if before.messages == 0 {
                return Err(Error::Js(format!(
                    "stream {} holds no messages: fill it with --fill N, or with a \
                     `--mode publish --keep` run first",
                    &cfg.stream
                )));
            }
            let drained = consume::run(client, cfg, before, clock, say)?;
            report::Outcome::Consume {
                fill,
                before,
                drained: Box::new(drained),
            }
        }
    };
    Ok(outcome)
}

/// Creates the stream if it is missing; an existing one must have the storage asked for.
/// Returns whether it was created.
fn ensure_stream(client: &mut Client, cfg: &JsConfig) -> Result<bool, Error> {
    let info_subject = api::stream_subject("INFO", &cfg.stream);
    let info = client.request(&info_subject, b"")?;
    if api::is_error(&info, STREAM_NOT_FOUND) {
        let body = api::stream_config(
            &cfg.stream,
            &cfg.stream_subjects,
            cfg.storage,
            cfg.max_bytes,
        );
        client.request_ok(&api::stream_subject("CREATE", &cfg.stream), &body)?;
        return Ok(true);
    }
    let info = info.map_err(|e| Error::Js(format!("{info_subject}: {e}")))?;
    let storage = info.pointer("/config/storage").and_then(|v| v.as_str());
    let want = match cfg.storage {
        Storage::File => "file",
        Storage::Memory => "memory",
    };
    if storage != Some(want) {
        return Err(Error::Js(format!(
            "stream {} exists with storage {storage:?}, not {want}: delete it or name another \
             with --stream",
            &cfg.stream
        )));
    }
    Ok(false)
}

/// The stream's `STREAM.INFO` state.
fn stream_state(client: &mut Client, stream: &str) -> Result<StreamState, Error> {
    let subject = api::stream_subject("INFO", stream);
    let info = client.request_ok(&subject, b"")?;
    StreamState::from_info(&info)
        .ok_or_else(|| Error::Js(format!("{subject}: no state in the answer {info}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(mode: JsMode, rate: Option<f64>) -> JsArgs {
        JsArgs {
            url: "nats://127.0.0.1:4222".to_string(),
            mode,
            rate,
            ..JsArgs::default()
        }
    }

    #[test]
    fn rate_is_open_loop_publish_only_and_positive() {
        let open = args(JsMode::Publish, Some(2000.0))
            .resolve()
            .expect("valid");
        assert_eq!(open.rate, Some(2000.0));
        assert_eq!(
            args(JsMode::Publish, None).resolve().expect("valid").rate,
            None
        );
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let err = args(JsMode::Publish, Some(bad))
                .resolve()
                .expect_err("refused");
            assert!(err.to_string().contains("--rate"), "{err}");
        }
        let err = args(JsMode::Consume, Some(10.0))
            .resolve()
            .expect_err("refused");
        assert!(err.to_string().contains("--mode publish"), "{err}");
    }

    #[test]
    fn an_open_loop_run_is_named_and_reproduced_with_its_rate() {
        let a = args(JsMode::Publish, Some(2000.0));
        assert_eq!(a.default_label(), "js-publish-file-w64-r2000-128B");
        assert!(report::equivalent_command(&a).ends_with(" --rate 2000"));
        let closed = args(JsMode::Publish, None);
        assert_eq!(closed.default_label(), "js-publish-file-w64-128B");
        assert!(!report::equivalent_command(&closed).contains("--rate"));
    }
}
