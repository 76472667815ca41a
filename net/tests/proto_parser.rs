//! Table-driven parser tests: every op, argument variant and error, each input also
//! fed split at every offset and one byte at a time.
//!
//! The expectations were checked against nats-server 2.9.10 on loopback (see
//! `nats-server-behaviour.md` §1.2–1.6); quirks that come from its state machine are
//! marked "nats-server:".

mod proto_util;

use net::proto::{ParserLimits, ProtoError, Side};
use proto_util::{assert_split_invariant, parse_whole, End};

/// One table row: input, expected ops (rendered), expected end.
type Case = (&'static [u8], &'static [&'static str], End);

fn run(side: Side, cases: &[Case]) {
    for (input, ops, end) in cases {
        let got = assert_split_invariant(side, ParserLimits::default(), input);
        let want: Vec<String> = ops.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            got,
            (want, *end),
            "input {:?}",
            input.escape_ascii().to_string()
        );
    }
}

const DONE: End = Ok(0);
const UNKNOWN: End = Err(ProtoError::UnknownOp);

#[test]
fn server_pub_and_hpub() {
    run(
        Side::Server,
        &[
            (b"PUB foo 5\r\nhello\r\n", &["PUB foo p=hello"], DONE),
            (b"pub foo 5\r\nhello\r\n", &["PUB foo p=hello"], DONE),
            (b"Pub foo 5\r\nhello\r\n", &["PUB foo p=hello"], DONE),
            (b"pUB foo 5\r\nhello\r\n", &["PUB foo p=hello"], DONE),
            (
                b"PUB foo bar 5\r\nhello\r\n",
                &["PUB foo r=bar p=hello"],
                DONE,
            ),
            (
                b"PUB\tfoo\tbar\t5\r\nhello\r\n",
                &["PUB foo r=bar p=hello"],
                DONE,
            ),
            (b"PUB  foo  \t 2 \t \r\nhi\r\n", &["PUB foo p=hi"], DONE),
            (b"PUB foo 2\nhi\r\n", &["PUB foo p=hi"], DONE),
            (b"PUB foo 0\r\n\r\n", &["PUB foo p="], DONE),
            (b"PUB foo 000000002\r\nhi\r\n", &["PUB foo p=hi"], DONE),
            // The payload is framed by its size alone.
            (
                b"PUB foo 8\r\n\r\nPING\r\n\r\n",
                &["PUB foo p=\\r\\nPING\\r\\n"],
                DONE,
            ),
            (b"PUB foo 1048576\r\n", &[], Ok(17)),
            (
                b"HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n",
                &["PUB foo h=NATS/1.0\\r\\n\\r\\n p=hi"],
                DONE,
            ),
            (
                b"hpub foo r 12 14\r\nNATS/1.0\r\n\r\nhi\r\n",
                &["PUB foo r=r h=NATS/1.0\\r\\n\\r\\n p=hi"],
                DONE,
            ),
            // nats-server: an empty header block is delivered as a plain MSG.
            (b"HPUB foo 0 2\r\nhi\r\n", &["PUB foo p=hi"], DONE),
            (b"HPUB foo 4 4\r\nabcd\r\n", &["PUB foo h=abcd p="], DONE),
            (
                b"PUB a 1\r\nx\r\nPUB b 1\r\ny\r\nPING\r\n",
                &["PUB a p=x", "PUB b p=y", "PING"],
                DONE,
            ),
            // Incomplete input: nothing consumed.
            (b"PUB foo 5\r\nhel", &[], Ok(14)),
            (b"PUB foo 5\r\nhello\r", &[], Ok(17)),
            (b"PUB foo", &[], Ok(7)),
            (b"PUB", &[], Ok(3)),
            (b"PU", &[], Ok(2)),
        ],
    );
}

#[test]
fn server_pub_errors() {
    run(
        Side::Server,
        &[
            (b"PUB foo 2\r\nhiX\n", &[], Err(ProtoError::PayloadEnd)),
            (b"PUB foo 2\r\nhi\n", &[], Err(ProtoError::PayloadEnd)),
            (b"PUB foo 2\r\nhi\rX", &[], Err(ProtoError::PayloadEnd)),
            (b"PUB foo 2\r\nhiX", &[], Err(ProtoError::PayloadEnd)),
            (b"PUB foo 1048577\r\n", &[], Err(ProtoError::MaxPayload)),
            (b"PUB foo 999999999\r\n", &[], Err(ProtoError::MaxPayload)),
            (b"HPUB foo 12 1048577\r\n", &[], Err(ProtoError::MaxPayload)),
            (b"PUB foo\r\n", &[], Err(ProtoError::ArgCount { op: "PUB" })),
            (
                b"PUB foo bar baz 2\r\n",
                &[],
                Err(ProtoError::ArgCount { op: "PUB" }),
            ),
            (b"PUB \r\n", &[], Err(ProtoError::ArgCount { op: "PUB" })),
            (
                b"PUB foo abc\r\n",
                &[],
                Err(ProtoError::BadSize { op: "PUB" }),
            ),
            (
                b"PUB foo -1\r\n",
                &[],
                Err(ProtoError::BadSize { op: "PUB" }),
            ),
            (
                b"PUB foo +1\r\n",
                &[],
                Err(ProtoError::BadSize { op: "PUB" }),
            ),
            (
                b"PUB foo 0000000001\r\n",
                &[],
                Err(ProtoError::BadSize { op: "PUB" }),
            ),
            (
                b"PUB foo 99999999999999999999999\r\n",
                &[],
                Err(ProtoError::BadSize { op: "PUB" }),
            ),
            // nats-server: a CR inside the line drops the byte before LF, leaving "5\r".
            (
                b"PUB foo 5\rx\nhello\r\n",
                &[],
                Err(ProtoError::BadSize { op: "PUB" }),
            ),
            (b"HPUB foo 5 3\r\n", &[], Err(ProtoError::HeaderSize)),
            (
                b"HPUB foo 3\r\n",
                &[],
                Err(ProtoError::ArgCount { op: "HPUB" }),
            ),
            (
                b"HPUB foo a b c d\r\n",
                &[],
                Err(ProtoError::ArgCount { op: "HPUB" }),
            ),
            (
                b"HPUB foo x 3\r\n",
                &[],
                Err(ProtoError::BadSize { op: "HPUB" }),
            ),
            (
                b"HPUB foo 1 x\r\n",
                &[],
                Err(ProtoError::BadSize { op: "HPUB" }),
            ),
            (b"PUB\r\n", &[], UNKNOWN),
            (b"PUBX foo 2\r\nhi\r\n", &[], UNKNOWN),
            (b"PUB foo 1\r\nx\r\nBAD\r\n", &["PUB foo p=x"], UNKNOWN),
        ],
    );
}

#[test]
fn server_sub_unsub() {
    run(
        Side::Server,
        &[
            (b"SUB foo 1\r\n", &["SUB foo sid=1"], DONE),
            (b"SUB foo q 1\r\n", &["SUB foo q=q sid=1"], DONE),
            (b"sub\tfoo\t\tq\t1 \t\r\n", &["SUB foo q=q sid=1"], DONE),
            (b"SUB foo 1\n", &["SUB foo sid=1"], DONE),
            (b"SUB x abc\r\n", &["SUB x sid=abc"], DONE),
            (b"SUB foo.* >\r\n", &["SUB foo.* sid=>"], DONE),
            // nats-server: the byte after the skipped blanks starts the argument even if
            // it is a line end; SUB then splits arguments at CR and LF too.
            (b"SUB \nfoo 1\n", &["SUB foo sid=1"], DONE),
            (b"SUB foo 1\r2\n", &["SUB foo sid=1"], DONE),
            (b"SUB foo\r\n", &[], Err(ProtoError::ArgCount { op: "SUB" })),
            (
                b"SUB foo bar baz 1\r\n",
                &[],
                Err(ProtoError::ArgCount { op: "SUB" }),
            ),
            (b"SUB  1\r\n", &[], Err(ProtoError::ArgCount { op: "SUB" })),
            (b"SUB \r\n", &[], Err(ProtoError::ArgCount { op: "SUB" })),
            (b"SUB\r\n", &[], UNKNOWN),
            (b"SUBS foo 1\r\n", &[], UNKNOWN),
            (b"UNSUB 1\r\n", &["UNSUB 1"], DONE),
            (b"UNSUB 1 5\r\n", &["UNSUB 1 max=5"], DONE),
            (b"unsub 1 0\r\n", &["UNSUB 1 max=0"], DONE),
            (b"UNSUB\t1\t5 \r\n", &["UNSUB 1 max=5"], DONE),
            (b"UNSUB 1 x\r\n", &["UNSUB 1"], DONE),
            (b"UNSUB 1 -1\r\n", &["UNSUB 1"], DONE),
            (b"UNSUB 1 0000000001\r\n", &["UNSUB 1"], DONE),
            (b"UNSUB abc\n", &["UNSUB abc"], DONE),
            (
                b"UNSUB 1 2 3\r\n",
                &[],
                Err(ProtoError::ArgCount { op: "UNSUB" }),
            ),
            (
                b"UNSUB \r\n",
                &[],
                Err(ProtoError::ArgCount { op: "UNSUB" }),
            ),
            (b"UNSUB\r\n", &[], UNKNOWN),
            (b"UNSUB1\r\n", &[], UNKNOWN),
        ],
    );
}

#[test]
fn server_ping_pong_ok_connect_info() {
    run(
        Side::Server,
        &[
            (b"PING\r\n", &["PING"], DONE),
            (b"ping\r\n", &["PING"], DONE),
            (b"PiNg\r\n", &["PING"], DONE),
            (b"PING\n", &["PING"], DONE),
            (b"PING \r\n", &["PING"], DONE),
            // nats-server: anything up to the LF after PING, PONG or +OK is ignored.
            (b"PINGxyz\n", &["PING"], DONE),
            (b"PONG\r\n", &["PONG"], DONE),
            (b"pong\n", &["PONG"], DONE),
            (b"+OK\r\n", &["+OK"], DONE),
            (b"+ok\r\n", &["+OK"], DONE),
            (b"+OK garbage\r\n", &["+OK"], DONE),
            (b"PING\r\nPONG\r\nPING\r\n", &["PING", "PONG", "PING"], DONE),
            (b"PING\r", &[], Ok(5)),
            (b"CONNECT {}\r\n", &["CONNECT {}"], DONE),
            (b"CONNECT{}\r\n", &["CONNECT {}"], DONE),
            (
                b"connect \t {\"verbose\":false} \r\n",
                &["CONNECT {\"verbose\":false}"],
                DONE,
            ),
            // No JSON: the op is returned and Connect::parse refuses it (silent close).
            (b"CONNECT\r\n", &["CONNECT "], DONE),
            (b"CONNECT\n{}\n", &["CONNECT {}"], DONE),
            (b"CONNECTX {}\r\n", &["CONNECT X {}"], DONE),
            (b"INFO {}\r\n", &["INFO {}"], DONE),
            (b"INFO{}\r\n", &["INFO {}"], DONE),
            (b"info {\"port\":1} \r\n", &["INFO {\"port\":1}"], DONE),
            (b"INFO null\r\n", &["INFO null"], DONE),
            (b"INFO garbage\r\n", &[], Err(ProtoError::BadInfo)),
            (b"INFO {\"port\":\"x\"}\r\n", &[], Err(ProtoError::BadInfo)),
            (b"-ERR 'x'\r\n", &[], Err(ProtoError::ClientErr)),
            (b"-ERR foo\r\n", &[], Err(ProtoError::ClientErr)),
            (b"-ERR\r\n", &[], UNKNOWN),
            (b"PIN\r\n", &[], UNKNOWN),
            (b"+O\r\n", &[], UNKNOWN),
            (b"P\r\n", &[], UNKNOWN),
        ],
    );
}

#[test]
fn server_unknown_ops() {
    run(
        Side::Server,
        &[
            (b"XYZ\r\n", &[], UNKNOWN),
            (b"\r\n", &[], UNKNOWN),
            (b"\n", &[], UNKNOWN),
            (b" PING\r\n", &[], UNKNOWN),
            (b"\tPING\r\n", &[], UNKNOWN),
            (b"MSG foo 1 2\r\nhi\r\n", &[], UNKNOWN),
            (b"HMSG foo 1 2 2\r\nhi\r\n", &[], UNKNOWN),
            (b"GET / HTTP/1.1\r\n", &[], UNKNOWN),
            (b"\x00", &[], UNKNOWN),
            (b"\xffPING", &[], UNKNOWN),
            // Detected on the op name, before any line end arrives.
            (b"PUX", &[], UNKNOWN),
            (b"PING\r\nXX", &["PING"], UNKNOWN),
        ],
    );
}

#[test]
fn client_side() {
    run(
        Side::Client,
        &[
            (
                b"INFO {\"server_id\":\"X\",\"max_payload\":1048576} \r\n",
                &["INFO {\"server_id\":\"X\",\"max_payload\":1048576}"],
                DONE,
            ),
            // The client side does not decode INFO: the load generator does.
            (b"INFO garbage\r\n", &["INFO garbage"], DONE),
            (
                b"MSG foo 1 5\r\nhello\r\n",
                &["MSG foo sid=1 p=hello"],
                DONE,
            ),
            (
                b"MSG foo 1 bar 5\r\nhello\r\n",
                &["MSG foo sid=1 r=bar p=hello"],
                DONE,
            ),
            (b"msg\tfoo\t1\t0\n\r\n", &["MSG foo sid=1 p="], DONE),
            (
                b"HMSG foo 1 12 14\r\nNATS/1.0\r\n\r\nhi\r\n",
                &["MSG foo sid=1 h=NATS/1.0\\r\\n\\r\\n p=hi"],
                DONE,
            ),
            (
                b"HMSG r 9 16 16\r\nNATS/1.0 503\r\n\r\n\r\n",
                &["MSG r sid=9 h=NATS/1.0 503\\r\\n\\r\\n p="],
                DONE,
            ),
            (
                b"HMSG foo 1 r 2 3\r\nabc\r\n",
                &["MSG foo sid=1 r=r h=ab p=c"],
                DONE,
            ),
            (b"PING\r\nPONG\r\n+OK\r\n", &["PING", "PONG", "+OK"], DONE),
            (
                b"-ERR 'Unknown Protocol Operation'\r\n",
                &["-ERR 'Unknown Protocol Operation'"],
                DONE,
            ),
            (
                b"MSG foo 5\r\n",
                &[],
                Err(ProtoError::ArgCount { op: "MSG" }),
            ),
            (
                b"MSG foo 1 a b 5\r\n",
                &[],
                Err(ProtoError::ArgCount { op: "MSG" }),
            ),
            (
                b"MSG foo 1 x\r\n",
                &[],
                Err(ProtoError::BadSize { op: "MSG" }),
            ),
            (b"MSG foo 1 1048577\r\n", &[], Err(ProtoError::MaxPayload)),
            (b"MSG foo 1 2\r\nhiX\n", &[], Err(ProtoError::PayloadEnd)),
            (b"HMSG foo 1 3 2\r\n", &[], Err(ProtoError::HeaderSize)),
            (
                b"HMSG foo 1 2\r\n",
                &[],
                Err(ProtoError::ArgCount { op: "HMSG" }),
            ),
            (b"PUB foo 1\r\nx\r\n", &[], UNKNOWN),
            (b"SUB foo 1\r\n", &[], UNKNOWN),
            (b"UNSUB 1\r\n", &[], UNKNOWN),
            (b"CONNECT {}\r\n", &[], UNKNOWN),
            (b"HPUB foo 1 1\r\nx\r\n", &[], UNKNOWN),
        ],
    );
}

/// CR, LF, tab and non-printable bytes are escaped in renderings; the rest is as is.
#[test]
fn render_spelling() {
    let (ops, _) = parse_whole(
        Side::Client,
        ParserLimits::default(),
        b"-ERR 'a b\tc\x01'\r\n",
    );
    assert_eq!(ops, ["-ERR 'a b\\tc\\x01'"]);
}

#[test]
fn control_line_cap() {
    let limits = ParserLimits::default();
    let cap = limits.max_control_line_bytes;
    // As nats-server: arguments of exactly `cap` bytes (after the op name and its blank) are
    // accepted, whatever the line ending; one more byte is not.
    for ending in [&b"\r\n"[..], b"\n"] {
        for (extra, want) in [(0usize, Ok(())), (1, Err(ProtoError::MaxControlLine))] {
            let mut line = b"SUB ".to_vec();
            line.resize(4 + cap - 2 + extra, b'a');
            line.extend_from_slice(b" 1");
            line.extend_from_slice(ending);
            let (ops, end) = assert_split_invariant(Side::Server, limits, &line);
            match want {
                Ok(()) => assert_eq!((ops.len(), end), (1, Ok(0))),
                Err(e) => assert_eq!((ops.len(), end), (0, Err(e))),
            }
        }
    }
    // An unterminated line is refused as soon as its arguments pass the cap (CR LF may
    // still follow `cap` bytes), so the bytes buffered stay bounded.
    for prefix in [&b"SUB "[..], b"PUB ", b"CONNECT ", b"UNSUB ", b"PUB\t\t"] {
        let mut line = prefix.to_vec();
        line.resize(prefix.len() + cap + 1, b'a');
        assert_eq!(
            parse_whole(Side::Server, limits, &line),
            (vec![], Ok(line.len()))
        );
        line.push(b'x');
        assert_eq!(
            parse_whole(Side::Server, limits, &line),
            (vec![], Err(ProtoError::MaxControlLine))
        );
        let (_, end) = proto_util::parse_chunked(Side::Server, limits, &line, &[1]);
        assert_eq!(end, Err(ProtoError::MaxControlLine));
        assert!(line.len() <= limits.max_buffered_bytes());
    }
    // Blanks before the arguments count against the cap too.
    let mut line = b"SUB".to_vec();
    line.resize(3 + cap + 1, b' ');
    assert_eq!(
        parse_whole(Side::Server, limits, &line),
        (vec![], Err(ProtoError::MaxControlLine))
    );
}

#[test]
fn payload_cap_on_control_line() {
    let limits = ParserLimits {
        max_control_line_bytes: 64,
        max_payload_bytes: 10,
    };
    let ok = assert_split_invariant(Side::Server, limits, b"PUB a 10\r\n0123456789\r\n");
    assert_eq!(ok, (vec!["PUB a p=0123456789".to_string()], Ok(0)));
    let err = assert_split_invariant(Side::Server, limits, b"PUB a 11\r\n");
    assert_eq!(err, (vec![], Err(ProtoError::MaxPayload)));
    let err = assert_split_invariant(Side::Server, limits, b"HPUB a 5 11\r\n");
    assert_eq!(err, (vec![], Err(ProtoError::MaxPayload)));
}

#[test]
fn err_texts() {
    assert_eq!(
        ProtoError::UnknownOp.err_text(),
        Some("'Unknown Protocol Operation'")
    );
    assert_eq!(
        ProtoError::PayloadEnd.err_text(),
        Some("'Unknown Protocol Operation'")
    );
    assert_eq!(
        ProtoError::MaxControlLine.err_text(),
        Some("'maximum control line exceeded'")
    );
    assert_eq!(
        ProtoError::MaxPayload.err_text(),
        Some("'Maximum Payload Violation'")
    );
    for silent in [
        ProtoError::ArgCount { op: "PUB" },
        ProtoError::BadSize { op: "PUB" },
        ProtoError::HeaderSize,
        ProtoError::HeadersNotSupported,
        ProtoError::ClientErr,
        ProtoError::BadConnect,
        ProtoError::BadInfo,
    ] {
        assert_eq!(silent.err_text(), None, "{silent:?}");
    }
}

/// Ops borrow from the buffer; a payload that arrives over many reads is reassembled
/// without the parser re-scanning the control line, and the result is the same.
#[test]
fn big_payload_in_pieces() {
    let mut input = b"PUB big 100000\r\n".to_vec();
    input.extend((0..100_000u32).map(|i| (i % 251) as u8));
    input.extend_from_slice(b"\r\nPING\r\n");
    let whole = parse_whole(Side::Server, ParserLimits::default(), &input);
    assert_eq!(whole.0.len(), 2);
    for chunk in [1usize, 7, 4096, 65536] {
        let got =
            proto_util::parse_chunked(Side::Server, ParserLimits::default(), &input, &[chunk]);
        assert_eq!(got, whole, "chunk {chunk}");
    }
}
