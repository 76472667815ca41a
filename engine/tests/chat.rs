//! The chat layer (docs/chat.md) driven through the real server, in-process, by the async-nats
//! client: users, rooms, direct messages, presence events, history, and the per-message
//! delivery checks that keep rooms and direct messages private.
//!
//! Every server runs two workers, so requests, messages and events cross the rings between
//! them (connections are handed to workers round-robin; a conversation's owner is a hash).
//! Nothing synchronises by sleeping: a test waits for the reply, message or event it expects,
//! and proves that nothing arrives with a positive control (a message that must arrive and is
//! sent last) followed by a flush and a short quiet window.

use std::net::TcpListener;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::{Client, ConnectOptions, Event, HeaderMap, Message, ServerError, Subscriber};
use engine::config::{Auth, Config};
use engine::server::{spawn, ServerHandle};
use futures::channel::mpsc::{unbounded, UnboundedReceiver};
use futures::future::join_all;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

/// How long any wait for a reply, message, event or connection may take.
const WAIT: Duration = Duration::from_secs(5);

/// How long a subscription must stay silent, after a flush, to count as receiving nothing.
const QUIET: Duration = Duration::from_millis(100);

/// The users file of the servers that run with authentication.
const USERS: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];

// ---------------------------------------------------------------------------------------------
// Identity and requests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_whoami_and_bad_requests() {
    let server = start(Config::default());

    // No CONNECT user: every chat operation (and a direct message) answers 401.
    let anon = timeout(WAIT, async_nats::connect(url(&server)))
        .await
        .expect("connect timed out")
        .expect("connect");
    assert_eq!(fails(&anon, "whoami", json!({})).await, 401);
    assert_eq!(fails(&anon, "room.create", json!({"room": "r"})).await, 401);
    assert_eq!(fails(&anon, "rooms.list", json!({})).await, 401);
    assert_eq!(code(&request(&anon, "$CHAT.DM.bob", b"hi").await), 401);
    // ... but plain subjects work as ever.
    let mut plain = anon.subscribe("plain.x").await.unwrap();
    anon.flush().await.unwrap();
    anon.publish("plain.x", "p".into()).await.unwrap();
    assert_eq!(next(&mut plain).await.payload, "p");

    // whoami, with an empty body meaning {}.
    let alice = session(&server, "alice").await;
    let id = alice.server_info().client_id;
    assert_eq!(
        request(&alice, "$CHAT.API.whoami", b"").await,
        json!({"user": "alice", "session": id})
    );
    assert_eq!(
        ok(&alice, "whoami", json!({})).await,
        json!({"user": "alice", "session": id})
    );

    // Not JSON, not an object, missing or ill-typed fields.
    for body in [
        &b"not json"[..],
        b"{\"room\":",
        b"[1,2]",
        b"\"lobby\"",
        b"{}",
        b"{\"room\":5}",
        b"{\"room\":null}",
        b"{\"room\":\"lobby\",\"private\":\"yes\"}",
        b"{\"room\":\"lobby\",\"limit\":\"ten\"}",
    ] {
        let reply = request(&alice, "$CHAT.API.room.create", body).await;
        assert_eq!(code(&reply), 400, "body {}", String::from_utf8_lossy(body));
    }
    // Invalid room names: empty, a dot, a space, wildcards, non-ASCII, 65 bytes.
    let long = "a".repeat(65);
    for name in [
        "",
        "a.b",
        "a b",
        "*",
        ">",
        "caf\u{e9}",
        "a/b",
        long.as_str(),
    ] {
        assert_eq!(
            fails(&alice, "room.create", json!({"room": name})).await,
            400,
            "room name {name:?}"
        );
        assert_eq!(
            fails(&alice, "room.join", json!({"room": name})).await,
            400,
            "room name {name:?}"
        );
    }
    // 64 bytes of the whole alphabet is a valid name.
    let max = format!("{}AZaz09_-", "x".repeat(56));
    assert_eq!(max.len(), 64);
    assert_eq!(
        ok(&alice, "room.create", json!({"room": max})).await,
        json!({"room": max, "private": false, "limit": null})
    );
    // Unknown operations.
    assert_eq!(fails(&alice, "room.explode", json!({})).await, 400);
    assert_eq!(fails(&alice, "nope", json!({})).await, 400);
    // A room that does not exist.
    assert_eq!(
        fails(&alice, "room.info", json!({"room": "ghost"})).await,
        404
    );
    assert_eq!(
        fails(&alice, "room.join", json!({"room": "ghost"})).await,
        404
    );

    // A CONNECT user outside the alphabet can use plain subjects, but chat answers 400.
    for bad in ["bad.name", "bad name", long.as_str()] {
        let c = session(&server, bad).await;
        assert_eq!(fails(&c, "whoami", json!({})).await, 400, "user {bad:?}");
        assert_eq!(
            fails(&c, "room.create", json!({"room": "fine"})).await,
            400,
            "user {bad:?}"
        );
    }
    server.shutdown().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Room lifecycle
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_room_lifecycle() {
    let server = start(auth_config());
    let alice = session(&server, "alice").await;
    let bob = session(&server, "bob").await;
    let carol = session(&server, "carol").await;

    assert_eq!(
        ok(&alice, "room.create", json!({"room": "lobby"})).await,
        json!({"room": "lobby", "private": false, "limit": null})
    );
    assert_eq!(
        fails(&bob, "room.create", json!({"room": "lobby"})).await,
        409,
        "the room exists"
    );
    // The creator is the first member and admin.
    assert_eq!(
        ok(&bob, "room.info", json!({"room": "lobby"})).await,
        json!({"room": "lobby", "private": false, "limit": null, "seq": 0,
               "members": ["alice"], "admins": ["alice"], "more": false})
    );
    assert_eq!(
        ok(&bob, "room.join", json!({"room": "lobby"})).await,
        json!({"room": "lobby", "seq": 0, "members": 2})
    );
    assert_eq!(
        ok(&alice, "room.info", json!({"room": "lobby"})).await,
        json!({"room": "lobby", "private": false, "limit": null, "seq": 0,
               "members": ["alice", "bob"], "admins": ["alice"], "more": false})
    );

    // Admin-only operations refused to a plain member.
    for (op, body) in [
        ("room.kick", json!({"room": "lobby", "user": "alice"})),
        ("room.promote", json!({"room": "lobby", "user": "bob"})),
        ("room.demote", json!({"room": "lobby", "user": "alice"})),
        ("room.limit", json!({"room": "lobby", "limit": 5})),
        ("room.add", json!({"room": "lobby", "user": "carol"})),
        ("room.close", json!({"room": "lobby"})),
    ] {
        assert_eq!(fails(&bob, op, body).await, 403, "{op} by a non-admin");
    }

    // Limits: admin only, never below the member count; a full room refuses joins.
    assert_eq!(
        fails(&alice, "room.limit", json!({"room": "lobby", "limit": 1})).await,
        409
    );
    assert_eq!(
        ok(&alice, "room.limit", json!({"room": "lobby", "limit": 2})).await,
        json!({"room": "lobby", "limit": 2})
    );
    assert_eq!(
        fails(&carol, "room.join", json!({"room": "lobby"})).await,
        409,
        "full"
    );
    assert_eq!(
        ok(
            &alice,
            "room.limit",
            json!({"room": "lobby", "limit": null})
        )
        .await,
        json!({"room": "lobby", "limit": null})
    );
    assert_eq!(
        ok(&carol, "room.join", json!({"room": "lobby"})).await,
        json!({"room": "lobby", "seq": 0, "members": 3})
    );

    // Promote and demote; the last admin can neither be demoted nor leave.
    assert_eq!(
        fails(
            &alice,
            "room.promote",
            json!({"room": "lobby", "user": "dave"})
        )
        .await,
        404,
        "dave is not a member"
    );
    assert_eq!(
        ok(
            &alice,
            "room.promote",
            json!({"room": "lobby", "user": "bob"})
        )
        .await,
        json!({"room": "lobby", "user": "bob"})
    );
    assert_eq!(
        ok(&carol, "room.info", json!({"room": "lobby"})).await["admins"],
        json!(["alice", "bob"])
    );
    assert_eq!(
        ok(
            &bob,
            "room.demote",
            json!({"room": "lobby", "user": "alice"})
        )
        .await,
        json!({"room": "lobby", "user": "alice"})
    );
    assert_eq!(
        fails(&bob, "room.demote", json!({"room": "lobby", "user": "bob"})).await,
        409,
        "bob is the last admin"
    );
    assert_eq!(
        fails(&bob, "room.leave", json!({"room": "lobby"})).await,
        409,
        "the last admin cannot leave"
    );
    assert_eq!(
        fails(
            &alice,
            "room.kick",
            json!({"room": "lobby", "user": "carol"})
        )
        .await,
        403,
        "alice is no longer an admin"
    );

    // Kick (admin only) and leave.
    assert_eq!(
        ok(&bob, "room.kick", json!({"room": "lobby", "user": "carol"})).await,
        json!({"room": "lobby", "user": "carol"})
    );
    assert_eq!(
        fails(&bob, "room.kick", json!({"room": "lobby", "user": "carol"})).await,
        404,
        "carol is no longer a member"
    );
    assert_eq!(
        ok(&alice, "room.leave", json!({"room": "lobby"})).await,
        json!({"room": "lobby"})
    );
    assert_eq!(
        ok(&alice, "room.info", json!({"room": "lobby"})).await,
        json!({"room": "lobby", "private": false, "limit": null, "seq": 0,
               "members": ["bob"], "admins": ["bob"], "more": false})
    );
    assert_eq!(
        ok(&carol, "rooms.list", json!({})).await,
        json!({"rooms": [{"room": "lobby", "private": false, "limit": null, "members": 1,
                          "member": false, "admin": false}], "more": false})
    );
    assert_eq!(
        ok(&bob, "rooms.list", json!({})).await,
        json!({"rooms": [{"room": "lobby", "private": false, "limit": null, "members": 1,
                          "member": true, "admin": true}], "more": false})
    );

    // Close: admin only, then the room is gone.
    assert_eq!(
        fails(&alice, "room.close", json!({"room": "lobby"})).await,
        403
    );
    assert_eq!(
        ok(&bob, "room.close", json!({"room": "lobby"})).await,
        json!({"room": "lobby"})
    );
    assert_eq!(
        fails(&bob, "room.info", json!({"room": "lobby"})).await,
        404
    );
    assert_eq!(
        fails(&carol, "room.join", json!({"room": "lobby"})).await,
        404
    );
    assert_eq!(
        fails(&bob, "room.close", json!({"room": "lobby"})).await,
        404
    );
    assert_eq!(
        ok(&bob, "rooms.list", json!({})).await,
        json!({"rooms": [], "more": false})
    );
    server.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_room_needs_add_and_is_listed_to_members_only() {
    let server = start(auth_config());
    let alice = session(&server, "alice").await;
    let bob = session(&server, "bob").await;
    let carol = session(&server, "carol").await;

    assert_eq!(
        ok(
            &alice,
            "room.create",
            json!({"room": "secret", "private": true})
        )
        .await,
        json!({"room": "secret", "private": true, "limit": null})
    );
    assert_eq!(
        ok(
            &alice,
            "room.create",
            json!({"room": "hall", "private": false, "limit": 4})
        )
        .await,
        json!({"room": "hall", "private": false, "limit": 4})
    );
    assert_eq!(
        fails(&bob, "room.join", json!({"room": "secret"})).await,
        403
    );
    assert_eq!(
        fails(&bob, "room.info", json!({"room": "secret"})).await,
        403
    );
    assert_eq!(
        fails(&bob, "room.add", json!({"room": "secret", "user": "bob"})).await,
        403,
        "a non-member cannot add itself"
    );
    assert_eq!(
        fails(&alice, "room.add", json!({"room": "secret", "user": "b.b"})).await,
        400
    );
    assert_eq!(
        ok(&alice, "room.add", json!({"room": "secret", "user": "bob"})).await,
        json!({"room": "secret", "user": "bob"})
    );
    assert_eq!(
        fails(&alice, "room.add", json!({"room": "secret", "user": "bob"})).await,
        409,
        "already a member"
    );
    // bob is a member now, so the room is readable to him before he joins.
    assert_eq!(
        ok(&bob, "room.info", json!({"room": "secret"})).await,
        json!({"room": "secret", "private": true, "limit": null, "seq": 0,
               "members": ["alice", "bob"], "admins": ["alice"], "more": false})
    );
    assert_eq!(
        ok(&bob, "room.join", json!({"room": "secret"})).await,
        json!({"room": "secret", "seq": 0, "members": 2})
    );
    assert_eq!(
        fails(&carol, "room.join", json!({"room": "secret"})).await,
        403,
        "still private to carol"
    );

    // rooms.list: public rooms plus the private rooms one belongs to, sorted by name.
    let hall = |member: bool, admin: bool| {
        json!({"room": "hall", "private": false, "limit": 4, "members": 1,
               "member": member, "admin": admin})
    };
    let secret = |admin: bool| {
        json!({"room": "secret", "private": true, "limit": null, "members": 2,
               "member": true, "admin": admin})
    };
    assert_eq!(
        ok(&carol, "rooms.list", json!({})).await,
        json!({"rooms": [hall(false, false)], "more": false})
    );
    assert_eq!(
        ok(&bob, "rooms.list", json!({})).await,
        json!({"rooms": [hall(false, false), secret(false)], "more": false})
    );
    assert_eq!(
        ok(&alice, "rooms.list", json!({})).await,
        json!({"rooms": [hall(true, true), secret(true)], "more": false})
    );

    // room.add is subject to the limit.
    assert_eq!(
        ok(&alice, "room.limit", json!({"room": "secret", "limit": 2})).await,
        json!({"room": "secret", "limit": 2})
    );
    assert_eq!(
        fails(
            &alice,
            "room.add",
            json!({"room": "secret", "user": "carol"})
        )
        .await,
        409,
        "full"
    );
    assert_eq!(
        fails(
            &alice,
            "room.kick",
            json!({"room": "secret", "user": "carol"})
        )
        .await,
        404,
        "carol is not a member"
    );
    // After a kick, the private room is closed to bob again.
    assert_eq!(
        ok(
            &alice,
            "room.kick",
            json!({"room": "secret", "user": "bob"})
        )
        .await,
        json!({"room": "secret", "user": "bob"})
    );
    assert_eq!(
        fails(&bob, "room.join", json!({"room": "secret"})).await,
        403
    );
    assert_eq!(
        ok(&bob, "rooms.list", json!({})).await,
        json!({"rooms": [hall(false, false)], "more": false})
    );
    server.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_sends_close_event_then_room_is_gone() {
    let server = start(auth_config());
    let alice = session(&server, "alice").await;
    let bob = session(&server, "bob").await;
    let mut alice_evt = alice.subscribe("$CHAT.EVT.tmp").await.unwrap();
    let mut bob_evt = bob.subscribe("$CHAT.EVT.tmp").await.unwrap();
    alice.flush().await.unwrap();
    bob.flush().await.unwrap();

    ok(&alice, "room.create", json!({"room": "tmp"})).await;
    ok(&bob, "room.join", json!({"room": "tmp"})).await;
    let bob_join = json!({"event": "join", "room": "tmp", "user": "bob",
                          "session": bob.server_info().client_id});
    assert_eq!(next_json(&mut alice_evt).await, bob_join);
    assert_eq!(
        next_json(&mut bob_evt).await,
        bob_join,
        "a joiner is a member"
    );

    assert_eq!(
        ok(&alice, "room.close", json!({"room": "tmp"})).await,
        json!({"room": "tmp"})
    );
    let close = json!({"event": "close", "room": "tmp", "by": "alice"});
    assert_eq!(next_json(&mut alice_evt).await, close);
    assert_eq!(next_json(&mut bob_evt).await, close);
    assert_eq!(fails(&bob, "room.info", json!({"room": "tmp"})).await, 404);
    assert_eq!(
        fails(&bob, "room.presence", json!({"room": "tmp"})).await,
        404
    );
    assert_eq!(fails(&bob, "history", json!({"room": "tmp"})).await, 404);
    assert_eq!(
        ok(&bob, "rooms.list", json!({})).await,
        json!({"rooms": [], "more": false})
    );

    // The name is free again, and the new room starts afresh.
    assert_eq!(
        ok(&bob, "room.create", json!({"room": "tmp"})).await,
        json!({"room": "tmp", "private": false, "limit": null})
    );
    assert_eq!(
        ok(&alice, "room.info", json!({"room": "tmp"})).await,
        json!({"room": "tmp", "private": false, "limit": null, "seq": 0,
               "members": ["bob"], "admins": ["bob"], "more": false})
    );
    expect_quiet(&alice, &mut alice_evt).await;
    server.shutdown().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Room messages
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_messages_are_stamped_acked_and_members_only() {
    let server = start(auth_config());
    let alice = session(&server, "alice").await;
    let bob = session(&server, "bob").await;
    let (carol, mut carol_events) = session_with_events(&server, "carol").await;
    let carol_id = carol.server_info().client_id;

    let mut alice_msg = alice.subscribe("$CHAT.MSG.r").await.unwrap();
    let mut alice_evt = alice.subscribe("$CHAT.EVT.r").await.unwrap();
    let mut bob_msg = bob.subscribe("$CHAT.MSG.r").await.unwrap();
    alice.flush().await.unwrap();
    bob.flush().await.unwrap();
    ok(&alice, "room.create", json!({"room": "r"})).await;
    ok(&bob, "room.join", json!({"room": "r"})).await;
    assert_eq!(
        next_json(&mut alice_evt).await,
        json!({"event": "join", "room": "r", "user": "bob",
               "session": bob.server_info().client_id})
    );

    // A non-member's publish with a reply subject gets a JSON 403 there...
    assert_eq!(code(&request(&carol, "$CHAT.MSG.r", b"intrude").await), 403);
    // ... and without one, -ERR, with the connection left open.
    carol
        .publish("$CHAT.MSG.r", "intrude".into())
        .await
        .unwrap();
    carol.publish("$CHAT.EVT.r", "forged".into()).await.unwrap();
    carol.flush().await.unwrap();
    // The two refusals are checked in different places (membership by the room's owner), so
    // their -ERRs may come back in either order.
    let mut errors = vec![
        next_server_error(&mut carol_events).await,
        next_server_error(&mut carol_events).await,
    ];
    errors.sort();
    assert_eq!(
        errors,
        [
            "Permissions Violation for Publish to \"$CHAT.EVT.r\"",
            "Permissions Violation for Publish to \"$CHAT.MSG.r\"",
        ]
    );
    assert_eq!(
        ok(&carol, "whoami", json!({})).await,
        json!({"user": "carol", "session": carol_id}),
        "the same connection is still usable"
    );

    // Members cannot publish events, nor to other $CHAT. subjects.
    assert_eq!(code(&request(&bob, "$CHAT.EVT.r", b"forged").await), 403);
    let (bob2, mut bob2_events) = session_with_events(&server, "bob").await;
    for subject in ["$CHAT.EVT.r", "$CHAT.NOPE.r", "$CHAT.MSG"] {
        bob2.publish(subject, "forged".into()).await.unwrap();
        bob2.flush().await.unwrap();
        assert_eq!(
            next_server_error(&mut bob2_events).await,
            format!("Permissions Violation for Publish to \"{subject}\"")
        );
    }

    // A member's message: forged Chat- headers (any case) are removed, others kept, and the
    // server's stamps are set.
    let t0 = now_ms();
    let mut headers = HeaderMap::new();
    headers.insert("Chat-From", "mallory");
    headers.insert("chat-seq", "99");
    headers.insert("CHAT-TIME", "1");
    headers.insert("Chat-Extra", "x");
    headers.insert("X-Keep", "yes");
    alice
        .publish_with_headers("$CHAT.MSG.r", headers, "hello".into())
        .await
        .unwrap();
    alice.flush().await.unwrap();
    for sub in [&mut alice_msg, &mut bob_msg] {
        let m = next(sub).await;
        assert_stamped(&m, "$CHAT.MSG.r", "alice", 1, b"hello", t0);
        let h = m.headers.as_ref().unwrap();
        assert_eq!(h.get("X-Keep").map(|v| v.as_str()), Some("yes"));
    }

    // With a reply subject: the acknowledgement, and no reply subject passed on.
    assert_eq!(
        request(&bob, "$CHAT.MSG.r", b"second").await,
        json!({"room": "r", "seq": 2})
    );
    for sub in [&mut alice_msg, &mut bob_msg] {
        assert_stamped(&next(sub).await, "$CHAT.MSG.r", "bob", 2, b"second", t0);
    }
    // An HPUB with a reply subject is acknowledged the same way.
    let mut headers = HeaderMap::new();
    headers.insert("Chat-Seq", "1");
    let ack = timeout(
        WAIT,
        bob.request_with_headers("$CHAT.MSG.r", headers, "third".into()),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(json_of(&ack), json!({"room": "r", "seq": 3}));
    for sub in [&mut alice_msg, &mut bob_msg] {
        assert_stamped(&next(sub).await, "$CHAT.MSG.r", "bob", 3, b"third", t0);
    }
    assert_eq!(
        ok(&carol, "room.info", json!({"room": "r"})).await["seq"],
        3
    );

    // Nothing of carol's or bob2's refused attempts reached the members.
    expect_quiet(&alice, &mut alice_msg).await;
    expect_quiet(&alice, &mut alice_evt).await;
    expect_quiet(&bob, &mut bob_msg).await;
    server.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_see_one_order_under_concurrent_publishers() {
    const PER_PUBLISHER: usize = 100;
    let server = start(auth_config());
    let alice = session(&server, "alice").await;
    ok(&alice, "room.create", json!({"room": "race"})).await;
    for user in ["bob", "carol"] {
        let c = session(&server, user).await;
        ok(&c, "room.join", json!({"room": "race"})).await;
    }
    // Two receiving members, on separate connections (so on both workers).
    let alice_rx = session(&server, "alice").await;
    let bob_rx = session(&server, "bob").await;
    let mut subs = Vec::new();
    for c in [&alice_rx, &bob_rx] {
        subs.push(c.subscribe("$CHAT.MSG.race").await.unwrap());
        sync(c).await;
    }

    // Four publishing connections of three members, all at once.
    let mut publishers = Vec::new();
    for (tag, user) in [("a", "alice"), ("b1", "bob"), ("b2", "bob"), ("c", "carol")] {
        publishers.push((tag, user, session(&server, user).await));
    }
    let tasks: Vec<_> = publishers
        .into_iter()
        .map(|(tag, user, c)| {
            tokio::spawn(async move {
                for i in 0..PER_PUBLISHER {
                    c.publish("$CHAT.MSG.race", format!("{user}/{tag}/{i}").into())
                        .await
                        .unwrap();
                }
                c.flush().await.unwrap();
            })
        })
        .collect();
    for t in join_all(tasks).await {
        t.unwrap();
    }

    let total = 4 * PER_PUBLISHER;
    let mut seen: Vec<Vec<(u64, String, String)>> = Vec::new();
    for sub in &mut subs {
        let mut got = Vec::with_capacity(total);
        for _ in 0..total {
            let m = next(sub).await;
            let payload = String::from_utf8(m.payload.to_vec()).unwrap();
            let from = header(&m, "Chat-From").to_owned();
            assert_eq!(
                payload.split('/').next(),
                Some(from.as_str()),
                "Chat-From is the real sender"
            );
            got.push((chat_seq(&m), from, payload));
        }
        seen.push(got);
    }
    let seqs: Vec<u64> = seen[0].iter().map(|(s, _, _)| *s).collect();
    assert_eq!(seqs, (1..=total as u64).collect::<Vec<_>>(), "gap-free");
    assert_eq!(seen[0], seen[1], "both members see the same order");
    let mut payloads: Vec<&str> = seen[0].iter().map(|(_, _, p)| p.as_str()).collect();
    payloads.sort_unstable();
    payloads.dedup();
    assert_eq!(payloads.len(), total, "every message exactly once");
    expect_quiet(&alice_rx, &mut subs[0]).await;
    server.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_well_formed_client_headers_pass_the_stamp() {
    let server = start(Config::default());
    let mut raw = raw_connect(&server).await;
    // One member, publishing headers some client parsers would read as a forged sender: a
    // lone CR or LF inside a line (lines end at CRLF only, so the whole line goes), a folded
    // line, a line without a name.
    let hdr = b"NATS/1.0\r\nX-Ok: 1\r\nX: a\rChat-From: mallory\r\n\
        X-Lf: b\nChat-From: mallory\r\n Chat-Seq: 9\r\nnoname\r\n\r\n";
    let mut ops = b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\
        \"user\":\"bob\"}\r\nSUB _INBOX.b 1\r\nSUB $CHAT.MSG.h 2\r\n\
        PUB $CHAT.API.room.create _INBOX.b 12\r\n{\"room\":\"h\"}\r\n"
        .to_vec();
    ops.extend_from_slice(
        format!("HPUB $CHAT.MSG.h {} {}\r\n", hdr.len(), hdr.len() + 2).as_bytes(),
    );
    ops.extend_from_slice(hdr);
    ops.extend_from_slice(b"hi\r\n");
    raw.write_all(&ops).await.unwrap();
    let created = read_line(&mut raw).await;
    assert!(created.starts_with(b"MSG _INBOX.b 1 "), "{created:?}");
    read_line(&mut raw).await;
    let head = String::from_utf8(read_line(&mut raw).await).unwrap();
    let parts: Vec<&str> = head.split_whitespace().collect();
    assert_eq!(parts[..3], ["HMSG", "$CHAT.MSG.h", "2"], "{head}");
    let hdr_len: usize = parts[3].parse().unwrap();
    let mut block = vec![0u8; hdr_len + 2 + 2];
    timeout(WAIT, raw.read_exact(&mut block))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(block).unwrap();
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert_eq!(lines[0], "NATS/1.0");
    assert_eq!(lines[1], "Chat-From: bob");
    assert_eq!(lines[2], "Chat-Seq: 1");
    assert!(lines[3].starts_with("Chat-Time: "), "{text:?}");
    assert_eq!(lines[4..], ["X-Ok: 1", "", "hi", ""], "{text:?}");
    server.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verbose_sessions_get_no_ok_before_a_refusal_decided_at_once() {
    let server = start(Config::default());
    // Without a user: a chat message is refused on the spot, -ERR only (as nats-server's
    // permission errors); a request is taken (+OK), and refused on its reply subject.
    let mut anon = raw_connect(&server).await;
    anon.write_all(
        b"CONNECT {\"verbose\":true}\r\nSUB _INBOX.a 1\r\n\
          PUB $CHAT.MSG.r 1\r\nx\r\nPUB $CHAT.API.whoami _INBOX.a 0\r\n\r\nPING\r\n",
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    loop {
        let line = read_line(&mut anon).await;
        let done = line == b"PONG\r\n";
        got.push(String::from_utf8(line).unwrap());
        if done {
            break;
        }
    }
    assert_eq!(
        got[..3],
        [
            "+OK\r\n",
            "+OK\r\n",
            "-ERR 'Permissions Violation for Publish to \"$CHAT.MSG.r\"'\r\n"
        ]
    );
    assert_eq!(got[3], "+OK\r\n", "the request is taken");
    assert!(got[4].starts_with("MSG _INBOX.a 1 "), "{got:?}");
    assert!(got[5].contains("\"code\":401"), "{got:?}");
    assert_eq!(got[6..], ["PONG\r\n"]);
    // With a user: the events subject is refused on the spot too; a member's message is
    // taken (+OK) and delivered.
    let mut bob = raw_connect(&server).await;
    bob.write_all(
        b"CONNECT {\"verbose\":true,\"user\":\"bob\"}\r\nSUB $CHAT.MSG.v 1\r\n\
          PUB $CHAT.API.room.create 12\r\n{\"room\":\"v\"}\r\n\
          PUB $CHAT.EVT.v 1\r\nx\r\nPUB $CHAT.MSG.v 2\r\nhi\r\nPING\r\n",
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    loop {
        let line = read_line(&mut bob).await;
        let done = line == b"PONG\r\n";
        got.push(String::from_utf8(line).unwrap());
        if done {
            break;
        }
    }
    assert_eq!(
        got,
        [
            "+OK\r\n",
            "+OK\r\n",
            "+OK\r\n",
            "-ERR 'Permissions Violation for Publish to \"$CHAT.EVT.v\"'\r\n",
            "+OK\r\n",
            "MSG $CHAT.MSG.v 1 2\r\n",
            "hi\r\n",
            "PONG\r\n"
        ]
    );
    server.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_and_room_lists_are_paged_by_name() {
    let server = start(Config::default());
    let alice = session(&server, "alice").await;
    // Five rooms, spread over both workers' shards; r0 with five more members.
    for r in 0..5 {
        ok(&alice, "room.create", json!({"room": format!("r{r}")})).await;
    }
    for m in 0..5 {
        let add = json!({"room": "r0", "user": format!("m{m}")});
        ok(&alice, "room.add", add).await;
    }
    let members = |v: &Value| (v["members"].clone(), v["admins"].clone(), v["more"].clone());
    let page = ok(&alice, "room.info", json!({"room": "r0", "limit": 2})).await;
    assert_eq!(
        members(&page),
        (json!(["alice", "m0"]), json!(["alice"]), json!(true))
    );
    let page = ok(
        &alice,
        "room.info",
        json!({"room": "r0", "after": "m0", "limit": 2}),
    )
    .await;
    assert_eq!(
        members(&page),
        (json!(["m1", "m2"]), json!([]), json!(true))
    );
    let page = ok(&alice, "room.info", json!({"room": "r0", "after": "m2"})).await;
    assert_eq!(
        members(&page),
        (json!(["m3", "m4"]), json!([]), json!(false))
    );
    let names = |v: &Value| -> (Vec<String>, bool) {
        let rooms = v["rooms"].as_array().unwrap();
        let names = rooms.iter().map(|r| r["room"].as_str().unwrap().to_owned());
        (names.collect(), v["more"].as_bool().unwrap())
    };
    let list = ok(&alice, "rooms.list", json!({"limit": 2})).await;
    assert_eq!(names(&list), (vec!["r0".into(), "r1".into()], true));
    let list = ok(&alice, "rooms.list", json!({"after": "r1", "limit": 2})).await;
    assert_eq!(names(&list), (vec!["r2".into(), "r3".into()], true));
    let list = ok(&alice, "rooms.list", json!({"after": "r3", "limit": 2})).await;
    assert_eq!(names(&list), (vec!["r4".into()], false));
    assert_eq!(
        fails(&alice, "rooms.list", json!({"limit": 1001})).await,
        400
    );
    server.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_session_can_leave_presence_and_stay_a_member() {
    let server = start(auth_config());
    let alice = session(&server, "alice").await;
    let mut evt = alice.subscribe("$CHAT.EVT.s").await.unwrap();
    ok(&alice, "room.create", json!({"room": "s"})).await;
    let (b1, b2) = (session(&server, "bob").await, session(&server, "bob").await);
    let (b1_id, b2_id) = (b1.server_info().client_id, b2.server_info().client_id);
    ok(&b1, "room.join", json!({"room": "s"})).await;
    ok(&b2, "room.join", json!({"room": "s"})).await;
    assert_eq!(next_json(&mut evt).await["event"], "join");
    assert_eq!(next_json(&mut evt).await["event"], "add");
    let part = json!({"room": "s", "session": true});
    assert_eq!(
        ok(&b1, "room.leave", part.clone()).await,
        json!({"room": "s", "session": b1_id})
    );
    assert_eq!(
        next_json(&mut evt).await,
        json!({"event": "remove", "room": "s", "user": "bob", "session": b1_id})
    );
    assert_eq!(
        fails(&b1, "room.leave", part.clone()).await,
        409,
        "not joined any more"
    );
    ok(&b2, "room.leave", part).await;
    assert_eq!(
        next_json(&mut evt).await,
        json!({"event": "leave", "room": "s", "user": "bob", "reason": "parted",
               "session": b2_id})
    );
    assert_eq!(
        ok(&alice, "room.presence", json!({"room": "s"})).await,
        json!({"room": "s", "online": []})
    );
    let info = ok(&alice, "room.info", json!({"room": "s"})).await;
    assert_eq!(
        info["members"],
        json!(["alice", "bob"]),
        "bob is still a member"
    );
    expect_quiet(&alice, &mut evt).await;
    server.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_joins_at_most_4096_rooms() {
    let server = start(Config::default());
    let alice = session(&server, "alice").await;
    // Refused joins count too: the session remembers every room it tried, to leave their
    // presence when it closes.
    for i in 0..4096 {
        let code = fails(&alice, "room.join", json!({"room": format!("none{i}")})).await;
        assert_eq!(code, 404);
    }
    assert_eq!(
        fails(&alice, "room.join", json!({"room": "one-more"})).await,
        429
    );
    assert_eq!(
        fails(&alice, "room.join", json!({"room": "none7"})).await,
        404
    );
    server.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_headers_get_plain_msg() {
    let server = start(Config::default());
    let alice = session(&server, "alice").await;
    ok(&alice, "room.create", json!({"room": "r"})).await;
    // A raw member connection that did not enable headers in CONNECT.
    let mut raw = raw_connect(&server).await;
    raw.write_all(
        b"CONNECT {\"verbose\":false,\"pedantic\":false,\"user\":\"bob\"}\r\n\
          SUB _INBOX.bob 1\r\nSUB $CHAT.MSG.r 2\r\n\
          PUB $CHAT.API.room.join _INBOX.bob 12\r\n{\"room\":\"r\"}\r\n",
    )
    .await
    .unwrap();
    // JSON key order is not part of the contract: compare the reply as JSON.
    let head = read_line(&mut raw).await;
    let reply = read_line(&mut raw).await;
    assert_eq!(
        head,
        format!("MSG _INBOX.bob 1 {}\r\n", reply.len() - 2).into_bytes()
    );
    assert_eq!(
        without_epoch(serde_json::from_slice(&reply).unwrap()),
        json!({"room": "r", "seq": 0, "members": 2})
    );
    let mut headers = HeaderMap::new();
    headers.insert("X-Keep", "yes");
    alice
        .publish_with_headers("$CHAT.MSG.r", headers, "hello".into())
        .await
        .unwrap();
    alice.flush().await.unwrap();
    assert_eq!(read_line(&mut raw).await, b"MSG $CHAT.MSG.r 2 5\r\n");
    assert_eq!(read_line(&mut raw).await, b"hello\r\n");
    raw.write_all(b"PING\r\n").await.unwrap();
    assert_eq!(read_line(&mut raw).await, b"PONG\r\n");
    server.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_after_chat_operations_is_a_barrier() {
    let server = start(Config::default());
    let alice = session(&server, "alice").await;
    for room in ["r1", "r2", "r3", "r4"] {
        ok(&alice, "room.create", json!({"room": room})).await;
    }
    // Four connections, so both workers, with conversations owned here and there: the PONG
    // comes only after every answer (refusal, reply, acknowledgement) was written.
    for (i, room) in ["r1", "r2", "r3", "r4"].into_iter().enumerate() {
        let mut raw = raw_connect(&server).await;
        let info = format!("{{\"room\":\"{room}\"}}");
        let ops = format!(
            "CONNECT {{\"verbose\":false,\"pedantic\":false,\"user\":\"carol\"}}\r\n\
             SUB _INBOX.c 1\r\n\
             PUB $CHAT.MSG.{room} 1\r\nx\r\n\
             PUB $CHAT.API.room.info _INBOX.c {}\r\n{info}\r\n\
             PUB $CHAT.DM.bob _INBOX.c 2\r\nhi\r\n\
             PING\r\n",
            info.len()
        );
        raw.write_all(ops.as_bytes()).await.unwrap();
        let mut errors = Vec::new();
        let mut replies = Vec::new();
        loop {
            let line = read_line(&mut raw).await;
            if line == b"PONG\r\n" {
                break;
            }
            if line.starts_with(b"MSG _INBOX.c 1 ") {
                let payload = read_line(&mut raw).await;
                replies.push(without_epoch(serde_json::from_slice(&payload).unwrap()));
            } else {
                errors.push(String::from_utf8(line).unwrap());
            }
        }
        assert_eq!(
            errors,
            [format!(
                "-ERR 'Permissions Violation for Publish to \"$CHAT.MSG.{room}\"'\r\n"
            )]
        );
        replies.sort_by_key(|r| r.to_string());
        let mut expected = vec![
            json!({"room": room, "private": false, "limit": null, "seq": 0,
                   "members": ["alice"], "admins": ["alice"], "more": false}),
            json!({"user": "bob", "seq": i + 1}),
        ];
        expected.sort_by_key(|r| r.to_string());
        assert_eq!(replies, expected);
    }
    server.shutdown().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Direct messages
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_messages_reach_only_the_addressee() {
    let server = start(auth_config());
    let alice = session(&server, "alice").await;
    let bob = session(&server, "bob").await;
    let bob2 = session(&server, "bob").await;
    let carol_watch = session(&server, "carol").await;
    let mut carol_subs = Vec::new();
    for subject in [
        ">",
        "$CHAT.>",
        "$CHAT.DM.*",
        "$CHAT.DM.bob",
        "$CHAT.DM.alice",
    ] {
        carol_subs.push(carol_watch.subscribe(subject).await.unwrap());
    }
    let mut bob_dm = bob.subscribe("$CHAT.DM.bob").await.unwrap();
    let mut bob2_dm = bob2.subscribe("$CHAT.DM.*").await.unwrap();
    let mut alice_dm = alice.subscribe("$CHAT.DM.alice").await.unwrap();
    let mut alice_to_bob = alice.subscribe("$CHAT.DM.bob").await.unwrap();
    for c in [&alice, &bob, &bob2] {
        sync(c).await;
    }
    let own = sync(&carol_watch).await;
    skip_own_reply(&mut carol_subs[0], &own).await;

    let t0 = now_ms();
    assert_eq!(
        request(&alice, "$CHAT.DM.bob", b"hi bob").await,
        json!({"user": "bob", "seq": 1})
    );
    for sub in [&mut bob_dm, &mut bob2_dm] {
        assert_stamped(&next(sub).await, "$CHAT.DM.bob", "alice", 1, b"hi bob", t0);
    }
    // The pair shares one sequence.
    assert_eq!(
        request(&bob, "$CHAT.DM.alice", b"hi alice").await,
        json!({"user": "alice", "seq": 2})
    );
    assert_stamped(
        &next(&mut alice_dm).await,
        "$CHAT.DM.alice",
        "bob",
        2,
        b"hi alice",
        t0,
    );
    // Without a reply subject: delivered the same way.
    alice.publish("$CHAT.DM.bob", "again".into()).await.unwrap();
    alice.flush().await.unwrap();
    for sub in [&mut bob_dm, &mut bob2_dm] {
        assert_stamped(&next(sub).await, "$CHAT.DM.bob", "alice", 3, b"again", t0);
    }
    // Another pair has its own sequence.
    assert_eq!(
        request(&bob, "$CHAT.DM.dave", b"hi dave").await,
        json!({"user": "dave", "seq": 1})
    );

    // History: both parties read the same conversation; anyone else only their own.
    let conversation = json!([
        {"seq": 1, "from": "alice", "data": "hi bob"},
        {"seq": 2, "from": "bob", "data": "hi alice"},
        {"seq": 3, "from": "alice", "data": "again"},
    ]);
    let mut h = ok(&alice, "history", json!({"user": "bob"})).await;
    strip_times(&mut h, t0);
    assert_eq!(
        h,
        json!({"user": "bob", "first": 1, "last": 3, "more": false, "messages": conversation})
    );
    let mut h = ok(&bob, "history", json!({"user": "alice"})).await;
    strip_times(&mut h, t0);
    assert_eq!(
        h,
        json!({"user": "alice", "first": 1, "last": 3, "more": false, "messages": conversation})
    );
    let carol = session(&server, "carol").await;
    for other in ["alice", "bob"] {
        assert_eq!(
            ok(&carol, "history", json!({"user": other})).await,
            json!({"user": other, "first": 0, "last": 0, "more": false, "messages": []}),
            "carol's own (empty) conversation with {other}"
        );
    }

    // Positive control: a plain message sent last reaches carol's `>` first.
    alice.publish("ctl.end", "end".into()).await.unwrap();
    alice.flush().await.unwrap();
    let first = next(&mut carol_subs[0]).await;
    assert_eq!(first.subject.as_str(), "ctl.end", "carol saw {first:?}");
    for sub in &mut carol_subs {
        expect_quiet(&carol_watch, sub).await;
    }
    // The sender's sessions get no copy.
    expect_quiet(&alice, &mut alice_to_bob).await;
    expect_quiet(&alice, &mut alice_dm).await;
    expect_quiet(&bob, &mut bob_dm).await;
    expect_quiet(&bob2, &mut bob2_dm).await;
    server.shutdown().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Broadcast
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_answers_in_request_order() {
    let server = start(auth_config());
    let alice = session(&server, "alice").await;
    let bob = session(&server, "bob").await;
    let carol = session(&server, "carol").await;
    let dave = session(&server, "dave").await;
    ok(&alice, "room.create", json!({"room": "a"})).await;
    ok(&alice, "room.create", json!({"room": "b"})).await;
    ok(&bob, "room.create", json!({"room": "c"})).await;
    ok(&carol, "room.join", json!({"room": "a"})).await;
    ok(&carol, "room.join", json!({"room": "b"})).await;
    let mut carol_a = carol.subscribe("$CHAT.MSG.a").await.unwrap();
    let mut carol_b = carol.subscribe("$CHAT.MSG.b").await.unwrap();
    let mut bob_c = bob.subscribe("$CHAT.MSG.c").await.unwrap();
    let mut dave_dm = dave.subscribe("$CHAT.DM.dave").await.unwrap();
    for c in [&bob, &carol, &dave] {
        sync(c).await;
    }

    let t0 = now_ms();
    assert_eq!(
        request(&alice, "$CHAT.MSG.a", b"pre").await,
        json!({"room": "a", "seq": 1})
    );
    let mut reply = ok(
        &alice,
        "broadcast",
        json!({"rooms": ["a", "c", "zz", "b"], "users": ["dave"], "data": "news"}),
    )
    .await;
    blank_descriptions(&mut reply);
    assert_eq!(
        reply,
        json!({"results": [
            {"room": "a", "seq": 2},
            {"room": "c", "error": {"code": 403, "description": ""}},
            {"room": "zz", "error": {"code": 404, "description": ""}},
            {"room": "b", "seq": 1},
            {"user": "dave", "seq": 1},
        ]})
    );

    assert_stamped(
        &next(&mut carol_a).await,
        "$CHAT.MSG.a",
        "alice",
        1,
        b"pre",
        t0,
    );
    assert_stamped(
        &next(&mut carol_a).await,
        "$CHAT.MSG.a",
        "alice",
        2,
        b"news",
        t0,
    );
    assert_stamped(
        &next(&mut carol_b).await,
        "$CHAT.MSG.b",
        "alice",
        1,
        b"news",
        t0,
    );
    assert_stamped(
        &next(&mut dave_dm).await,
        "$CHAT.DM.dave",
        "alice",
        1,
        b"news",
        t0,
    );
    // Each is a normal message of its conversation, in its history.
    let mut h = ok(&carol, "history", json!({"room": "a"})).await;
    strip_times(&mut h, t0);
    assert_eq!(
        h,
        json!({"room": "a", "first": 1, "last": 2, "more": false, "messages": [
            {"seq": 1, "from": "alice", "data": "pre"},
            {"seq": 2, "from": "alice", "data": "news"},
        ]})
    );
    let mut h = ok(&dave, "history", json!({"user": "alice"})).await;
    strip_times(&mut h, t0);
    assert_eq!(
        h,
        json!({"user": "alice", "first": 1, "last": 1, "more": false, "messages": [
            {"seq": 1, "from": "alice", "data": "news"},
        ]})
    );
    // 1,024 targets at most: one more is a cap reached, a 429 (and sends nothing).
    let users: Vec<String> = (0..1024).map(|i| format!("u{i}")).collect();
    assert_eq!(
        fails(
            &alice,
            "broadcast",
            json!({"rooms": ["a"], "users": users, "data": "x"})
        )
        .await,
        429
    );
    expect_quiet(&bob, &mut bob_c).await;
    expect_quiet(&carol, &mut carol_a).await;
    expect_quiet(&carol, &mut carol_b).await;
    expect_quiet(&dave, &mut dave_dm).await;
    server.shutdown().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Presence
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_events_for_sessions_departures_and_kicks() {
    let server = start(auth_config());
    let alice = session(&server, "alice").await;
    let mut evt = alice.subscribe("$CHAT.EVT.p").await.unwrap();
    alice.flush().await.unwrap();
    ok(&alice, "room.create", json!({"room": "p"})).await;
    let presence = |online: Value| json!({"room": "p", "online": online});

    assert_eq!(
        ok(&alice, "room.join", json!({"room": "p"})).await,
        json!({"room": "p", "seq": 0, "members": 1})
    );
    let alice_id = alice.server_info().client_id;
    assert_eq!(
        next_json(&mut evt).await,
        json!({"event": "join", "room": "p", "user": "alice", "session": alice_id})
    );

    // Two sessions of bob: join, then add.
    let b1 = session(&server, "bob").await;
    let b1_id = b1.server_info().client_id;
    assert_eq!(
        ok(&b1, "room.join", json!({"room": "p"})).await,
        json!({"room": "p", "seq": 0, "members": 2})
    );
    assert_eq!(
        next_json(&mut evt).await,
        json!({"event": "join", "room": "p", "user": "bob", "session": b1_id})
    );
    let b2 = session(&server, "bob").await;
    let b2_id = b2.server_info().client_id;
    assert_ne!(b1_id, b2_id);
    assert_eq!(
        ok(&b2, "room.join", json!({"room": "p"})).await,
        json!({"room": "p", "seq": 0, "members": 2})
    );
    assert_eq!(
        next_json(&mut evt).await,
        json!({"event": "add", "room": "p", "user": "bob", "session": b2_id})
    );
    // Joining again from a present session changes nothing and sends no event (the next
    // event below is the remove).
    assert_eq!(
        ok(&b1, "room.join", json!({"room": "p"})).await,
        json!({"room": "p", "seq": 0, "members": 2})
    );
    assert_eq!(
        ok(&alice, "room.presence", json!({"room": "p"})).await,
        presence(json!([{"user": "alice", "sessions": 1}, {"user": "bob", "sessions": 2}]))
    );

    // Disconnects: remove, then leave (disconnected); room.presence agrees at once.
    disconnect(b1).await;
    assert_eq!(
        next_json(&mut evt).await,
        json!({"event": "remove", "room": "p", "user": "bob", "session": b1_id})
    );
    assert_eq!(
        ok(&alice, "room.presence", json!({"room": "p"})).await,
        presence(json!([{"user": "alice", "sessions": 1}, {"user": "bob", "sessions": 1}]))
    );
    disconnect(b2).await;
    assert_eq!(
        next_json(&mut evt).await,
        json!({"event": "leave", "room": "p", "user": "bob", "reason": "disconnected",
               "session": b2_id})
    );
    assert_eq!(
        ok(&alice, "room.presence", json!({"room": "p"})).await,
        presence(json!([{"user": "alice", "sessions": 1}]))
    );
    // A disconnect ends presence, not membership.
    assert_eq!(
        ok(&alice, "room.info", json!({"room": "p"})).await["members"],
        json!(["alice", "bob"])
    );

    // Leaving: reason left, no session.
    let b3 = session(&server, "bob").await;
    let b3_id = b3.server_info().client_id;
    assert_eq!(
        ok(&b3, "room.join", json!({"room": "p"})).await,
        json!({"room": "p", "seq": 0, "members": 2})
    );
    assert_eq!(
        next_json(&mut evt).await,
        json!({"event": "join", "room": "p", "user": "bob", "session": b3_id})
    );
    assert_eq!(
        ok(&b3, "room.leave", json!({"room": "p"})).await,
        json!({"room": "p"})
    );
    assert_eq!(
        next_json(&mut evt).await,
        json!({"event": "leave", "room": "p", "user": "bob", "reason": "left"})
    );
    assert_eq!(
        ok(&alice, "room.presence", json!({"room": "p"})).await,
        presence(json!([{"user": "alice", "sessions": 1}]))
    );
    assert_eq!(
        fails(&b3, "room.presence", json!({"room": "p"})).await,
        403,
        "no longer a member"
    );

    // Kicked: reason kicked, by the admin; the kicked user's sessions leave presence.
    let carol = session(&server, "carol").await;
    let carol_id = carol.server_info().client_id;
    ok(&carol, "room.join", json!({"room": "p"})).await;
    assert_eq!(
        next_json(&mut evt).await,
        json!({"event": "join", "room": "p", "user": "carol", "session": carol_id})
    );
    assert_eq!(
        ok(&carol, "room.presence", json!({"room": "p"})).await,
        presence(json!([{"user": "alice", "sessions": 1}, {"user": "carol", "sessions": 1}]))
    );
    assert_eq!(
        ok(&alice, "room.kick", json!({"room": "p", "user": "carol"})).await,
        json!({"room": "p", "user": "carol"})
    );
    assert_eq!(
        next_json(&mut evt).await,
        json!({"event": "leave", "room": "p", "user": "carol", "reason": "kicked", "by": "alice"})
    );
    assert_eq!(
        ok(&alice, "room.presence", json!({"room": "p"})).await,
        presence(json!([{"user": "alice", "sessions": 1}]))
    );
    assert_eq!(
        ok(&alice, "room.info", json!({"room": "p"})).await["members"],
        json!(["alice"])
    );
    // Disconnecting the departed sessions sends nothing more.
    disconnect(b3).await;
    disconnect(carol).await;
    let dave = session(&server, "dave").await;
    let dave_id = dave.server_info().client_id;
    ok(&dave, "room.join", json!({"room": "p"})).await;
    assert_eq!(
        next_json(&mut evt).await,
        json!({"event": "join", "room": "p", "user": "dave", "session": dave_id}),
        "no event for sessions that had already left"
    );
    expect_quiet(&alice, &mut evt).await;
    server.shutdown().unwrap();
}

// ---------------------------------------------------------------------------------------------
// History
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_forward_and_backward() {
    let server = start(auth_config());
    let alice = session(&server, "alice").await;
    let bob = session(&server, "bob").await;
    ok(&alice, "room.create", json!({"room": "h"})).await;
    ok(&alice, "room.create", json!({"room": "empty"})).await;
    assert_eq!(
        ok(&alice, "history", json!({"room": "empty"})).await,
        json!({"room": "empty", "first": 0, "last": 0, "more": false, "messages": []})
    );

    let t0 = now_ms();
    for i in 1..=7u64 {
        assert_eq!(
            request(&alice, "$CHAT.MSG.h", format!("m{i}").as_bytes()).await,
            json!({"room": "h", "seq": i})
        );
    }
    let msgs = |seqs: &[u64]| -> Value {
        seqs.iter()
            .map(|s| json!({"seq": s, "from": "alice", "data": format!("m{s}")}))
            .collect()
    };
    let page = |more: bool, seqs: &[u64]| json!({"room": "h", "first": 1, "last": 7, "more": more, "messages": msgs(seqs)});

    // Forward.
    for (request_body, expected) in [
        (json!({"room": "h"}), page(false, &[1, 2, 3, 4, 5, 6, 7])),
        (json!({"room": "h", "limit": 3}), page(true, &[1, 2, 3])),
        (
            json!({"room": "h", "after": 3, "limit": 3}),
            page(true, &[4, 5, 6]),
        ),
        (
            json!({"room": "h", "after": 6, "limit": 3}),
            page(false, &[7]),
        ),
        (json!({"room": "h", "after": 7}), page(false, &[])),
        (
            json!({"room": "h", "after": 4, "direction": "forward", "limit": 2}),
            page(true, &[5, 6]),
        ),
        (
            json!({"room": "h", "after": 4, "limit": 3}),
            page(false, &[5, 6, 7]),
        ),
    ] {
        let mut h = ok(&alice, "history", request_body.clone()).await;
        strip_times(&mut h, t0);
        assert_eq!(h, expected, "history {request_body}");
    }

    // Backward: the newest messages below `before`. The spec does not fix the order within
    // a backward page, so the page is compared sorted (and must be monotone either way).
    for (request_body, expected) in [
        (
            json!({"room": "h", "direction": "backward", "limit": 3}),
            page(true, &[5, 6, 7]),
        ),
        (
            json!({"room": "h", "before": 8, "limit": 3}),
            page(true, &[5, 6, 7]),
        ),
        (
            json!({"room": "h", "before": 5, "limit": 3}),
            page(true, &[2, 3, 4]),
        ),
        (
            json!({"room": "h", "before": 2, "limit": 3}),
            page(false, &[1]),
        ),
        (json!({"room": "h", "before": 1}), page(false, &[])),
        (
            json!({"room": "h", "before": 4, "direction": "backward"}),
            page(false, &[1, 2, 3]),
        ),
    ] {
        let mut h = ok(&alice, "history", request_body.clone()).await;
        strip_times(&mut h, t0);
        sort_backward_page(&mut h);
        assert_eq!(h, expected, "history {request_body}");
    }

    // A payload that is not UTF-8 comes back as data_base64.
    assert_eq!(
        request(&alice, "$CHAT.MSG.h", &[0xff, 0xfe, 0x00]).await,
        json!({"room": "h", "seq": 8})
    );
    let mut h = ok(&alice, "history", json!({"room": "h", "after": 7})).await;
    strip_times(&mut h, t0);
    assert_eq!(
        h,
        json!({"room": "h", "first": 1, "last": 8, "more": false, "messages": [
            {"seq": 8, "from": "alice", "data_base64": "//4A"}
        ]})
    );

    // Only members read history, even of a public room; bad requests are 400s.
    assert_eq!(fails(&bob, "history", json!({"room": "h"})).await, 403);
    assert_eq!(fails(&bob, "history", json!({"room": "ghost"})).await, 404);
    assert_eq!(fails(&alice, "history", json!({})).await, 400);
    assert_eq!(
        fails(&alice, "history", json!({"room": "h", "limit": "x"})).await,
        400
    );
    assert_eq!(
        fails(&alice, "history", json!({"room": "h", "after": "x"})).await,
        400
    );
    assert_eq!(
        fails(
            &alice,
            "history",
            json!({"room": "h", "direction": "sideways"})
        )
        .await,
        400
    );
    server.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_resumes_after_reconnect_and_410_past_the_window() {
    let server = start(Config {
        history: 5,
        ..auth_config()
    });
    let alice = session(&server, "alice").await;
    ok(&alice, "room.create", json!({"room": "w"})).await;
    let bob = session(&server, "bob").await;
    ok(&bob, "room.join", json!({"room": "w"})).await;
    let mut bob_msg = bob.subscribe("$CHAT.MSG.w").await.unwrap();
    sync(&bob).await;

    let t0 = now_ms();
    let publish = |i: u64| {
        let alice = alice.clone();
        async move {
            assert_eq!(
                request(&alice, "$CHAT.MSG.w", format!("m{i}").as_bytes()).await,
                json!({"room": "w", "seq": i})
            );
        }
    };
    for i in 1..=3 {
        publish(i).await;
    }
    let mut seen = 0;
    for i in 1..=3 {
        let m = next(&mut bob_msg).await;
        assert_stamped(
            &m,
            "$CHAT.MSG.w",
            "alice",
            i,
            format!("m{i}").as_bytes(),
            t0,
        );
        seen = chat_seq(&m);
    }
    drop(bob_msg);
    disconnect(bob).await;

    // Missed while away.
    publish(4).await;
    publish(5).await;
    let bob = session(&server, "bob").await;
    let msgs = |seqs: std::ops::RangeInclusive<u64>| -> Value {
        seqs.map(|s| json!({"seq": s, "from": "alice", "data": format!("m{s}")}))
            .collect()
    };
    let mut h = ok(&bob, "history", json!({"room": "w", "after": seen})).await;
    strip_times(&mut h, t0);
    assert_eq!(
        h,
        json!({"room": "w", "first": 1, "last": 5, "more": false, "messages": msgs(4..=5)})
    );

    // The window keeps 5 messages: after 8 messages it holds 4..=8.
    for i in 6..=8 {
        publish(i).await;
    }
    assert_eq!(
        ok(&bob, "room.join", json!({"room": "w"})).await,
        json!({"room": "w", "seq": 8, "members": 2})
    );
    // Resuming after 3 still works (the window reaches back to 4), page by page.
    for (after, seqs, more) in [(3, 4..=5, true), (5, 6..=7, true), (7, 8..=8, false)] {
        let mut h = ok(
            &bob,
            "history",
            json!({"room": "w", "after": after, "limit": 2}),
        )
        .await;
        strip_times(&mut h, t0);
        assert_eq!(
            h,
            json!({"room": "w", "first": 4, "last": 8, "more": more, "messages": msgs(seqs)}),
            "after {after}"
        );
    }
    // Without `after`: from the oldest kept.
    let mut h = ok(&bob, "history", json!({"room": "w"})).await;
    strip_times(&mut h, t0);
    assert_eq!(
        h,
        json!({"room": "w", "first": 4, "last": 8, "more": false, "messages": msgs(4..=8)})
    );
    // Resuming after 2 would need 3, which is gone: 410, naming the oldest kept (4).
    for after in [1, 2] {
        let reply = ok_or_err(&bob, "history", json!({"room": "w", "after": after})).await;
        assert_eq!(reply["error"]["code"], 410, "after {after}: {reply}");
        assert!(
            names_number(&reply["error"], 4),
            "the 410 names the oldest sequence kept (4): {reply}"
        );
    }
    server.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_in_a_recreated_room_is_410() {
    let server = start(auth_config());
    let alice = session(&server, "alice").await;
    ok(&alice, "room.create", json!({"room": "again"})).await;
    let join = request_with_epoch(&alice, "$CHAT.API.room.join", br#"{"room":"again"}"#).await;
    let epoch = join["epoch"].as_u64().expect("room.join names the epoch");
    for i in 1..=3u64 {
        let ack = request(&alice, "$CHAT.MSG.again", b"old").await;
        assert_eq!(ack, json!({"room": "again", "seq": i}));
    }
    ok(&alice, "room.close", json!({"room": "again"})).await;
    ok(&alice, "room.create", json!({"room": "again"})).await;
    let ack = request(&alice, "$CHAT.MSG.again", b"new").await;
    assert_eq!(ack, json!({"room": "again", "seq": 1}));
    // A cursor past the new room's last sequence cannot be an empty, complete page.
    let past = ok_or_err(&alice, "history", json!({"room": "again", "after": 3})).await;
    assert_eq!(past["error"]["code"], 410, "{past}");
    // A cursor the new room does have, from the old epoch, is refused too.
    let old = ok_or_err(
        &alice,
        "history",
        json!({"room": "again", "after": 0, "epoch": epoch}),
    )
    .await;
    assert_eq!(old["error"]["code"], 410, "{old}");
    let now = request_with_epoch(
        &alice,
        "$CHAT.API.history",
        br#"{"room":"again","after":0}"#,
    )
    .await;
    let new_epoch = now["epoch"].as_u64().expect("history names the epoch");
    assert_ne!(new_epoch, epoch);
    assert_eq!(now["messages"][0]["data"], "new");
    let body = json!({"room": "again", "after": 0, "epoch": new_epoch}).to_string();
    let same = request(&alice, "$CHAT.API.history", body.as_bytes()).await;
    assert_eq!(same["messages"].as_array().map(Vec::len), Some(1), "{same}");
    // A direct conversation is never closed: epoch 0, before and after its first message.
    let empty = request_with_epoch(&alice, "$CHAT.API.history", br#"{"user":"bob"}"#).await;
    assert_eq!(empty["epoch"], 0);
    request(&alice, "$CHAT.DM.bob", b"hi").await;
    let body = json!({"user": "bob", "after": 0, "epoch": 0}).to_string();
    let dm = request_with_epoch(&alice, "$CHAT.API.history", body.as_bytes()).await;
    assert_eq!(
        (&dm["epoch"], &dm["messages"][0]["data"]),
        (&json!(0), &json!("hi")),
        "{dm}"
    );
    server.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_default_page_is_100() {
    let server = start(auth_config());
    let alice = session(&server, "alice").await;
    ok(&alice, "room.create", json!({"room": "many"})).await;
    for i in 1..150 {
        alice
            .publish("$CHAT.MSG.many", format!("m{i}").into())
            .await
            .unwrap();
    }
    assert_eq!(
        request(&alice, "$CHAT.MSG.many", b"m150").await,
        json!({"room": "many", "seq": 150})
    );
    let seqs = |page: &Value| -> Vec<u64> {
        page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect()
    };
    let page = ok(&alice, "history", json!({"room": "many"})).await;
    assert_eq!(seqs(&page), (1..=100).collect::<Vec<_>>());
    assert_eq!(
        (page["first"].clone(), page["last"].clone()),
        (json!(1), json!(150))
    );
    assert_eq!(page["more"], true);
    let page = ok(&alice, "history", json!({"room": "many", "after": 100})).await;
    assert_eq!(seqs(&page), (101..=150).collect::<Vec<_>>());
    assert_eq!(page["more"], false);
    let page = ok(&alice, "history", json!({"room": "many", "limit": 1000})).await;
    assert_eq!(seqs(&page), (1..=150).collect::<Vec<_>>());
    assert_eq!(page["more"], false);
    server.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_stop_before_max_payload() {
    const MAX_PAYLOAD: usize = 2048;
    let server = start(Config {
        max_payload: MAX_PAYLOAD,
        ..auth_config()
    });
    let alice = session(&server, "alice").await;
    ok(&alice, "room.create", json!({"room": "fat"})).await;
    let text = |i: u64| format!("{i:02}{}", "x".repeat(498));
    for i in 1..=20 {
        assert_eq!(
            request(&alice, "$CHAT.MSG.fat", text(i).as_bytes()).await,
            json!({"room": "fat", "seq": i})
        );
    }
    // Pages of at most max_payload bytes, paged through with `after` until `more` is false:
    // every message exactly once, in order.
    let mut after = 0;
    let mut pages = 0;
    loop {
        let reply = timeout(
            WAIT,
            alice.request(
                "$CHAT.API.history",
                json!({"room": "fat", "after": after}).to_string().into(),
            ),
        )
        .await
        .unwrap()
        .unwrap();
        assert!(
            reply.payload.len() <= MAX_PAYLOAD,
            "a {} byte page",
            reply.payload.len()
        );
        let page = json_of(&reply);
        let messages = page["messages"].as_array().unwrap();
        pages += 1;
        assert!(
            !messages.is_empty() || after == 20,
            "empty page after {after}: {page}"
        );
        for m in messages {
            after += 1;
            assert_eq!(m["seq"], after);
            assert_eq!(m["data"], text(after));
        }
        assert_eq!(page["more"], after < 20, "{page}");
        if after == 20 {
            break;
        }
        assert!(pages < 20, "no progress");
    }
    assert!(
        pages > 1,
        "20 messages of 500 bytes cannot fit one 2 KiB page"
    );
    server.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_bytes_budget_drops_the_oldest_first() {
    // 4 KiB for the server, split between the two workers: at most 2 KiB of message bytes
    // in the one room's shard.
    const HISTORY_BYTES: usize = 4096;
    let server = start(Config {
        history_bytes: HISTORY_BYTES,
        ..auth_config()
    });
    let alice = session(&server, "alice").await;
    ok(&alice, "room.create", json!({"room": "hb"})).await;
    for i in 1..=50u64 {
        assert_eq!(
            request(
                &alice,
                "$CHAT.MSG.hb",
                format!("{i:03}{}", "y".repeat(97)).as_bytes()
            )
            .await,
            json!({"room": "hb", "seq": i})
        );
    }
    let page = ok(&alice, "history", json!({"room": "hb", "limit": 1000})).await;
    let seqs: Vec<u64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    let first = page["first"].as_u64().unwrap();
    assert_eq!(page["last"], 50);
    assert!(
        first > 2,
        "the byte budget dropped (almost) nothing: {page}"
    );
    assert_eq!(
        seqs,
        (first..=50).collect::<Vec<_>>(),
        "the newest are kept"
    );
    assert!(
        seqs.len() * 100 <= HISTORY_BYTES / 2,
        "{} messages of 100 bytes kept in a 2 KiB shard budget",
        seqs.len()
    );
    // Without `after`: from the oldest kept; resuming from before the window is a 410.
    assert_eq!(
        ok(&alice, "history", json!({"room": "hb"})).await["messages"][0]["seq"],
        first
    );
    let reply = ok_or_err(&alice, "history", json!({"room": "hb", "after": first - 2})).await;
    assert_eq!(reply["error"]["code"], 410, "{reply}");
    server.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_group_on_a_room_delivers_to_one_member_session() {
    const N: u64 = 40;
    let server = start(auth_config());
    let alice = session(&server, "alice").await;
    ok(&alice, "room.create", json!({"room": "q"})).await;
    let bob1 = session(&server, "bob").await;
    let bob2 = session(&server, "bob").await;
    let carol = session(&server, "carol").await;
    ok(&bob1, "room.join", json!({"room": "q"})).await;
    let mut group = Vec::new();
    for c in [&bob1, &bob2] {
        group.push(c.queue_subscribe("$CHAT.MSG.q", "g".into()).await.unwrap());
        sync(c).await;
    }
    // A non-member in the same group is never chosen.
    let mut carol_q = carol
        .queue_subscribe("$CHAT.MSG.q", "g".into())
        .await
        .unwrap();
    sync(&carol).await;

    for i in 1..=N {
        alice
            .publish("$CHAT.MSG.q", format!("m{i}").into())
            .await
            .unwrap();
    }
    alice.flush().await.unwrap();
    let mut all = futures::stream::select_all(group);
    let mut seqs = Vec::new();
    for _ in 0..N {
        let m = timeout(WAIT, all.next())
            .await
            .expect("timed out waiting for a queue delivery")
            .unwrap();
        assert_eq!(header(&m, "Chat-From"), "alice");
        seqs.push(chat_seq(&m));
    }
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=N).collect::<Vec<_>>(),
        "each message to one session"
    );
    expect_quiet(&carol, &mut carol_q).await;
    bob1.flush().await.unwrap();
    let extra = timeout(QUIET, all.next()).await;
    assert!(extra.is_err(), "delivered twice: {extra:?}");
    server.shutdown().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Security (authentication on)
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_room_is_invisible_to_non_members() {
    let server = start(auth_config());
    let alice = session(&server, "alice").await;
    let bob = session(&server, "bob").await;
    // carol watches through every subscription that could match, before anything happens.
    let carol_watch = session(&server, "carol").await;
    let watched = [
        ">",
        "$CHAT.>",
        "$CHAT.MSG.*",
        "$CHAT.MSG.vault",
        "$CHAT.EVT.*",
        "$CHAT.EVT.vault",
        "$CHAT.*.vault",
        "_INBOX.>",
    ];
    let mut watch = Vec::new();
    for subject in watched {
        watch.push(carol_watch.subscribe(subject).await.unwrap());
    }
    // carol's own round trip shows up on her `>` and `_INBOX.>`, before anything else.
    let own = sync(&carol_watch).await;
    skip_own_reply(&mut watch[0], &own).await;
    skip_own_reply(&mut watch[7], &own).await;
    // A member's `$CHAT.>` is the positive control for the same traffic.
    let bob_watch = session(&server, "bob").await;
    let mut bob_all = bob_watch.subscribe("$CHAT.>").await.unwrap();
    sync(&bob_watch).await;

    ok(
        &alice,
        "room.create",
        json!({"room": "vault", "private": true}),
    )
    .await;
    ok(&alice, "room.add", json!({"room": "vault", "user": "bob"})).await;
    ok(&alice, "room.join", json!({"room": "vault"})).await;
    ok(&bob, "room.join", json!({"room": "vault"})).await;
    alice.publish("$CHAT.MSG.vault", "a1".into()).await.unwrap();
    alice.flush().await.unwrap();
    assert_eq!(
        request(&bob, "$CHAT.MSG.vault", b"b1").await,
        json!({"room": "vault", "seq": 2})
    );
    ok(&alice, "history", json!({"room": "vault"})).await;
    ok(&alice, "room.presence", json!({"room": "vault"})).await;

    let t0 = 0;
    assert_eq!(
        next_json(&mut bob_all).await,
        json!({"event": "join", "room": "vault", "user": "alice",
               "session": alice.server_info().client_id})
    );
    assert_eq!(
        next_json(&mut bob_all).await,
        json!({"event": "join", "room": "vault", "user": "bob",
               "session": bob.server_info().client_id})
    );
    assert_stamped(
        &next(&mut bob_all).await,
        "$CHAT.MSG.vault",
        "alice",
        1,
        b"a1",
        t0,
    );
    assert_stamped(
        &next(&mut bob_all).await,
        "$CHAT.MSG.vault",
        "bob",
        2,
        b"b1",
        t0,
    );

    // carol, as a non-member, can do nothing with the room.
    let carol = session(&server, "carol").await;
    for op in ["history", "room.presence", "room.info", "room.join"] {
        assert_eq!(
            fails(&carol, op, json!({"room": "vault"})).await,
            403,
            "{op} by a non-member"
        );
    }
    assert_eq!(
        fails(
            &carol,
            "room.add",
            json!({"room": "vault", "user": "carol"})
        )
        .await,
        403
    );
    assert_eq!(
        code(&request(&carol, "$CHAT.MSG.vault", b"let me in").await),
        403
    );
    assert_eq!(
        ok(&carol, "rooms.list", json!({})).await,
        json!({"rooms": [], "more": false})
    );

    // Positive control: a plain message sent last reaches carol's `>` first.
    alice.publish("ctl.end", "end".into()).await.unwrap();
    alice.flush().await.unwrap();
    let first = next(&mut watch[0]).await;
    assert_eq!(first.subject.as_str(), "ctl.end", "carol saw {first:?}");
    for (sub, subject) in watch.iter_mut().zip(watched) {
        carol_watch.flush().await.unwrap();
        let r = timeout(QUIET, sub.next()).await;
        assert!(r.is_err(), "carol's {subject} received {r:?}");
    }
    expect_quiet(&bob_watch, &mut bob_all).await;
    server.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn departed_and_kicked_users_receive_nothing_more() {
    let server = start(auth_config());
    let alice = session(&server, "alice").await;
    ok(&alice, "room.create", json!({"room": "club"})).await;
    let dave = session(&server, "dave").await;
    ok(&dave, "room.join", json!({"room": "club"})).await;
    let mut dave_msg = dave.subscribe("$CHAT.MSG.club").await.unwrap();
    sync(&dave).await;

    // Two sessions each: s1 makes the requests and watches the room's subjects, s2 only
    // watches everything (`>`), so its every delivery is accounted for.
    let b1 = session(&server, "bob").await;
    let b2 = session(&server, "bob").await;
    let c1 = session(&server, "carol").await;
    let c2 = session(&server, "carol").await;
    let mut b1_msg = b1.subscribe("$CHAT.MSG.club").await.unwrap();
    let mut b1_evt = b1.subscribe("$CHAT.EVT.club").await.unwrap();
    let mut b2_all = b2.subscribe(">").await.unwrap();
    let mut c1_msg = c1.subscribe("$CHAT.MSG.club").await.unwrap();
    let mut c1_evt = c1.subscribe("$CHAT.EVT.club").await.unwrap();
    let mut c2_all = c2.subscribe(">").await.unwrap();
    for c in [&b1, &c1] {
        sync(c).await;
    }
    let own = sync(&b2).await;
    skip_own_reply(&mut b2_all, &own).await;
    let own = sync(&c2).await;
    skip_own_reply(&mut c2_all, &own).await;

    ok(&b1, "room.join", json!({"room": "club"})).await;
    ok(&c1, "room.join", json!({"room": "club"})).await;
    let t0 = now_ms();
    assert_eq!(
        request(&alice, "$CHAT.MSG.club", b"before").await,
        json!({"room": "club", "seq": 1})
    );
    let bob_join = json!({"event": "join", "room": "club", "user": "bob",
                          "session": b1.server_info().client_id});
    let carol_join = json!({"event": "join", "room": "club", "user": "carol",
                            "session": c1.server_info().client_id});
    assert_eq!(next_json(&mut b1_evt).await, bob_join);
    assert_eq!(next_json(&mut b1_evt).await, carol_join);
    assert_eq!(next_json(&mut b2_all).await, bob_join);
    assert_eq!(next_json(&mut b2_all).await, carol_join);
    assert_eq!(next_json(&mut c1_evt).await, carol_join);
    assert_eq!(next_json(&mut c2_all).await, carol_join);
    for sub in [
        &mut dave_msg,
        &mut b1_msg,
        &mut b2_all,
        &mut c1_msg,
        &mut c2_all,
    ] {
        assert_stamped(
            &next(sub).await,
            "$CHAT.MSG.club",
            "alice",
            1,
            b"before",
            t0,
        );
    }

    // bob leaves, then carol is kicked; then a message and an event follow.
    assert_eq!(
        ok(&b1, "room.leave", json!({"room": "club"})).await,
        json!({"room": "club"})
    );
    assert_eq!(
        ok(
            &alice,
            "room.kick",
            json!({"room": "club", "user": "carol"})
        )
        .await,
        json!({"room": "club", "user": "carol"})
    );
    assert_eq!(
        request(&alice, "$CHAT.MSG.club", b"after").await,
        json!({"room": "club", "seq": 2})
    );
    let erin = session(&server, "erin").await;
    ok(&erin, "room.join", json!({"room": "club"})).await;
    assert_eq!(code(&request(&b1, "$CHAT.MSG.club", b"x").await), 403);
    assert_eq!(code(&request(&c1, "$CHAT.MSG.club", b"x").await), 403);
    assert_eq!(fails(&b1, "history", json!({"room": "club"})).await, 403);
    assert_eq!(fails(&c1, "history", json!({"room": "club"})).await, 403);
    // A remaining member got "after" (it was sent).
    assert_stamped(
        &next(&mut dave_msg).await,
        "$CHAT.MSG.club",
        "alice",
        2,
        b"after",
        t0,
    );

    // carol was still a member when bob left: she saw that, and nothing after her kick.
    let bob_left = json!({"event": "leave", "room": "club", "user": "bob", "reason": "left"});
    assert_eq!(next_json(&mut c1_evt).await, bob_left);
    assert_eq!(next_json(&mut c2_all).await, bob_left);
    // Positive control: a plain message sent last is the next thing either `>` sees.
    alice.publish("ctl.end", "end".into()).await.unwrap();
    alice.flush().await.unwrap();
    for sub in [&mut b2_all, &mut c2_all] {
        let m = next(sub).await;
        assert_eq!(m.subject.as_str(), "ctl.end", "got {m:?}");
    }
    expect_quiet(&b1, &mut b1_msg).await;
    expect_quiet(&b1, &mut b1_evt).await;
    expect_quiet(&b2, &mut b2_all).await;
    expect_quiet(&c1, &mut c1_msg).await;
    expect_quiet(&c1, &mut c1_evt).await;
    expect_quiet(&c2, &mut c2_all).await;
    server.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impersonation_is_refused_with_a_users_file() {
    let server = start(auth_config());
    for pass in ["wrong", "", "pw-bob"] {
        let r = connect_as(&server, "alice", pass).await;
        assert!(r.is_err(), "alice with password {pass:?} was accepted");
    }
    let r = timeout(WAIT, async_nats::connect(url(&server)))
        .await
        .expect("connect timed out");
    assert!(r.is_err(), "a connection without credentials was accepted");

    // CONNECT with a user and no password at all.
    let mut raw = raw_connect(&server).await;
    raw.write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"user\":\"alice\"}\r\nPING\r\n")
        .await
        .unwrap();
    assert_eq!(
        read_to_close(&mut raw).await,
        b"-ERR 'Authorization Violation'\r\n"
    );

    // A second CONNECT may not change the connection's user, even with the right password.
    let mut raw = raw_connect(&server).await;
    raw.write_all(
        b"CONNECT {\"verbose\":false,\"pedantic\":false,\"user\":\"alice\",\"pass\":\"pw-alice\"}\r\nPING\r\n",
    )
    .await
    .unwrap();
    assert_eq!(read_line(&mut raw).await, b"PONG\r\n");
    raw.write_all(
        b"CONNECT {\"verbose\":false,\"pedantic\":false,\"user\":\"bob\",\"pass\":\"pw-bob\"}\r\nPING\r\n",
    )
    .await
    .unwrap();
    assert_eq!(
        read_to_close(&mut raw).await,
        b"-ERR 'Authorization Violation'\r\n"
    );

    // The right password is accepted, as that user.
    let alice = session(&server, "alice").await;
    assert_eq!(
        ok(&alice, "whoami", json!({})).await,
        json!({"user": "alice", "session": alice.server_info().client_id})
    );
    server.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_reach_only_the_requesting_connection() {
    let server = start(auth_config());
    let carol = session(&server, "carol").await;
    let mut carol_inbox = carol.subscribe("_INBOX.>").await.unwrap();
    let mut carol_all = carol.subscribe(">").await.unwrap();
    let own = sync(&carol).await;
    skip_own_reply(&mut carol_inbox, &own).await;
    skip_own_reply(&mut carol_all, &own).await;
    let alice2 = session(&server, "alice").await;
    let mut alice2_inbox = alice2.subscribe("_INBOX.>").await.unwrap();
    let own = sync(&alice2).await;
    skip_own_reply(&mut alice2_inbox, &own).await;
    let alice = session(&server, "alice").await;
    // The requesting connection's own matching subscriptions do get the replies.
    let mut own_inbox = alice.subscribe("_INBOX.>").await.unwrap();
    alice.flush().await.unwrap();

    let mut replies = vec![
        ok(&alice, "whoami", json!({})).await,
        ok(&alice, "room.create", json!({"room": "r"})).await,
        request(&alice, "$CHAT.MSG.r", b"m").await,
        request(&alice, "$CHAT.DM.bob", b"d").await,
        ok(&alice, "history", json!({"room": "r"})).await,
    ];
    replies.push(request(&alice, "$CHAT.API.room.create", b"{\"room\":\"r\"}").await);
    assert_eq!(code(&replies[5]), 409);
    for expected in &replies {
        assert_eq!(&next_json(&mut own_inbox).await, expected);
    }
    expect_quiet(&alice, &mut own_inbox).await;

    alice.publish("ctl.end", "end".into()).await.unwrap();
    alice.flush().await.unwrap();
    let first = next(&mut carol_all).await;
    assert_eq!(first.subject.as_str(), "ctl.end", "carol saw {first:?}");
    expect_quiet(&carol, &mut carol_all).await;
    expect_quiet(&carol, &mut carol_inbox).await;
    expect_quiet(&alice2, &mut alice2_inbox).await;
    server.shutdown().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Member limit
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_limit_holds_under_concurrent_joins() {
    const JOINERS: usize = 100;
    const LIMIT: usize = 10;
    // Names taken at face value (no users file): 100 distinct users.
    let server = start(Config::default());
    let alice = session(&server, "alice").await;
    assert_eq!(
        ok(
            &alice,
            "room.create",
            json!({"room": "big", "limit": LIMIT})
        )
        .await,
        json!({"room": "big", "private": false, "limit": LIMIT})
    );
    let names: Vec<String> = (0..JOINERS).map(|i| format!("u{i:03}")).collect();
    let clients = join_all(names.iter().map(|n| session(&server, n))).await;

    let replies = join_all(
        clients
            .iter()
            .map(|c| ok_or_err(c, "room.join", json!({"room": "big"}))),
    )
    .await;
    // The creator is a member and counts towards the limit: 10 members is the creator plus
    // exactly 9 joiners.
    let mut winners = Vec::new();
    let mut member_counts = Vec::new();
    let mut full = 0;
    for (name, reply) in names.iter().zip(&replies) {
        if reply.get("error").is_some() {
            assert_eq!(code(reply), 409, "{name}: {reply}");
            full += 1;
        } else {
            assert_eq!(reply["room"], "big");
            assert_eq!(reply["seq"], 0);
            member_counts.push(reply["members"].as_u64().unwrap());
            winners.push(name.clone());
        }
    }
    assert_eq!(winners.len(), LIMIT - 1, "joins that succeeded");
    assert_eq!(full, JOINERS - (LIMIT - 1), "joins refused as full");
    member_counts.sort_unstable();
    assert_eq!(
        member_counts,
        (2..=LIMIT as u64).collect::<Vec<_>>(),
        "each successful join saw one more member"
    );
    let mut members = winners;
    members.push("alice".to_owned());
    members.sort();
    assert_eq!(
        ok(&alice, "room.info", json!({"room": "big"})).await,
        json!({"room": "big", "private": false, "limit": LIMIT, "seq": 0,
               "members": members, "admins": ["alice"], "more": false})
    );
    server.shutdown().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Starts the server in-process with two workers.
fn start(config: Config) -> ServerHandle {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    spawn(
        listener,
        Config {
            workers: 2,
            ..config
        },
    )
    .unwrap()
}

/// A config with the users file [`USERS`], each with password `pw-<user>`.
fn auth_config() -> Config {
    Config {
        auth: Auth::Users(
            USERS
                .iter()
                .map(|u| ((*u).to_owned(), format!("pw-{u}")))
                .collect(),
        ),
        ..Config::default()
    }
}

fn url(server: &ServerHandle) -> String {
    format!("nats://{}", server.local_addr())
}

/// Connects as `user` with password `pw-<user>` (ignored when auth is off).
async fn session(server: &ServerHandle, user: &str) -> Client {
    connect_as(server, user, &format!("pw-{user}"))
        .await
        .unwrap_or_else(|e| panic!("connect as {user}: {e}"))
}

async fn connect_as(
    server: &ServerHandle,
    user: &str,
    pass: &str,
) -> Result<Client, async_nats::ConnectError> {
    timeout(
        WAIT,
        ConnectOptions::new()
            .user_and_password(user.to_owned(), pass.to_owned())
            .name(format!("chat test {user}"))
            .connect(url(server)),
    )
    .await
    .expect("connect timed out")
}

/// Connects as `user`, also returning the client's event stream (server errors and the like).
async fn session_with_events(
    server: &ServerHandle,
    user: &str,
) -> (Client, UnboundedReceiver<Event>) {
    let (tx, rx) = unbounded();
    let client = timeout(
        WAIT,
        ConnectOptions::new()
            .user_and_password(user.to_owned(), format!("pw-{user}"))
            .event_callback(move |event| {
                let _ = tx.unbounded_send(event);
                std::future::ready(())
            })
            .connect(url(server)),
    )
    .await
    .expect("connect timed out")
    .unwrap_or_else(|e| panic!("connect as {user}: {e}"));
    (client, rx)
}

/// The next `-ERR` text the client reported; panics if the connection dropped first.
async fn next_server_error(events: &mut UnboundedReceiver<Event>) -> String {
    loop {
        let event = timeout(WAIT, events.next())
            .await
            .expect("timed out waiting for a server error")
            .expect("event stream ended");
        match event {
            Event::Connected => {}
            Event::ServerError(ServerError::Other(text)) => return text,
            other => panic!("wanted a server error, got {other:?}"),
        }
    }
}

/// Closes the connection: the client unsubscribes, flushes and closes its socket. Tests wait
/// for the consequence they expect (an event, a presence change), never for the close itself.
async fn disconnect(client: Client) {
    client.drain().await.unwrap();
}

/// Like [`request_with_epoch`], without the `epoch` field (checked where it matters, in
/// `resume_in_a_recreated_room_is_410`; its value depends on the shard's other rooms).
async fn request(client: &Client, subject: &str, body: &[u8]) -> Value {
    without_epoch(request_with_epoch(client, subject, body).await)
}

/// Sends a request on `subject` and parses the reply as JSON, whole.
async fn request_with_epoch(client: &Client, subject: &str, body: &[u8]) -> Value {
    let reply = timeout(
        WAIT,
        client.request(subject.to_owned(), body.to_vec().into()),
    )
    .await
    .unwrap_or_else(|_| panic!("no reply on {subject}"))
    .unwrap_or_else(|e| panic!("request on {subject}: {e}"));
    json_with_epoch(&reply)
}

/// `$CHAT.API.<op>` with a JSON body; the reply, result or error.
async fn ok_or_err(client: &Client, op: &str, body: Value) -> Value {
    request(
        client,
        &format!("$CHAT.API.{op}"),
        body.to_string().as_bytes(),
    )
    .await
}

/// `$CHAT.API.<op>` that must succeed; its result.
async fn ok(client: &Client, op: &str, body: Value) -> Value {
    let reply = ok_or_err(client, op, body.clone()).await;
    assert!(reply.get("error").is_none(), "{op} {body} failed: {reply}");
    reply
}

/// `$CHAT.API.<op>` that must fail; its error code.
async fn fails(client: &Client, op: &str, body: Value) -> u64 {
    code(&ok_or_err(client, op, body).await)
}

/// The code of an error reply, checking its exact shape
/// `{"error":{"code":N,"description":"…"}}`.
fn code(reply: &Value) -> u64 {
    let shape = || format!("not an error reply: {reply}");
    let object = reply.as_object().unwrap_or_else(|| panic!("{}", shape()));
    assert_eq!(object.len(), 1, "{}", shape());
    let error = reply["error"]
        .as_object()
        .unwrap_or_else(|| panic!("{}", shape()));
    assert_eq!(error.len(), 2, "{}", shape());
    assert!(error["description"].is_string(), "{}", shape());
    error["code"]
        .as_u64()
        .unwrap_or_else(|| panic!("{}", shape()))
}

/// Whether an error object names `n`: as a number in its description, or as another field.
fn names_number(error: &Value, n: u64) -> bool {
    let Some(object) = error.as_object() else {
        return false;
    };
    object
        .iter()
        .filter(|(key, _)| key.as_str() != "code")
        .any(|(_, value)| match value {
            Value::String(text) => text
                .split(|c: char| !c.is_ascii_digit())
                .any(|word| word.parse() == Ok(n)),
            Value::Number(number) => number.as_u64() == Some(n),
            _ => false,
        })
}

/// Replaces every error description with "" (their wording is not part of the contract).
fn blank_descriptions(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Object(error)) = map.get_mut("error") {
                if error.get("description").is_some_and(Value::is_string) {
                    error.insert("description".into(), json!(""));
                }
            }
            map.values_mut().for_each(blank_descriptions);
        }
        Value::Array(items) => items.iter_mut().for_each(blank_descriptions),
        _ => {}
    }
}

/// Checks every history message's `time` lies between `t0` and now, then removes it.
fn strip_times(page: &mut Value, t0: u64) {
    let now = now_ms();
    let Some(messages) = page.get_mut("messages").and_then(Value::as_array_mut) else {
        panic!("not a history page: {page}");
    };
    for m in messages {
        let time = m["time"]
            .as_u64()
            .unwrap_or_else(|| panic!("no time in {m}"));
        assert!(
            t0 <= time && time <= now,
            "time {time} not in [{t0}, {now}]"
        );
        m.as_object_mut().unwrap().remove("time");
    }
}

/// Sorts a backward page by sequence, after checking it is monotone in one direction.
fn sort_backward_page(page: &mut Value) {
    let messages = page["messages"].as_array_mut().unwrap();
    let seqs: Vec<u64> = messages
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]) || seqs.windows(2).all(|w| w[0] > w[1]),
        "page not in order: {seqs:?}"
    );
    messages.sort_by_key(|m| m["seq"].as_u64());
}

/// A reply's JSON without its `epoch` field (see [`request`]).
fn json_of(message: &Message) -> Value {
    without_epoch(json_with_epoch(message))
}

fn json_with_epoch(message: &Message) -> Value {
    serde_json::from_slice(&message.payload).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}) on {}: {:?}",
            message.subject,
            String::from_utf8_lossy(&message.payload)
        )
    })
}

fn without_epoch(mut v: Value) -> Value {
    if let Some(map) = v.as_object_mut() {
        map.remove("epoch");
    }
    v
}

async fn next(sub: &mut Subscriber) -> Message {
    timeout(WAIT, sub.next())
        .await
        .expect("timed out waiting for a message")
        .expect("subscription ended")
}

async fn next_json(sub: &mut Subscriber) -> Value {
    json_of(&next(sub).await)
}

/// A round trip through the server on `client`'s connection (a `whoami` request): the server
/// handles a connection's ops in order, so every SUB sent before is in effect when this
/// returns. async-nats' `flush` only writes the socket and does not wait for a `PONG`, so it
/// is no barrier. Returns the reply, which the connection's own subscriptions matching
/// `_INBOX.>` (such as `>`) also receive: see [`skip_own_reply`].
async fn sync(client: &Client) -> Value {
    ok_or_err(client, "whoami", json!({})).await
}

/// Consumes the copy of a [`sync`] reply that arrives on a `>` or `_INBOX.>` subscription of
/// the same connection.
async fn skip_own_reply(sub: &mut Subscriber, reply: &Value) {
    let m = next(sub).await;
    assert!(
        m.subject.starts_with("_INBOX."),
        "wanted own reply, got {m:?}"
    );
    assert_eq!(&json_of(&m), reply);
}

/// Expects nothing on `sub` within [`QUIET`] after flushing `client` (a heuristic: the
/// positive controls in the tests are what prove ordering).
async fn expect_quiet(client: &Client, sub: &mut Subscriber) {
    client.flush().await.unwrap();
    let r = timeout(QUIET, sub.next()).await;
    assert!(r.is_err(), "unexpected message: {r:?}");
}

/// One header's value; panics when it is missing.
fn header<'a>(m: &'a Message, name: &str) -> &'a str {
    m.headers
        .as_ref()
        .and_then(|h| h.get(name))
        .map(|v| v.as_str())
        .unwrap_or_else(|| panic!("no {name} header on {m:?}"))
}

fn chat_seq(m: &Message) -> u64 {
    header(m, "Chat-Seq")
        .parse()
        .unwrap_or_else(|e| panic!("Chat-Seq not a number ({e}) on {m:?}"))
}

/// Checks a delivered chat message: subject, payload, no reply subject, and exactly the
/// server's three `Chat-` headers (one value each) with the expected sender and sequence and
/// a server time not before `t0`.
fn assert_stamped(m: &Message, subject: &str, from: &str, seq: u64, payload: &[u8], t0: u64) {
    assert_eq!(m.subject.as_str(), subject, "{m:?}");
    assert_eq!(&m.payload[..], payload, "{m:?}");
    assert!(m.reply.is_none(), "a reply subject was passed on: {m:?}");
    let headers = m.headers.as_ref().expect("stamped headers");
    let mut chat: Vec<(String, Vec<String>)> = headers
        .iter()
        .filter(|(name, _)| name.to_string().to_ascii_lowercase().starts_with("chat-"))
        .map(|(name, values)| {
            (
                name.to_string(),
                values.iter().map(|v| v.as_str().to_owned()).collect(),
            )
        })
        .collect();
    chat.sort();
    let time: u64 = header(m, "Chat-Time")
        .parse()
        .unwrap_or_else(|e| panic!("Chat-Time not a number ({e}) on {m:?}"));
    let now = now_ms();
    assert!(
        t0 <= time && time <= now,
        "Chat-Time {time} not in [{t0}, {now}]"
    );
    assert_eq!(
        chat,
        vec![
            ("Chat-From".to_owned(), vec![from.to_owned()]),
            ("Chat-Seq".to_owned(), vec![seq.to_string()]),
            ("Chat-Time".to_owned(), vec![time.to_string()]),
        ],
        "{m:?}"
    );
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A raw TCP connection with the server's INFO line already read.
async fn raw_connect(server: &ServerHandle) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    let info = read_line(&mut stream).await;
    assert!(
        info.starts_with(b"INFO {"),
        "{:?}",
        String::from_utf8_lossy(&info)
    );
    stream
}

/// Reads one line, byte by byte (so nothing after it is consumed).
async fn read_line(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut line = Vec::new();
    while !line.ends_with(b"\n") {
        let mut byte = [0u8; 1];
        let n = timeout(WAIT, stream.read(&mut byte))
            .await
            .expect("timed out reading a line")
            .expect("read");
        assert!(n == 1, "closed after {:?}", String::from_utf8_lossy(&line));
        line.push(byte[0]);
    }
    line
}

/// Everything the server sends until it closes the connection.
async fn read_to_close(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    // A reset after the last bytes is a close too; what was read is kept in `all`.
    let _ = timeout(WAIT, stream.read_to_end(&mut all))
        .await
        .expect("the server did not close the connection");
    all
}
