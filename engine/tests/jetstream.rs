//! JetStream through the real server: streams created, filled and read over the wire, with
//! raw protocol (exact frames) and with async-nats's `jetstream` module (a client nobody
//! here wrote). docs/streams.md is the contract.
//!
//! The raw tests also run against the reference:
//! `ENGINE_TEST_REFERENCE=nats-server cargo test -p engine --test jetstream`.

mod common;

use engine::config::Config;
use serde_json::{json, Value};

use common::{against_reference, start, Client, TestServer, CONNECT_HEADERS};

fn jetstream(workers: usize) -> TestServer {
    start(Config {
        workers,
        jetstream: true,
        ..Config::default()
    })
}

fn memory_stream(name: &str, subjects: &[&str]) -> Value {
    json!({"name": name, "subjects": subjects, "storage": "memory"})
}

#[test]
fn info_announces_jetstream_only_when_it_is_on() {
    let on = jetstream(2);
    assert_eq!(on.client().info_json()["jetstream"], json!(true));
    if against_reference() {
        return;
    }
    let off = start(Config::default());
    assert_eq!(off.client().info_json().get("jetstream"), None);
}

#[test]
fn without_jetstream_an_api_request_gets_no_responders() {
    if against_reference() {
        return;
    }
    let server = start(Config::default());
    let mut c = server
        .client_with(b"CONNECT {\"verbose\":false,\"headers\":true,\"no_responders\":true}\r\n");
    c.send(b"SUB _INBOX.t 1\r\nPUB $JS.API.INFO _INBOX.t 0\r\n\r\n");
    c.expect(b"HMSG _INBOX.t 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n");
}

#[test]
fn a_file_stream_is_refused_while_the_server_keeps_no_files() {
    if against_reference() {
        return;
    }
    let server = jetstream(2);
    let mut c = server.requester();
    for config in [
        json!({"name": "F", "subjects": ["f"]}),
        json!({"name": "F", "subjects": ["f"], "storage": "file"}),
    ] {
        let refused = c.request_json("$JS.API.STREAM.CREATE.F", &config);
        assert_eq!(
            refused,
            json!({"type": "io.nats.jetstream.api.v1.stream_create_response",
                   "error": {"code": 500, "err_code": 10047,
                             "description": "insufficient storage resources available"}})
        );
    }
    let names = c.request_json("$JS.API.STREAM.NAMES", &Value::Null);
    assert_eq!(names["total"], json!(0), "{names}");
}

#[test]
fn published_messages_are_acked_in_order_stored_and_read_back() {
    let server = jetstream(4);
    let mut c = server.requester();
    let created = c.request_json(
        "$JS.API.STREAM.CREATE.ORDERS",
        &memory_stream("ORDERS", &["orders.>"]),
    );
    assert_eq!(created["did_create"], json!(true), "{created}");
    assert_eq!(created["config"]["subjects"], json!(["orders.>"]));
    // PubAcks come back in publish order, byte for byte as nats-server writes them.
    let mut batch = Vec::new();
    for i in 0..50 {
        let body = format!("m{i}");
        batch.extend_from_slice(
            format!("PUB orders.{} _INBOX.t {}\r\n{body}\r\n", i % 7, body.len()).as_bytes(),
        );
    }
    c.send(&batch);
    for seq in 1..=50 {
        c.expect(&ack_frame("ORDERS", seq));
    }
    let info = c.request_json("$JS.API.STREAM.INFO.ORDERS", &Value::Null);
    assert_eq!(info["state"]["messages"], json!(50), "{info}");
    assert_eq!(info["state"]["first_seq"], json!(1));
    assert_eq!(info["state"]["last_seq"], json!(50));
    assert_eq!(info["state"]["num_subjects"], json!(7));
    let got = c.request_json("$JS.API.STREAM.MSG.GET.ORDERS", &json!({"seq": 23}));
    assert_eq!(got["message"]["subject"], json!("orders.1"), "{got}");
    assert_eq!(got["message"]["seq"], json!(23));
    // "m22", base64.
    assert_eq!(got["message"]["data"], json!("bTIy"));
}

