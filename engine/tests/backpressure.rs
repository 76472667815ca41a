//! A slow reader is not a dead reader: a subscriber that keeps reading slows its publishers
//! down and gets everything; one that takes nothing for the write deadline is cut, and then
//! holds nobody up any longer.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use engine::config::Config;
use engine::counters::Counter;
use engine::server::{spawn, ServerHandle};
use socket2::{Domain, Socket, Type};

const WAIT: Duration = Duration::from_secs(30);

fn start(config: Config) -> ServerHandle {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    spawn(listener, config).unwrap()
}

/// A connected, CONNECTed client whose `SUB`s (if any) are in place when this returns.
fn client(addr: SocketAddr, subs: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        s,
        "CONNECT {{\"verbose\":false,\"pedantic\":false}}\r\n{subs}PING\r\n"
    )
    .unwrap();
    read_through_pong(&mut s);
    s
}

/// A subscriber that will never read again, with a 4 KiB receive buffer (as a stuck client's
/// kernel would hold little).
fn stuck_subscriber(addr: SocketAddr, subs: &str) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut s: TcpStream = socket.into();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        s,
        "CONNECT {{\"verbose\":false,\"pedantic\":false}}\r\n{subs}PING\r\n"
    )
    .unwrap();
    read_through_pong(&mut s);
    s
}

/// Reads the INFO line and everything up to the first `PONG`.
fn read_through_pong(s: &mut TcpStream) {
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !seen.ends_with(b"PONG\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "closed before PONG");
        seen.push(byte[0]);
    }
}

/// Reads until the server closes the connection; the bytes received.
fn drain_until_closed(s: &mut TcpStream) -> usize {
    let mut total = 0;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => return total,
            Ok(n) => total += n,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return total,
            Err(e) => panic!("the server never closed it: {e}"),
        }
    }
}

#[test]
fn a_slow_reader_gets_everything_while_a_stuck_one_is_cut_at_the_write_deadline() {
    const COUNT: usize = 3072;
    const SIZE: usize = 32 * 1024;
    let server = start(Config {
        workers: 2,
        write_deadline: Duration::from_millis(500),
        ..Config::default()
    });
    let addr = server.local_addr();
    let mut stuck = stuck_subscriber(addr, "SUB big 1\r\n");
    let mut reader = client(addr, "SUB big 1\r\n");
    let header = format!("MSG big 1 {SIZE}\r\n");
    let frame = header.len() + SIZE + 2;

    // The reader reads every message, in order, but slower than the publisher can send:
    // it naps a millisecond every 128 KiB (at most ~128 MB/s, against a loopback publisher
    // several times faster), so without backpressure far more than the 64 MiB cap would
    // pile up for it.
    let read = thread::spawn(move || {
        let mut buf = vec![0u8; frame];
        for i in 0..COUNT {
            reader.read_exact(&mut buf).unwrap_or_else(|e| {
                panic!("the slow reader was cut after {i} messages: {e}");
            });
            assert!(buf.starts_with(header.as_bytes()), "message {i}: framing");
            let n: usize = std::str::from_utf8(&buf[header.len()..header.len() + 8])
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(n, i, "publish order");
            if i % 4 == 3 {
                thread::sleep(Duration::from_millis(1));
            }
        }
        reader
    });
    let mut publisher = client(addr, "");
    let publish = thread::spawn(move || {
        let body = vec![b'x'; SIZE - 8];
        let mut batch = Vec::with_capacity(16 * (SIZE + 32));
        for chunk in 0..COUNT / 16 {
            batch.clear();
            for i in chunk * 16..chunk * 16 + 16 {
                batch.extend_from_slice(format!("PUB big {SIZE}\r\n{i:08}").as_bytes());
                batch.extend_from_slice(&body);
                batch.extend_from_slice(b"\r\n");
            }
            publisher.write_all(&batch).unwrap();
        }
        publisher.write_all(b"PING\r\n").unwrap();
        read_through_pong(&mut publisher);
    });
    let mut reader = read.join().expect("the slow reader got every message");
    publish.join().unwrap();
    // The stuck one was cut (silently, as nats-server does), having taken little.
    let stuck_bytes = drain_until_closed(&mut stuck);
    assert!(
        stuck_bytes < COUNT * frame / 4,
        "stuck got {stuck_bytes} bytes"
    );
    // The reader is still connected and served.
    reader.write_all(b"PING\r\n").unwrap();
    read_through_pong(&mut reader);
    let stats = server.shutdown().unwrap();
    assert_eq!(
        stats[Counter::SlowConsumers],
        1,
        "only the stuck subscriber was cut"
    );
}

/// Latency in microseconds from each message's scheduled send time.
fn p99(mut v: Vec<u64>) -> u64 {
    assert!(!v.is_empty());
    v.sort_unstable();
    v[(v.len() * 99 / 100).min(v.len() - 1)]
}

