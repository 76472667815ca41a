//! The real server, started in-process, driven by the async-nats client (a NATS client
//! library nobody here wrote): if it works unchanged, the wire is compatible.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use async_nats::{ConnectOptions, HeaderMap};
use engine::config::Config;
use engine::server::{spawn, ServerHandle};
use futures::StreamExt;

const WAIT: Duration = Duration::from_secs(10);

fn start(workers: usize) -> ServerHandle {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let config = Config {
        workers,
        ..Config::default()
    };
    spawn(listener, config).unwrap()
}

fn url(s: &ServerHandle) -> String {
    format!("nats://{}", s.local_addr())
}

async fn next(sub: &mut async_nats::Subscriber) -> async_nats::Message {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("timed out waiting for a message")
        .expect("subscription ended")
}

/// Expects no message on `sub` after a round trip on `client` (which, the server processing
/// each connection's ops in order, proves nothing the client published is still unhandled).
async fn expect_quiet(client: &async_nats::Client, sub: &mut async_nats::Subscriber) {
    common::nats_sync(client).await;
    let r = tokio::time::timeout(Duration::from_millis(50), sub.next()).await;
    assert!(r.is_err(), "unexpected message: {:?}", r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_subscribe_across_workers() {
    let server = start(2);
    let subscriber = async_nats::connect(url(&server)).await.unwrap();
    let publisher = async_nats::connect(url(&server)).await.unwrap();
    let mut subs = Vec::new();
    for subject in ["room.a", "room.b", "room.c", "room.d"] {
        subs.push(subscriber.subscribe(subject).await.unwrap());
    }
    common::nats_sync(&subscriber).await;
    for i in 0..100u32 {
        for subject in ["room.a", "room.b", "room.c", "room.d"] {
            publisher
                .publish(subject, format!("{subject} {i}").into())
                .await
                .unwrap();
        }
    }
    publisher.flush().await.unwrap();
    for (sub, subject) in subs
        .iter_mut()
        .zip(["room.a", "room.b", "room.c", "room.d"])
    {
        for i in 0..100u32 {
            let m = next(sub).await;
            assert_eq!(m.subject.as_str(), subject);
            assert_eq!(m.payload, format!("{subject} {i}").as_bytes(), "order kept");
        }
    }
    drop((subscriber, publisher));
    server.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcards() {
    let server = start(2);
    let c = async_nats::connect(url(&server)).await.unwrap();
    let mut star = c.subscribe("chat.*.msg").await.unwrap();
    let mut tail = c.subscribe("chat.>").await.unwrap();
    c.flush().await.unwrap();
    c.publish("chat.r1.msg", "one".into()).await.unwrap();
    c.publish("chat.r1.meta.x", "two".into()).await.unwrap();
    c.publish("other.r1.msg", "three".into()).await.unwrap();
    assert_eq!(next(&mut star).await.payload, "one");
    let t1 = next(&mut tail).await;
    let t2 = next(&mut tail).await;
    let mut got = vec![t1.payload.to_vec(), t2.payload.to_vec()];
    got.sort();
    assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec()]);
    expect_quiet(&c, &mut star).await;
    expect_quiet(&c, &mut tail).await;
    server.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_group_delivers_each_message_once_and_spreads() {
    let server = start(2);
    let mut members = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..4 {
        let c = async_nats::connect(url(&server)).await.unwrap();
        members.push(c.queue_subscribe("jobs", "workers".into()).await.unwrap());
        common::nats_sync(&c).await;
        clients.push(c);
    }
    let watcher = async_nats::connect(url(&server)).await.unwrap();
    let mut plain = watcher.subscribe("jobs").await.unwrap();
    common::nats_sync(&watcher).await;
    let publisher = async_nats::connect(url(&server)).await.unwrap();
    const N: usize = 400;
    for i in 0..N {
        publisher
            .publish("jobs", i.to_string().into())
            .await
            .unwrap();
    }
    publisher.flush().await.unwrap();
    for _ in 0..N {
        next(&mut plain).await;
    }
    let tagged = members
        .into_iter()
        .enumerate()
        .map(|(i, m)| m.map(move |msg| (i, msg)));
    let mut all = futures::stream::select_all(tagged);
    let mut counts = [0usize; 4];
    let mut seen = std::collections::HashSet::new();
    for _ in 0..N {
        let (i, msg) = tokio::time::timeout(WAIT, all.next())
            .await
            .unwrap()
            .unwrap();
        assert!(seen.insert(msg.payload.to_vec()), "delivered twice");
        counts[i] += 1;
    }
    assert_eq!(seen.len(), N, "each message to exactly one member");
    assert!(
        counts.iter().all(|&n| n >= N / 10),
        "spread fairly: {counts:?}"
    );
    for c in &clients {
        c.flush().await.unwrap();
    }
    let extra = tokio::time::timeout(Duration::from_millis(100), all.next()).await;
    assert!(extra.is_err(), "no extra deliveries: {extra:?}");
    server.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_reply_and_no_responders() {
    let server = start(2);
    let responder = async_nats::connect(url(&server)).await.unwrap();
    let mut service = responder.subscribe("svc.echo").await.unwrap();
    common::nats_sync(&responder).await;
    let r2 = responder.clone();
    let task = tokio::spawn(async move {
        while let Some(m) = service.next().await {
            let reply = m.reply.unwrap();
            let mut body = b"re: ".to_vec();
            body.extend_from_slice(&m.payload);
            r2.publish(reply, body.into()).await.unwrap();
        }
    });
    let requester = async_nats::connect(url(&server)).await.unwrap();
    for i in 0..20 {
        let answer =
            tokio::time::timeout(WAIT, requester.request("svc.echo", format!("q{i}").into()))
                .await
                .unwrap()
                .unwrap();
        assert_eq!(answer.payload, format!("re: q{i}").as_bytes());
    }
    let err = tokio::time::timeout(WAIT, requester.request("svc.nobody", "x".into()))
        .await
        .expect("no-responders must answer at once, not time out")
        .unwrap_err();
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
    task.abort();
    server.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_pass_through() {
    let server = start(2);
    let c = async_nats::connect(url(&server)).await.unwrap();
    let mut sub = c.subscribe("h.test").await.unwrap();
    c.flush().await.unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("X-Trace", "abc123");
    headers.append("X-Multi", "1");
    headers.append("X-Multi", "2");
    c.publish_with_headers("h.test", headers, "body".into())
        .await
        .unwrap();
    let m = next(&mut sub).await;
    assert_eq!(m.payload, "body");
    let h = m.headers.expect("headers delivered");
    assert_eq!(h.get("X-Trace").map(|v| v.as_str()), Some("abc123"));
    let multi: Vec<&str> = h.get_all("X-Multi").map(|v| v.as_str()).collect();
    assert_eq!(multi, vec!["1", "2"]);
    server.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_unsubscribe_after_n() {
    let server = start(2);
    let c = async_nats::connect(url(&server)).await.unwrap();
    let mut sub = c.subscribe("limited").await.unwrap();
    sub.unsubscribe_after(3).await.unwrap();
    c.flush().await.unwrap();
    for i in 0..10 {
        c.publish("limited", i.to_string().into()).await.unwrap();
    }
    c.flush().await.unwrap();
    for i in 0..3 {
        assert_eq!(next(&mut sub).await.payload, i.to_string().as_bytes());
    }
    let end = tokio::time::timeout(WAIT, sub.next()).await.unwrap();
    assert!(end.is_none(), "subscription ends after exactly 3");
    server.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_false_suppresses_own_messages_only() {
    let server = start(2);
    let quiet = ConnectOptions::new()
        .no_echo()
        .connect(url(&server))
        .await
        .unwrap();
    let other = async_nats::connect(url(&server)).await.unwrap();
    let mut own = quiet.subscribe("echo.t").await.unwrap();
    let mut theirs = other.subscribe("echo.t").await.unwrap();
    common::nats_sync(&quiet).await;
    common::nats_sync(&other).await;
    quiet.publish("echo.t", "mine".into()).await.unwrap();
    quiet.flush().await.unwrap();
    // The other connection gets it...
    assert_eq!(next(&mut theirs).await.payload, "mine");
    other.publish("echo.t", "theirs".into()).await.unwrap();
    // ...and since every subscriber of a subject sees one order, "theirs" being the first
    // message on the publisher's own subscription proves "mine" was not echoed to it.
    assert_eq!(next(&mut own).await.payload, "theirs");
    assert_eq!(next(&mut theirs).await.payload, "theirs");
    server.shutdown().unwrap();
}
