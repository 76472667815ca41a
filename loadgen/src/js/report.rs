//! The report of one `loadgen js` run: the `loadgen-js/1` JSON (results/README.md) and its
//! human summary. Shares the run report's pieces: machine, revision, latency summary and
//! percentile table, CPU figures, one line per second.

use std::fmt::Write as _;

use serde::Serialize;

use crate::js::api::StreamState;
use crate::js::consume::{ConsumeFigures, Drained};
use crate::js::publish::{PublishFigures, Published};
use crate::js::{JsArgs, JsConfig, JsMode};
use crate::report::{fmt_us, Latency, ProcessFigures, Second};
use crate::stats::{percentile_table, summarise, LatencySummary};
use crate::sysinfo::{GitInfo, Machine, WindowCpu};
use crate::Error;

/// Version of the JetStream JSON layout; bump when a field changes meaning.
pub const JS_SCHEMA: &str = "loadgen-js/1";

/// Everything one `loadgen js` run measured.
#[derive(Debug, Clone, Serialize)]
pub struct JsReport {
    /// Layout version ([`JS_SCHEMA`]).
    pub schema: String,
    /// The run's label (from `--label`, or derived from mode, storage, window and size).
    pub label: String,
    /// UTC date and time the run started (`YYYY-MM-DDTHH:MM:SSZ`).
    pub started_utc: String,
    /// Source revision.
    pub git: GitInfo,
    /// Machine.
    pub machine: Machine,
    /// The full command line that reproduces the run.
    pub command_line: String,
    /// The run's settings with every default filled in.
    pub config: JsConfig,
    /// The stream measured.
    pub stream: StreamFigures,
    /// Confirmed publishes: the run's (publish mode) or the fill's (consume with `--fill`).
    pub publish: Option<PublishFigures>,
    /// The drain (consume mode).
    pub consume: Option<ConsumeFigures>,
    /// The mode's latency: each publish's confirm (publish), each full batch (consume).
    pub latency: Latency,
    /// The fill's confirm latency (consume with `--fill`).
    pub fill_latency: Option<LatencySummary>,
    /// The server's CPU and memory over the measured window (with `--server-pid`).
    pub server: Option<ProcessFigures>,
    /// This process's CPU and memory over the measured window.
    pub loadgen: Option<ProcessFigures>,
    /// One entry per second: `sent` publishes (pull requests when consuming), `delivered`
    /// confirmations (messages drained), and that second's latency p99 and max.
    pub timeline: Vec<Second>,
}

/// The stream, as the run found and left it.
#[derive(Debug, Clone, Serialize)]
pub struct StreamFigures {
    /// Its name.
    pub name: String,
    /// Whether this run created it (otherwise it existed with the storage asked for).
    pub created: bool,
    /// Its state when the drain began (consume).
    pub before: Option<StreamState>,
    /// Its state after the publishes were confirmed (publish).
    pub after: Option<StreamState>,
    /// Publish mode: whether the stream holds exactly the confirmed publishes (it was purged
    /// first; with nothing else publishing to it, anything else means a confirmed message
    /// was not stored, or one stored was not confirmed).
    pub stored_matches_confirmed: Option<bool>,
}

/// What the run measured, by mode.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Publish mode: the publishes and the stream afterwards.
    Publish {
        /// The publish phase.
        published: Published,
        /// `STREAM.INFO` afterwards.
        after: StreamState,
    },
    /// Consume mode: the fill (if any), the stream before the drain, and the drain.
    Consume {
        /// The `--fill` phase.
        fill: Option<Published>,
        /// `STREAM.INFO` before the drain.
        before: StreamState,
        /// The drain.
        drained: Box<Drained>,
    },
}

