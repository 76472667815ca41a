//! Fan-out at scale, slow consumers and shutdown, through raw TCP against the real server.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::spawn;
use engine::config::Config;
use engine::counters::Counter;
use engine::server::ServerHandle;
use net::proto::{Op, Parser, ParserLimits, Side};

const WAIT: Duration = Duration::from_secs(20);

fn start(config: Config) -> ServerHandle {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    spawn(listener, config).unwrap()
}

/// A raw client: a blocking socket plus the project's own client-side parser.
struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Bytes of `buf` already parsed (dropped in bulk, not per op).
    start: usize,
    parser: Parser,
}

/// What a raw client saw.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Msg(Vec<u8>, Vec<u8>),
    Pong,
    Other,
}

impl Raw {
    fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_nodelay(true).unwrap();
        let mut raw = Raw {
            stream,
            buf: Vec::new(),
            start: 0,
            parser: Parser::new(Side::Client, ParserLimits::default()),
        };
        raw.send(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\n");
        raw
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads until one op is complete; None on EOF.
    fn next(&mut self) -> Option<Seen> {
        loop {
            if let Some((op, used)) = self.parser.parse(&self.buf[self.start..]).unwrap() {
                let seen = match op {
                    Op::Msg(m) => Seen::Msg(m.subject.to_vec(), m.payload.to_vec()),
                    Op::Pong => Seen::Pong,
                    _ => Seen::Other,
                };
                self.start += used;
                return Some(seen);
            }
            self.buf.drain(..self.start);
            self.start = 0;
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    /// Round trip: every op sent before has been processed by the server.
    fn sync(&mut self) {
        self.send(b"PING\r\n");
        loop {
            match self.next() {
                Some(Seen::Pong) => return,
                Some(Seen::Other) => continue,
                other => panic!("expected PONG, got {other:?}"),
            }
        }
    }
}

#[test]
fn thousand_connections_fan_out_without_loss() {
    let _ = rlimit::increase_nofile_limit(8192);
    let server = start(Config {
        workers: 2,
        ..Config::default()
    });
    const SUBSCRIBERS: usize = 1000;
    const MESSAGES: usize = 50;
    let mut subs: Vec<Raw> = (0..SUBSCRIBERS)
        .map(|i| {
            let mut r = Raw::connect(server.local_addr());
            // Half on a literal subject, half through a wildcard.
            let pattern = if i % 2 == 0 { "fan.out" } else { "fan.*" };
            r.send(format!("SUB {pattern} {i}\r\n").as_bytes());
            r
        })
        .collect();
    for s in subs.iter_mut() {
        s.sync();
    }
    let mut publisher = Raw::connect(server.local_addr());
    for i in 0..MESSAGES {
        publisher.send(format!("PUB fan.out 4\r\n{i:04}\r\n").as_bytes());
    }
    publisher.sync();
    for (n, s) in subs.iter_mut().enumerate() {
        for i in 0..MESSAGES {
            match s.next() {
                Some(Seen::Msg(subject, payload)) => {
                    assert_eq!(subject, b"fan.out");
                    assert_eq!(
                        payload,
                        format!("{i:04}").as_bytes(),
                        "subscriber {n}: order"
                    );
                }
                other => panic!("subscriber {n} message {i}: got {other:?}"),
            }
        }
    }
    let stats = server.shutdown().unwrap();
    assert_eq!(stats[Counter::OutMsgs], (SUBSCRIBERS * MESSAGES) as u64);
    assert_eq!(stats[Counter::InMsgs], MESSAGES as u64);
}

#[test]
fn stalled_subscriber_is_cut_off_and_others_get_everything() {
    const MAX_PENDING: usize = 4 * 1024 * 1024;
    let server = start(Config {
        workers: 2,
        max_pending: MAX_PENDING,
        write_deadline: Duration::from_millis(300),
        ..Config::default()
    });
    let mut stalled = Raw::connect(server.local_addr());
    stalled.send(b"SUB big 1\r\n");
    stalled.sync();
    let mut fast = Raw::connect(server.local_addr());
    fast.send(b"SUB big 1\r\n");
    fast.sync();

    // 64 MiB in windows of 1 MiB: the publisher sends a window, the fast subscriber reads
    // it all before the next one, so the fast one never lags by more than a window (however
    // the machine schedules the test's threads), while the stalled one, which never reads,
    // passes the cap plus whatever its kernel buffers hold.
    const COUNT: usize = 8192;
    const WINDOW: usize = 128;
    let payload = vec![b'x'; 8192];
    let mut publisher = Raw::connect(server.local_addr());
    let mut frame = Vec::new();
    for window in 0..COUNT / WINDOW {
        frame.clear();
        for i in window * WINDOW..(window + 1) * WINDOW {
            frame.extend_from_slice(format!("PUB big {}\r\n", payload.len() + 8).as_bytes());
            frame.extend_from_slice(format!("{i:08}").as_bytes());
            frame.extend_from_slice(&payload);
            frame.extend_from_slice(b"\r\n");
        }
        publisher.send(&frame);
        for i in window * WINDOW..(window + 1) * WINDOW {
            match fast.next() {
                Some(Seen::Msg(_, body)) => {
                    assert_eq!(&body[..8], format!("{i:08}").as_bytes())
                }
                other => panic!("fast subscriber, message {i}: {other:?}"),
            }
        }
    }
    publisher.sync();
    // The stalled one was closed by the server: draining it ends in EOF, well short of
    // everything that was published.
    let mut received = 0usize;
    let mut chunk = [0u8; 64 * 1024];
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "stalled connection never closed");
        match stalled.stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => received += n,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("read failed: {e}"),
        }
    }
    assert!(received < COUNT * 8200 / 2, "received {received} bytes");
    assert!(
        !String::from_utf8_lossy(&chunk).contains("-ERR"),
        "cut off silently, as nats-server does"
    );
    let stats = server.shutdown().unwrap();
    assert_eq!(stats[Counter::SlowConsumers], 1);
}

