//! One connection can never take a worker away from the others: a connection that pipelines
//! a flood of SUBs to distinct subjects, then closes, barely moves the latency of a
//! publisher→subscriber pair on the same server (and on the flooder's worker).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::spawn;
use engine::config::Config;
use engine::counters::Counter;

/// A release build floods with a million SUBs, as the attacker did; a debug build
/// (the test suite's), ten times slower per op, with 100k.
const FLOOD: usize = if cfg!(debug_assertions) {
    100_000
} else {
    1_000_000
};

fn client(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\nPING\r\n")
        .unwrap();
    read_until(&mut s, b"PONG\r\n");
    s
}

fn read_until(s: &mut TcpStream, tail: &[u8]) {
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !seen.ends_with(tail) {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "closed early");
        seen.push(byte[0]);
    }
}

/// (p99, max) of the samples.
fn p99(mut v: Vec<Duration>) -> (Duration, Duration) {
    assert!(v.len() >= 50, "too few samples: {}", v.len());
    v.sort_unstable();
    (v[v.len() * 99 / 100], v[v.len() - 1])
}

const BASELINE: u8 = 0;
const FLOODING: u8 = 1;
const CLOSED: u8 = 2;
const DONE: u8 = 3;

#[test]
fn a_sub_flood_and_its_close_do_not_hold_up_other_connections() {
    let _ = rlimit::increase_nofile_limit(4096);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = spawn(
        listener,
        Config {
            workers: 2,
            ..Config::default()
        },
    )
    .unwrap();
    let addr = server.local_addr();
    // Connections are spread round-robin: the subscriber and the flooder share worker 0,
    // the publisher is on worker 1.
    let mut sub = client(addr);
    sub.write_all(b"SUB pair 1\r\nPING\r\n").unwrap();
    read_until(&mut sub, b"PONG\r\n");
    let mut publisher = client(addr);
    let phase = Arc::new(AtomicU8::new(BASELINE));
    let pair_phase = Arc::clone(&phase);
    let pair = thread::spawn(move || {
        let mut samples: [Vec<Duration>; 3] = Default::default();
        let frame = b"MSG pair 1 1\r\nx\r\n";
        let mut buf = [0u8; 17];
        loop {
            let p = pair_phase.load(Ordering::Acquire);
            if p == DONE {
                return samples;
            }
            let t = Instant::now();
            publisher.write_all(b"PUB pair 1\r\nx\r\n").unwrap();
            sub.read_exact(&mut buf).unwrap();
            assert_eq!(&buf, frame);
            samples[usize::from(p)].push(t.elapsed());
            thread::sleep(Duration::from_millis(1));
        }
    });
    thread::sleep(Duration::from_millis(500));

    let mut flood = client(addr);
    let mut batch = Vec::with_capacity(FLOOD * 24);
    for i in 0..FLOOD {
        batch.extend_from_slice(format!("SUB flood.{i} {i}\r\n").as_bytes());
    }
    batch.extend_from_slice(b"PING\r\n");
    phase.store(FLOODING, Ordering::Release);
    let t = Instant::now();
    flood.write_all(&batch).unwrap();
    read_until(&mut flood, b"PONG\r\n");
    let applied = t.elapsed();
    thread::sleep(Duration::from_millis(300));
    // Every flooded subscription is live: one more message to the last of them arrives.
    let mut probe = client(addr);
    let last = FLOOD - 1;
    probe
        .write_all(format!("PUB flood.{last} 1\r\ny\r\n").as_bytes())
        .unwrap();
    read_until(
        &mut flood,
        format!("MSG flood.{last} {last} 1\r\ny\r\n").as_bytes(),
    );
    drop(flood);
    phase.store(CLOSED, Ordering::Release);
    // Until the index holds only the pair again, then a little longer.
    let give_up = Instant::now() + Duration::from_secs(60);
    while server.stats()[Counter::Closed] == 0 || probe_interest(&mut probe, last) {
        assert!(
            Instant::now() < give_up,
            "the flood's subscriptions never left"
        );
        thread::sleep(Duration::from_millis(5));
    }
    thread::sleep(Duration::from_millis(300));
    phase.store(DONE, Ordering::Release);
    let [base, during, after] = pair.join().unwrap();
    let ((base, base_max), (during, during_max), (after, after_max)) =
        (p99(base), p99(during), p99(after));
    eprintln!(
        "{FLOOD} SUBs applied in {applied:?}; pair p99 (max): baseline {base:?} ({base_max:?}), \
         during {during:?} ({during_max:?}), after the close {after:?} ({after_max:?})"
    );
    // p99 within 2x the baseline or 25 ms, whichever is more: a shared 2-core machine's
    // scheduler alone can cost milliseconds, and a debug build (the suite's) pays ~0.5 ms per
    // turn of index work (measured: 1.6-4.2 ms debug, 0.5-7 ms release, and 11.8 ms in one
    // clean-clone CI run whose baseline was 3.5 ms; results/2026-12-02-sub-flood.md). What
    // the code before the per-turn budgets fails is the stall bound below: its flood stalled
    // the pair for 0.5 s, and its close froze the worker for up to a second.
    let bound = (2 * base).max(Duration::from_millis(25));
    assert!(during <= bound, "during the flood: {during:?} > {bound:?}");
    assert!(after <= bound, "after its close: {after:?} > {bound:?}");
    let worst = Duration::from_millis(100);
    assert!(
        during_max <= worst && after_max <= worst,
        "a stall over {worst:?}"
    );
    server.shutdown().unwrap();
}

/// Whether the last flooded subject still has a subscriber: a request to it gets no
/// no-responders status while one is left.
fn probe_interest(probe: &mut TcpStream, last: usize) -> bool {
    probe
        .write_all(
            format!(
                "CONNECT {{\"verbose\":false,\"pedantic\":false,\"headers\":true,\
                 \"no_responders\":true}}\r\nSUB r.{last} 1\r\nPUB flood.{last} r.{last} 0\r\n\
                 \r\nPING\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !seen.ends_with(b"PONG\r\n") {
        assert_eq!(probe.read(&mut byte).unwrap(), 1);
        seen.push(byte[0]);
    }
    // Reset for the next probe.
    probe.write_all(b"UNSUB 1\r\n").unwrap();
    !seen.windows(4).any(|w| w == b"HMSG")
}
