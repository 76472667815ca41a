//! A member that pipelines history requests and never reads the answers: each 90-byte
//! request makes its room's owner build a page of about 1 MB. The server must hold what
//! those answers occupy near its documented caps (the answer bytes one connection may have
//! in flight between workers, `--max-pending` for what reached its outbound), cut the
//! flooder as a slow consumer, and keep answering everyone else promptly meanwhile.
//!
//! The same holds for JetStream's API, where a 40-byte `STREAM.INFO` request can ask for
//! every subject of a stream.
//!
//! The server runs in-process, so the test process's resident set is the server's memory.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use engine::config::{Auth, Config};
use engine::counters::Counter;
use engine::limits;
use engine::router::{Route, Router};
use engine::server::{spawn, ServerHandle};
use serde_json::Value;
use socket2::{Domain, Socket, Type};

/// How long any one wait may take.
const WAIT: Duration = Duration::from_secs(10);

/// The tests of this file run one at a time: the flood test measures the whole process.
static ALONE: Mutex<()> = Mutex::new(());

const WORKERS: usize = 2;
const ROOMS: usize = 8;
const MESSAGES_PER_ROOM: usize = 1000;
const MESSAGE_BYTES: usize = 1024;
const REQUESTS: usize = 8000;
/// Subjects of the JetStream flood's stream: one message each.
const JS_SUBJECTS: usize = 5000;
const MAX_PENDING: usize = 16 * 1024 * 1024;
const WRITE_DEADLINE: Duration = Duration::from_millis(500);

/// What a bystander's round trip may take during the flood (generous for a shared 2-core
/// machine running a debug build).
const ROUND_TRIP_BOUND: Duration = Duration::from_secs(1);

#[test]
fn a_history_flood_never_read_stays_within_the_caps_and_delays_nobody() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let server = start();
    let addr = server.local_addr();
    // Connections are handed to the workers in turn, from worker 0: the one that fills the
    // rooms and then the bystander alice live on worker 0, the flooder and then the
    // bystander bob on worker 1. Every room is owned by worker 0, as most of a member's
    // rooms would be owned by other workers than its own on a server with many: every
    // request crosses a ring, and no answer written on the flooder's own worker stalls it
    // first.
    let router = Router::new(WORKERS);
    let rooms: Vec<String> = (0..)
        .map(|i| format!("flood{i}"))
        .filter(|r| router.room(r) == Route::Worker(0))
        .take(ROOMS)
        .collect();

    // One member fills eight rooms with 1,000 one-KB messages each.
    fill(addr, &rooms, MESSAGES_PER_ROOM);

    // The flooder: the same member on a session of its own, whose socket takes little (a
    // stuck client's kernel holds little); then the two bystanders, members of every room.
    let mut flooder = connect(addr, "mallory", 4096);
    flooder
        .write_all(b"SUB _INBOX.flood.> 1\r\nPING\r\n")
        .unwrap();
    read_through_pong(&mut flooder);
    let mut bystanders = [
        bystander(addr, "alice", &rooms),
        bystander(addr, "bob", &rooms),
    ];

    let mut flood = Vec::new();
    for i in 0..REQUESTS {
        let body = format!("{{\"room\":\"{}\",\"limit\":1000}}", rooms[i % ROOMS]);
        flood.extend_from_slice(
            format!(
                "PUB $CHAT.API.history _INBOX.flood.Xq3bN8sLmY7fK2pV.{i} {}\r\n{body}\r\n",
                body.len()
            )
            .as_bytes(),
        );
    }
    assert!(
        (600_000..800_000).contains(&flood.len()),
        "{} bytes of requests",
        flood.len()
    );

    let rss = RssPeak::start();
    let started = Instant::now();
    let mut writer = flooder.try_clone().unwrap();
    let sender = thread::spawn(move || {
        // The server may stop reading this client, and then cut it: a failed write is fine.
        let _ = writer.write_all(&flood);
    });

    // The bystanders take turns asking for a short page of each room, one request at a
    // time, until the flooder has been cut and a while after.
    let mut worst = Duration::ZERO;
    let mut trips = 0;
    let mut cut_after = None;
    while cut_after.is_none_or(|t: Duration| started.elapsed() < t + Duration::from_millis(500)) {
        assert!(
            started.elapsed() < WAIT,
            "the flooder was not cut within {WAIT:?}"
        );
        let room = &rooms[trips % ROOMS];
        let who = &mut bystanders[trips % 2];
        let body = format!("{{\"room\":\"{room}\",\"limit\":10,\"direction\":\"backward\"}}");
        let sent = Instant::now();
        who.get_mut()
            .write_all(
                format!(
                    "PUB $CHAT.API.history _INBOX.me {}\r\n{body}\r\n",
                    body.len()
                )
                .as_bytes(),
            )
            .unwrap();
        let page = read_reply(who);
        let took = sent.elapsed();
        worst = worst.max(took);
        trips += 1;
        let seqs: Vec<u64> = page["messages"]
            .as_array()
            .unwrap_or_else(|| panic!("not a page: {page}"))
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, (991..=1000).rev().collect::<Vec<u64>>(), "{room}");
        assert_eq!(page["room"], room.as_str());
        if cut_after.is_none() && server.stats()[Counter::SlowConsumers] > 0 {
            cut_after = Some(started.elapsed());
        }
    }
    let grew = rss.finish();
    let cut_after = cut_after.unwrap_or_default();
    eprintln!(
        "resident set grew {:.1} MiB at most; {trips} bystander round trips, the slowest {} ms; \
         the flooder was cut after {} ms",
        grew as f64 / (1024.0 * 1024.0),
        worst.as_millis(),
        cut_after.as_millis()
    );

    // What the flooder may hold: the answers in flight between workers, what reached its
    // outbound (at most --max-pending), and slack for the pages being built and serialised
    // on each worker at that moment and for the allocator.
    let bound = limits::CHAT_IN_FLIGHT_BYTES_PER_CONN as usize + MAX_PENDING + 16 * 1024 * 1024;
    assert!(
        (grew as usize) < bound,
        "the resident set grew {grew} bytes, past {bound}"
    );
    assert!(
        worst < ROUND_TRIP_BOUND,
        "a bystander waited {worst:?} for a 10-message page"
    );
    // The flooder was cut as a slow consumer (it took nothing for the write deadline), not
    // served without end: its socket ends.
    drain_until_closed(&mut flooder);
    sender.join().unwrap();
    let stats = server.shutdown().unwrap();
    assert_eq!(stats[Counter::SlowConsumers], 1, "only the flooder was cut");
}

