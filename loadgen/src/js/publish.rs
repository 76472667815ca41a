//! Confirmed publishes with at most W PubAcks outstanding.
//!
//! Message `n` is published with the reply subject `<inbox>.k.<n>`; its send time waits in
//! slot `n % slots` until its PubAck names `n` again. The window is closed-loop on purpose:
//! the issue asks for confirms/s at a fixed number in flight, and the confirm latency is
//! measured from the actual send (coordinated omission by construction, said in the report).

use net::proto;
use serde::Serialize;

use crate::js::api::PubAck;
use crate::js::client::{ack_number, Client, ACK_SID};
use crate::js::{JsConfig, Measured, Ticker};
use crate::limits::{JS_ERRORS_KEPT, JS_HIGH_WATER_BYTES, JS_STALL_SECS};
use crate::report::fmt_us;
use crate::stats::new_histogram;
use crate::worker::Clock;
use crate::Error;

/// When publishing stops.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// After a warmup and a measured window (publish mode).
    Window {
        /// Seconds published before the window, not counted.
        warmup_secs: f64,
        /// Seconds of the window.
        measure_secs: f64,
    },
    /// After this many publishes, all measured (a consume run's fill).
    Count(u64),
}

/// What one publish phase measured.
pub type Published = Measured<PublishFigures>;

/// The JSON's `publish` section.
#[derive(Debug, Clone, Serialize)]
pub struct PublishFigures {
    /// Always `closed`: a new publish waits for a free slot in the window.
    pub mode: String,
    /// The window (W).
    pub window: u64,
    /// Confirmed publishes per second of the measured window.
    pub confirmed_per_sec: f64,
    /// Publishes sent inside the measured window.
    pub sent_in_window: u64,
    /// Of those, confirmed.
    pub confirmed_in_window: u64,
    /// Publishes sent in total (warmup included).
    pub sent_total: u64,
    /// PubAcks naming a stream sequence, in total.
    pub confirmed_total: u64,
    /// PubAcks that were errors (JetStream `{"error":…}`, a status message such as 503
    /// no responders, or unreadable). A run with any fails unless `--allow-errors`.
    pub errors: u64,
    /// The first few errors' texts.
    pub first_errors: Vec<String>,
    /// PubAcks with `"duplicate":true` (none expected: no `Nats-Msg-Id` is sent).
    pub duplicates: u64,
    /// Publishes never confirmed within `--drain`.
    pub unconfirmed: u64,
    /// Largest stream sequence confirmed.
    pub last_seq: u64,
    /// Seconds spent waiting for the outstanding PubAcks after publishing stopped.
    pub drain_secs: f64,
}

/// A publish waiting for its PubAck.
#[derive(Debug, Clone, Copy)]
struct Slot {
    n: u64,
    sent_ns: u64,
    in_window: bool,
}

