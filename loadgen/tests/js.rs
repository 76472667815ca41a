//! `loadgen js` end to end.
//!
//! - Publish mode against the engine started in-process with JetStream (a memory stream, and
//!   a file stream with `--fsync always`): the confirmed publishes the report counts are
//!   exactly the messages `STREAM.INFO` says the stream holds, asked over a separate raw
//!   connection.
//! - Open loop (`--rate`) against the engine: the schedule decides the counts exactly, every
//!   scheduled publish is sent and confirmed, latency is measured from the schedule.
//! - PubAck errors: publishes no stream captures are answered with a 503 status; the run
//!   fails loudly, or records them with `--allow-errors`.
//! - Consume mode needs consumers, which the engine does not have yet: it runs against
//!   nats-server (`-js`, a scratch store directory) when `nats-server` is on PATH, and is
//!   skipped (saying why) otherwise. The same publish check runs there too.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use loadgen::js::{JsArgs, JsMode, Storage};
use net::proto::{self, Op, Parser, ParserLimits, Side};

/// One load run at a time: two at once on 2 cores would measure each other.
static ONE_RUN_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_run_at_a_time() -> MutexGuard<'static, ()> {
    // A test that failed while holding the lock poisons it; the others still run.
    ONE_RUN_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn scratch_dir(what: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!("loadgen-js-{what}-{}-{nanos}", std::process::id()))
}

fn engine_with_jetstream() -> engine::server::ServerHandle {
    engine_with(engine::config::Config {
        jetstream: true,
        ..engine::config::Config::default()
    })
}

fn engine_with(config: engine::config::Config) -> engine::server::ServerHandle {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    engine::server::spawn(listener, config).expect("start the engine in-process")
}

