//! `fuzz`: the checks behind the cargo-fuzz targets, kept in a library so that the
//! stable toolchain can run them too (the crate's tests replay the seed corpus).
//!
//! # Layout
//! - [`check_parser`]: target `parser` (`fuzz_targets/parser.rs`).
//! - [`check_json`]: target `json` (`fuzz_targets/json.rs`).
//! - [`check_chat`]: target `chat` (`fuzz_targets/chat.rs`).
//! - [`replay`]: runs a check over files, for the targets' non-libFuzzer `main`.
//! - `corpus/<target>/`: seed inputs; `run.sh SECONDS` fuzzes each target briefly.
//!
//! # Never
//! A check never accepts a panic, an op bigger than the caps, or a result that depends
//! on how the input was split. No unsafe code.
#![forbid(unsafe_code)]

use std::path::Path;
use std::sync::Arc;

use engine::chat::request::{self, Conv, Op as ChatOp, Request};
use engine::chat::shard::{Ctx, Effect, Shard, ShardLimits};
use engine::chat::{ReplyTo, Requester};
use engine::envelope::{ConnKey, Msg, MsgView, Origin, SubRef, SubState};
use engine::subject::Pattern;
use engine::sublist::Sublist;
use net::proto::{
    encode_hpub, encode_pub, Connect, Info, Op, Parser, ParserLimits, ProtoError, Side,
};

/// Target `parser`. Input layout: byte 0 holds flags (bit 0: client side; bit 1: tiny
/// caps; bit 2: `HPUB` refused), byte 1 seeds the split points, the rest is the stream.
///
/// Checks: no panic; every op within the payload cap; the parser never needs more than
/// `max_buffered_bytes`; every `consumed` is within the buffer; the same ops and the
/// same ending whether the stream comes in one buffer, in seeded random chunks, one
/// byte at a time, or (for short inputs) split in two at every offset; and a `PUB`/`HPUB`
/// re-encoded by the encoder parses back to itself.
pub fn check_parser(data: &[u8]) {
    let (flags, seed, stream) = match data {
        [f, s, rest @ ..] => (*f, *s, rest),
        _ => return,
    };
    let cfg = Config {
        side: if flags & 1 == 0 {
            Side::Server
        } else {
            Side::Client
        },
        limits: if flags & 2 == 0 {
            ParserLimits {
                max_control_line_bytes: 4096,
                max_payload_bytes: 4096,
            }
        } else {
            ParserLimits {
                max_control_line_bytes: 40,
                max_payload_bytes: 8,
            }
        },
        headers: flags & 4 == 0,
    };
    let whole = cfg.run(stream, &[usize::MAX]);
    let mut rng = u32::from(seed) | 0x100;
    let random: Vec<usize> = (0..16)
        .map(|_| {
            rng ^= rng << 13;
            rng ^= rng >> 17;
            rng ^= rng << 5;
            (rng % 64) as usize + 1
        })
        .collect();
    assert_eq!(cfg.run(stream, &random), whole, "random chunks {random:?}");
    assert_eq!(cfg.run(stream, &[1]), whole, "one byte at a time");
    if stream.len() <= 64 {
        for k in 1..stream.len() {
            assert_eq!(cfg.run(stream, &[k, usize::MAX]), whole, "split at {k}");
        }
    }
}

/// Target `json`: arbitrary bytes as CONNECT and INFO arguments. Checks: no panic, and a
/// value that decodes re-encodes to JSON that decodes to the same value.
pub fn check_json(data: &[u8]) {
    if let Ok(c) = Connect::parse(data) {
        let again = serde_json::to_vec(&c).map(|j| Connect::parse(&j));
        assert!(
            matches!(again, Ok(Ok(ref d)) if *d == c),
            "CONNECT {c:?} -> {again:?}"
        );
        let mut twice = c.clone();
        assert_eq!(
            twice.update(data),
            Ok(()),
            "a second identical CONNECT is accepted"
        );
    }
    if let Ok(i) = Info::parse(data) {
        let again = serde_json::to_vec(&i).map(|j| Info::parse(&j));
        assert!(
            matches!(again, Ok(Ok(ref d)) if *d == i),
            "INFO {i:?} -> {again:?}"
        );
    }
}

/// The operation names target `chat` picks from (and one that is not an operation).
const CHAT_OPS: &[&[u8]] = &[
    b"room.create",
    b"room.join",
    b"room.leave",
    b"room.add",
    b"room.kick",
    b"room.promote",
    b"room.demote",
    b"room.limit",
    b"room.close",
    b"room.info",
    b"room.presence",
    b"rooms.list",
    b"history",
    b"broadcast",
    b"whoami",
    b"room.nope",
];