#[test]
fn a_jetstream_info_flood_never_read_stays_within_the_caps_and_delays_nobody() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    let server = start();
    let addr = server.local_addr();
    // As above: the filler and then alice on worker 0 (JetStream's owner), the flooder and
    // then bob on worker 1, so the flooder's every request crosses a ring.
    let mut filler = connect(addr, "mallory", 1 << 20);
    let config = r#"{"name":"FLOOD","subjects":["flood.>"],"storage":"memory"}"#;
    let mut setup = format!(
        "SUB _INBOX.setup 1\r\nPUB $JS.API.STREAM.CREATE.FLOOD _INBOX.setup {}\r\n{config}\r\n",
        config.len()
    )
    .into_bytes();
    for i in 0..JS_SUBJECTS {
        setup.extend_from_slice(format!("PUB flood.{i} 1\r\nx\r\n").as_bytes());
    }
    setup.extend_from_slice(b"PING\r\n");
    filler.write_all(&setup).unwrap();
    read_through_pong(&mut filler);
    let mut flooder = connect(addr, "mallory", 4096);
    flooder
        .write_all(b"SUB _INBOX.flood.> 1\r\nPING\r\n")
        .unwrap();
    read_through_pong(&mut flooder);
    let mut bystanders = [js_bystander(addr, "alice"), js_bystander(addr, "bob")];

    // Each answer lists every subject: about 20 bytes each, 100 KB an answer.
    let body = r#"{"subjects_filter":">"}"#;
    let mut flood = Vec::new();
    for i in 0..REQUESTS {
        flood.extend_from_slice(
            format!(
                "PUB $JS.API.STREAM.INFO.FLOOD _INBOX.flood.{i} {}\r\n{body}\r\n",
                body.len()
            )
            .as_bytes(),
        );
    }
    let rss = RssPeak::start();
    let started = Instant::now();
    let mut writer = flooder.try_clone().unwrap();
    let sender = thread::spawn(move || {
        let _ = writer.write_all(&flood);
    });
    let mut worst = Duration::ZERO;
    let mut trips = 0;
    let mut cut_after = None;
    while cut_after.is_none_or(|t: Duration| started.elapsed() < t + Duration::from_millis(500)) {
        assert!(
            started.elapsed() < WAIT,
            "the flooder was not cut within {WAIT:?}"
        );
        let who = &mut bystanders[trips % 2];
        let sent = Instant::now();
        who.get_mut()
            .write_all(b"PUB $JS.API.STREAM.INFO.FLOOD _INBOX.me 0\r\n\r\n")
            .unwrap();
        let info = read_reply(who);
        worst = worst.max(sent.elapsed());
        trips += 1;
        assert_eq!(info["state"]["messages"], JS_SUBJECTS as u64, "{info}");
        if cut_after.is_none() && server.stats()[Counter::SlowConsumers] > 0 {
            cut_after = Some(started.elapsed());
        }
    }
    let grew = rss.finish();
    eprintln!(
        "resident set grew {:.1} MiB at most; {trips} bystander round trips, the slowest {} ms; \
         the flooder was cut after {} ms",
        grew as f64 / (1024.0 * 1024.0),
        worst.as_millis(),
        cut_after.unwrap_or_default().as_millis()
    );
    // One answer in flight, what reached the flooder's outbound, and slack as above.
    let bound = MAX_PENDING + 16 * 1024 * 1024;
    assert!(
        (grew as usize) < bound,
        "the resident set grew {grew} bytes, past {bound}"
    );
    assert!(
        worst < ROUND_TRIP_BOUND,
        "a bystander waited {worst:?} for a stream's info"
    );
    drain_until_closed(&mut flooder);
    sender.join().unwrap();
    let stats = server.shutdown().unwrap();
    assert_eq!(stats[Counter::SlowConsumers], 1, "only the flooder was cut");
}