#[test]
fn a_stream_orders_one_publishers_messages_across_subjects_and_workers() {
    // Publishers on several connections (so on several workers), each over many subjects:
    // the stream's sequence keeps each publisher's own order, as nats-server's does.
    let server = jetstream(4);
    let mut c = server.requester();
    c.request_json(
        "$JS.API.STREAM.CREATE.EV",
        &memory_stream("EV", &["ev.*.*"]),
    );
    let mut pubs: Vec<Client> = (0..4)
        .map(|_| server.client_with(CONNECT_HEADERS))
        .collect();
    const EACH: usize = 200;
    for i in 0..EACH {
        for (p, publisher) in pubs.iter_mut().enumerate() {
            let body = format!("{p}:{i}");
            publisher
                .send(format!("PUB ev.{p}.{} {}\r\n{body}\r\n", i % 13, body.len()).as_bytes());
        }
    }
    for publisher in &mut pubs {
        publisher.send(b"PING\r\n");
        publisher.expect(b"PONG\r\n");
    }
    let info = c.request_json("$JS.API.STREAM.INFO.EV", &Value::Null);
    assert_eq!(info["state"]["messages"], json!(4 * EACH), "{info}");
    let mut next = [0usize; 4];
    for seq in 1..=4 * EACH {
        let got = c.request_json("$JS.API.STREAM.MSG.GET.EV", &json!({"seq": seq}));
        let data = got["message"]["data"].as_str().expect("data").to_string();
        let text = decode_base64(&data);
        let (p, i) = text.split_once(':').expect("p:i");
        let (p, i): (usize, usize) = (p.parse().unwrap(), i.parse().unwrap());
        assert_eq!(
            i, next[p],
            "publisher {p}'s messages out of order at seq {seq}"
        );
        next[p] += 1;
    }
}

#[test]
fn plain_subscribers_of_a_stream_subject_still_get_every_message() {
    let server = jetstream(2);
    let mut c = server.requester();
    c.request_json("$JS.API.STREAM.CREATE.S", &memory_stream("S", &["s.>"]));
    let mut sub = server.client_with(CONNECT_HEADERS);
    sub.send(b"SUB s.* 9\r\nPING\r\n");
    sub.expect(b"PONG\r\n");
    c.send(b"PUB s.a 2\r\nhi\r\nPUB s.b _INBOX.t 2\r\nho\r\n");
    c.expect(&ack_frame("S", 2));
    sub.expect(b"MSG s.a 9 2\r\nhi\r\nMSG s.b 9 _INBOX.t 2\r\nho\r\n");
}

#[test]
fn a_deleted_stream_captures_nothing_more_and_its_subjects_can_be_reused() {
    let server = jetstream(2);
    let mut c = server.requester();
    c.request_json("$JS.API.STREAM.CREATE.A", &memory_stream("A", &["x.*"]));
    let overlap = c.request_json("$JS.API.STREAM.CREATE.B", &memory_stream("B", &["x.y"]));
    assert_eq!(overlap["error"]["err_code"], json!(10065), "{overlap}");
    let deleted = c.request_json("$JS.API.STREAM.DELETE.A", &Value::Null);
    assert_eq!(deleted["success"], json!(true), "{deleted}");
    let created = c.request_json("$JS.API.STREAM.CREATE.B", &memory_stream("B", &["x.y"]));
    assert_eq!(created["did_create"], json!(true), "{created}");
    c.send(b"PUB x.z 1\r\n1\r\nPUB x.y _INBOX.t 1\r\n2\r\n");
    c.expect(&ack_frame("B", 1));
    let names = c.request_json("$JS.API.STREAM.NAMES", &Value::Null);
    assert_eq!(names["streams"], json!(["B"]), "{names}");
}

