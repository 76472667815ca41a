//! The drain: a durable pull consumer with explicit acks empties the stream.
//!
//! `--pulls` pull requests of `--batch` messages stay outstanding, each on its own reply
//! subject and sid (nats-server delivers a pulled message with its original subject, so the
//! sid tells which request it answers). Each message is acked with `+ACK` on its reply
//! subject as soon as it is read. A request ends when its batch is full or a status message
//! (404 no messages, 408 request expired) ends it early; it is then sent again. The drain
//! ends when every message of the stream was received once; afterwards `CONSUMER.INFO` is
//! polled until the server has processed every ack.

use std::time::{Duration, Instant};

use net::proto;
use serde::Serialize;

use crate::js::api::{self, ConsumerState, Delivery, StreamState, CONSUMER_NOT_FOUND};
use crate::js::client::Client;
use crate::js::{JsConfig, Measured, Ticker};
use crate::limits::{
    JS_ACK_WAIT_NS, JS_ERRORS_KEPT, JS_MAX_ACK_PENDING, JS_PULL_EXPIRES_NS, JS_STALL_SECS,
};
use crate::report::fmt_us;
use crate::stats::new_histogram;
use crate::worker::Clock;
use crate::Error;

/// What one drain measured (latencies: full batches, request sent to its last message).
pub type Drained = Measured<ConsumeFigures>;

/// The JSON's `consume` section.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumeFigures {
    /// Messages the stream held when the drain began.
    pub expected: u64,
    /// Distinct messages received (each stream sequence once).
    pub drained: u64,
    /// `drained` per second, from the first pull request to the last message.
    pub drained_per_sec: f64,
    /// Seconds from the first pull request to the last message.
    pub drain_secs: f64,
    /// Whether every message arrived within `--duration`.
    pub complete: bool,
    /// Messages received again (redelivered, or the same sequence twice).
    pub redelivered: u64,
    /// `+ACK`s sent.
    pub acks_sent: u64,
    /// Pull requests sent.
    pub pulls_sent: u64,
    /// Requests ended early by a 404 (no messages) or 408 (expired) status.
    pub pulls_ended_early: u64,
    /// Other status messages (409 and the like) and messages without an ack subject.
    pub errors: u64,
    /// The first few of them.
    pub first_errors: Vec<String>,
    /// Seconds from the first pull request until `CONSUMER.INFO` showed every ack
    /// processed (`null` if it did not within `--drain`).
    pub acked_secs: Option<f64>,
    /// The consumer's state at the end.
    pub consumer_after: Option<ConsumerState>,
}

/// One pull request slot.
#[derive(Debug, Clone)]
struct Pull {
    subject: String,
    sid: Vec<u8>,
    outstanding: bool,
    sent_ns: u64,
    received: u64,
}

