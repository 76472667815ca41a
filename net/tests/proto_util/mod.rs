//! Helpers shared by the protocol test files: a readable rendering of ops, and the
//! whole-buffer and chunked parse loops whose results must agree.

#![allow(dead_code)] // Each test file uses a different subset of these helpers.

use net::proto::{Op, Parser, ParserLimits, ProtoError, Side};

/// How a parse run ended: leftover bytes waiting for more input, or an error.
pub type End = Result<usize, ProtoError>;

/// A stable, readable rendering of an op, for tables and comparisons.
pub fn render(op: &Op<'_>) -> String {
    fn s(b: &[u8]) -> String {
        let mut out = String::new();
        for &c in b {
            match c {
                b'\r' => out.push_str("\\r"),
                b'\n' => out.push_str("\\n"),
                b'\t' => out.push_str("\\t"),
                b' '..=b'~' => out.push(char::from(c)),
                _ => out.push_str(&format!("\\x{c:02x}")),
            }
        }
        out
    }
    fn opt(tag: &str, b: Option<&[u8]>) -> String {
        b.map(|b| format!(" {tag}={}", s(b))).unwrap_or_default()
    }
    match op {
        Op::Connect(j) => format!("CONNECT {}", s(j)),
        Op::Info(j) => format!("INFO {}", s(j)),
        Op::Pub(p) => format!(
            "PUB {}{}{} p={}",
            s(p.subject),
            opt("r", p.reply),
            opt("h", p.headers),
            s(p.payload)
        ),
        Op::Msg(m) => format!(
            "MSG {} sid={}{}{} p={}",
            s(m.subject),
            s(m.sid),
            opt("r", m.reply),
            opt("h", m.headers),
            s(m.payload)
        ),
        Op::Sub(x) => format!("SUB {}{} sid={}", s(x.subject), opt("q", x.queue), s(x.sid)),
        Op::Unsub(u) => match u.max {
            Some(m) => format!("UNSUB {} max={m}", s(u.sid)),
            None => format!("UNSUB {}", s(u.sid)),
        },
        Op::Ping => "PING".into(),
        Op::Pong => "PONG".into(),
        Op::Ok => "+OK".into(),
        Op::Err(t) => format!("-ERR {}", s(t)),
    }
}

/// Parses `input` held in one buffer: ops until `None` or an error.
pub fn parse_whole(side: Side, limits: ParserLimits, input: &[u8]) -> (Vec<String>, End) {
    let mut p = Parser::new(side, limits);
    let mut ops = Vec::new();
    let mut at = 0;
    loop {
        match p.parse(&input[at..]) {
            Ok(Some((op, n))) => {
                assert!(
                    n > 0 && n <= input.len() - at,
                    "consumed {n} of {}",
                    input.len() - at
                );
                ops.push(render(&op));
                at += n;
            }
            Ok(None) => return (ops, Ok(input.len() - at)),
            Err(e) => return (ops, Err(e)),
        }
    }
}

/// Feeds `input` in chunks of the given sizes (cycled; 0 is read as 1) the way a
/// connection does: append, parse until `None`, drop the consumed prefix. Checks that
/// the parser never asks for more than `limits.max_buffered_bytes()` bytes.
pub fn parse_chunked(
    side: Side,
    limits: ParserLimits,
    input: &[u8],
    chunks: &[usize],
) -> (Vec<String>, End) {
    let mut p = Parser::new(side, limits);
    let bound = p.limits().max_buffered_bytes();
    let mut buf: Vec<u8> = Vec::new();
    let mut ops = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < input.len() {
        let n = chunks
            .get(i % chunks.len().max(1))
            .copied()
            .unwrap_or(1)
            .max(1);
        i += 1;
        let end = at.saturating_add(n).min(input.len());
        buf.extend_from_slice(&input[at..end]);
        at = end;
        let mut used = 0;
        loop {
            match p.parse(&buf[used..]) {
                Ok(Some((op, n))) => {
                    assert!(n > 0 && n <= buf.len() - used);
                    ops.push(render(&op));
                    used += n;
                }
                Ok(None) => {
                    assert!(
                        buf.len() - used < bound,
                        "parser wants more than {bound} buffered bytes"
                    );
                    break;
                }
                Err(e) => return (ops, Err(e)),
            }
        }
        buf.drain(..used);
    }
    (ops, Ok(buf.len()))
}

/// Asserts that every split of `input` (at each offset into two reads, and one byte
/// per read) gives the same result as the whole buffer; returns that result.
pub fn assert_split_invariant(
    side: Side,
    limits: ParserLimits,
    input: &[u8],
) -> (Vec<String>, End) {
    let whole = parse_whole(side, limits, input);
    for k in 0..=input.len() {
        let split = parse_chunked(side, limits, input, &[k, usize::MAX]);
        assert_eq!(
            split,
            whole,
            "split at {k} of {:?}",
            input.escape_ascii().to_string()
        );
    }
    let bytewise = parse_chunked(side, limits, input, &[1]);
    assert_eq!(
        bytewise,
        whole,
        "byte at a time: {:?}",
        input.escape_ascii().to_string()
    );
    whole
}
