//! End to end: loadgen against a real server with a few hundred users for a couple of seconds.
//!
//! By default the engine is started in-process on `127.0.0.1:0`. With `LOADGEN_E2E_URL` set
//! (e.g. `nats://127.0.0.1:4222`, or `redis://...` with `LOADGEN_E2E_PROTOCOL=redis`) the same
//! test runs against that external server instead, which is how it is checked against
//! nats-server and Redis.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use loadgen::{Config, Protocol};

/// One load run at a time: each test sizes its schedule and timeouts for a machine it has
/// to itself, and two runs at once on 2 cores would measure each other.
static ONE_RUN_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_run_at_a_time() -> MutexGuard<'static, ()> {
    // A test that failed while holding the lock poisons it; the others still run.
    ONE_RUN_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A server for the test: the in-process engine, or the external one named by the env var.
enum Server {
    Engine(engine::server::ServerHandle),
    External,
}

fn start() -> (Server, String, Protocol) {
    let protocol = match std::env::var("LOADGEN_E2E_PROTOCOL").as_deref() {
        Ok("redis") => Protocol::Redis,
        _ => Protocol::Nats,
    };
    if let Ok(url) = std::env::var("LOADGEN_E2E_URL") {
        return (Server::External, url, protocol);
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let handle = engine::server::spawn(listener, engine::config::Config::default())
        .expect("start the engine in-process");
    let url = format!("nats://{}", handle.local_addr());
    (Server::Engine(handle), url, Protocol::Nats)
}

fn scratch_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!("loadgen-e2e-{}-{nanos}", std::process::id()))
}

#[test]
fn few_hundred_users_zero_loss_and_a_complete_json() {
    let _alone = one_run_at_a_time();
    let (server, url, protocol) = start();
    let out = scratch_dir();
    let config = Config {
        url: Some(url),
        protocol,
        users: 300,
        rooms: Some(10),
        publishers: Some(10),
        rate: 400.0,
        payload: 64,
        duration: 1.5,
        warmup: 0.3,
        drain: 5.0,
        threads: Some(2),
        out: out.clone(),
        label: Some("e2e".to_string()),
        // The server runs in this process (or elsewhere): sampling our own pid exercises the
        // /proc path and fills every field.
        server_pid: Some(std::process::id()),
        quiet: true,
        ..Config::default()
    };
    let report = loadgen::run(&config).expect("the run completes");
    if let Server::Engine(handle) = server {
        handle.shutdown().expect("engine shuts down");
    }

    // Every expected delivery counted, nothing lost, duplicated or reordered.
    assert!(report.publish.sent_in_window > 0);
    let expected = report.publish.sent_in_window * 30; // 300 users / 10 rooms
    assert_eq!(report.deliveries.expected, expected);
    assert_eq!(report.deliveries.received, expected);
    assert_eq!(report.integrity.lost, 0);
    assert_eq!(report.integrity.pairs_with_loss, 0);
    assert_eq!(report.integrity.duplicates, 0);
    assert_eq!(report.integrity.bad_payloads, 0);
    assert_eq!(report.integrity.pairs, 300);
    assert_eq!(report.disconnects.slow_consumer, 0);
    assert_eq!(report.connections.made, 310);
    assert_eq!(report.latency.summary.count, expected);
    assert!(report.latency.summary.p50_us > 0.0);
    assert!(!report.config.chat);
    assert!(report.chat_setup.is_none());
    // Offered 400/s over 1.5 s: the schedule is exact.
    assert_eq!(report.publish.sent_in_window, 600);

    // One JSON with every field present and filled.
    let files: Vec<PathBuf> = std::fs::read_dir(&out)
        .expect("results dir written")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let text = std::fs::read_to_string(&files[0]).expect("read the JSON");
    let json: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    for key in [
        "schema",
        "label",
        "started_utc",
        "git",
        "machine",
        "command_line",
        "config",
        "connections",
        "publish",
        "deliveries",
        "latency",
        "integrity",
        "disconnects",
        "server",
        "loadgen",
        "timeline",
    ] {
        assert!(json.get(key).is_some_and(|v| !v.is_null()), "missing {key}");
    }
    for path in [
        "/git/revision",
        "/machine/cores",
        "/machine/cpu_model",
        "/machine/kernel",
        "/config/users",
        "/config/threads",
        "/connections/connect_secs",
        "/publish/achieved_per_sec",
        "/publish/send_lag/p99_us",
        "/deliveries/per_sec",
        "/deliveries/payload_bytes_per_sec",
        "/latency/summary/p50_us",
        "/latency/summary/p90_us",
        "/latency/summary/p99_us",
        "/latency/summary/p99_9_us",
        "/latency/summary/p99_99_us",
        "/latency/summary/max_us",
        "/integrity/lost",
        "/integrity/duplicates",
        "/integrity/reordered",
        "/disconnects/slow_consumer",
        "/server/cpu_percent",
        "/server/rss_bytes",
    ] {
        assert!(
            json.pointer(path).is_some_and(|v| !v.is_null()),
            "missing {path}"
        );
    }
    let table = json
        .pointer("/latency/percentiles")
        .and_then(|v| v.as_array())
        .expect("percentile table");
    assert!(table.len() >= 10);
    assert!(json
        .pointer("/timeline")
        .and_then(|v| v.as_array())
        .is_some_and(|t| !t.is_empty()));
    let _ = std::fs::remove_dir_all(&out);
}

