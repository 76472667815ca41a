//! End to end: loadgen against a real server with a few hundred users for a couple of seconds.
//!
//! By default the engine is started in-process on `127.0.0.1:0`. With `LOADGEN_E2E_URL` set
//! (e.g. `nats://127.0.0.1:4222`, or `redis://...` with `LOADGEN_E2E_PROTOCOL=redis`) the same
//! test runs against that external server instead, which is how it is checked against
//! nats-server and Redis.

use std::path::PathBuf;

use loadgen::{Config, Protocol};

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