impl JsReport {
    /// Assembles the report of a finished run.
    pub fn new(
        args: &JsArgs,
        cfg: JsConfig,
        label: String,
        started_utc: String,
        created: bool,
        outcome: Outcome,
    ) -> JsReport {
        let command_line = if args.command_line.is_empty() {
            equivalent_command(args)
        } else {
            args.command_line.join(" ")
        };
        let window = cfg.window;
        let mut stream = StreamFigures {
            name: cfg.stream.clone(),
            created,
            before: None,
            after: None,
            stored_matches_confirmed: None,
        };
        let (publish, consume, latency, fill_latency, cpu, timeline) = match outcome {
            Outcome::Publish { published, after } => {
                stream.after = Some(after);
                stream.stored_matches_confirmed =
                    Some(after.messages == published.figures.confirmed_total);
                let measured_from = match cfg.rate {
                    None => format!(
                        "actual send time to its PubAck (closed loop, window {window}: a slow \
                         confirm delays the next publish, so coordinated omission is there by \
                         construction)"
                    ),
                    Some(rate) => format!(
                        "scheduled send time to its PubAck (open loop at {rate}/s, window \
                         {window} as a cap: a publish held back by a slow confirm or a full \
                         window is measured from when it was scheduled, so coordinated omission \
                         is avoided)"
                    ),
                };
                let latency = Latency {
                    measured_from,
                    summary: summarise(&published.hist),
                    percentiles: percentile_table(&published.hist),
                };
                (
                    Some(published.figures),
                    None,
                    latency,
                    None,
                    published.cpu,
                    published.timeline,
                )
            }
            Outcome::Consume {
                fill,
                before,
                drained,
            } => {
                stream.before = Some(before);
                let latency = Latency {
                    measured_from: "each full batch, from its pull request to its last message \
                                    (closed loop: the next request waits for the batch)"
                        .to_string(),
                    summary: summarise(&drained.hist),
                    percentiles: percentile_table(&drained.hist),
                };
                (
                    fill.as_ref().map(|f| f.figures.clone()),
                    Some(drained.figures.clone()),
                    latency,
                    fill.as_ref().map(|f| summarise(&f.hist)),
                    drained.cpu,
                    drained.timeline,
                )
            }
        };
        let WindowCpu { server, loadgen } = cpu.unwrap_or_default();
        JsReport {
            schema: JS_SCHEMA.to_string(),
            label,
            started_utc,
            git: crate::sysinfo::git(),
            machine: crate::sysinfo::machine(),
            command_line,
            config: cfg,
            stream,
            publish,
            consume,
            latency,
            fill_latency,
            server,
            loadgen,
            timeline,
        }
    }

    /// Why the run must fail rather than be recorded: PubAck errors or publishes never
    /// confirmed, a drain with errors or incomplete (unless `--allow-errors`).
    pub fn refusal(&self) -> Option<Error> {
        if self.config.allow_errors {
            return None;
        }
        let mut why = Vec::new();
        if let Some(p) = &self.publish {
            if p.errors > 0 {
                why.push(format!(
                    "{} PubAcks were errors (first: {})",
                    p.errors,
                    p.first_errors.join("; ")
                ));
            }
            if p.unsent > 0 {
                why.push(format!(
                    "{} scheduled publishes were never sent: the backlog behind --window {} \
                     was not caught up within --drain {} s after the end",
                    p.unsent, p.window, self.config.drain
                ));
            }
            if p.unconfirmed > 0 {
                why.push(format!(
                    "{} publishes were never confirmed within --drain {} s",
                    p.unconfirmed, self.config.drain
                ));
            }
        }
        if let Some(c) = &self.consume {
            if c.errors > 0 {
                why.push(format!(
                    "{} pull errors (first: {})",
                    c.errors,
                    c.first_errors.join("; ")
                ));
            }
            if !c.complete {
                why.push(format!(
                    "drained {} of {} messages within --duration {} s",
                    c.drained, c.expected, self.config.duration
                ));
            }
        }
        (!why.is_empty()).then(|| {
            Error::Js(format!(
                "{}; rerun with --allow-errors to record such a run",
                why.join("; ")
            ))
        })
    }

