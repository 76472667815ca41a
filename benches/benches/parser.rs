//! The protocol parser on pipelined client streams, reported as ops/s and bytes/s.
//!
//! - `parser/whole/*`: one buffer of about 64 KiB (the engine's read buffer) holding
//!   back-to-back `PUB` frames with 16 B, 128 B and 1 KiB payloads, or `HPUB` frames, parsed
//!   in one pass.
//! - `parser/split_64B/*`: the same stream arriving in 64-byte reads, driven the way a
//!   connection drives it: append the read to a buffer, parse every complete op, drain
//!   what was consumed, keep the partial op for the next read.

#![forbid(unsafe_code)]

use std::hint::black_box;
use std::time::Duration;

use benches::{hpub_stream, pub_stream, size, under_cargo_criterion};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use engine::limits::READ_BUFFER_BYTES;
use net::proto::{Op, Parser, ParserLimits, Side};

/// One input: its name, the bytes, and how many frames they hold.
struct Input {
    name: &'static str,
    bytes: Vec<u8>,
    frames: usize,
}

fn inputs() -> Vec<Input> {
    let target = size(READ_BUFFER_BYTES, 2048);
    let mut out = Vec::new();
    for (name, payload) in [("pub_16B", 16), ("pub_128B", 128), ("pub_1KiB", 1024)] {
        let one = pub_stream(SUBJECT, payload, 1).len();
        let frames = (target / one).max(1);
        out.push(Input {
            name,
            bytes: pub_stream(SUBJECT, payload, frames),
            frames,
        });
    }
    let one = hpub_stream(SUBJECT, HEADERS, 128, 1).len();
    let frames = (target / one).max(1);
    out.push(Input {
        name: "hpub_128B",
        bytes: hpub_stream(SUBJECT, HEADERS, 128, frames),
        frames,
    });
    out
}

/// Parses every op in `buf`; returns how many there were and how many bytes they used.
#[inline]
fn parse_all(parser: &mut Parser, buf: &[u8]) -> (usize, usize) {
    let mut pos = 0;
    let mut ops = 0;
    while let Ok(Some((op, used))) = parser.parse(&buf[pos..]) {
        if let Op::Pub(p) = op {
            black_box(p.payload);
        }
        pos += used;
        ops += 1;
    }
    (ops, pos)
}

fn whole(c: &mut Criterion) {
    let mut g = c.benchmark_group("parser/whole");
    g.sample_size(30)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    for input in inputs() {
        g.throughput(ops_and_bytes(input.frames as u64, input.bytes.len() as u64));
        let mut parser = Parser::new(Side::Server, ParserLimits::default());
        g.bench_with_input(
            BenchmarkId::from_parameter(input.name),
            &input,
            |b, input| {
                b.iter(|| {
                    let (ops, _) = parse_all(&mut parser, black_box(&input.bytes));
                    assert_eq!(ops, input.frames);
                })
            },
        );
    }
    g.finish();
}

fn split(c: &mut Criterion) {
    let mut g = c.benchmark_group("parser/split_64B");
    g.sample_size(30)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    for input in inputs() {
        g.throughput(ops_and_bytes(input.frames as u64, input.bytes.len() as u64));
        let mut parser = Parser::new(Side::Server, ParserLimits::default());
        let mut buf: Vec<u8> = Vec::with_capacity(READ_BUFFER_BYTES);
        g.bench_with_input(
            BenchmarkId::from_parameter(input.name),
            &input,
            |b, input| {
                b.iter(|| {
                    let mut total = 0;
                    for read in black_box(&input.bytes).chunks(READ_BYTES) {
                        buf.extend_from_slice(read);
                        let (ops, used) = parse_all(&mut parser, &buf);
                        buf.drain(..used);
                        total += ops;
                    }
                    assert_eq!(total, input.frames);
                    assert!(buf.is_empty());
                })
            },
        );
    }
    g.finish();
}

/// A typical subject: three tokens.
const SUBJECT: &[u8] = b"orders.eu.created";

/// A small header block, as a tracing client would send.
const HEADERS: &[u8] = b"NATS/1.0\r\nTrace-Id: 4bf92f3577b34da6\r\n\r\n";

/// Bytes per read in the split benchmark: small enough that most frames straddle reads.
const READ_BYTES: usize = 64;

/// Throughput in ops and bytes, or bytes alone under `cargo criterion` (see
/// `benches::under_cargo_criterion`).
fn ops_and_bytes(elements: u64, bytes: u64) -> Throughput {
    if under_cargo_criterion() {
        Throughput::Bytes(bytes)
    } else {
        Throughput::ElementsAndBytes { elements, bytes }
    }
}

criterion_group!(benches, whole, split);
criterion_main!(benches);
