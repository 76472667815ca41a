//! Lame-duck mode, as nats-server's (SIGUSR2): the `ldm` INFO, closes spread over the
//! duration after the grace period, new connections refused, the server's end; a real client
//! (async-nats) failing over to another server; and the binary's answer to every signal an
//! operator sends nats-server.
//!
//! `cargo test -p engine --test lame_duck`. nats-server 2.9.10 was observed doing the same
//! (see `docs/protocol.md`, Lame-duck mode); these tests drive the engine only, since
//! nats-server's lame-duck duration cannot be shorter than 30 s.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use async_nats::{ConnectOptions, Event};
use engine::config::Config;
use engine::counters::{Counter, Snapshot};
use engine::server::{spawn, ServerHandle};
use futures::StreamExt;
use socket2::{Domain, Socket, Type};

use common::bin::Engine;
use common::{Client, CONNECT, WAIT};

/// `CONNECT` as client libraries send it: protocol 1, so INFO updates are understood.
const CONNECT_PROTO1: &[u8] = b"CONNECT {\"verbose\":false,\"pedantic\":false,\"protocol\":1}\r\n";

fn start(config: Config) -> ServerHandle {
    spawn(TcpListener::bind("127.0.0.1:0").unwrap(), config).unwrap()
}

/// A client that sent CONNECT with protocol 1 and had its first PING answered.
fn connected(addr: SocketAddr) -> Client {
    let mut c = Client::connect(addr);
    c.send(CONNECT_PROTO1);
    c.expect_open();
    c
}

/// Reads the next line and checks it is `c`'s first INFO again, plus `"ldm":true`.
fn expect_ldm_info(c: &mut Client) {
    let line = c.read_line();
    let json = line
        .strip_prefix(b"INFO ")
        .and_then(|j| j.strip_suffix(b" \r\n"))
        .unwrap_or_else(|| panic!("not an INFO line: {}", common::show(&line)));
    let got: serde_json::Value = serde_json::from_slice(json).expect("INFO is JSON");
    let mut want = c.info_json();
    want["ldm"] = true.into();
    assert_eq!(got, want);
}

/// Waits, at most [`WAIT`], for the server to stop by itself (the end of lame-duck mode).
fn wait_stopped(server: ServerHandle) -> Snapshot {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(server.wait());
    });
    rx.recv_timeout(WAIT)
        .expect("the server did not stop by itself")
        .expect("a worker failed")
}

#[test]
fn tells_clients_then_closes_them_spread_out_refuses_new_ones_and_stops() {
    let duration = Duration::from_millis(600);
    let grace = Duration::from_millis(200);
    let server = start(Config {
        workers: 2,
        lame_duck_duration: duration,
        lame_duck_grace_period: grace,
        ..Config::default()
    });
    let addr = server.local_addr();
    // Connections are dealt to the two workers in turn: three each.
    let mut informed: Vec<Client> = (0..4).map(|_| connected(addr)).collect();
    // As nats-server, no INFO update for a client that sent no CONNECT or protocol 0.
    let mut no_connect = Client::connect(addr);
    let mut protocol_0 = Client::connect(addr);
    protocol_0.send(CONNECT);
    protocol_0.expect_open();

    let started = Instant::now();
    server.lame_duck();
    for c in &mut informed {
        expect_ldm_info(c);
    }
    // Each worker sends the `ldm` INFO only once the listener is closed.
    let refused = TcpStream::connect(addr);
    assert!(
        refused.is_err(),
        "a new connection was accepted: {refused:?}"
    );

    for c in &mut informed {
        c.expect_closed();
    }
    no_connect.expect_closed();
    protocol_0.expect_closed();
    // Closed no sooner than their schedule: 6 connections fill the 400 ms after the grace
    // period, so each worker closes its 3 at grace + 0, 133 and 267 ms.
    let elapsed = started.elapsed();
    assert!(
        elapsed >= grace + Duration::from_millis(260),
        "all closed after {elapsed:?}: not spread over the duration"
    );
    let stats = wait_stopped(server);
    assert_eq!((stats[Counter::Accepted], stats[Counter::Closed]), (6, 6));
}

#[test]
fn with_no_connection_it_stops_at_once() {
    // nats-server's defaults: a 10 s grace period, which only applies to connected clients.
    let server = start(Config {
        workers: 2,
        ..Config::default()
    });
    server.lame_duck();
    server.lame_duck();
    let started = Instant::now();
    let stats = wait_stopped(server);
    assert!(started.elapsed() < WAIT);
    assert_eq!(stats[Counter::Accepted], 0);
}