#[test]
fn pipelined_requests_that_are_read_are_all_answered_and_each_pong_follows_its_own() {
    let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
    // Two rooms owned by each worker; the reader, the second connection, lives on worker 1,
    // so half of its pages cross the rings and each of those fills the in-flight bytes of a
    // connection by itself.
    let server = start();
    let addr = server.local_addr();
    let router = Router::new(WORKERS);
    let mut rooms = Vec::new();
    for owner in 0..WORKERS {
        rooms.extend(
            (0..)
                .map(|i| format!("paced{i}"))
                .filter(|r| router.room(r) == Route::Worker(owner))
                .take(2),
        );
    }
    fill(addr, &rooms, 200);
    let mut reader = bystander(addr, "alice", &rooms);
    const PER_PING: usize = 24;
    let mut ops = b"SUB _INBOX.paced.> 2\r\n".to_vec();
    for i in 0..2 * PER_PING {
        let body = match i % 6 {
            5 => "{}".to_owned(),
            _ => format!("{{\"room\":\"{}\",\"limit\":100}}", rooms[i % rooms.len()]),
        };
        let op = if i % 6 == 5 { "whoami" } else { "history" };
        ops.extend_from_slice(
            format!(
                "PUB $CHAT.API.{op} _INBOX.paced.{i} {}\r\n{body}\r\n",
                body.len()
            )
            .as_bytes(),
        );
        if i % PER_PING == PER_PING - 1 {
            ops.extend_from_slice(b"PING\r\n");
        }
    }
    reader.get_mut().write_all(&ops).unwrap();
    for round in 0..2 {
        let mut answered = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("an answer or a PONG");
            if line == "PONG\r\n" {
                break;
            }
            let parts: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(parts[0], "MSG", "{line:?}");
            let len: usize = parts[3].parse().unwrap();
            let mut payload = vec![0u8; len + 2];
            reader.read_exact(&mut payload).unwrap();
            let reply: Value = serde_json::from_slice(&payload[..len]).unwrap();
            let i: usize = parts[1].rsplit('.').next().unwrap().parse().unwrap();
            if i % 6 == 5 {
                assert_eq!(reply["user"], "alice");
            } else {
                assert_eq!(reply["messages"].as_array().map(Vec::len), Some(100), "{i}");
            }
            answered.push(i);
        }
        answered.sort_unstable();
        assert_eq!(
            answered,
            (round * PER_PING..(round + 1) * PER_PING).collect::<Vec<_>>(),
            "the answers before PONG {round}"
        );
    }
    let stats = server.shutdown().unwrap();
    assert_eq!(stats[Counter::SlowConsumers], 0);
}

fn start() -> ServerHandle {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    spawn(
        listener,
        Config {
            workers: WORKERS,
            auth: Auth::Users(
                ["mallory", "alice", "bob"]
                    .iter()
                    .map(|u| ((*u).to_owned(), format!("pw-{u}")))
                    .collect(),
            ),
            max_pending: MAX_PENDING,
            write_deadline: WRITE_DEADLINE,
            jetstream: true,
            ..Config::default()
        },
    )
    .unwrap()
}

/// A connection of `user`, subscribed to its replies on `_INBOX.me`.
fn js_bystander(addr: SocketAddr, user: &str) -> BufReader<TcpStream> {
    let mut s = connect(addr, user, 1 << 20);
    s.write_all(b"SUB _INBOX.me 1\r\nPING\r\n").unwrap();
    read_through_pong(&mut s);
    BufReader::new(s)
}

