//! One publisher's messages reach every subscription in publish order, across subjects,
//! through wildcards and queue groups, with subscribers spread over every worker; and a
//! publisher's `PONG` means every matching subscriber already has what it published before
//! the `PING`. Each case also passes against nats-server (`ENGINE_TEST_REFERENCE`).

mod common;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use common::{show, Client, CONNECT};
use engine::config::Config;
use futures::StreamExt;

const MESSAGES: usize = 10_000;
const SUBJECTS: usize = 100;

fn four_workers() -> Config {
    Config {
        workers: 4,
        ..Config::default()
    }
}

/// `n` connections (spread over the workers) that each sent `sub` and proved it with a PONG.
fn subscribe_all(server: &common::TestServer, n: usize, sub: &[u8]) -> Vec<Client> {
    (0..n)
        .map(|_| {
            let mut c = server.client_with(CONNECT);
            c.send(sub);
            c.expect_open();
            c
        })
        .collect()
}

/// Reads MSG frames until `PONG`, returning (subject, sid, payload) of each.
fn read_msgs_until_pong(c: &mut Client) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    loop {
        let line = c.read_line();
        if line == b"PONG\r\n" {
            return out;
        }
        let text = String::from_utf8(line.clone()).expect("ASCII control line");
        let parts: Vec<&str> = text.trim_end().split(' ').collect();
        assert!(
            parts[0] == "MSG" && parts.len() == 4,
            "unexpected line {}",
            show(&line)
        );
        let len: usize = parts[3].parse().expect("MSG size");
        let payload = c.read_len(len + 2);
        assert_eq!(&payload[len..], b"\r\n");
        out.push((
            parts[1].to_string(),
            parts[2].to_string(),
            String::from_utf8(payload[..len].to_vec()).expect("ASCII payload"),
        ));
    }
}

/// Panics with the first position where `got` differs from `want` (not two 10,000-long
/// lists).
fn assert_seq(got: &[usize], want: &[usize], what: &str) {
    if let Some(at) = got.iter().zip(want).position(|(g, w)| g != w) {
        let end = (at + 8).min(got.len());
        panic!(
            "{what}: at {at} got {:?}, wanted {:?}",
            &got[at..end],
            &want[at..(at + 8).min(want.len())]
        );
    }
    assert_eq!(got.len(), want.len(), "{what}: count");
}

fn index(payload: &str) -> usize {
    payload.parse().expect("payload is the message index")
}