/// Target `chat`. Input layout: byte 0 picks the operation (`$CHAT.API.<op>`), the rest is
/// its body; the same rest is also published to a room as a message's header block.
///
/// Checks: no panic; a request either parses or is a `400`; applied by a shard that already
/// holds a room with members, subscribers and history, it answers with a documented code;
/// and whatever the client's header block, the delivered one starts with the server's
/// stamps and carries no other `Chat-` header and no line a parser could split differently.
pub fn check_chat(data: &[u8]) {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let (mut shard, index) = chat_fixture();
    let alice = requester("alice", 1);
    let op = CHAT_OPS[usize::from(pick) % CHAT_OPS.len()];
    match request::parse(op, body) {
        Ok(Request::Op(op)) => {
            let (answer, _) = apply(&mut shard, &index, &alice, op);
            if let Some(Err(e)) = answer {
                assert!(
                    [400, 403, 404, 409, 410, 429].contains(&e.code()),
                    "undocumented {e:?}"
                );
            }
        }
        Ok(Request::Broadcast { targets, data }) => {
            for conv in targets {
                let m = message(b"", None, &data);
                apply(&mut shard, &index, &alice, ChatOp::Publish(conv, m));
            }
        }
        Ok(Request::Whoami) => {}
        Err(e) => assert_eq!(e.code(), 400, "{e:?}"),
    }
    let m = message(b"$CHAT.MSG.r", Some(body), b"x");
    let (_, delivered) = apply(
        &mut shard,
        &index,
        &alice,
        ChatOp::Publish(Conv::Room("r".into()), m),
    );
    for msg in delivered {
        let view = msg.view();
        let Some(h) = view.headers else {
            panic!("a room message without stamps");
        };
        let text = String::from_utf8_lossy(h);
        assert!(
            text.starts_with("NATS/1.0\r\nChat-From: alice\r\nChat-Seq: "),
            "{text:?}"
        );
        assert!(text.ends_with("\r\n\r\n"), "{text:?}");
        let lines: Vec<&[u8]> = h[..h.len() - 4].split(|&b| b == b'\n').collect();
        for line in &lines[1..] {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            assert!(
                !line.is_empty() && !line[0].is_ascii_whitespace(),
                "{text:?}"
            );
            assert!(
                line.iter().all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f)),
                "{text:?}"
            );
        }
        let stamps = lines
            .iter()
            .filter(|l| l.len() >= 5 && l[..5].eq_ignore_ascii_case(b"chat-"))
            .count();
        assert_eq!(stamps, 3, "{text:?}");
    }
}

/// A shard holding room `r` (alice admin; bob a member; both subscribed, both present)
/// with a few messages, and private room `p` of bob's.
fn chat_fixture() -> (Shard, Sublist<SubRef>) {
    let index = Sublist::new();
    let mut shard = Shard::new(ShardLimits {
        history: 4,
        history_bytes: 4096,
        rooms: 8,
        dms: 8,
        page_bytes: 1024,
        rooms_per_user: 4,
        dms_per_user: 4,
        memberships: 16,
    });
    let (alice, bob) = (requester("alice", 1), requester("bob", 2));
    for (who, room, private) in [(&alice, "r", false), (&bob, "p", true)] {
        let create = ChatOp::Create {
            room: room.into(),
            private,
            limit: Some(8),
        };
        apply(&mut shard, &index, who, create);
    }
    apply(&mut shard, &index, &bob, ChatOp::Join("r".into()));
    apply(&mut shard, &index, &alice, ChatOp::Join("r".into()));
    for (who, subject) in [(&alice, "$CHAT.MSG.r"), (&bob, ">"), (&bob, "$CHAT.EVT.*")] {
        let pattern = Pattern::parse(subject.as_bytes()).unwrap_or_else(|_| unreachable!());
        let sub =
            SubState::new(who.conn, b"1", pattern.clone(), None).with_user(Some(who.user.clone()));
        index.insert(&pattern, None, SubRef(Arc::new(sub)));
    }
    for i in 0..6u8 {
        let m = message(b"$CHAT.MSG.r", None, &[b'0' + i]);
        apply(
            &mut shard,
            &index,
            &bob,
            ChatOp::Publish(Conv::Room("r".into()), m),
        );
    }
    (shard, index)
}

fn requester(user: &str, slot: u32) -> Requester {
    Requester {
        conn: ConnKey {
            worker: 0,
            slot,
            gen: 0,
        },
        session: u64::from(slot),
        user: user.into(),
    }
}

fn message(subject: &[u8], headers: Option<&[u8]>, payload: &[u8]) -> Msg {
    Msg::from_view(&MsgView {
        subject,
        reply: None,
        headers,
        payload,
        origin: Origin {
            conn: ConnKey {
                worker: 0,
                slot: 1,
                gen: 0,
            },
            no_responders: false,
            echo: true,
        },
    })
}

/// Applies `op`; returns its answer (if any) and the messages it fanned out.
fn apply(
    shard: &mut Shard,
    index: &Sublist<SubRef>,
    from: &Requester,
    op: ChatOp,
) -> (Option<engine::chat::Outcome>, Vec<Msg>) {
    let mut out = Vec::new();
    let mut ctx = Ctx {
        now_ms: 1,
        index,
        out: &mut out,
    };
    shard.handle(
        from,
        op,
        ReplyTo::Subject(b"_INBOX.f".as_slice().into()),
        &mut ctx,
    );
    let mut answer = None;
    let mut fanned = Vec::new();
    for effect in out {
        match effect {
            Effect::Answer { outcome, .. } => answer = Some(outcome),
            Effect::Fanout { msg, .. } => fanned.push(msg),
        }
    }
    (answer, fanned)
}

