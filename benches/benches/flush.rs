//! Flushing 1,000 dirty connections, as a worker does at the end of a loop iteration where one
//! message reached 1,000 subscribers: each connection has one 160-byte `MSG` frame queued.
//!
//! - `flush/writev-loop`: one `writev` per connection (`Outbound::flush_to`), the `--io
//!   writev` path.
//! - `flush/uring-batch`: the same 1,000 sends through `engine::uring::SendRing`, one kernel
//!   entry per `SEND_RING_ENTRIES` connections, the `--io uring` path.
//!
//! Sockets are real loopback TCP connections (the receive side is drained between
//! iterations, outside the timed part), so the kernel's TCP work is in both figures; what
//! differs is the number of kernel entries. Elements: connections flushed.

#![forbid(unsafe_code)]

use std::io::{ErrorKind, Read};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use benches::{payload, size};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use engine::limits::{MAX_IOVECS, OUTBOUND_CHUNK_BYTES, OUTBOUND_POOL_CHUNKS, SEND_RING_ENTRIES};
use engine::uring::{Send, SendRing};
use net::outbound::{ChunkPool, Flushed, Outbound};
use net::proto::{encode_msg, Put};

/// Connected pairs: (the server's side, written to; the client's side, drained).
fn pairs(n: usize) -> Vec<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    (0..n)
        .map(|_| {
            let client = TcpStream::connect(addr).expect("connect");
            let (server, _) = listener.accept().expect("accept");
            server.set_nonblocking(true).expect("nonblocking");
            server.set_nodelay(true).expect("nodelay");
            client.set_nonblocking(true).expect("nonblocking");
            (server, client)
        })
        .collect()
}

fn frame() -> Vec<u8> {
    let mut f = Vec::new();
    encode_msg(&mut f, b"room.42", b"17", None, &payload(128));
    f
}

/// Reads everything the clients have been sent so far.
fn drain(pairs: &mut [(TcpStream, TcpStream)], expect_each: usize) {
    let mut buf = vec![0u8; 1 << 16];
    for (_, client) in pairs.iter_mut() {
        let mut got = 0;
        while got < expect_each {
            match client.read(&mut buf) {
                Ok(0) => panic!("peer closed"),
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("read: {e}"),
            }
        }
    }
}

fn bench(c: &mut Criterion) {
    // 1,000 pairs are 2,000 descriptors.
    let _ = rlimit::increase_nofile_limit(4096);
    let n = size(1000, 100);
    let mut pairs = pairs(n);
    let frame = frame();
    let mut pool = ChunkPool::new(OUTBOUND_CHUNK_BYTES, OUTBOUND_POOL_CHUNKS);
    let mut g = c.benchmark_group("flush");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(n as u64));

    let mut outs: Vec<Outbound> = (0..n).map(|_| Outbound::default()).collect();
    g.bench_function("writev-loop", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                for out in outs.iter_mut() {
                    out.writer(&mut pool).put(&frame);
                }
                let t = Instant::now();
                for (out, (server, _)) in outs.iter_mut().zip(pairs.iter_mut()) {
                    let r = out.flush_to(server, &mut pool, MAX_IOVECS);
                    assert!(matches!(r, Ok(Flushed::All)), "{r:?}");
                }
                total += t.elapsed();
                drain(&mut pairs, frame.len());
            }
            total
        })
    });

    match SendRing::new(SEND_RING_ENTRIES) {
        Ok(mut ring) => {
            let mut batch: Vec<Send> = Vec::with_capacity(n);
            g.bench_function("uring-batch", |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        batch.clear();
                        for (i, (server, _)) in pairs.iter().enumerate() {
                            let mut out = Outbound::default();
                            out.writer(&mut pool).put(&frame);
                            batch.push(Send::new(server.as_raw_fd(), out, i));
                        }
                        let t = Instant::now();
                        ring.flush(&mut batch, &mut pool);
                        total += t.elapsed();
                        for s in &batch {
                            assert!(matches!(s.outcome, Ok(Flushed::All)), "{:?}", s.outcome);
                        }
                        drain(&mut pairs, frame.len());
                    }
                    total
                })
            });
        }
        Err(e) => eprintln!("flush/uring-batch skipped: io_uring unavailable here ({e})"),
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