#[test]
fn pending_bytes_go_out_before_the_close() {
    let server = start(Config {
        workers: 1,
        lame_duck_duration: Duration::from_millis(200),
        lame_duck_grace_period: Duration::ZERO,
        // Longer than the test may take: the flush, not the deadline, ends the connection.
        shutdown_grace: Duration::from_secs(60),
        ..Config::default()
    });
    let addr = server.local_addr();
    // A subscriber with a small receive buffer that reads nothing until lame-duck mode.
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut sub = Client::from_stream(socket.into());
    sub.read_line();
    sub.send(CONNECT_PROTO1);
    sub.send(b"SUB big 1\r\n");
    sub.expect_open();
    // 8 MiB for it: more than the socket buffers hold (4 MiB at most on Linux), less than
    // max_pending.
    let count = 8192;
    let payload = vec![b'x'; 1024];
    let mut publisher = connected(addr);
    for _ in 0..count {
        publisher.send(b"PUB big 1024\r\n");
        publisher.send(&payload);
        publisher.send(b"\r\n");
    }
    // One worker: by its PONG, every message is queued for the subscriber.
    publisher.expect_open();

    server.lame_duck();
    expect_ldm_info(&mut publisher);
    publisher.expect_closed();
    // Every message, then the `ldm` INFO queued behind them, then the close.
    let got = sub.read_until(b",\"ldm\":true} \r\n");
    let header = b"MSG big 1 1024\r\n";
    let msgs = got.windows(header.len()).filter(|w| w == header).count();
    assert_eq!(msgs, count);
    sub.expect_closed();
    wait_stopped(server);
}

/// Waits for `event` on `events`, skipping others.
async fn expect_event(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<Event>,
    want: fn(&Event) -> bool,
) {
    tokio::time::timeout(WAIT, async {
        while let Some(e) = events.recv().await {
            if want(&e) {
                return;
            }
        }
        panic!("event stream ended");
    })
    .await
    .expect("timed out waiting for an event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_nats_fails_over_to_the_other_server() {
    let ducking = start(Config {
        workers: 2,
        lame_duck_duration: Duration::from_millis(300),
        lame_duck_grace_period: Duration::from_millis(100),
        ..Config::default()
    });
    let other = start(Config {
        workers: 2,
        ..Config::default()
    });
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let client = ConnectOptions::new()
        // Connect to the first URL first, so that it is the one put into lame-duck mode.
        .retain_servers_order()
        .event_callback(move |e| {
            let tx = events_tx.clone();
            async move {
                let _ = tx.send(e);
            }
        })
        .connect(
            &[
                format!("nats://{}", ducking.local_addr()),
                format!("nats://{}", other.local_addr()),
            ][..],
        )
        .await
        .unwrap();
    expect_event(&mut events, |e| matches!(e, Event::Connected)).await;
    assert_eq!(client.server_info().port, ducking.local_addr().port());
    let mut sub = client.subscribe("failover").await.unwrap();
    common::nats_sync(&client).await;

    ducking.lame_duck();
    expect_event(&mut events, |e| matches!(e, Event::LameDuckMode)).await;
    expect_event(&mut events, |e| matches!(e, Event::Disconnected)).await;
    expect_event(&mut events, |e| matches!(e, Event::Connected)).await;
    // The client's view of the server is updated just after that event; a round trip puts
    // the test behind it.
    common::nats_sync(&client).await;
    assert_eq!(client.server_info().port, other.local_addr().port());

    // The subscription was renewed on the other server: a message goes through there.
    client.publish("failover", "after".into()).await.unwrap();
    let msg = tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("timed out waiting for the message")
        .expect("subscription ended");
    assert_eq!(&msg.payload[..], b"after");

    let stats = tokio::task::spawn_blocking(move || wait_stopped(ducking))
        .await
        .unwrap();
    assert_eq!(stats[Counter::Accepted], stats[Counter::Closed]);
    other.shutdown().unwrap();
}

#[test]
fn binary_survives_hup_and_usr1_and_exits_0_after_lame_duck_on_usr2() {
    let (mut engine, addr) = Engine::start(&[
        "--workers",
        "2",
        "--lame-duck-duration",
        "1s",
        "--lame-duck-grace-period",
        "100ms",
    ]);
    let mut c = connected(addr);

    // SIGHUP: nats-server reloads its config file; there is none here, so nothing happens.
    engine.signal("HUP");
    engine.expect_log("SIGHUP");
    c.expect_open();
    connected(addr).expect_open();

    // SIGUSR1: counters are logged, one line per worker.
    engine.signal("USR1");
    engine.expect_log("counters");
    engine.expect_log("counters");
    c.expect_open();

    // SIGUSR2: lame-duck mode, then a clean exit once the client is closed.
    engine.signal("USR2");
    expect_ldm_info(&mut c);
    c.expect_closed();
    let status = engine.expect_exit();
    assert!(status.success(), "exit status {status:?}");
    assert!(TcpStream::connect(addr).is_err(), "still listening");
}