#[test]
fn one_publisher_is_seen_in_publish_order_through_every_kind_of_subscription() {
    let server = common::start(four_workers());
    // Eight subscriber connections land on all four workers (connections are spread
    // round-robin); each subscribes and proves it with a PONG before anything is published.
    let subs: [&[u8]; 8] = [
        b"SUB > 1\r\n",
        b"SUB ord.* 1\r\n",
        b"SUB ord.* q 1\r\n",
        b"SUB ord.* q 1\r\n",
        b"SUB ord.7 1\r\nSUB ord.42 2\r\n",
        b"SUB ord.99 1\r\n",
        b"SUB ord.> 1\r\nSUB *.3 2\r\n",
        b"SUB ord.0 1\r\n",
    ];
    let mut clients: Vec<Client> = subs
        .iter()
        .map(|s| {
            let mut c = server.client_with(CONNECT);
            c.send(s);
            c.expect_open();
            c
        })
        .collect();
    let mut publisher = server.client_with(CONNECT);
    let mut batch = String::new();
    for i in 0..MESSAGES {
        let payload = i.to_string();
        write!(
            batch,
            "PUB ord.{} {}\r\n{payload}\r\n",
            i % SUBJECTS,
            payload.len()
        )
        .unwrap();
    }
    batch.push_str("PING\r\n");
    publisher.send_chunked(batch.as_bytes(), 16 * 1024);
    publisher.expect(b"PONG\r\n");

    // The publisher has its PONG: everything it published is already queued for every
    // subscriber, so a PING from each subscriber comes back behind all of it.
    let mut got: Vec<Vec<(String, String, String)>> = Vec::new();
    for c in &mut clients {
        c.send(b"PING\r\n");
        got.push(read_msgs_until_pong(c));
    }
    let all: Vec<usize> = (0..MESSAGES).collect();
    let indices = |msgs: &[(String, String, String)]| -> Vec<usize> {
        msgs.iter().map(|(_, _, p)| index(p)).collect()
    };
    for (i, msgs) in got.iter().enumerate() {
        for (subject, _, payload) in msgs {
            assert_eq!(
                *subject,
                format!("ord.{}", index(payload) % SUBJECTS),
                "subscriber {i}: subject and payload disagree"
            );
        }
    }
    assert_seq(
        &indices(&got[0]),
        &all,
        "`>`: every message, in publish order",
    );
    assert_seq(
        &indices(&got[1]),
        &all,
        "`ord.*`: every message, in publish order",
    );
    // The queue group's two members share the messages; each sees its share in order.
    let (a, b) = (indices(&got[2]), indices(&got[3]));
    for share in [&a, &b] {
        assert!(
            share.windows(2).all(|w| w[0] < w[1]),
            "queue member out of order"
        );
    }
    let mut union: Vec<usize> = a.iter().chain(b.iter()).copied().collect();
    union.sort_unstable();
    assert_seq(&union, &all, "the queue group, each message exactly once");
    // Literal subscribers: exactly their subject's messages, in order, per sid.
    let by_sid = |msgs: &[(String, String, String)], sid: &str| -> Vec<usize> {
        msgs.iter()
            .filter(|(_, s, _)| s == sid)
            .map(|(_, _, p)| index(p))
            .collect()
    };
    let only = |k: usize| -> Vec<usize> { (k..MESSAGES).step_by(SUBJECTS).collect() };
    assert_seq(&by_sid(&got[4], "1"), &only(7), "literal");
    assert_seq(&by_sid(&got[4], "2"), &only(42), "literal");
    assert_seq(&indices(&got[5]), &only(99), "literal");
    assert_seq(&indices(&got[7]), &only(0), "literal");
    // `ord.>` (sid 1) and `*.3` (sid 2) on one connection: each sid in order.
    let c6 = &got[6];
    assert_eq!(c6.len(), MESSAGES + MESSAGES / SUBJECTS);
    assert_seq(&by_sid(c6, "1"), &all, "literal");
    assert_seq(&by_sid(c6, "2"), &only(3), "literal");
}

/// Small messages toward another worker travel batched in shared blocks, large ones alone
/// (`limits::BATCH_MSG_MAX_BYTES`); interleaved, they still arrive in publish order.
#[test]
fn small_and_large_messages_interleaved_keep_publish_order() {
    let server = common::start(four_workers());
    let mut subscribers = subscribe_all(&server, 4, b"SUB mix 1\r\n");
    let mut publisher = server.client_with(CONNECT);
    let sizes = [3usize, 5000, 10, 10, 70_000, 1, 4096, 4097, 2];
    let mut batch = Vec::new();
    let mut want = Vec::new();
    for round in 0..30 {
        for (k, size) in sizes.iter().enumerate() {
            let tag = format!("{round:02}{k}");
            let mut payload = tag.clone().into_bytes();
            payload.resize((*size).max(tag.len()), b'.');
            batch.extend_from_slice(format!("PUB mix {}\r\n", payload.len()).as_bytes());
            batch.extend_from_slice(&payload);
            batch.extend_from_slice(b"\r\n");
            want.push((tag, payload.len()));
        }
    }
    batch.extend_from_slice(b"PING\r\n");
    publisher.send_chunked(&batch, 16 * 1024);
    publisher.expect(b"PONG\r\n");
    for (i, s) in subscribers.iter_mut().enumerate() {
        s.send(b"PING\r\n");
        let got = read_msgs_until_pong(s);
        let got: Vec<(String, usize)> = got
            .iter()
            .map(|(_, _, p)| (p[..3].to_string(), p.len()))
            .collect();
        assert_eq!(got, want, "subscriber {i}");
    }
}

