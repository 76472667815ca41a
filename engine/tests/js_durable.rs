//! JetStream's file streams across restarts: a clean restart gives back the identical
//! stream, and `kill -9` at random moments of a confirmed-publish load loses no confirmed
//! message (docs/streams.md, "Durability"). Power loss, which a process kill cannot show (the
//! page cache survives it), is tested on the log itself with a simulated disk
//! (`engine/src/store/`).

mod common;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use engine::config::Config;
use serde_json::{json, Value};

use common::bin::Engine;
use common::{start, Client, Rng, TestServer, CONNECT_HEADERS};

/// A directory of its own under the system's temp dir, removed on drop.
struct DataDir(PathBuf);

impl DataDir {
    fn new(tag: &str) -> DataDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("engine-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        DataDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn durable(dir: &DataDir) -> TestServer {
    start(Config {
        workers: 2,
        jetstream: true,
        data_dir: Some(dir.path().to_path_buf()),
        ..Config::default()
    })
}

/// `HPUB` of `payload` on `subject` with a `Nats-Msg-Id` and a reply subject.
fn hpub(subject: &str, reply: &str, id: &str, payload: &str) -> Vec<u8> {
    let headers = format!("NATS/1.0\r\nNats-Msg-Id: {id}\r\n\r\n");
    format!(
        "HPUB {subject} {reply} {} {}\r\n{headers}{payload}\r\n",
        headers.len(),
        headers.len() + payload.len()
    )
    .into_bytes()
}

/// Everything a client can see of stream `name`: its info (config and state) and every
/// message, by sequence.
fn snapshot(c: &mut Client, name: &str) -> (Value, Vec<Value>) {
    let mut info = c.request_json(&format!("$JS.API.STREAM.INFO.{name}"), &Value::Null);
    let state = info["state"].clone();
    let (first, last) = (
        state["first_seq"].as_u64().unwrap(),
        state["last_seq"].as_u64().unwrap(),
    );
    let mut msgs = Vec::new();
    for seq in first..=last {
        let got = c.request_json(
            &format!("$JS.API.STREAM.MSG.GET.{name}"),
            &json!({ "seq": seq }),
        );
        msgs.push(got);
    }
    // The info's own timestamp is not part of the stream.
    if let Some(o) = info.as_object_mut() {
        o.remove("ts");
    }
    (info, msgs)
}

#[test]
fn a_file_stream_comes_back_identical_after_a_restart_and_a_memory_stream_does_not() {
    let dir = DataDir::new("js-restart");
    let before = {
        let server = durable(&dir);
        let mut c = server.requester();
        let created = c.request_json(
            "$JS.API.STREAM.CREATE.KEEP",
            &json!({"name": "KEEP", "subjects": ["keep.>"], "max_msgs_per_subject": 20,
                    "duplicate_window": 60_000_000_000u64}),
        );
        assert_eq!(created["did_create"], json!(true), "{created}");
        let created = c.request_json(
            "$JS.API.STREAM.CREATE.GONE",
            &json!({"name": "GONE", "subjects": ["gone"], "storage": "memory"}),
        );
        assert_eq!(created["did_create"], json!(true), "{created}");
        let mut load = Vec::new();
        for i in 0..300 {
            load.extend(hpub(
                &format!("keep.{}", i % 9),
                "_INBOX.t",
                &format!("id-{i}"),
                &format!("m{i}"),
            ));
        }
        // Repeats inside the duplicate window are stored once.
        load.extend(hpub("keep.0", "_INBOX.t", "id-5", "again"));
        c.send(&load);
        for _ in 0..301 {
            c.read_msg();
        }
        let deleted = c.request_json("$JS.API.STREAM.MSG.DELETE.KEEP", &json!({"seq": 299}));
        assert_eq!(deleted["success"], json!(true), "{deleted}");
        let purged = c.request_json("$JS.API.STREAM.PURGE.KEEP", &json!({"filter": "keep.3"}));
        assert_eq!(purged["success"], json!(true), "{purged}");
        snapshot(&mut c, "KEEP")
    };
    assert_eq!(
        before.0["state"]["messages"],
        json!(9 * 20 - 1 - 20),
        "{}",
        before.0
    );

    let server = durable(&dir);
    let mut c = server.requester();
    let after = snapshot(&mut c, "KEEP");
    assert_eq!(after.0, before.0);
    assert_eq!(after.1, before.1);
    let names = c.request_json("$JS.API.STREAM.NAMES", &Value::Null);
    assert_eq!(names["streams"], json!(["KEEP"]), "{names}");
    // The de-duplication window survives too: a repeat of a stored id is still a duplicate.
    c.send(&hpub("keep.8", "_INBOX.t", "id-8", "late"));
    let (_, ack) = c.read_msg();
    let ack: Value = serde_json::from_slice(&ack).unwrap();
    assert_eq!(ack["duplicate"], json!(true), "{ack}");
}

#[test]
fn a_durable_consumer_keeps_its_acks_and_position_across_a_restart() {
    let dir = DataDir::new("js-consumer");
    let next = |c: &mut Client, batch: usize| -> Vec<(String, String)> {
        let body = format!("{{\"batch\":{batch},\"expires\":2000000000}}");
        c.send(
            format!(
                "PUB $JS.API.CONSUMER.MSG.NEXT.Q.D _INBOX.q {}\r\n{body}\r\n",
                body.len()
            )
            .as_bytes(),
        );
        (0..batch)
            .map(|_| {
                let (_, reply, payload) = c.read_msg_with_reply();
                (
                    String::from_utf8(payload).unwrap(),
                    reply.expect("an ack subject"),
                )
            })
            .collect()
    };
    {
        let server = durable(&dir);
        let mut c = server.requester();
        c.send(b"SUB _INBOX.q 2\r\nPING\r\n");
        c.expect(b"PONG\r\n");
        c.request_json(
            "$JS.API.STREAM.CREATE.Q",
            &json!({"name": "Q", "subjects": ["q"]}),
        );
        for i in 0..10 {
            c.send(format!("PUB q _INBOX.t 2\r\nm{i}\r\n").as_bytes());
            c.read_msg();
        }
        let created = c.request_json(
            "$JS.API.CONSUMER.DURABLE.CREATE.Q.D",
            &json!({"stream_name": "Q", "config": {"durable_name": "D", "ack_policy": "explicit",
                    "ack_wait": 60_000_000_000u64}}),
        );
        assert_eq!(created["name"], json!("D"), "{created}");
        let got = next(&mut c, 4);
        let texts: Vec<&str> = got.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(texts, ["m0", "m1", "m2", "m3"]);
        // Ack all but m1; each ack sent as a request is confirmed once it is durable.
        for (text, ack) in &got {
            if text != "m1" {
                c.send(format!("PUB {ack} _INBOX.t 4\r\n+ACK\r\n").as_bytes());
                let (_, confirm) = c.read_msg();
                assert!(confirm.is_empty());
            }
        }
    }
    let server = durable(&dir);
    let mut c = server.requester();
    c.send(b"SUB _INBOX.q 2\r\nPING\r\n");
    c.expect(b"PONG\r\n");
    let info = c.request_json("$JS.API.CONSUMER.INFO.Q.D", &Value::Null);
    assert_eq!(info["num_ack_pending"], json!(1), "{info}");
    assert_eq!(info["delivered"]["stream_seq"], json!(4), "{info}");
    assert_eq!(info["ack_floor"]["stream_seq"], json!(1), "{info}");
    assert_eq!(info["num_pending"], json!(6), "{info}");
    let texts: Vec<String> = next(&mut c, 6).into_iter().map(|(t, _)| t).collect();
    assert_eq!(texts, ["m4", "m5", "m6", "m7", "m8", "m9"]);
}

/// A 1 MiB tmpfs mounted on a fresh directory, unmounted on drop; `None` where this process
/// may not mount (not root, or in a container without the capability).
struct FullDisk(DataDir);

impl FullDisk {
    fn mount() -> Option<FullDisk> {
        let dir = DataDir::new("js-full");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(FullDisk(dir))
    }
}

impl Drop for FullDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

#[test]
fn a_full_disk_refuses_publishes_keeps_serving_and_loses_nothing_confirmed() {
    let Some(disk) = FullDisk::mount() else {
        eprintln!("skipped: cannot mount a size-limited tmpfs here (needs root)");
        return;
    };
    let publish_all = |c: &mut Client, n: usize| -> (u64, usize) {
        let payload = "x".repeat(1000);
        let (mut last, mut refused) = (0, 0);
        for _ in 0..n {
            c.send(format!("PUB f _INBOX.t 1000\r\n{payload}\r\n").as_bytes());
            let (_, ack) = c.read_msg();
            let ack: Value = serde_json::from_slice(&ack).unwrap();
            match ack.get("error") {
                Some(e) => {
                    assert_eq!(e["err_code"], json!(10023), "{ack}");
                    refused += 1;
                }
                None => {
                    assert_eq!(refused, 0, "a publish confirmed after a refusal: {ack}");
                    last = ack["seq"].as_u64().unwrap();
                }
            }
        }
        (last, refused)
    };
    let confirmed = {
        let server = durable(&disk.0);
        let mut c = server.requester();
        let created = c.request_json(
            "$JS.API.STREAM.CREATE.F",
            &json!({"name": "F", "subjects": ["f"]}),
        );
        assert_eq!(created["did_create"], json!(true), "{created}");
        // 1 MiB holds about a thousand 1 KB records.
        let (confirmed, refused) = publish_all(&mut c, 1500);
        assert!(
            confirmed > 500 && refused > 0,
            "{confirmed} confirmed, {refused} refused"
        );
        // Still serving, and serving exactly what is on disk.
        let info = c.request_json("$JS.API.STREAM.INFO.F", &Value::Null);
        assert_eq!(info["state"]["messages"], json!(confirmed), "{info}");
        assert_eq!(info["state"]["last_seq"], json!(confirmed), "{info}");
        confirmed
    };
    let server = durable(&disk.0);
    let mut c = server.requester();
    let info = c.request_json("$JS.API.STREAM.INFO.F", &Value::Null);
    assert_eq!(info["state"]["messages"], json!(confirmed), "{info}");
}

/// What `kill -9` cycles left: the message numbers confirmed with their sequences, a client
/// of the server restarted on them (subscribed to `_INBOX.t`), and the stream's info.
struct AfterCrashes {
    confirmed: Vec<(usize, u64)>,
    client: Client,
    info: Value,
    _engine: Engine,
}

/// `cycles` rounds of: start the real binary on `dir`, publish a window of confirmed
/// messages to stream CRASH (`stream` is its config), `kill -9` after a random number of
/// acks, at least `min_acks`; then a last start. Each payload is `payload-<n>-` padded to
/// `pad` bytes.
fn kill_9_cycles(
    dir: &DataDir,
    cycles: usize,
    stream: Value,
    pad: usize,
    min_acks: usize,
) -> AfterCrashes {
    const WINDOW: usize = 400;
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    eprintln!("crash moments from seed {seed}");
    let mut rng = Rng(seed);
    let data_dir = dir.path().to_str().unwrap().to_string();
    let args = ["--jetstream", "--data-dir", &data_dir, "--workers", "2"];
    let mut confirmed: Vec<(usize, u64)> = Vec::new();
    let mut next = 0usize;
    for cycle in 0..cycles {
        let (engine, addr) = Engine::start(&args);
        let mut c = Client::connect(addr);
        c.send(CONNECT_HEADERS);
        c.send(b"SUB _INBOX.t 1\r\nSUB _INBOX.a.* 2\r\nPING\r\n");
        c.expect(b"PONG\r\n");
        if cycle == 0 {
            let created = c.request_json("$JS.API.STREAM.CREATE.CRASH", &stream);
            assert_eq!(created["did_create"], json!(true), "{created}");
        }
        // A window of confirmed publishes in flight; the kill comes after a random number
        // of its acks, with the rest in flight.
        let mut load = Vec::new();
        for n in next..next + WINDOW {
            load.extend(hpub(
                &format!("crash.{}", n % 7),
                &format!("_INBOX.a.{n}"),
                &format!("msg-{n}"),
                &padded(n, pad),
            ));
        }
        c.send(&load);
        let kill_after = min_acks + rng.below((WINDOW - min_acks) as u64) as usize;
        for _ in 0..kill_after {
            let (to, ack) = c.read_msg();
            let n: usize = to.rsplit('.').next().unwrap().parse().unwrap();
            let ack: Value = serde_json::from_slice(&ack).unwrap();
            assert!(ack.get("error").is_none(), "{ack}");
            confirmed.push((n, ack["seq"].as_u64().unwrap()));
        }
        engine.kill();
        next += WINDOW;
    }
    let (engine, addr) = Engine::start(&args);
    let mut c = Client::connect(addr);
    c.send(CONNECT_HEADERS);
    c.send(b"SUB _INBOX.t 1\r\nPING\r\n");
    c.expect(b"PONG\r\n");
    let info = c.request_json("$JS.API.STREAM.INFO.CRASH", &Value::Null);
    AfterCrashes {
        confirmed,
        client: c,
        info,
        _engine: engine,
    }
}

/// Message `n`'s payload: `payload-<n>-` and `x`s up to `pad` bytes.
fn padded(n: usize, pad: usize) -> String {
    let mut p = format!("payload-{n}-");
    let fill = pad.saturating_sub(p.len());
    p.extend(std::iter::repeat_n('x', fill));
    p
}

/// Asserts that message `n` is stored intact as sequence `seq`.
fn assert_stored(c: &mut Client, n: usize, seq: u64, pad: usize) {
    let got = c.request_json("$JS.API.STREAM.MSG.GET.CRASH", &json!({ "seq": seq }));
    assert_eq!(
        got["message"]["subject"],
        json!(format!("crash.{}", n % 7)),
        "confirmed message {n} (seq {seq}) lost: {got}"
    );
    let data = got["message"]["data"].as_str().unwrap();
    assert_eq!(data, base64(padded(n, pad).as_bytes()), "message {n}");
}

#[test]
fn no_confirmed_message_is_lost_over_twenty_kill_9_cycles() {
    let dir = DataDir::new("js-crash");
    let stream = json!({"name": "CRASH", "subjects": ["crash.*"]});
    let mut after = kill_9_cycles(&dir, 20, stream, 0, 0);
    let stored = after.info["state"]["messages"].as_u64().unwrap();
    for &(n, seq) in &after.confirmed {
        assert_stored(&mut after.client, n, seq, 0);
    }
    eprintln!(
        "20 kill -9 cycles: {} confirmed, all found; {stored} stored ({} stored but \
         never confirmed, their acks lost with the process)",
        after.confirmed.len(),
        stored - after.confirmed.len() as u64
    );
    assert!(stored >= after.confirmed.len() as u64);
}

/// Reads the next frame, which must be an `HMSG` with a reply subject: that subject.
fn read_hmsg_reply(c: &mut Client) -> String {
    let line = String::from_utf8(c.read_line()).unwrap();
    let parts: Vec<&str> = line.split_whitespace().collect();
    assert!(
        parts[0] == "HMSG" && parts.len() == 6,
        "not an HMSG with a reply: {line:?}"
    );
    let total: usize = parts[5].parse().unwrap();
    c.read_len(total + 2);
    parts[3].to_string()
}

/// Bytes of the files directly in `dir`, and whether the log's segment 1 is among them.
fn log_files(dir: &Path) -> (u64, bool) {
    let log = dir.join("jetstream");
    let mut bytes = 0;
    let mut first = false;
    for entry in std::fs::read_dir(&log).unwrap() {
        let entry = entry.unwrap();
        bytes += entry.metadata().unwrap().len();
        first |= entry.file_name() == "00000000000000000001.log";
    }
    (bytes, first)
}

#[test]
fn checkpoints_reclaim_the_log_and_kill_9_between_them_loses_nothing_kept() {
    // 20 cycles of 400 messages of 16 KiB, each killed after at least 150 acks: 48 to
    // 128 MB through a stream that keeps 1,000 (16 MB), so a checkpoint (every 32 MiB
    // logged) is always taken, and old segments removed, while the kills come.
    const PAD: usize = 16 * 1024;
    const KEEP: u64 = 1000;
    let dir = DataDir::new("js-crash-reclaim");
    let stream = json!({"name": "CRASH", "subjects": ["crash.*"], "max_msgs": KEEP});
    let mut after = kill_9_cycles(&dir, 20, stream, PAD, 150);
    let state = &after.info["state"];
    let last = state["last_seq"].as_u64().unwrap();
    assert_eq!(state["messages"], json!(KEEP.min(last)), "{}", after.info);
    let kept: Vec<(usize, u64)> = after
        .confirmed
        .iter()
        .copied()
        .filter(|&(_, seq)| seq + KEEP > last)
        .collect();
    assert!(
        !kept.is_empty(),
        "no confirmed message among the last {KEEP}"
    );
    for &(n, seq) in &kept {
        assert_stored(&mut after.client, n, seq, PAD);
    }
    let (bytes, first) = log_files(dir.path());
    eprintln!(
        "reclaiming under kill -9: {} confirmed, {} of them among the {KEEP} kept, all found; \
         log {bytes} bytes on disk, segment 1 kept: {first}",
        after.confirmed.len(),
        kept.len()
    );
    assert!(!first, "segment 1 was never reclaimed");
    assert!(bytes < 100_000_000, "the log holds {bytes} bytes");
}

#[test]
fn a_checkpoint_restores_the_same_streams_and_consumers_after_the_log_is_reclaimed() {
    const PAD: usize = 16 * 1024;
    let dir = DataDir::new("js-checkpoint");
    let consumer = |c: &mut Client| {
        let mut info = c.request_json("$JS.API.CONSUMER.INFO.CP.D", &Value::Null);
        if let Some(o) = info.as_object_mut() {
            o.remove("ts");
        }
        info
    };
    let before = {
        let server = durable(&dir);
        let mut c = server.requester();
        c.send(b"SUB _INBOX.q 2\r\nPING\r\n");
        c.expect(b"PONG\r\n");
        let created = c.request_json(
            "$JS.API.STREAM.CREATE.CP",
            &json!({"name": "CP", "subjects": ["cp.>"], "max_msgs": 300,
                    "max_msgs_per_subject": 100, "duplicate_window": 600_000_000_000u64}),
        );
        assert_eq!(created["did_create"], json!(true), "{created}");
        c.request_json(
            "$JS.API.CONSUMER.DURABLE.CREATE.CP.D",
            &json!({"stream_name": "CP", "config": {"durable_name": "D",
                    "ack_policy": "explicit", "ack_wait": 600_000_000_000u64}}),
        );
        // 5,000 messages of 16 KiB (80 MB: two checkpoints and more), in rounds, so
        // the consumer takes and acks some of each round.
        for round in 0..10 {
            let mut load = Vec::new();
            for i in round * 500..(round + 1) * 500 {
                load.extend(hpub(
                    &format!("cp.{}", i % 4),
                    "_INBOX.t",
                    &format!("id-{i}"),
                    &padded(i, PAD),
                ));
            }
            c.send(&load);
            for _ in 0..500 {
                c.read_msg();
            }
            let body = r#"{"batch":3,"expires":2000000000}"#;
            c.send(
                format!(
                    "PUB $JS.API.CONSUMER.MSG.NEXT.CP.D _INBOX.q {}\r\n{body}\r\n",
                    body.len()
                )
                .as_bytes(),
            );
            let acks: Vec<String> = (0..3).map(|_| read_hmsg_reply(&mut c)).collect();
            // The first of each three stays pending.
            for ack in &acks[1..] {
                c.send(format!("PUB {ack} _INBOX.t 4\r\n+ACK\r\n").as_bytes());
                c.read_msg();
            }
        }
        let deleted = c.request_json("$JS.API.STREAM.MSG.DELETE.CP", &json!({"seq": 4990}));
        assert_eq!(deleted["success"], json!(true), "{deleted}");
        (snapshot(&mut c, "CP"), consumer(&mut c))
    };
    let (bytes, first) = log_files(dir.path());
    assert!(!first, "segment 1 was never reclaimed");
    assert!(
        bytes < 60_000_000,
        "the log holds {bytes} bytes of 80 MB written"
    );

    let server = durable(&dir);
    let mut c = server.requester();
    c.send(b"SUB _INBOX.q 2\r\nPING\r\n");
    c.expect(b"PONG\r\n");
    let after = (snapshot(&mut c, "CP"), consumer(&mut c));
    assert_eq!(after.0 .0, before.0 .0);
    assert_eq!(after.0 .1, before.0 .1);
    assert_eq!(after.1, before.1);
    assert_eq!(after.1["num_ack_pending"], json!(10), "{}", after.1);
    // The de-duplication window came through the checkpoint: a recent id is a duplicate.
    c.send(&hpub("cp.1", "_INBOX.t", "id-4001", "late"));
    let (_, ack) = c.read_msg();
    let ack: Value = serde_json::from_slice(&ack).unwrap();
    assert_eq!(ack["duplicate"], json!(true), "{ack}");
    assert_eq!(ack["seq"], json!(4002), "{ack}");
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