#[test]
fn async_nats_creates_publishes_and_reads_a_stream() {
    let server = jetstream(2);
    run_js(&server, |js| async move {
        let mut s = memory_stream_of(&js, "EVENTS", "events.>", 100).await;
        for i in 0..10u64 {
            let ack = js
                .publish(format!("events.{i}"), format!("e{i}").into())
                .await
                .expect("publish")
                .await
                .expect("ack");
            assert_eq!((ack.stream.as_str(), ack.sequence), ("EVENTS", i + 1));
        }
        let info = s.info().await.expect("info");
        assert_eq!(info.state.messages, 10);
        assert_eq!(info.config.max_messages, 100);
        let raw = s.get_raw_message(4).await.expect("get");
        assert_eq!(
            (raw.subject.as_str(), &raw.payload[..]),
            ("events.3", &b"e3"[..])
        );
        js.delete_stream("EVENTS").await.expect("delete");
        let gone = js.get_stream("EVENTS").await;
        assert!(gone.is_err(), "stream still there after delete");
    });
}

/// Runs `test` on a tokio runtime with a JetStream context connected to `server`.
fn run_js<F, Fut>(server: &TestServer, test: F)
where
    F: FnOnce(async_nats::jetstream::Context) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let url = format!("nats://{}", server.addr());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let client = async_nats::connect(url).await.expect("connect");
        test(async_nats::jetstream::new(client)).await;
    });
}

/// Creates memory stream `name` on `subject`, with `max_messages` (-1: unlimited).
async fn memory_stream_of(
    js: &async_nats::jetstream::Context,
    name: &str,
    subject: &str,
    max_messages: i64,
) -> async_nats::jetstream::stream::Stream {
    use async_nats::jetstream::stream;
    js.create_stream(stream::Config {
        name: name.into(),
        subjects: vec![subject.into()],
        storage: stream::StorageType::Memory,
        max_messages,
        ..Default::default()
    })
    .await
    .expect("create_stream")
}

