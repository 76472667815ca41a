//! Building one `MSG`/`HMSG` per subscriber, the engine's fan-out hot path: one message
//! (subject, 128 B payload) encoded for 100 subscribers, each with its own sid.
//!
//! - `encoder/vec/*`: all frames appended to one reused `Vec` (cleared per message), with
//!   `encode_msg`, `encode_hmsg`, and std's `write!` formatting as the obvious alternative.
//! - `encoder/outbound/*`: each frame appended to its subscriber's own `Outbound` through
//!   `Outbound::writer` and a shared `ChunkPool`, then the queues are flushed to a sink that
//!   takes everything, as a worker does once per read batch. `template_*`: the frame prepared
//!   once per message (`MsgTemplate`) and put per subscriber with its sid.

#![forbid(unsafe_code)]

use std::hint::black_box;
use std::io::{self, Write};
use std::time::Duration;

use benches::{payload, under_cargo_criterion};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use engine::limits::{MAX_IOVECS, OUTBOUND_CHUNK_BYTES, OUTBOUND_POOL_CHUNKS};
use net::outbound::{ChunkPool, Flushed, Outbound};
use net::proto::{encode_hmsg, encode_msg, MsgTemplate};

fn sids() -> Vec<Vec<u8>> {
    (1..=SUBSCRIBERS)
        .map(|i| i.to_string().into_bytes())
        .collect()
}

fn frame_bytes(headers: Option<&[u8]>) -> u64 {
    let mut out = Vec::new();
    let body = payload(PAYLOAD_BYTES);
    for sid in sids() {
        match headers {
            Some(h) => encode_hmsg(&mut out, SUBJECT, &sid, None, h, &body),
            None => encode_msg(&mut out, SUBJECT, &sid, None, &body),
        }
    }
    out.len() as u64
}

fn config(g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    g.sample_size(30)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
}

fn into_vec(c: &mut Criterion) {
    let sids = sids();
    let body = payload(PAYLOAD_BYTES);
    let mut out: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut g = c.benchmark_group("encoder/vec");
    config(&mut g);
    g.throughput(ops_and_bytes(SUBSCRIBERS as u64, frame_bytes(None)));
    g.bench_function("encode_msg", |b| {
        b.iter(|| {
            out.clear();
            for sid in &sids {
                encode_msg(&mut out, black_box(SUBJECT), sid, None, black_box(&body));
            }
            black_box(out.len());
        })
    });
    g.bench_function("std_write_fmt", |b| {
        b.iter(|| {
            out.clear();
            for sid in &sids {
                // The alternative: format the control line, then copy the payload.
                let _ = write!(
                    out,
                    "MSG {} {} {}\r\n",
                    std::str::from_utf8(black_box(SUBJECT)).unwrap_or(""),
                    std::str::from_utf8(sid).unwrap_or(""),
                    body.len()
                );
                out.extend_from_slice(black_box(&body));
                out.extend_from_slice(b"\r\n");
            }
            black_box(out.len());
        })
    });
    g.throughput(ops_and_bytes(
        SUBSCRIBERS as u64,
        frame_bytes(Some(HEADERS)),
    ));
    g.bench_function("encode_hmsg", |b| {
        b.iter(|| {
            out.clear();
            for sid in &sids {
                encode_hmsg(
                    &mut out,
                    black_box(SUBJECT),
                    sid,
                    None,
                    HEADERS,
                    black_box(&body),
                );
            }
            black_box(out.len());
        })
    });
    g.finish();
}

fn into_outbound(c: &mut Criterion) {
    let sids = sids();
    let body = payload(PAYLOAD_BYTES);
    let mut pool = ChunkPool::new(OUTBOUND_CHUNK_BYTES, OUTBOUND_POOL_CHUNKS);
    let mut outs: Vec<Outbound> = (0..SUBSCRIBERS).map(|_| Outbound::default()).collect();
    let mut g = c.benchmark_group("encoder/outbound");
    config(&mut g);
    g.throughput(ops_and_bytes(SUBSCRIBERS as u64, frame_bytes(None)));
    g.bench_function("encode_msg", |b| {
        b.iter(|| {
            for (sid, out) in sids.iter().zip(outs.iter_mut()) {
                let mut w = out.writer(&mut pool);
                encode_msg(&mut w, black_box(SUBJECT), sid, None, black_box(&body));
            }
            flush_all(&mut outs, &mut pool);
        })
    });
    g.throughput(ops_and_bytes(
        SUBSCRIBERS as u64,
        frame_bytes(Some(HEADERS)),
    ));
    g.bench_function("encode_hmsg", |b| {
        b.iter(|| {
            for (sid, out) in sids.iter().zip(outs.iter_mut()) {
                let mut w = out.writer(&mut pool);
                encode_hmsg(
                    &mut w,
                    black_box(SUBJECT),
                    sid,
                    None,
                    HEADERS,
                    black_box(&body),
                );
            }
            flush_all(&mut outs, &mut pool);
        })
    });
    let mut template = MsgTemplate::default();
    for (name, headers) in [("template_msg", None), ("template_hmsg", Some(HEADERS))] {
        g.throughput(ops_and_bytes(SUBSCRIBERS as u64, frame_bytes(headers)));
        g.bench_function(name, |b| {
            b.iter(|| {
                template.prepare(black_box(SUBJECT), None, headers, black_box(&body));
                for (sid, out) in sids.iter().zip(outs.iter_mut()) {
                    template.put(&mut out.writer(&mut pool), sid);
                }
                flush_all(&mut outs, &mut pool);
            })
        });
    }
    g.finish();
}

/// Writes every queue out to a sink that takes everything (a socket with room to spare).
fn flush_all(outs: &mut [Outbound], pool: &mut ChunkPool) {
    for out in outs {
        let r = out.flush_to(&mut io::sink(), pool, MAX_IOVECS);
        debug_assert!(matches!(r, Ok(Flushed::All)));
    }
}

/// A typical subject: three tokens.
const SUBJECT: &[u8] = b"chat.room.42";

/// Subscribers the message goes to.
const SUBSCRIBERS: usize = 100;

/// Payload size: a chat message.
const PAYLOAD_BYTES: usize = 128;

/// A small header block, as a tracing client would send.
const HEADERS: &[u8] = b"NATS/1.0\r\nTrace-Id: 4bf92f3577b34da6\r\n\r\n";

/// Throughput in ops and bytes, or bytes alone under `cargo criterion` (see
/// `benches::under_cargo_criterion`).
fn ops_and_bytes(elements: u64, bytes: u64) -> Throughput {
    if under_cargo_criterion() {
        Throughput::Bytes(bytes)
    } else {
        Throughput::ElementsAndBytes { elements, bytes }
    }
}

criterion_group!(benches, into_vec, into_outbound);
criterion_main!(benches);