/// Publishes until `stop`, then waits up to `--drain` for the outstanding PubAcks.
pub(crate) fn run(
    client: &mut Client,
    cfg: &JsConfig,
    stop: Stop,
    clock: Clock,
    say: &dyn Fn(String),
) -> Result<Published, Error> {
    let subjects: Vec<Vec<u8>> = (0..cfg.subjects)
        .map(|i| format!("{}.{i}", cfg.stream_subjects.trim_end_matches(".>")).into_bytes())
        .collect();
    let payload = vec![b'x'; cfg.size];
    let slots_len = (cfg.window as usize).next_power_of_two() * 2;
    let mut slots: Vec<Option<Slot>> = vec![None; slots_len];
    let mask = slots_len as u64 - 1;
    let mut reply = Vec::new();

    let start_ns = clock.now_ns();
    let (measure_ns, end_ns) = match stop {
        Stop::Window {
            warmup_secs,
            measure_secs,
        } => {
            let m = start_ns + (warmup_secs * 1e9) as u64;
            (m, m + (measure_secs * 1e9) as u64)
        }
        Stop::Count(_) => (start_ns, u64::MAX),
    };
    let limit = match stop {
        Stop::Count(n) => n,
        Stop::Window { .. } => u64::MAX,
    };
    let mut p = PublishFigures {
        mode: "closed".to_string(),
        window: cfg.window,
        confirmed_per_sec: 0.0,
        sent_in_window: 0,
        confirmed_in_window: 0,
        sent_total: 0,
        confirmed_total: 0,
        errors: 0,
        first_errors: Vec::new(),
        duplicates: 0,
        unconfirmed: 0,
        last_seq: 0,
        drain_secs: 0.0,
    };
    let mut hist = new_histogram();
    let mut timeline = Vec::new();
    let mut cpu = None;
    let mut window_secs = 0.0;
    let mut ticker = Ticker::new(start_ns);
    let mut in_flight = 0u64;
    let mut last_progress_ns = start_ns;
    let mut cpu_begin = None;
    let mut stopped_ns = None;
    loop {
        let now = clock.now_ns();
        if cpu_begin.is_none() && now >= measure_ns {
            cpu_begin = Some(crate::sysinfo::CpuMark::take(cfg.server_pid));
        }
        let sending = now < end_ns && p.sent_total < limit;
        if !sending && stopped_ns.is_none() {
            stopped_ns = Some(now);
            window_secs = match stop {
                Stop::Window { measure_secs, .. } => measure_secs,
                Stop::Count(_) => (now - start_ns) as f64 / 1e9,
            };
            cpu = cpu_begin.take().map(|b| b.finish(window_secs));
        }
        if sending {
            while in_flight < cfg.window
                && p.sent_total < limit
                && client.backlog() < JS_HIGH_WATER_BYTES
            {
                let n = p.sent_total;
                let slot = &mut slots[(n & mask) as usize];
                if slot.is_some() {
                    // Its PubAck never came and the window went around: wait for it.
                    break;
                }
                let in_window = now >= measure_ns;
                *slot = Some(Slot {
                    n,
                    sent_ns: now,
                    in_window,
                });
                client.ack_reply(n, &mut reply);
                let subject = &subjects[(n % subjects.len() as u64) as usize];
                proto::encode_pub(&mut client.out, subject, Some(&reply), &payload);
                p.sent_total += 1;
                p.sent_in_window += u64::from(in_window);
                ticker.sent += 1;
                in_flight += 1;
            }
        } else if in_flight == 0 {
            break;
        } else if let Some(at) = stopped_ns {
            if now.saturating_sub(at) > (cfg.drain * 1e9) as u64 {
                break;
            }
        }
        if in_flight > 0 && now.saturating_sub(last_progress_ns) > JS_STALL_SECS * 1_000_000_000 {
            return Err(Error::Js(format!(
                "no PubAck for {JS_STALL_SECS} s with {in_flight} publishes outstanding \
                 (does a stream capture {}?)",
                cfg.stream_subjects
            )));
        }
        let got = client.pump(ticker.wait(now), |_, m| {
            if m.sid != ACK_SID {
                return Ok(());
            }
            let now = clock.now_ns();
            let Some(n) = ack_number(m.subject) else {
                return Ok(());
            };
            let Some(slot) = slots[(n & mask) as usize].filter(|s| s.n == n) else {
                return Ok(());
            };
            slots[(n & mask) as usize] = None;
            in_flight -= 1;
            let latency = now.saturating_sub(slot.sent_ns);
            match PubAck::parse(m.headers, m.payload) {
                PubAck::Stored { seq, duplicate } => {
                    p.confirmed_total += 1;
                    ticker.delivered += 1;
                    p.duplicates += u64::from(duplicate);
                    p.last_seq = p.last_seq.max(seq);
                    ticker.record(latency);
                    if slot.in_window && slot.sent_ns < end_ns {
                        p.confirmed_in_window += 1;
                        hist.saturating_record(latency);
                    }
                }
                other => {
                    p.errors += 1;
                    if p.first_errors.len() < JS_ERRORS_KEPT {
                        p.first_errors.push(match other {
                            PubAck::Refused(e) => e.to_string(),
                            PubAck::Status(code) => format!("status {code} instead of a PubAck"),
                            PubAck::Unexpected(text) => format!("unreadable PubAck {text}"),
                            PubAck::Stored { .. } => String::new(),
                        });
                    }
                }
            }
            Ok(())
        });
        if got? > 0 {
            last_progress_ns = clock.now_ns();
        }
        let phase = |at: u64| {
            if stopped_ns.is_some_and(|s| at > s) {
                "drain"
            } else if at <= measure_ns {
                "warmup"
            } else {
                "measure"
            }
        };
        if let Some(sec) = ticker.poll_second(clock.now_ns(), phase) {
            say(format!(
                "  [{:>3}s {:<7}] publish {:>8}/s  confirmed {:>8}/s  p99 {:>9}  max {:>9}",
                sec.t,
                sec.phase,
                sec.sent,
                sec.delivered,
                fmt_us(sec.p99_us),
                fmt_us(sec.max_us)
            ));
            timeline.push(sec);
        }
    }
    p.unconfirmed = in_flight;
    p.confirmed_per_sec = p.confirmed_in_window as f64 / window_secs.max(1e-9);
    if let Some(at) = stopped_ns {
        p.drain_secs = (clock.now_ns() - at) as f64 / 1e9;
    }
    Ok(Measured {
        figures: p,
        hist,
        timeline,
        cpu,
    })
}