fn decode_base64(text: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for b in text.bytes().filter(|&b| b != b'=') {
        let v = ALPHABET.iter().position(|&a| a == b).expect("base64") as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    String::from_utf8(out).expect("utf-8")
}

/// The frame of a PubAck for `seq` in `stream`, on the requester's inbox. nats-server
/// writes its internal answers with an empty reply argument (two blanks before the size);
/// the engine writes one blank, which every client's parser reads the same
/// (docs/streams.md, "Deviations").
fn ack_frame(stream: &str, seq: u64) -> Vec<u8> {
    let ack = format!("{{\"stream\":\"{stream}\", \"seq\":{seq}}}");
    let gap = if against_reference() { "  " } else { " " };
    format!("MSG _INBOX.t 1{gap}{}\r\n{ack}\r\n", ack.len()).into_bytes()
}

#[test]
fn async_nats_pull_consumer_fetches_acks_and_gets_redeliveries_in_order() {
    let server = jetstream(2);
    run_js(&server, |js| async move {
        use async_nats::jetstream::consumer;
        use futures::StreamExt;
        let s = memory_stream_of(&js, "WORK", "work.*", -1).await;
        for i in 0..20u64 {
            js.publish(format!("work.{}", i % 3), format!("job{i}").into())
                .await
                .expect("publish")
                .await
                .expect("ack");
        }
        let c = s
            .create_consumer(consumer::pull::Config {
                durable_name: Some("workers".into()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: std::time::Duration::from_millis(600),
                ..Default::default()
            })
            .await
            .expect("create_consumer");
        // The first 12, in order; ack all but job3.
        let mut got = Vec::new();
        let mut batch = c.fetch().max_messages(12).messages().await.expect("fetch");
        while let Some(m) = batch.next().await {
            let m = m.expect("message");
            let text = String::from_utf8(m.payload.to_vec()).unwrap();
            if text != "job3" {
                m.ack().await.expect("ack");
            }
            got.push(text);
        }
        let want: Vec<String> = (0..12).map(|i| format!("job{i}")).collect();
        assert_eq!(got, want);
        // The other 8, then job3 again once its ack wait is over.
        let mut rest = Vec::new();
        while rest.len() < 9 {
            let mut batch = c
                .fetch()
                .max_messages(9 - rest.len())
                .expires(std::time::Duration::from_secs(2))
                .messages()
                .await
                .expect("fetch");
            while let Some(m) = batch.next().await {
                let m = m.expect("message");
                let info = m.info().expect("ack subject").delivered;
                m.ack().await.expect("ack");
                rest.push((String::from_utf8(m.payload.to_vec()).unwrap(), info));
            }
        }
        let mut want: Vec<(String, i64)> = (12..20).map(|i| (format!("job{i}"), 1)).collect();
        want.push(("job3".into(), 2));
        assert_eq!(rest, want);
        let mut c = c;
        let info = c.info().await.expect("consumer info");
        assert_eq!(info.num_ack_pending, 0);
        assert_eq!(info.delivered.stream_sequence, 20);
    });
}

#[test]
fn async_nats_push_consumer_delivers_every_message() {
    let server = jetstream(2);
    run_js(&server, |js| async move {
        use async_nats::jetstream::consumer;
        use futures::StreamExt;
        let s = memory_stream_of(&js, "FEED", "feed.>", -1).await;
        for i in 0..5u64 {
            js.publish(format!("feed.{i}"), format!("f{i}").into())
                .await
                .expect("publish")
                .await
                .expect("ack");
        }
        let c: consumer::PushConsumer = s
            .create_consumer(consumer::push::Config {
                deliver_subject: "push.feed".into(),
                durable_name: Some("pusher".into()),
                ack_policy: consumer::AckPolicy::Explicit,
                ..Default::default()
            })
            .await
            .expect("create push consumer");
        let mut messages = c.messages().await.expect("messages");
        let mut got = Vec::new();
        while got.len() < 5 {
            let m = tokio::time::timeout(std::time::Duration::from_secs(5), messages.next())
                .await
                .expect("a delivery in time")
                .expect("stream open")
                .expect("message");
            m.ack().await.expect("ack");
            got.push(String::from_utf8(m.payload.to_vec()).unwrap());
        }
        assert_eq!(got, ["f0", "f1", "f2", "f3", "f4"]);
    });
}

#[test]
fn a_direct_get_answers_with_the_stored_message_and_its_headers() {
    let server = jetstream(2);
    let mut c = server.requester();
    let config =
        json!({"name": "D", "subjects": ["d.*"], "storage": "memory", "allow_direct": true});
    c.request_json("$JS.API.STREAM.CREATE.D", &config);
    c.send(b"PUB d.x _INBOX.t 5\r\nhello\r\n");
    c.read_msg();
    c.send(b"PUB $JS.API.DIRECT.GET.D _INBOX.t 9\r\n{\"seq\":1}\r\n");
    let head = String::from_utf8(c.read_line()).unwrap();
    assert!(head.starts_with("HMSG _INBOX.t 1 "), "{head:?}");
    let sizes: Vec<usize> = head
        .split_whitespace()
        .rev()
        .take(2)
        .map(|n| n.parse().unwrap())
        .collect();
    let frame = String::from_utf8(c.read_len(sizes[0] + 2)).unwrap();
    let (headers, payload) = frame.split_at(sizes[1]);
    assert!(headers.starts_with("NATS/1.0\r\n"), "{headers:?}");
    for want in [
        "Nats-Stream: D\r\n",
        "Nats-Subject: d.x\r\n",
        "Nats-Sequence: 1\r\n",
    ] {
        assert!(headers.contains(want), "{want:?} missing in {headers:?}");
    }
    assert_eq!(payload, "hello\r\n");
}

#[test]
fn a_work_queue_stream_lets_go_of_each_message_once_it_is_acked() {
    let server = jetstream(2);
    let mut c = server.requester();
    c.send(b"SUB _INBOX.q 2\r\nPING\r\n");
    c.expect(b"PONG\r\n");
    let config =
        json!({"name": "WQ", "subjects": ["wq"], "storage": "memory", "retention": "workqueue"});
    c.request_json("$JS.API.STREAM.CREATE.WQ", &config);
    for i in 0..5 {
        c.send(format!("PUB wq _INBOX.t 2\r\nj{i}\r\n").as_bytes());
        c.read_msg();
    }
    let created = c.request_json(
        "$JS.API.CONSUMER.DURABLE.CREATE.WQ.W",
        &json!({"stream_name": "WQ", "config": {"durable_name": "W", "ack_policy": "explicit"}}),
    );
    assert_eq!(created["name"], json!("W"), "{created}");
    c.send(b"PUB $JS.API.CONSUMER.MSG.NEXT.WQ.W _INBOX.q 11\r\n{\"batch\":3}\r\n");
    let mut acks = Vec::new();
    for i in 0..3 {
        let (_, reply, payload) = c.read_msg_with_reply();
        assert_eq!(payload, format!("j{i}").into_bytes());
        acks.push(reply.expect("an ack subject"));
    }
    for ack in acks {
        c.send(format!("PUB {ack} _INBOX.t 4\r\n+ACK\r\n").as_bytes());
        let (_, confirm) = c.read_msg();
        assert!(confirm.is_empty());
    }
    let info = c.request_json("$JS.API.STREAM.INFO.WQ", &Value::Null);
    assert_eq!(info["state"]["messages"], json!(2), "{info}");
    assert_eq!(info["state"]["first_seq"], json!(4), "{info}");
}

#[test]
fn a_pull_request_whose_requester_stopped_listening_gets_nothing() {
    let server = jetstream(2);
    let mut c = server.requester();
    let config = json!({"name": "P", "subjects": ["p"], "storage": "memory"});
    c.request_json("$JS.API.STREAM.CREATE.P", &config);
    c.request_json(
        "$JS.API.CONSUMER.DURABLE.CREATE.P.D",
        &json!({"stream_name": "P", "config": {"durable_name": "D", "ack_policy": "explicit"}}),
    );
    // A fetch on an inbox that is then given up, before anything is stored.
    c.send(b"SUB _INBOX.gone 7\r\nPUB $JS.API.CONSUMER.MSG.NEXT.P.D _INBOX.gone 32\r\n{\"batch\":1,\"expires\":9000000000}\r\nUNSUB 7\r\n");
    c.send(b"PUB p _INBOX.t 1\r\nx\r\n");
    c.read_msg();
    let info = c.request_json("$JS.API.CONSUMER.INFO.P.D", &Value::Null);
    assert_eq!(info["num_pending"], json!(1), "{info}");
    assert_eq!(info["num_ack_pending"], json!(0), "{info}");
    assert_eq!(info["delivered"]["stream_seq"], json!(0), "{info}");
    // And a fetch sent after its inbox was given up, with a message there to take.
    c.send(b"SUB _INBOX.gone2 8\r\nUNSUB 8\r\nPUB $JS.API.CONSUMER.MSG.NEXT.P.D _INBOX.gone2 11\r\n{\"batch\":1}\r\n");
    let info = c.request_json("$JS.API.CONSUMER.INFO.P.D", &Value::Null);
    assert_eq!(info["num_pending"], json!(1), "{info}");
    assert_eq!(info["delivered"]["stream_seq"], json!(0), "{info}");
}

#[test]
fn a_no_wait_pull_stalled_at_max_ack_pending_ends_with_408_at_its_first_heartbeat() {
    let server = jetstream(2);
    let mut c = server.requester();
    c.send(b"SUB _INBOX.r 2\r\nPING\r\n");
    c.expect(b"PONG\r\n");
    c.request_json("$JS.API.STREAM.CREATE.E", &memory_stream("E", &["e.>"]));
    c.request_json(
        "$JS.API.CONSUMER.DURABLE.CREATE.E.a",
        &json!({"stream_name": "E", "config": {"durable_name": "a", "ack_policy": "explicit",
                "max_ack_pending": 5}}),
    );
    for i in 0..10 {
        c.send(format!("PUB e.{i} _INBOX.t 1\r\nx\r\n").as_bytes());
        c.read_msg();
    }
    let body = r#"{"batch":20,"expires":1900000000,"idle_heartbeat":100000000,"no_wait":true}"#;
    c.send(
        format!(
            "PUB $JS.API.CONSUMER.MSG.NEXT.E.a _INBOX.r {}\r\n{body}\r\n",
            body.len()
        )
        .as_bytes(),
    );
    for i in 0..5 {
        let (subject, _) = c.read_msg();
        assert_eq!(subject, format!("e.{i}"));
    }
    // Not an idle heartbeat: the request is over.
    let head = String::from_utf8(c.read_line()).unwrap();
    assert!(head.starts_with("HMSG _INBOX.r 2 "), "{head:?}");
    let size: usize = head.split_whitespace().last().unwrap().parse().unwrap();
    let status = String::from_utf8(c.read_len(size + 2)).unwrap();
    assert!(
        status.starts_with("NATS/1.0 408 Request Timeout\r\n"),
        "{status:?}"
    );
}

#[test]
fn the_server_wide_limits_come_from_the_flags_and_bound_what_streams_may_reserve() {
    if against_reference() {
        return;
    }
    let server = start(Config {
        workers: 2,
        jetstream: true,
        js_max_memory: 10_000,
        ..Config::default()
    });
    let mut c = server.requester();
    let info = c.request_json("$JS.API.INFO", &Value::Null);
    assert_eq!(info["limits"]["max_memory"], json!(10_000), "{info}");
    let too_big = json!({"name": "M", "subjects": ["m"], "storage": "memory", "max_bytes": 20_000});
    let refused = c.request_json("$JS.API.STREAM.CREATE.M", &too_big);
    assert_eq!(refused["error"]["err_code"], json!(10028), "{refused}");
    let fits = json!({"name": "M", "subjects": ["m"], "storage": "memory", "max_bytes": 5_000});
    let created = c.request_json("$JS.API.STREAM.CREATE.M", &fits);
    assert_eq!(created["did_create"], json!(true), "{created}");
}

#[test]
fn an_interest_stream_keeps_a_message_until_every_consumer_has_acked_it() {
    let server = jetstream(2);
    let mut c = interest_stream_with_a_and_b(&server, "I", "i");
    c.send(b"PUB i _INBOX.t 1\r\nx\r\n");
    c.read_msg();
    let mut acks = Vec::new();
    for name in ["A", "B"] {
        c.send(
            format!("PUB $JS.API.CONSUMER.MSG.NEXT.I.{name} _INBOX.q 11\r\n{{\"batch\":1}}\r\n")
                .as_bytes(),
        );
        let (_, reply, _) = c.read_msg_with_reply();
        acks.push(reply.expect("an ack subject"));
    }
    let messages = |c: &mut Client| {
        c.request_json("$JS.API.STREAM.INFO.I", &Value::Null)["state"]["messages"].clone()
    };
    c.send(format!("PUB {} _INBOX.t 4\r\n+ACK\r\n", acks[0]).as_bytes());
    c.read_msg();
    assert_eq!(messages(&mut c), json!(1), "kept while B has not acked");
    c.send(format!("PUB {} _INBOX.t 4\r\n+ACK\r\n", acks[1]).as_bytes());
    c.read_msg();
    assert_eq!(messages(&mut c), json!(0), "gone once both have");
}

#[test]
fn deleting_a_consumer_of_an_interest_stream_lets_go_what_only_it_held() {
    let server = jetstream(2);
    let mut c = interest_stream_with_a_and_b(&server, "J", "j");
    for _ in 0..3 {
        c.send(b"PUB j _INBOX.t 1\r\nx\r\n");
        c.read_msg();
    }
    // A takes and acks the first two; B never pulls.
    c.send(b"PUB $JS.API.CONSUMER.MSG.NEXT.J.A _INBOX.q 11\r\n{\"batch\":2}\r\n");
    let acks: Vec<String> = (0..2)
        .map(|_| c.read_msg_with_reply().1.expect("an ack subject"))
        .collect();
    for ack in &acks {
        c.send(format!("PUB {ack} _INBOX.t 4\r\n+ACK\r\n").as_bytes());
        c.read_msg();
    }
    let state =
        |c: &mut Client| c.request_json("$JS.API.STREAM.INFO.J", &Value::Null)["state"].clone();
    assert_eq!(
        state(&mut c)["messages"],
        json!(3),
        "B still holds all three"
    );
    let deleted = c.request_json("$JS.API.CONSUMER.DELETE.J.B", &Value::Null);
    assert_eq!(deleted["success"], json!(true), "{deleted}");
    // What A is done with goes; what A has not seen stays for A.
    let after = state(&mut c);
    assert_eq!(after["messages"], json!(1), "{after}");
    assert_eq!(after["first_seq"], json!(3), "{after}");
    let deleted = c.request_json("$JS.API.CONSUMER.DELETE.J.A", &Value::Null);
    assert_eq!(deleted["success"], json!(true), "{deleted}");
    let after = state(&mut c);
    assert_eq!(after["messages"], json!(0), "no consumer left: {after}");
}

#[test]
fn a_stream_republishes_what_it_stores() {
    let server = jetstream(2);
    let mut c = server.requester();
    c.send(b"SUB bar.> 2\r\nSUB q.> 3\r\nPING\r\n");
    c.expect(b"PONG\r\n");
    let created = c.request_json(
        "$JS.API.STREAM.CREATE.S1",
        &json!({"name": "S1", "subjects": ["foo.>"], "storage": "memory",
                "republish": {"src": ">", "dest": "bar.>"}}),
    );
    assert_eq!(
        created["config"]["republish"],
        json!({"src": ">", "dest": "bar.>"}),
        "{created}"
    );
    let created = c.request_json(
        "$JS.API.STREAM.CREATE.S2",
        &json!({"name": "S2", "subjects": ["hq.>"], "storage": "memory",
                "republish": {"dest": "q.>", "headers_only": true}}),
    );
    assert_eq!(
        created["config"]["republish"],
        json!({"src": ">", "dest": "q.>", "headers_only": true}),
        "{created}"
    );
    for (subjects, republish, text) in [
        (
            json!(["c.>"]),
            json!({"src": ">", "dest": "c.>"}),
            "stream configuration for republish destination forms a cycle",
        ),
        (
            json!(["d.>"]),
            json!({"src": "e.>", "dest": "z.>"}),
            "stream configuration for republish source is not valid subset of subjects",
        ),
        (
            json!(["l.>"]),
            json!({"src": ">", "dest": ""}),
            "stream configuration for republish not valid",
        ),
    ] {
        let refused = c.request_json(
            "$JS.API.STREAM.CREATE.BAD",
            &json!({"name": "BAD", "subjects": subjects, "storage": "memory", "republish": republish}),
        );
        assert_eq!(
            refused["error"],
            json!({"code": 500, "err_code": 10052, "description": text}),
            "{refused}"
        );
    }
    // The copy comes before the PubAck, with the stream's headers after the published ones.
    c.send(b"PUB foo.a _INBOX.t 5\r\nhello\r\n");
    expect_frame(&mut c, "HMSG bar.foo.a 2  91 96", b"NATS/1.0\r\nNats-Stream: S1\r\nNats-Subject: foo.a\r\nNats-Sequence: 1\r\nNats-Last-Sequence: 0\r\n\r\nhello\r\n");
    expect_frame(
        &mut c,
        "MSG _INBOX.t 1 24",
        b"{\"stream\":\"S1\", \"seq\":1}\r\n",
    );
    c.send(
        b"HPUB foo.b _INBOX.t 35 47\r\nNATS/1.0\r\nNats-Msg-Id: x1\r\nA: b\r\n\r\nwith headers\r\n",
    );
    expect_frame(&mut c, "HMSG bar.foo.b 2  114 126", b"NATS/1.0\r\nNats-Msg-Id: x1\r\nA: b\r\nNats-Stream: S1\r\nNats-Subject: foo.b\r\nNats-Sequence: 2\r\nNats-Last-Sequence: 0\r\n\r\nwith headers\r\n");
    expect_frame(
        &mut c,
        "MSG _INBOX.t 1 24",
        b"{\"stream\":\"S1\", \"seq\":2}\r\n",
    );
    c.send(b"PUB foo.a _INBOX.t 5\r\nagain\r\n");
    expect_frame(&mut c, "HMSG bar.foo.a 2  91 96", b"NATS/1.0\r\nNats-Stream: S1\r\nNats-Subject: foo.a\r\nNats-Sequence: 3\r\nNats-Last-Sequence: 1\r\n\r\nagain\r\n");
    expect_frame(
        &mut c,
        "MSG _INBOX.t 1 24",
        b"{\"stream\":\"S1\", \"seq\":3}\r\n",
    );
    c.send(b"PUB hq.a _INBOX.t 12\r\nHello World!\r\n");
    expect_frame(&mut c, "HMSG q.hq.a 3  109 109", b"NATS/1.0\r\nNats-Stream: S2\r\nNats-Subject: hq.a\r\nNats-Sequence: 1\r\nNats-Last-Sequence: 0\r\nNats-Msg-Size: 12\r\n\r\n\r\n");
    expect_frame(
        &mut c,
        "MSG _INBOX.t 1 24",
        b"{\"stream\":\"S2\", \"seq\":1}\r\n",
    );
    // A duplicate is not stored, so not republished either.
    c.send(
        b"HPUB foo.b _INBOX.t 35 47\r\nNATS/1.0\r\nNats-Msg-Id: x1\r\nA: b\r\n\r\nwith headers\r\n",
    );
    expect_frame(
        &mut c,
        "MSG _INBOX.t 1 42",
        b"{\"stream\":\"S1\", \"seq\":2,\"duplicate\": true}\r\n",
    );
}

/// Reads one `MSG`/`HMSG` frame: its control line must have `line`'s words (nats-server
/// spaces a server-made line differently, which no client parser sees), and what follows
/// must be exactly `rest` (header block, payload and CRLF).
fn expect_frame(c: &mut Client, line: &str, rest: &[u8]) {
    let got = String::from_utf8(c.read_line()).unwrap();
    let words: Vec<&str> = got.split_whitespace().collect();
    assert_eq!(
        words,
        line.split_whitespace().collect::<Vec<_>>(),
        "{got:?}"
    );
    assert_eq!(common::show(&c.read_len(rest.len())), common::show(rest));
}

/// A requester (also subscribed to `_INBOX.q`) after it made memory stream `name` on
/// `subject` with interest retention and durable consumers A and B, explicit acks.
fn interest_stream_with_a_and_b(server: &TestServer, name: &str, subject: &str) -> Client {
    let mut c = server.requester();
    c.send(b"SUB _INBOX.q 2\r\nPING\r\n");
    c.expect(b"PONG\r\n");
    let config =
        json!({"name": name, "subjects": [subject], "storage": "memory", "retention": "interest"});
    c.request_json(&format!("$JS.API.STREAM.CREATE.{name}"), &config);
    for consumer in ["A", "B"] {
        let created = c.request_json(
            &format!("$JS.API.CONSUMER.DURABLE.CREATE.{name}.{consumer}"),
            &json!({"stream_name": name, "config": {"durable_name": consumer, "ack_policy": "explicit"}}),
        );
        assert_eq!(created["name"], json!(consumer), "{created}");
    }
    c
}