#[test]
fn client_that_never_reads_its_pongs_is_cut_off() {
    let server = start(Config {
        workers: 2,
        max_pending: 64 * 1024,
        ..Config::default()
    });
    let mut c = Raw::connect(server.local_addr());
    // 24 MiB of PINGs, never reading a PONG: the replies must not pile up without bound.
    let pings = b"PING\r\n".repeat(64 * 1024);
    let mut closed = false;
    for _ in 0..64 {
        if c.stream.write_all(&pings).is_err() {
            closed = true;
            break;
        }
    }
    if !closed {
        // Everything was accepted by the kernel; the server must still close us.
        let mut chunk = vec![0u8; 1 << 20];
        loop {
            match c.stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }
    let stats = server.shutdown().unwrap();
    assert_eq!(stats[Counter::SlowConsumers], 1);
}

#[test]
fn queue_message_goes_to_another_member_when_the_chosen_one_is_gone() {
    let server = start(Config {
        workers: 2,
        ..Config::default()
    });
    let addr = server.local_addr();
    // A leaves the group after 50 messages (auto-unsubscribe); B stays.
    let mut a = Raw::connect(addr);
    a.send(b"SUB work q 1\r\nUNSUB 1 50\r\n");
    a.sync();
    let mut b = Raw::connect(addr);
    b.send(b"SUB work q 1\r\n");
    b.sync();
    let mut publisher = Raw::connect(addr);
    const N: usize = 2000;
    let mut batch = Vec::new();
    for i in 0..N {
        batch.extend_from_slice(format!("PUB work 4\r\n{i:04}\r\n").as_bytes());
    }
    publisher.send(&batch);
    publisher.sync();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..50 {
        match a.next() {
            Some(Seen::Msg(_, p)) => assert!(seen.insert(p)),
            other => panic!("A: {other:?}"),
        }
    }
    for _ in 0..N - 50 {
        match b.next() {
            Some(Seen::Msg(_, p)) => assert!(seen.insert(p), "delivered twice"),
            other => panic!("B after {} messages: {other:?}", seen.len()),
        }
    }
    assert_eq!(seen.len(), N, "every message to exactly one member");
    a.sync();
    b.sync();
    server.shutdown().unwrap();
}

#[test]
fn shutdown_flushes_then_closes_and_stops_listening() {
    let server = start(Config {
        workers: 2,
        ..Config::default()
    });
    let addr = server.local_addr();
    let mut sub = Raw::connect(addr);
    sub.send(b"SUB bye 1\r\n");
    sub.sync();
    let mut publisher = Raw::connect(addr);
    for i in 0..100 {
        publisher.send(format!("PUB bye 3\r\n{i:03}\r\n").as_bytes());
    }
    publisher.sync();
    let started = Instant::now();
    server.shutdown().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    for i in 0..100 {
        assert_eq!(
            sub.next(),
            Some(Seen::Msg(b"bye".to_vec(), format!("{i:03}").into_bytes()))
        );
    }
    assert_eq!(sub.next(), None, "closed after the flush");
    assert!(TcpStream::connect(addr).is_err(), "no longer listening");
}

#[test]
fn binary_serves_and_exits_cleanly_on_sigterm() {
    /// Kills the server if the test fails before it exits on its own.
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut reap = Reap(
        Command::new(env!("CARGO_BIN_EXE_engine"))
            .args(["serve", "--listen", "127.0.0.1:0", "--workers", "2"])
            .args(common::test_io_args())
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let child = &mut reap.0;
    let mut stderr = child.stderr.take().unwrap();
    // Read the log until the listening line names the port.
    let mut log = Vec::new();
    let addr: SocketAddr = loop {
        let mut b = [0u8; 1024];
        let n = stderr.read(&mut b).unwrap();
        assert!(
            n > 0,
            "engine exited early: {}",
            String::from_utf8_lossy(&log)
        );
        log.extend_from_slice(&b[..n]);
        let text = String::from_utf8_lossy(&log);
        if let Some(line) = text
            .lines()
            .find(|l| l.contains("listening for NATS clients"))
        {
            let at = line.find("addr=").unwrap() + 5;
            let rest = &line[at..];
            let end = rest.find(' ').unwrap_or(rest.len());
            break rest[..end].parse().unwrap();
        }
    };
    let mut c = Raw::connect(addr);
    c.sync();
    c.send(b"SUB t 1\r\nPUB t 2\r\nhi\r\n");
    assert_eq!(c.next(), Some(Seen::Msg(b"t".to_vec(), b"hi".to_vec())));
    // Counters are readable while it runs: SIGUSR1 logs each worker's.
    let status = Command::new("kill")
        .args(["-USR1", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    loop {
        let text = String::from_utf8_lossy(&log).to_string();
        let counted = text
            .lines()
            .filter(|l| l.contains("counters") && l.contains("in_msgs"))
            .count();
        if counted == 2 {
            let total_in: u64 = text
                .lines()
                .filter(|l| l.contains("counters"))
                .filter_map(|l| l.split("in_msgs: ").nth(1))
                .filter_map(|v| v.split(',').next()?.parse::<u64>().ok())
                .sum();
            assert_eq!(total_in, 1, "one message published so far: {text}");
            break;
        }
        let mut b = [0u8; 1024];
        let n = stderr.read(&mut b).unwrap();
        assert!(n > 0, "engine exited early: {text}");
        log.extend_from_slice(&b[..n]);
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + WAIT;
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "engine did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "exit status {exit:?}");
    assert_eq!(c.next(), None, "connection closed on shutdown");
}