/// Runs `check` over the contents of every file named on the command line (directories
/// are walked one level deep). The fuzz targets' `main` outside cargo-fuzz.
pub fn replay(check: fn(&[u8])) -> std::io::Result<()> {
    for arg in std::env::args_os().skip(1) {
        replay_path(Path::new(&arg), check)?;
    }
    Ok(())
}

/// Runs `check` over one file, or over the files of one directory.
pub fn replay_path(path: &Path, check: fn(&[u8])) -> std::io::Result<()> {
    if path.is_dir() {
        for entry in std::fs::read_dir(path)? {
            let p = entry?.path();
            if p.is_file() {
                check(&std::fs::read(&p)?);
            }
        }
        Ok(())
    } else {
        check(&std::fs::read(path)?);
        Ok(())
    }
}

/// One parser configuration.
#[derive(Clone, Copy)]
struct Config {
    side: Side,
    limits: ParserLimits,
    headers: bool,
}

/// The ops (as `Debug` text) and how the stream ended: leftover bytes, or an error.
type Outcome = (Vec<String>, Result<usize, ProtoError>);

impl Config {
    /// Feeds `input` in chunks of the given sizes (cycled) the way a connection does:
    /// append, parse until `None`, drop the consumed prefix.
    fn run(&self, input: &[u8], chunks: &[usize]) -> Outcome {
        let mut p = Parser::new(self.side, self.limits);
        p.set_headers_allowed(self.headers);
        let bound = p.limits().max_buffered_bytes();
        let mut buf: Vec<u8> = Vec::new();
        let mut ops = Vec::new();
        let (mut at, mut i) = (0, 0);
        while at < input.len() {
            let n = chunks[i % chunks.len()].max(1);
            i += 1;
            let end = at.saturating_add(n).min(input.len());
            buf.extend_from_slice(&input[at..end]);
            at = end;
            let mut used = 0;
            loop {
                match p.parse(&buf[used..]) {
                    Ok(Some((op, n))) => {
                        assert!(n > 0 && n <= buf.len() - used, "consumed {n}");
                        self.check_op(&op);
                        ops.push(format!("{op:?}"));
                        used += n;
                    }
                    Ok(None) => {
                        assert!(buf.len() - used < bound, "wants more than {bound} bytes");
                        break;
                    }
                    Err(e) => return (ops, Err(e)),
                }
            }
            buf.drain(..used);
        }
        (ops, Ok(buf.len()))
    }

    /// Caps respected; JSON decoders do not panic; PUB/HPUB round-trip the encoder.
    fn check_op(&self, op: &Op<'_>) {
        let max = self.limits.max_payload_bytes;
        match op {
            Op::Pub(p) => {
                let size = p.payload.len() + p.headers.map_or(0, <[u8]>::len);
                assert!(size <= max, "payload {size} > {max}");
                let plain = |s: &[u8]| !s.iter().any(|b| b" \t\r\n".contains(b));
                if plain(p.subject) && p.reply.is_none_or(plain) {
                    let mut wire = Vec::new();
                    match p.headers {
                        Some(h) => encode_hpub(&mut wire, p.subject, p.reply, h, p.payload),
                        None => encode_pub(&mut wire, p.subject, p.reply, p.payload),
                    }
                    let mut q = Parser::new(Side::Server, ParserLimits::default());
                    let back = q.parse(&wire);
                    assert_eq!(back, Ok(Some((op.clone(), wire.len()))), "re-encoded");
                }
            }
            Op::Msg(m) => {
                let size = m.payload.len() + m.headers.map_or(0, <[u8]>::len);
                assert!(size <= max, "payload {size} > {max}");
            }
            Op::Connect(j) => {
                let _ = Connect::parse(j);
            }
            Op::Info(j) => {
                let _ = Info::parse(j);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays the seed corpus (and any regression inputs added to it) on stable.
    #[test]
    fn corpus_replays() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
        replay_path(&root.join("parser"), check_parser).unwrap();
        replay_path(&root.join("json"), check_json).unwrap();
        replay_path(&root.join("chat"), check_chat).unwrap();
    }

    #[test]
    fn chat_requests_of_every_op() {
        for pick in 0..CHAT_OPS.len() as u8 {
            for body in [
                &b""[..],
                b"{}",
                br#"{"room":"r","user":"bob","limit":1}"#,
                br#"{"room":"p","after":2,"limit":2}"#,
                br#"{"rooms":["r","p","x"],"users":["bob"],"data":"hi"}"#,
                b"NATS/1.0\r\nX: a\rChat-From: m\r\n chat-seq: 1\r\n\r\n",
                b"{\"room\":",
            ] {
                let mut input = vec![pick];
                input.extend_from_slice(body);
                check_chat(&input);
            }
        }
    }

    #[test]
    fn short_inputs() {
        for flags in 0..8u8 {
            for b in 0..=255u8 {
                check_parser(&[flags, b, b]);
                check_parser(&[flags, 7, b'P', b]);
            }
        }
        check_json(b"");
        check_json(b"null");
    }
}