/// The chat scenario against the in-process engine (the only server with a chat layer):
/// rooms created and joined through `$CHAT.API`, deliveries as HMSG through the chat layer,
/// and the same accounting as plain subjects. A second run against the same server finds
/// the rooms already there and measures the same.
#[test]
fn chat_rooms_zero_loss_and_a_chat_report() {
    let _alone = one_run_at_a_time();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let handle = engine::server::spawn(listener, engine::config::Config::default())
        .expect("start the engine in-process");
    let url = format!("nats://{}", handle.local_addr());
    let out = scratch_dir();
    let config = Config {
        url: Some(url),
        protocol: Protocol::Nats,
        chat: true,
        users: 12,
        rooms: Some(3),
        publishers: Some(3),
        rate: 300.0,
        payload: 32,
        duration: 1.0,
        warmup: 0.2,
        drain: 5.0,
        threads: Some(2),
        out: out.clone(),
        quiet: true,
        ..Config::default()
    };
    let first = loadgen::run(&config).expect("the chat run completes");
    let again = Config {
        duration: 0.5,
        no_save: true,
        ..config
    };
    let second = loadgen::run(&again).expect("a second chat run against the same rooms");
    handle.shutdown().expect("engine shuts down");

    for (report, sent) in [(&first, 300), (&second, 150)] {
        assert!(report.config.chat);
        // 300/s offered: the schedule is exact; 12 users in 3 rooms: 4 deliveries each.
        assert_eq!(report.publish.sent_in_window, sent);
        let expected = sent * 4;
        assert_eq!(report.deliveries.expected, expected);
        assert_eq!(report.deliveries.received, expected);
        assert_eq!(report.latency.summary.count, expected);
        assert_eq!(report.integrity.lost, 0);
        assert_eq!(report.integrity.duplicates, 0);
        assert_eq!(report.integrity.reordered, 0);
        // Every delivery carried the chat layer's headers (HMSG).
        assert_eq!(report.integrity.bad_payloads, 0);
        assert_eq!(report.integrity.pairs, 12);
        assert_eq!(report.connections.made, 15);
        assert!(
            report.disconnects.errors.is_empty(),
            "{:?}",
            report.disconnects.errors
        );
        assert!(report.summary().contains("chat: rooms $CHAT.MSG.lg<r>"));
    }
    let setup = first.chat_setup.as_ref().expect("chat setup recorded");
    assert_eq!((setup.rooms_created, setup.rooms_existed), (3, 0));
    let setup = second.chat_setup.as_ref().expect("chat setup recorded");
    assert_eq!((setup.rooms_created, setup.rooms_existed), (0, 3));
    assert!(first.label.contains("chat"), "{}", first.label);
    assert!(
        first.command_line.contains("--chat"),
        "{}",
        first.command_line
    );

    // The JSON says it was a chat run.
    let files: Vec<PathBuf> = std::fs::read_dir(&out)
        .expect("results dir written")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let text = std::fs::read_to_string(&files[0]).expect("read the JSON");
    let json: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(
        json.pointer("/config/chat"),
        Some(&serde_json::Value::Bool(true))
    );
    assert_eq!(
        json.pointer("/chat_setup/rooms_created")
            .and_then(|v| v.as_u64()),
        Some(3)
    );
    let _ = std::fs::remove_dir_all(&out);
}

/// `--chat` is NATS only: with Redis the run is refused before anything connects.
#[test]
fn chat_refused_with_redis() {
    let config = Config {
        chat: true,
        protocol: Protocol::Redis,
        url: Some("redis://127.0.0.1:1".to_string()),
        no_save: true,
        quiet: true,
        ..Config::default()
    };
    let err = loadgen::run(&config).expect_err("--chat with Redis is refused");
    assert!(
        err.to_string().contains("--chat needs --protocol nats"),
        "{err}"
    );
}