/// Creates the durable consumer (replacing one of that name), drains the stream as it was
/// at `before`, waits for the acks to settle and deletes the consumer unless `--keep`.
pub(crate) fn run(
    client: &mut Client,
    cfg: &JsConfig,
    before: StreamState,
    clock: Clock,
    say: &dyn Fn(String),
) -> Result<Drained, Error> {
    let delete = api::consumer_subject("DELETE", &cfg.stream, &cfg.consumer);
    let gone = client.request(&delete, b"")?;
    if let Err(e) = &gone {
        if !api::is_error(&gone, CONSUMER_NOT_FOUND) {
            return Err(Error::Js(format!("{delete}: {e}")));
        }
    }
    let body = api::consumer_config(
        &cfg.stream,
        &cfg.consumer,
        JS_MAX_ACK_PENDING,
        JS_ACK_WAIT_NS,
    );
    client.request_ok(
        &api::consumer_create_subject(&cfg.stream, &cfg.consumer),
        &body,
    )?;
    let next = api::next_subject(&cfg.stream, &cfg.consumer);
    let request = api::next_request(cfg.batch, JS_PULL_EXPIRES_NS);
    let mut pulls: Vec<Pull> = (0..cfg.pulls)
        .map(|k| {
            let (subject, sid) = client.pull_inbox(k);
            Pull {
                subject,
                sid,
                outstanding: false,
                sent_ns: 0,
                received: 0,
            }
        })
        .collect();
    for pull in &pulls {
        proto::encode_sub(&mut client.out, pull.subject.as_bytes(), None, &pull.sid);
    }
    client.sync()?;
    say(format!(
        "  draining     {} messages, {} pulls of {} outstanding",
        before.messages, cfg.pulls, cfg.batch
    ));

    let first = before.first_seq.max(1);
    let span = before.last_seq.saturating_sub(first) + 1;
    let mut seen = vec![0u64; (span as usize).div_ceil(64)];
    let mut f = ConsumeFigures {
        expected: before.messages,
        drained: 0,
        drained_per_sec: 0.0,
        drain_secs: 0.0,
        complete: false,
        redelivered: 0,
        acks_sent: 0,
        pulls_sent: 0,
        pulls_ended_early: 0,
        errors: 0,
        first_errors: Vec::new(),
        acked_secs: None,
        consumer_after: None,
    };
    let mut hist = new_histogram();
    let mut timeline = Vec::new();
    let cpu_begin = crate::sysinfo::CpuMark::take(cfg.server_pid);
    let start_ns = clock.now_ns();
    let deadline_ns = start_ns + (cfg.duration * 1e9) as u64;
    let mut ticker = Ticker::new(start_ns);
    let mut last_ns = start_ns;
    let mut last_progress_ns = start_ns;
    while f.drained < f.expected {
        let now = clock.now_ns();
        if now > deadline_ns {
            break;
        }
        if now.saturating_sub(last_progress_ns) > JS_STALL_SECS * 1_000_000_000 {
            return Err(Error::Js(format!(
                "nothing pulled from {} for {JS_STALL_SECS} s ({} of {} drained)",
                cfg.consumer, f.drained, f.expected
            )));
        }
        for pull in pulls.iter_mut().filter(|p| !p.outstanding) {
            proto::encode_pub(
                &mut client.out,
                next.as_bytes(),
                Some(pull.subject.as_bytes()),
                &request,
            );
            pull.outstanding = true;
            pull.sent_ns = now;
            pull.received = 0;
            f.pulls_sent += 1;
            ticker.sent += 1;
        }
        let got = client.pump(ticker.wait(now), |out, m| {
            let Some(pull) = pulls.iter_mut().find(|p| p.sid == m.sid) else {
                return Ok(());
            };
            let now = clock.now_ns();
            if let Some(code) = m.headers.and_then(api::status_code) {
                pull.outstanding = false;
                if matches!(code, 404 | 408) {
                    f.pulls_ended_early += 1;
                } else {
                    f.errors += 1;
                    if f.first_errors.len() < JS_ERRORS_KEPT {
                        let text = String::from_utf8_lossy(m.headers.unwrap_or_default());
                        f.first_errors.push(text.trim().to_string());
                    }
                }
                return Ok(());
            }
            let Some(delivery) = m.reply.and_then(Delivery::parse) else {
                f.errors += 1;
                if f.first_errors.len() < JS_ERRORS_KEPT {
                    f.first_errors
                        .push("a pulled message without a $JS.ACK reply subject".to_string());
                }
                return Ok(());
            };
            if let Some(reply) = m.reply {
                proto::encode_pub(out, reply, None, api::ACK);
                f.acks_sent += 1;
            }
            let i = delivery.stream_seq.wrapping_sub(first);
            let fresh = i < span && {
                let (word, bit) = ((i / 64) as usize, 1u64 << (i % 64));
                let fresh = seen[word] & bit == 0;
                seen[word] |= bit;
                fresh
            };
            if !fresh || delivery.delivered > 1 {
                f.redelivered += 1;
            }
            if fresh {
                f.drained += 1;
                ticker.delivered += 1;
                last_ns = now;
            }
            pull.received += 1;
            if pull.received >= cfg.batch {
                pull.outstanding = false;
                let latency = now.saturating_sub(pull.sent_ns);
                hist.saturating_record(latency);
                ticker.record(latency);
            }
            Ok(())
        });
        if got? > 0 {
            last_progress_ns = clock.now_ns();
        }
        if let Some(sec) = ticker.poll_second(clock.now_ns(), |_| "measure") {
            say(format!(
                "  [{:>3}s drain  ] pulls {:>6}/s  drained {:>8}/s  batch p99 {:>9}  max {:>9}",
                sec.t,
                sec.sent,
                sec.delivered,
                fmt_us(sec.p99_us),
                fmt_us(sec.max_us)
            ));
            timeline.push(sec);
        }
    }
    f.complete = f.drained >= f.expected;
    f.drain_secs = (last_ns - start_ns) as f64 / 1e9;
    f.drained_per_sec = f.drained as f64 / f.drain_secs.max(1e-9);
    let cpu = Some(cpu_begin.finish(f.drain_secs));

    // The server processes acks after they are sent: wait until it has every one.
    let info = api::consumer_subject("INFO", &cfg.stream, &cfg.consumer);
    let settle_by = Instant::now() + Duration::from_secs_f64(cfg.drain);
    loop {
        let state = ConsumerState::from_info(&client.request_ok(&info, b"")?);
        f.consumer_after = state;
        if let Some(s) = state {
            if s.num_ack_pending == 0 && s.ack_floor_stream_seq >= before.last_seq {
                f.acked_secs = Some((clock.now_ns() - start_ns) as f64 / 1e9);
                break;
            }
        }
        if Instant::now() > settle_by {
            break;
        }
        // Polling the server's own view; nothing on this connection signals the change.
        std::thread::sleep(Duration::from_millis(5));
    }
    if !cfg.keep {
        client.request_ok(&delete, b"")?;
    }
    Ok(Drained {
        figures: f,
        hist,
        timeline,
        cpu,
    })
}