#[test]
fn messages_published_before_an_unsub_are_delivered_on_every_owner() {
    let server = common::start(four_workers());
    // Several subjects, so that some hash to a worker other than the connection's own.
    for subject in ["s", "t", "u", "v", "w", "x", "y", "z"] {
        let mut c = server.client_with(CONNECT);
        c.send(
            format!(
                "SUB {subject} 7\r\nPUB {subject} 1\r\na\r\nPUB {subject} 1\r\nb\r\n\
                 PUB {subject} 1\r\nc\r\nUNSUB 7\r\nPUB {subject} 1\r\nd\r\nPING\r\n"
            )
            .as_bytes(),
        );
        let want = format!(
            "MSG {subject} 7 1\r\na\r\nMSG {subject} 7 1\r\nb\r\nMSG {subject} 7 1\r\nc\r\nPONG\r\n"
        );
        c.expect(want.as_bytes());
        c.expect_open();
    }
}

#[test]
fn a_pong_means_other_connections_have_the_messages() {
    let server = common::start(four_workers());
    let mut subscribers = subscribe_all(&server, 4, b"SUB pong.> 1\r\n");
    let mut publisher = server.client_with(CONNECT);
    for round in 0..50 {
        // A few subjects per round, so they hash to different workers.
        let mut batch = String::new();
        for k in 0..8 {
            write!(batch, "PUB pong.{k} 2\r\n{:02}\r\n", round).unwrap();
        }
        batch.push_str("PING\r\n");
        publisher.send(batch.as_bytes());
        publisher.expect(b"PONG\r\n");
        for s in &mut subscribers {
            s.send(b"PING\r\n");
            let msgs = read_msgs_until_pong(s);
            assert_eq!(
                msgs.len(),
                8,
                "round {round}: all 8 before the subscriber's PONG"
            );
            for (k, (subject, _, payload)) in msgs.iter().enumerate() {
                assert_eq!(*subject, format!("pong.{k}"));
                assert_eq!(*payload, format!("{round:02}"));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_nats_sees_one_publisher_in_order_across_subjects() {
    if common::against_reference() {
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = common::spawn(listener, four_workers()).unwrap();
    let url = format!("nats://{}", server.local_addr());
    let mut subscribers = Vec::new();
    let mut conns = Vec::new();
    for pattern in [">", "aord.*", "aord.>"] {
        let c = async_nats::connect(&url).await.unwrap();
        let mut sub = c.subscribe(pattern).await.unwrap();
        // The subscription is in place once it receives its own probe (probes are skipped
        // below).
        c.publish("aord.probe", "probe".into()).await.unwrap();
        let m = tokio::time::timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("timed out")
            .unwrap();
        assert_eq!(&m.payload[..], b"probe");
        subscribers.push(sub);
        conns.push(c);
    }
    let publisher = async_nats::connect(&url).await.unwrap();
    for i in 0..MESSAGES {
        publisher
            .publish(format!("aord.{}", i % SUBJECTS), i.to_string().into())
            .await
            .unwrap();
    }
    publisher.flush().await.unwrap();
    let mut seen: HashMap<usize, Vec<usize>> = HashMap::new();
    for (k, sub) in subscribers.iter_mut().enumerate() {
        while seen.get(&k).map_or(0, Vec::len) < MESSAGES {
            let m = tokio::time::timeout(Duration::from_secs(10), sub.next())
                .await
                .expect("timed out")
                .expect("subscription ended");
            if &m.payload[..] == b"probe" {
                continue;
            }
            let i: usize = std::str::from_utf8(&m.payload).unwrap().parse().unwrap();
            assert_eq!(m.subject.as_str(), format!("aord.{}", i % SUBJECTS));
            seen.entry(k).or_default().push(i);
        }
    }
    let all: Vec<usize> = (0..MESSAGES).collect();
    for k in 0..3 {
        assert_seq(&seen[&k], &all, &format!("subscriber {k}"));
    }
    drop(conns);
    drop(publisher);
    server.shutdown().unwrap();
}