/// One JetStream API request over a fresh raw connection; returns the answer's JSON.
fn request(addr: SocketAddr, subject: &str, body: &[u8]) -> serde_json::Value {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let mut out = Vec::new();
    let connect = proto::Connect {
        verbose: false,
        pedantic: false,
        ..proto::Connect::default()
    };
    proto::encode_connect(&mut out, &connect);
    proto::encode_sub(&mut out, b"_INBOX.test", None, b"9");
    proto::encode_pub(&mut out, subject.as_bytes(), Some(b"_INBOX.test"), body);
    stream.write_all(&out).expect("write");
    let mut parser = Parser::new(Side::Client, ParserLimits::default());
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        match parser.parse(&buf).expect("valid frames from the server") {
            Some((Op::Msg(m), _)) if m.sid == b"9" => {
                return serde_json::from_slice(m.payload).expect("JSON answer");
            }
            Some((_, used)) => {
                buf.drain(..used);
            }
            None => {
                let n = stream
                    .read(&mut chunk)
                    .expect("an answer before the timeout");
                assert!(n > 0, "the server closed the connection");
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
}

fn stream_messages(addr: SocketAddr, stream: &str) -> u64 {
    let info = request(addr, &format!("$JS.API.STREAM.INFO.{stream}"), b"");
    info.pointer("/state/messages")
        .and_then(|v| v.as_u64())
        .unwrap_or_else(|| panic!("no state.messages in {info}"))
}

fn publish_args(url: String, storage: Storage, out: PathBuf) -> JsArgs {
    JsArgs {
        url,
        mode: JsMode::Publish,
        storage,
        subjects: 3,
        window: 64,
        duration: 1.0,
        warmup: 0.3,
        drain: 5.0,
        keep: true,
        out,
        quiet: true,
        ..JsArgs::default()
    }
}

/// Runs publish mode with `--keep` and checks the count against the stream's own, then
/// deletes the stream.
fn publish_and_check_exact_count(addr: SocketAddr, storage: Storage) {
    let out = scratch_dir("publish");
    let args = publish_args(format!("nats://{addr}"), storage, out.clone());
    let report = loadgen::js::run(&args).expect("the publish run completes");
    let p = report.publish.as_ref().expect("publish figures");
    assert!(p.confirmed_in_window > 0, "{p:?}");
    assert_eq!(p.errors, 0, "{:?}", p.first_errors);
    assert_eq!(p.unconfirmed, 0);
    assert_eq!(p.duplicates, 0);
    assert_eq!(p.confirmed_in_window, p.sent_in_window);
    assert_eq!(p.confirmed_total, p.sent_total);
    assert_eq!(p.last_seq, p.confirmed_total, "sequences 1..=confirmed");
    assert_eq!(report.latency.summary.count, p.confirmed_in_window);
    assert!(report.latency.summary.p50_us > 0.0);
    // Exact: every confirmed publish is in the stream, and nothing else.
    let stored = stream_messages(addr, "LOADGEN");
    assert_eq!(stored, p.confirmed_total);
    assert_eq!(report.stream.after.map(|s| s.messages), Some(stored));
    assert_eq!(report.stream.stored_matches_confirmed, Some(true));
    assert!(report.summary().contains("= the confirmed publishes"));
    assert!(report.latency.measured_from.contains("closed loop"));

    // One self-describing JSON.
    let json = the_one_json(&out);
    assert_eq!(json["schema"], "loadgen-js/1");
    assert_eq!(json["publish"]["mode"], "closed");
    assert!(
        json["publish"]["rate_per_sec"].is_null(),
        "{}",
        json["publish"]
    );
    assert!(json["publish"]["delayed_by_window"].is_null());
    for path in [
        "/git/revision",
        "/machine/cpu_model",
        "/machine/hostname",
        "/command_line",
        "/config/window",
        "/config/storage",
        "/publish/confirmed_per_sec",
        "/publish/errors",
        "/latency/summary/p50_us",
        "/latency/summary/p90_us",
        "/latency/summary/p99_us",
        "/latency/summary/p99_9_us",
        "/latency/summary/max_us",
        "/latency/measured_from",
        "/stream/after/messages",
        "/timeline",
    ] {
        assert!(
            json.pointer(path).is_some_and(|v| !v.is_null()),
            "missing {path}"
        );
    }
    let deleted = request(addr, "$JS.API.STREAM.DELETE.LOADGEN", b"");
    assert_eq!(deleted["success"], true, "{deleted}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn engine_confirmed_publishes_are_exactly_the_stream() {
    let _alone = one_run_at_a_time();
    let handle = engine_with_jetstream();
    publish_and_check_exact_count(handle.local_addr(), Storage::Memory);
    handle.shutdown().expect("engine shuts down");
}

/// The same exact count on a file stream, every confirm after an fsync.
#[test]
fn engine_file_stream_confirmed_publishes_are_exactly_the_stream() {
    let _alone = one_run_at_a_time();
    let data = scratch_dir("engine-data");
    let handle = engine_with(engine::config::Config {
        jetstream: true,
        data_dir: Some(data.clone()),
        fsync: engine::store::FsyncPolicy::Always,
        ..engine::config::Config::default()
    });
    publish_and_check_exact_count(handle.local_addr(), Storage::File);
    handle.shutdown().expect("engine shuts down");
    let _ = std::fs::remove_dir_all(&data);
}

/// `--rate 2000` for 1 s after a 0.3 s warmup: publish k is scheduled at k × 0.5 ms, so the
/// schedule has exactly 600 ticks before the window and 2000 in it (`OpenLoop::ticks_before`;
/// no tick is dropped, late ones go out late), whatever the machine's speed.
#[test]
fn engine_open_loop_sends_exactly_the_schedule_and_confirms_it() {
    let _alone = one_run_at_a_time();
    let handle = engine_with_jetstream();
    let addr = handle.local_addr();
    let out = scratch_dir("open-loop");
    let args = JsArgs {
        rate: Some(2000.0),
        ..publish_args(format!("nats://{addr}"), Storage::Memory, out.clone())
    };
    let report = loadgen::js::run(&args).expect("the open-loop run completes");
    let p = report.publish.as_ref().expect("publish figures");
    assert_eq!(p.mode, "open");
    assert_eq!(p.rate_per_sec, Some(2000.0));
    assert_eq!(p.scheduled_in_window, Some(2000));
    assert_eq!(p.sent_in_window, 2000, "{p:?}");
    assert_eq!(p.sent_total, 2600, "warmup 600 + window 2000: {p:?}");
    assert_eq!(p.unsent, 0);
    assert_eq!(p.errors, 0, "{:?}", p.first_errors);
    assert_eq!(p.unconfirmed, 0);
    assert_eq!(p.duplicates, 0);
    assert_eq!(p.confirmed_in_window, 2000);
    assert_eq!(p.confirmed_total, 2600);
    assert_eq!(p.last_seq, 2600);
    assert_eq!(
        p.confirmed_per_sec, 2000.0,
        "2000 confirmed over the 1 s window"
    );
    // How many the window held back depends on the machine; that it is counted does not.
    let delayed = p.delayed_by_window.expect("counted in open loop");
    assert!(delayed <= 2000);
    let lag = p.send_lag.expect("send lag in open loop");
    assert_eq!(lag.count, 2000);
    assert_eq!(report.latency.summary.count, 2000);
    assert!(report.latency.summary.p50_us > 0.0);
    let from = &report.latency.measured_from;
    assert!(from.contains("scheduled send time"), "{from}");
    assert!(from.contains("open loop at 2000/s"), "{from}");
    assert!(from.contains("coordinated omission is avoided"), "{from}");
    assert_eq!(stream_messages(addr, "LOADGEN"), 2600);
    assert_eq!(report.stream.stored_matches_confirmed, Some(true));
    let summary = report.summary();
    assert!(
        summary.contains("open loop at 2000/s, window 64"),
        "{summary}"
    );
    assert!(
        summary.contains("2000 scheduled in the window"),
        "{summary}"
    );
    assert!(summary.contains("p99.9"), "{summary}");

    let json = the_one_json(&out);
    assert_eq!(json["schema"], "loadgen-js/1", "fields added, none changed");
    assert_eq!(json["label"], "js-publish-memory-w64-r2000-128B");
    assert_eq!(json["config"]["rate"], 2000.0);
    assert_eq!(json["publish"]["mode"], "open");
    assert_eq!(json["publish"]["rate_per_sec"], 2000.0);
    assert_eq!(json["publish"]["confirmed_per_sec"], 2000.0);
    assert_eq!(json["publish"]["sent_in_window"], 2000);
    assert_eq!(json["publish"]["unsent"], 0);
    assert!(json["publish"]["delayed_by_window"].is_u64());
    assert!(json["publish"]["send_lag"]["p99_us"].is_number());
    let deleted = request(addr, "$JS.API.STREAM.DELETE.LOADGEN", b"");
    assert_eq!(deleted["success"], true, "{deleted}");
    let _ = std::fs::remove_dir_all(&out);
    handle.shutdown().expect("engine shuts down");
}

#[test]
fn pub_ack_errors_fail_the_run_unless_allowed() {
    let _alone = one_run_at_a_time();
    let handle = engine_with_jetstream();
    let addr = handle.local_addr();
    // A stream of that name that captures other subjects: every publish of the run is
    // answered with a 503 status (no responders) instead of a PubAck.
    let created = request(
        addr,
        "$JS.API.STREAM.CREATE.LOADGEN",
        br#"{"name":"LOADGEN","subjects":["elsewhere.>"],"storage":"memory","max_bytes":1048576}"#,
    );
    assert!(created.get("error").is_none(), "{created}");
    let args = JsArgs {
        duration: 0.3,
        warmup: 0.0,
        window: 4,
        no_save: true,
        ..publish_args(format!("nats://{addr}"), Storage::Memory, PathBuf::new())
    };
    let err = loadgen::js::run(&args).expect_err("errors fail the run");
    let text = err.to_string();
    assert!(text.contains("PubAcks were errors"), "{text}");
    assert!(text.contains("status 503"), "{text}");
    assert!(text.contains("--allow-errors"), "{text}");

    let allowed = JsArgs {
        allow_errors: true,
        ..args
    };
    let report = loadgen::js::run(&allowed).expect("recorded with --allow-errors");
    let p = report.publish.as_ref().expect("publish figures");
    assert!(p.errors > 0);
    assert_eq!(p.errors, p.sent_total);
    assert_eq!(p.confirmed_total, 0);
    assert_eq!(stream_messages(addr, "LOADGEN"), 0);
    request(addr, "$JS.API.STREAM.DELETE.LOADGEN", b"");
    handle.shutdown().expect("engine shuts down");
}

/// nats-server with JetStream on a free loopback port and a scratch store, if installed.
struct NatsServer {
    child: Child,
    addr: SocketAddr,
    store: PathBuf,
}

impl NatsServer {
    fn start() -> Option<NatsServer> {
        let bin = [
            "nats-server",
            "/usr/sbin/nats-server",
            "/usr/bin/nats-server",
        ]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let store = scratch_dir("nats-store");
        let child = Command::new(bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(&store)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        let mut server = NatsServer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            store,
        };
        let began = Instant::now();
        // The port is the only thing to wait on: poll it until it accepts (or time out).
        while TcpStream::connect(server.addr).is_err() {
            assert!(
                server.child.try_wait().expect("child status").is_none(),
                "nats-server exited at start"
            );
            assert!(
                began.elapsed() < Duration::from_secs(10),
                "nats-server did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(server)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

#[test]
fn nats_server_publish_is_exact_and_the_pull_consumer_drains_everything() {
    let _alone = one_run_at_a_time();
    let Some(server) = NatsServer::start() else {
        eprintln!(
            "skipped: nats-server is not on PATH (apt-get install nats-server); the consume \
             mode needs consumers, which the engine does not serve yet"
        );
        return;
    };
    publish_and_check_exact_count(server.addr, Storage::File);

    let args = JsArgs {
        url: format!("nats://{}", server.addr),
        mode: JsMode::Consume,
        storage: Storage::Memory,
        fill: Some(20_000),
        window: 256,
        batch: 100,
        pulls: 3,
        duration: 20.0,
        drain: 5.0,
        no_save: true,
        quiet: true,
        ..JsArgs::default()
    };
    let report = loadgen::js::run(&args).expect("the consume run completes");
    let fill = report.publish.as_ref().expect("the fill's figures");
    assert_eq!(fill.confirmed_total, 20_000);
    assert_eq!(report.stream.before.map(|s| s.messages), Some(20_000));
    let c = report.consume.as_ref().expect("consume figures");
    assert_eq!(c.expected, 20_000);
    assert_eq!(c.drained, 20_000);
    assert!(c.complete);
    assert_eq!(c.redelivered, 0);
    assert_eq!(c.errors, 0, "{:?}", c.first_errors);
    assert_eq!(c.acks_sent, 20_000);
    assert!(c.drained_per_sec > 0.0);
    assert!(c.acked_secs.is_some(), "every ack processed");
    let after = c.consumer_after.expect("consumer state");
    assert_eq!(after.num_ack_pending, 0);
    assert_eq!(after.num_pending, 0);
    assert_eq!(after.ack_floor_stream_seq, 20_000);
    // Full batches of 100: at least 20,000 / 100 requests, each batch timed.
    assert!(c.pulls_sent >= 200, "{}", c.pulls_sent);
    assert!(report.latency.summary.count > 0);
    // The stream was deleted (no --keep).
    let info = request(server.addr, "$JS.API.STREAM.INFO.LOADGEN", b"");
    assert_eq!(
        info.pointer("/error/err_code"),
        Some(&serde_json::json!(10059))
    );
}

/// The one JSON result a run wrote into `out`.
fn the_one_json(out: &Path) -> serde_json::Value {
    let files: Vec<PathBuf> = std::fs::read_dir(out)
        .expect("results dir written")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let text = std::fs::read_to_string(&files[0]).expect("read the JSON");
    serde_json::from_str(&text).expect("valid JSON")
}
