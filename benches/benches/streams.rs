//! `engine::js::Streams::publish`: one 128-byte publish into a memory stream, with the
//! PubAck built and the logged records cleared after each call.
//!
//! - `streams/publish/one_subject`: every publish to `orders`.
//! - `streams/publish/subjects_1000`: round-robin over `orders.0` … `orders.999`.
//! - `streams/publish/dedupe`: one subject, every publish with its own `Nats-Msg-Id`
//!   (header blocks built beforehand), so each one is looked up and remembered.
//! - `streams/publish/evict_max_msgs`: one subject into a stream at `max_msgs` 1,000 with
//!   discard old: every publish evicts the oldest message.
//!
//! The first three start from an empty stream every 100,000 publishes (untimed), so the
//! stream's size stays that of a realistic burst and memory stays bounded however many
//! iterations criterion asks for.

#![forbid(unsafe_code)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use benches::{quick_mode, size};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use engine::js::Streams;

/// Publishes timed into one stream before it is replaced by an empty one.
const CHUNK: u64 = 100_000;
const PAYLOAD_BYTES: usize = 128;
const T0: i64 = 1_796_190_352_000_000_000;

/// A fresh account with one memory stream `S` on `orders` and `orders.>`, plus `extra`
/// config fields (JSON, each with a leading comma).
fn fresh(extra: &str) -> Streams {
    let mut streams = Streams::new();
    let body =
        format!(r#"{{"name":"S","subjects":["orders","orders.>"],"storage":"memory"{extra}}}"#);
    let answer = streams.handle(
        "$JS.API.STREAM.CREATE.S",
        body.as_bytes(),
        T0,
        &mut Vec::new(),
    );
    // The benchmark's own config is valid by construction.
    assert!(
        answer.is_some_and(|a| !a.windows(7).any(|w| w == b"\"error\"")),
        "stream created"
    );
    streams
}

/// Times `iters` publishes; `subject(i)` and `headers(i)` give the i-th publish's.
fn run<'a>(
    iters: u64,
    extra: &str,
    prefill: u64,
    subject: impl Fn(u64) -> &'a str,
    headers: impl Fn(u64) -> &'a [u8],
) -> Duration {
    let payload = benches::payload(PAYLOAD_BYTES);
    let mut out = Vec::new();
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let mut streams = fresh(extra);
        for i in 0..prefill {
            streams.publish("S", subject(i), b"", &payload, T0, &mut out);
            out.clear();
        }
        let n = (iters - done).min(CHUNK);
        let start = Instant::now();
        for i in 0..n {
            let ack = streams.publish(
                "S",
                subject(i),
                headers(i),
                &payload,
                T0 + i as i64,
                &mut out,
            );
            black_box(ack);
            out.clear();
        }
        total += start.elapsed();
        done += n;
    }
    total
}

fn publish(c: &mut Criterion) {
    let mut g = c.benchmark_group("streams/publish");
    g.throughput(Throughput::Elements(1));
    if quick_mode() {
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(10))
            .measurement_time(Duration::from_millis(10));
    } else {
        g.sample_size(30)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3));
    }
    let subjects: Vec<String> = (0..1000).map(|i| format!("orders.{i}")).collect();
    let ids = size(CHUNK as usize, 1000) as u64;
    let id_headers: Vec<Vec<u8>> = (0..ids)
        .map(|i| format!("NATS/1.0\r\nNats-Msg-Id: order-{i:08}\r\n\r\n").into_bytes())
        .collect();

    g.bench_function("one_subject", |b| {
        b.iter_custom(|iters| run(iters, "", 0, |_| "orders", |_| b""));
    });
    g.bench_function("subjects_1000", |b| {
        b.iter_custom(|iters| run(iters, "", 0, |i| &subjects[(i % 1000) as usize], |_| b""));
    });
    g.bench_function("dedupe", |b| {
        b.iter_custom(|iters| {
            run(
                iters,
                "",
                0,
                |_| "orders",
                |i| &id_headers[(i % ids) as usize],
            )
        });
    });
    g.bench_function("evict_max_msgs", |b| {
        b.iter_custom(|iters| run(iters, r#","max_msgs":1000"#, 1000, |_| "orders", |_| b""));
    });
    g.finish();
}

criterion_group!(benches, publish);
criterion_main!(benches);