/// Creates `rooms` as mallory and publishes `messages` of [`MESSAGE_BYTES`] to each.
fn fill(addr: SocketAddr, rooms: &[String], messages: usize) {
    let mut owner = connect(addr, "mallory", 1 << 20);
    let mut setup = b"SUB _INBOX.setup 1\r\n".to_vec();
    for room in rooms {
        let body = format!("{{\"room\":\"{room}\"}}");
        setup.extend_from_slice(
            format!(
                "PUB $CHAT.API.room.create _INBOX.setup {}\r\n{body}\r\n",
                body.len()
            )
            .as_bytes(),
        );
    }
    let text = vec![b'm'; MESSAGE_BYTES];
    for room in rooms {
        for _ in 0..messages {
            setup.extend_from_slice(format!("PUB $CHAT.MSG.{room} {MESSAGE_BYTES}\r\n").as_bytes());
            setup.extend_from_slice(&text);
            setup.extend_from_slice(b"\r\n");
        }
    }
    setup.extend_from_slice(b"PING\r\n");
    owner.write_all(&setup).unwrap();
    read_through_pong(&mut owner);
}

/// A member of every room in `rooms`, subscribed to its replies on `_INBOX.me`.
fn bystander(addr: SocketAddr, user: &str, rooms: &[String]) -> BufReader<TcpStream> {
    let mut s = connect(addr, user, 1 << 20);
    let mut joins = b"SUB _INBOX.me 1\r\n".to_vec();
    for room in rooms {
        let body = format!("{{\"room\":\"{room}\"}}");
        joins.extend_from_slice(
            format!(
                "PUB $CHAT.API.room.join _INBOX.me {}\r\n{body}\r\n",
                body.len()
            )
            .as_bytes(),
        );
    }
    joins.extend_from_slice(b"PING\r\n");
    s.write_all(&joins).unwrap();
    read_through_pong(&mut s);
    BufReader::new(s)
}

/// A connection authenticated as `user`, with a receive buffer of about `recv_buffer` bytes.
fn connect(addr: SocketAddr, user: &str, recv_buffer: usize) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(recv_buffer).unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut s: TcpStream = socket.into();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        s,
        "CONNECT {{\"verbose\":false,\"pedantic\":false,\"user\":\"{user}\",\
         \"pass\":\"pw-{user}\"}}\r\nPING\r\n"
    )
    .unwrap();
    read_through_pong(&mut s);
    s
}

/// Reads everything up to the next `PONG` (replies before it are skipped).
fn read_through_pong(s: &mut TcpStream) {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    while !seen.ends_with(b"PONG\r\n") {
        let n = s.read(&mut chunk).expect("no PONG in time");
        assert!(n > 0, "closed before PONG");
        seen.extend_from_slice(&chunk[..n]);
    }
}

/// Reads one `MSG` and returns its payload as JSON.
fn read_reply(r: &mut BufReader<TcpStream>) -> Value {
    let mut line = String::new();
    r.read_line(&mut line)
        .unwrap_or_else(|e| panic!("no answer within {WAIT:?}: {e}"));
    let parts: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(parts.first(), Some(&"MSG"), "{line:?}");
    let len: usize = parts[parts.len() - 1].parse().unwrap();
    let mut payload = vec![0u8; len + 2];
    r.read_exact(&mut payload).unwrap();
    serde_json::from_slice(&payload[..len]).unwrap()
}

/// Reads until the server closes the connection.
fn drain_until_closed(s: &mut TcpStream) {
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return,
            Err(e) => panic!("the server never closed the flooder: {e}"),
        }
    }
}

/// The peak of this process's resident set over a stretch, sampled every 2 ms.
struct RssPeak {
    baseline: u64,
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    sampler: thread::JoinHandle<()>,
}

impl RssPeak {
    fn start() -> RssPeak {
        let baseline = rss_bytes();
        let peak = Arc::new(AtomicU64::new(baseline));
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (peak, stop) = (Arc::clone(&peak), Arc::clone(&stop));
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(rss_bytes(), Ordering::Relaxed);
                    thread::sleep(Duration::from_millis(2));
                }
            })
        };
        RssPeak {
            baseline,
            peak,
            stop,
            sampler,
        }
    }

    /// How much the resident set grew above where it was at the start, at most.
    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.sampler.join().unwrap();
        self.peak
            .load(Ordering::Relaxed)
            .saturating_sub(self.baseline)
    }
}

/// This process's resident set (the server runs in it).
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS in /proc/self/status");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmRSS in kB");
    kb * 1024
}