    /// The human summary.
    pub fn summary(&self) -> String {
        let c = &self.config;
        let l = &self.latency.summary;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "loadgen js {} -> {} ({:?}): stream {} ({:?}, {} round-robin over {}), {} B",
            self.label, c.url, c.mode, c.stream, c.storage, c.subjects, c.stream_subjects, c.size
        );
        if let Some(note) = &c.server_note {
            let _ = writeln!(s, "  server was   {note}");
        }
        if let Some(p) = &self.publish {
            let what = if c.mode == JsMode::Publish {
                format!("in the {:.1} s window", c.duration)
            } else {
                "filling".to_string()
            };
            let pacing = match p.rate_per_sec {
                None => "closed loop".to_string(),
                Some(rate) => format!("open loop at {rate}/s"),
            };
            let _ = writeln!(
                s,
                "  publish      {pacing}, window {}: {:.0} confirmed/s ({} of {} sent {what}); \
                 errors {}, duplicates {}, unconfirmed {}",
                p.window,
                p.confirmed_per_sec,
                p.confirmed_in_window,
                p.sent_in_window,
                p.errors,
                p.duplicates,
                p.unconfirmed
            );
            if let (Some(scheduled), Some(delayed)) = (p.scheduled_in_window, p.delayed_by_window) {
                let lag = p.send_lag.unwrap_or_default();
                let _ = writeln!(
                    s,
                    "  schedule     {scheduled} scheduled in the window, {delayed} of them held \
                     back by the window; unsent {}; send lag p99 {}  max {}",
                    p.unsent,
                    fmt_us(lag.p99_us),
                    fmt_us(lag.max_us)
                );
            }
        }
        if let Some(f) = &self.fill_latency {
            let _ = writeln!(
                s,
                "  fill confirm p50 {}  p99 {}  max {}",
                fmt_us(f.p50_us),
                fmt_us(f.p99_us),
                fmt_us(f.max_us)
            );
        }
        if let Some(d) = &self.consume {
            let acked = d
                .acked_secs
                .map_or("not within --drain".to_string(), |t| format!("{t:.2} s"));
            let _ = writeln!(
                s,
                "  consume      drained {} of {} at {:.0}/s in {:.2} s ({} pulls of {}, {} ended \
                 early); every ack processed after {acked}; redelivered {}, errors {}",
                d.drained,
                d.expected,
                d.drained_per_sec,
                d.drain_secs,
                d.pulls_sent,
                c.batch,
                d.pulls_ended_early,
                d.redelivered,
                d.errors
            );
        }
        let _ = writeln!(
            s,
            "  latency      p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (from {})",
            fmt_us(l.p50_us),
            fmt_us(l.p90_us),
            fmt_us(l.p99_us),
            fmt_us(l.p99_9_us),
            fmt_us(l.max_us),
            self.latency.measured_from
        );
        if let Some(after) = &self.stream.after {
            let matches = match self.stream.stored_matches_confirmed {
                Some(true) => "= the confirmed publishes",
                _ => "DIFFERS from the confirmed publishes",
            };
            let _ = writeln!(
                s,
                "  stream       {} messages, {} bytes after the run ({matches})",
                after.messages, after.bytes
            );
        }
        if let Some(sv) = &self.server {
            let _ = writeln!(
                s,
                "  server       pid {}: CPU {:.0} %, RSS {:.1} MB",
                sv.pid,
                sv.cpu_percent,
                sv.rss_bytes as f64 / 1e6
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
}

/// The `loadgen js` command line equivalent to `a` (for runs started in-process).
pub fn equivalent_command(a: &JsArgs) -> String {
    let mode = match a.mode {
        JsMode::Publish => "publish",
        JsMode::Consume => "consume",
    };
    let storage = match a.storage {
        crate::js::Storage::File => "file",
        crate::js::Storage::Memory => "memory",
    };
    let mut s = format!(
        "loadgen js --url {} --mode {mode} --stream {} --prefix {} --subjects {} --storage \
         {storage} --max-bytes {} --size {} --window {} --duration {} --warmup {} --drain {}",
        a.url,
        a.stream,
        a.prefix,
        a.subjects,
        a.max_bytes,
        a.size,
        a.window,
        a.duration,
        a.warmup,
        a.drain
    );
    if let Some(rate) = a.rate {
        s += &format!(" --rate {rate}");
    }
    if a.mode == JsMode::Consume {
        if let Some(n) = a.fill {
            s += &format!(" --fill {n}");
        }
        s += &format!(
            " --batch {} --pulls {} --consumer {}",
            a.batch, a.pulls, a.consumer
        );
    }
    for (on, flag) in [(a.keep, " --keep"), (a.allow_errors, " --allow-errors")] {
        if on {
            s += flag;
        }
    }
    if let Some(l) = &a.label {
        s += &format!(" --label {l}");
    }
    if a.server_pid.is_some() {
        s += " --server-pid <pid>";
    }
    s
}