#[test]
fn one_stuck_subscriber_among_fifty_holds_the_others_up_only_until_its_deadline() {
    const HEALTHY: usize = 50;
    const SIZE: usize = 1024;
    // One message every millisecond for 2.5 s; the stuck subscriber arrives at 400 ms. With
    // each, 64 KiB on `bulk`, which only the stuck one takes: it passes its stall mark
    // within a few ms (rather than hiding in kernel buffers), then after the cut `bulk`
    // goes to nobody.
    const COUNT: u64 = 2500;
    const STUCK_AT_MS: u64 = 400;
    let deadline = Duration::from_millis(500);
    let server = start(Config {
        workers: 2,
        max_pending: 16 * 1024 * 1024,
        write_deadline: deadline,
        ..Config::default()
    });
    let addr = server.local_addr();
    let base = Arc::new(Instant::now() + Duration::from_millis(200));
    let header = format!("MSG lat 1 {SIZE}\r\n");
    let frame = header.len() + SIZE + 2;
    let readers: Vec<_> = (0..HEALTHY)
        .map(|_| {
            let mut s = client(addr, "SUB lat 1\r\n");
            let base = Arc::clone(&base);
            thread::spawn(move || {
                // (scheduled ms, latency µs) per message.
                let mut seen = Vec::with_capacity(COUNT as usize);
                let mut buf = vec![0u8; frame];
                for _ in 0..COUNT {
                    s.read_exact(&mut buf)
                        .expect("a healthy subscriber got every message");
                    let at = Instant::now();
                    let ms: u64 = std::str::from_utf8(&buf[frame - 2 - SIZE..][..8])
                        .unwrap()
                        .parse()
                        .unwrap();
                    let scheduled = *base + Duration::from_millis(ms);
                    let late = at.saturating_duration_since(scheduled).as_micros() as u64;
                    seen.push((ms, late));
                }
                seen
            })
        })
        .collect();
    let mut publisher = client(addr, "");
    let base_p = Arc::clone(&base);
    let publish = thread::spawn(move || {
        let body = vec![b'y'; SIZE - 8];
        let bulk = [&b"PUB bulk 65536\r\n"[..], &vec![b'z'; 65536], b"\r\n"].concat();
        for ms in 0..COUNT {
            // Open loop: each message has its time; a late one is sent at once.
            let due = *base_p + Duration::from_millis(ms);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
            let mut m = format!("PUB lat {SIZE}\r\n{ms:08}").into_bytes();
            m.extend_from_slice(&body);
            m.extend_from_slice(b"\r\n");
            m.extend_from_slice(&bulk);
            publisher.write_all(&m).unwrap();
        }
    });
    let stuck_due = *base + Duration::from_millis(STUCK_AT_MS);
    if let Some(wait) = stuck_due.checked_duration_since(Instant::now()) {
        thread::sleep(wait);
    }
    let mut stuck = stuck_subscriber(addr, "SUB lat 1\r\nSUB bulk 2\r\n");
    let stuck_joined = base.elapsed_ms();
    // Reading the stuck socket would unstick it: watch the server's counter instead.
    let give_up = Instant::now() + WAIT;
    while server.stats()[Counter::SlowConsumers] == 0 {
        assert!(
            Instant::now() < give_up,
            "the stuck subscriber was never cut"
        );
        thread::sleep(Duration::from_millis(1));
    }
    let cut_at = base.elapsed_ms();
    drain_until_closed(&mut stuck);
    publish.join().unwrap();
    let seen: Vec<Vec<(u64, u64)>> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    let window = |from: u64, to: u64| -> Vec<u64> {
        seen.iter()
            .flatten()
            .filter(|(ms, _)| (from..to).contains(ms))
            .map(|&(_, late)| late)
            .collect()
    };
    let before = p99(window(0, stuck_joined));
    let after = p99(window(cut_at + 200, COUNT));
    eprintln!(
        "held {} ms; p99 before {before} µs, after the cut {after} µs",
        cut_at - stuck_joined
    );
    // Cut no earlier than the deadline (it took nothing), and not long after it.
    let held = cut_at - stuck_joined;
    assert!(
        (400..2000).contains(&held),
        "stuck for {held} ms with a 500 ms deadline"
    );
    // Back to normal once it is gone: within 2x the baseline p99 (or a few ms of noise on
    // a shared 2-core machine running 50 reader threads).
    assert!(
        after <= (2 * before).max(20_000),
        "p99 before {before} µs, after the cut {after} µs"
    );
    let stats = server.shutdown().unwrap();
    assert_eq!(stats[Counter::SlowConsumers], 1);
}

trait ElapsedMs {
    fn elapsed_ms(&self) -> u64;
}

impl ElapsedMs for Instant {
    fn elapsed_ms(&self) -> u64 {
        Instant::now().saturating_duration_since(*self).as_millis() as u64
    }
}

#[test]
fn a_publisher_released_by_its_subscriber_on_one_worker_is_answered_again() {
    // One worker: the stall, the throttle and the release all happen inside one flush.
    // Small messages, so that a release finds complete ops held back in the publisher's
    // buffer and hands them on at once.
    const COUNT: usize = 12 * 1024;
    const SIZE: usize = 1024;
    let server = start(Config {
        workers: 1,
        max_pending: 16 * 1024 * 1024,
        ..Config::default()
    });
    let addr = server.local_addr();
    // Reads nothing until everything is published: its queue passes the stall mark (4 MiB).
    let mut sub = stuck_subscriber(addr, "SUB s 1\r\n");
    let mut publisher = client(addr, "");
    let body = vec![b'p'; SIZE];
    let mut batch = Vec::new();
    for _ in 0..COUNT {
        batch.extend_from_slice(format!("PUB s {SIZE}\r\n").as_bytes());
        batch.extend_from_slice(&body);
        batch.extend_from_slice(b"\r\n");
    }
    batch.extend_from_slice(b"PING\r\n");
    let publish = thread::spawn(move || {
        publisher.write_all(&batch).unwrap();
        // Answered once the subscriber drains and releases it.
        read_through_pong(&mut publisher);
        publisher
    });
    let frame = format!("MSG s 1 {SIZE}\r\n").len() + SIZE + 2;
    let mut buf = vec![0u8; frame];
    for i in 0..COUNT {
        sub.read_exact(&mut buf)
            .unwrap_or_else(|e| panic!("message {i}: {e}"));
    }
    let mut publisher = publish.join().expect("the publisher got its PONG");
    publisher.write_all(b"PING\r\n").unwrap();
    read_through_pong(&mut publisher);
    let stats = server.shutdown().unwrap();
    assert_eq!(stats[Counter::SlowConsumers], 0);
}
