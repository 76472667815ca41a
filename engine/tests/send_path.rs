//! The send path (`--io`): io_uring where it works, writev otherwise or when asked, and the
//! same bytes to every subscriber either way, past the size of one io_uring round.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};

use engine::config::{Config, IoMode};
use engine::limits;
use engine::uring::SendRing;

fn uring_works() -> bool {
    SendRing::new(8).is_ok()
}

fn server(io: IoMode) -> engine::server::ServerHandle {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    engine::server::spawn(
        listener,
        Config {
            workers: 2,
            io,
            ..Config::default()
        },
    )
    .unwrap()
}

#[test]
fn auto_takes_io_uring_where_it_works_and_writev_is_taken_when_asked() {
    let expect = if uring_works() {
        IoMode::Uring
    } else {
        IoMode::Writev
    };
    assert_eq!(server(IoMode::Auto).send_path(), expect);
    assert_eq!(server(IoMode::Writev).send_path(), IoMode::Writev);
    if uring_works() {
        assert_eq!(server(IoMode::Uring).send_path(), IoMode::Uring);
    }
}

fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(common::WAIT)).unwrap();
    let mut info = [0u8; 1];
    // Consume the INFO line.
    let mut line = Vec::new();
    loop {
        s.read_exact(&mut info).unwrap();
        line.push(info[0]);
        if line.ends_with(b"\r\n") {
            break;
        }
    }
    s.write_all(common::CONNECT).unwrap();
    s
}

fn read_exactly(s: &mut TcpStream, expected: &[u8]) {
    let mut got = vec![0; expected.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(common::show(&got), common::show(expected));
}

/// Three io_uring rounds' worth of subscribers (more than `SEND_RING_ENTRIES` on each
/// worker) get every message, whole and in order, on both send paths.
#[test]
fn a_fan_out_wider_than_one_round_reaches_everyone_exactly_on_both_paths() {
    let _ = rlimit::increase_nofile_limit(4096);
    let subscribers = 3 * limits::SEND_RING_ENTRIES as usize * 2;
    for io in [IoMode::Writev, IoMode::Auto] {
        let server = server(io);
        let addr = server.local_addr();
        let mut subs: Vec<TcpStream> = (0..subscribers)
            .map(|_| {
                let mut s = connect(addr);
                s.write_all(b"SUB wide 1\r\nPING\r\n").unwrap();
                s
            })
            .collect();
        for s in &mut subs {
            read_exactly(s, b"PONG\r\n");
        }
        let mut publisher = connect(addr);
        let mut expected = Vec::new();
        for i in 0..20 {
            // Payloads of several sizes, some larger than an outbound chunk.
            let payload = vec![b'a' + (i % 26) as u8; 1 + i * 997];
            publisher
                .write_all(format!("PUB wide {}\r\n", payload.len()).as_bytes())
                .unwrap();
            publisher.write_all(&payload).unwrap();
            publisher.write_all(b"\r\n").unwrap();
            expected.extend_from_slice(format!("MSG wide 1 {}\r\n", payload.len()).as_bytes());
            expected.extend_from_slice(&payload);
            expected.extend_from_slice(b"\r\n");
        }
        publisher.write_all(b"PING\r\n").unwrap();
        read_exactly(&mut publisher, b"PONG\r\n");
        for s in &mut subs {
            read_exactly(s, &expected);
        }
        let stats = server.shutdown().unwrap();
        assert_eq!(
            stats[engine::counters::Counter::OutMsgs],
            20 * subscribers as u64,
            "{io:?}"
        );
    }
}

/// The binary logs the send path it chose, once, and `--io writev` is obeyed.
#[test]
fn the_binary_logs_its_send_path() {
    let mut cases = vec![(vec!["--io", "writev"], "send path: writev")];
    if uring_works() {
        cases.push((vec![], "send path: io_uring"));
        cases.push((vec!["--io", "uring"], "send path: io_uring"));
    }
    for (args, expect) in cases {
        let mut child = Command::new(env!("CARGO_BIN_EXE_engine"))
            .args(["serve", "--listen", "127.0.0.1:0", "--workers", "2"])
            .args(&args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let mut seen = Vec::new();
        for line in stderr.lines() {
            let line = line.unwrap();
            let listening = line.contains("listening for NATS clients");
            seen.push(line);
            if listening {
                break;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        let paths: Vec<&String> = seen.iter().filter(|l| l.contains("send path")).collect();
        assert_eq!(paths.len(), 1, "{args:?}: {seen:#?}");
        assert!(paths[0].contains(expect), "{args:?}: {}", paths[0]);
    }
}
