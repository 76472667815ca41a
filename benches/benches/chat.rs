//! The chat layer's cost on the owner shard, per room message, without sockets.
//!
//! - `chat/order/room_1000_members`: `Shard::handle` of one message to a room of 1,000
//!   members, each subscribed: membership check, sequence, header stamp, history window push
//!   (1,000 kept, so one drop per push), and the audience (the index match plus the cached
//!   membership filter). What the worker then does with the audience is the plain fan-out,
//!   measured by the `fanout` bench.
//! - `chat/order/room_1000_members_refiltered`: the same with the membership changing before
//!   every message (a member added, then kicked, in turn), so the filtered sets are rebuilt
//!   each time: the worst case, a room whose membership churns as fast as it talks. The
//!   membership operation itself is included.
//! - `chat/match/plain_1000_subs`: the index match alone for a plain subject with 1,000
//!   subscribers, what a plain publish costs at the same point.

#![forbid(unsafe_code)]

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use engine::chat::request::{Conv, Op};
use engine::chat::shard::{Ctx, Effect, Shard, ShardLimits};
use engine::chat::{ReplyTo, Requester};
use engine::envelope::{ConnKey, Msg, MsgView, Origin, SubRef, SubState};
use engine::subject::Pattern;
use engine::sublist::Sublist;

const MEMBERS: u32 = 1000;

fn conn(slot: u32) -> ConnKey {
    ConnKey {
        worker: (slot % 2) as u16,
        slot,
        gen: 0,
    }
}

fn requester(i: u32) -> Requester {
    Requester {
        conn: conn(i),
        session: u64::from(i),
        user: format!("u{i}").into(),
    }
}

fn apply(shard: &mut Shard, index: &Sublist<SubRef>, from: &Requester, op: Op) -> usize {
    let mut out: Vec<Effect> = Vec::new();
    let mut ctx = Ctx {
        now_ms: 1,
        index,
        out: &mut out,
    };
    shard.handle(from, op, ReplyTo::Nobody, &mut ctx);
    out.len()
}

/// A shard with room `r` of `MEMBERS` members, each with one subscription on the room.
fn room() -> (Shard, Sublist<SubRef>) {
    let index = Sublist::new();
    let mut shard = Shard::new(ShardLimits {
        history: 1000,
        history_bytes: 1 << 30,
        rooms: 16,
        dms: 16,
        page_bytes: 1 << 20,
        rooms_per_user: 16,
        dms_per_user: 16,
        memberships: 1 << 20,
    });
    let create = Op::Create {
        room: "r".into(),
        private: false,
        limit: None,
    };
    apply(&mut shard, &index, &requester(0), create);
    let pattern = Pattern::parse(b"$CHAT.MSG.r").unwrap();
    for i in 0..MEMBERS {
        let from = requester(i);
        apply(&mut shard, &index, &from, Op::Join("r".into()));
        let sub = SubState::new(from.conn, b"1", pattern.clone(), None).with_user(Some(from.user));
        index.insert(&pattern, None, SubRef(Arc::new(sub)));
    }
    (shard, index)
}

fn message(subject: &[u8]) -> Msg {
    Msg::from_view(&MsgView {
        subject,
        reply: None,
        headers: None,
        payload: &[b'x'; 128],
        origin: Origin {
            conn: conn(0),
            no_responders: false,
            echo: true,
        },
    })
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("chat");
    g.throughput(Throughput::Elements(1));
    let msg = message(b"$CHAT.MSG.r");
    let from = requester(1);

    let (mut shard, index) = room();
    g.bench_function("order/room_1000_members", |b| {
        b.iter(|| {
            let op = Op::Publish(Conv::Room("r".into()), msg.clone());
            assert_eq!(apply(&mut shard, &index, &from, op), 1);
        })
    });

    let (mut shard, index) = room();
    let admin = requester(0);
    let mut joined = false;
    g.bench_function("order/room_1000_members_refiltered", |b| {
        b.iter(|| {
            // One member more, then one less: the membership changes every time and the
            // room stays at its size (and under its caps).
            let change = if joined {
                Op::Kick("r".into(), "extra".into())
            } else {
                Op::Add("r".into(), "extra".into())
            };
            joined = !joined;
            apply(&mut shard, &index, &admin, change);
            let op = Op::Publish(Conv::Room("r".into()), msg.clone());
            assert_eq!(apply(&mut shard, &index, &from, op), 1);
        })
    });

    let plain: Sublist<SubRef> = Sublist::new();
    let pattern = Pattern::parse(b"room.r").unwrap();
    for i in 0..MEMBERS {
        let sub = SubState::new(conn(i), b"1", pattern.clone(), None);
        plain.insert(&pattern, None, SubRef(Arc::new(sub)));
    }
    let mut sets = Vec::new();
    g.bench_function("match/plain_1000_subs", |b| {
        b.iter(|| {
            sets.clear();
            plain.matches(b"room.r", &mut sets);
            assert_eq!(sets.len(), 1);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
