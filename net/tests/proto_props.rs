//! Property tests: encode then parse gives back the original ops, and the parse
//! result never depends on how the input is chunked (for encoded streams and for
//! protocol-flavoured byte soup alike).

mod proto_util;

use net::proto::{
    encode_connect, encode_err, encode_hmsg, encode_hpub, encode_info, encode_msg, encode_ok,
    encode_ping, encode_pong, encode_pub, encode_sub, encode_unsub, Connect, Info, Message, Op,
    ParserLimits, Publish, Side, Subscribe, Unsubscribe,
};
use proptest::prelude::*;
use proto_util::{parse_chunked, parse_whole, render};

/// What a client sends, owned.
#[derive(Debug, Clone)]
enum ClientOp {
    Pub {
        subject: String,
        reply: Option<String>,
        headers: Option<Vec<u8>>,
        payload: Vec<u8>,
    },
    Sub {
        subject: String,
        queue: Option<String>,
        sid: String,
    },
    Unsub {
        sid: String,
        max: Option<u64>,
    },
    Connect(Connect),
    Ping,
    Pong,
}

/// What a server sends, owned.
#[derive(Debug, Clone)]
enum ServerOp {
    Msg {
        subject: String,
        sid: String,
        reply: Option<String>,
        headers: Option<Vec<u8>>,
        payload: Vec<u8>,
    },
    Info(Info),
    Ping,
    Pong,
    Ok,
    Err(String),
}

fn subject() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_*>-]{1,8}(\\.[a-zA-Z0-9_*>-]{1,8}){0,3}"
}

fn token() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9]{1,10}"
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

fn text() -> impl Strategy<Value = Option<String>> {
    prop::option::of("[ -~]{0,12}")
}

fn connect() -> impl Strategy<Value = Connect> {
    (
        any::<[bool; 5]>(),
        text(),
        text(),
        text(),
        0u8..=1,
        text(),
        text(),
        text(),
    )
        .prop_map(
            |(b, name, lang, version, protocol, user, pass, auth_token)| Connect {
                verbose: b[0],
                pedantic: b[1],
                echo: b[2],
                headers: b[3] || b[4],
                no_responders: b[4],
                name,
                lang,
                version,
                protocol,
                user,
                pass,
                auth_token,
            },
        )
}

fn client_op() -> impl Strategy<Value = ClientOp> {
    prop_oneof![
        4 => (subject(), prop::option::of(subject()), prop::option::of(bytes(40)), bytes(80))
            .prop_map(|(subject, reply, headers, payload)| ClientOp::Pub { subject, reply, headers, payload }),
        2 => (subject(), prop::option::of(token()), token())
            .prop_map(|(subject, queue, sid)| ClientOp::Sub { subject, queue, sid }),
        1 => (token(), prop::option::of(0u64..=999_999_999))
            .prop_map(|(sid, max)| ClientOp::Unsub { sid, max }),
        1 => connect().prop_map(ClientOp::Connect),
        1 => Just(ClientOp::Ping),
        1 => Just(ClientOp::Pong),
    ]
}

fn server_op() -> impl Strategy<Value = ServerOp> {
    prop_oneof![
        4 => (subject(), token(), prop::option::of(subject()), prop::option::of(bytes(40)), bytes(80))
            .prop_map(|(subject, sid, reply, headers, payload)| ServerOp::Msg { subject, sid, reply, headers, payload }),
        1 => ("[ -~]{0,12}", any::<u16>(), any::<bool>(), 0usize..=64 << 20, any::<u64>(), any::<bool>())
            .prop_map(|(server_id, port, headers, max_payload, client_id, lame_duck_mode)| ServerOp::Info(Info {
                server_id, version: "2.9.10".into(), proto: 1, engine_version: "0.1.0".into(),
                host: "127.0.0.1".into(), port, headers, max_payload, client_id, lame_duck_mode,
                ..Info::default()
            })),
        1 => Just(ServerOp::Ping),
        1 => Just(ServerOp::Pong),
        1 => Just(ServerOp::Ok),
        1 => "'[ -&(-~]{1,30}'".prop_map(ServerOp::Err),
    ]
}

/// Encodes `op` and returns what the parser must render for it.
fn encode_client(out: &mut Vec<u8>, op: &ClientOp) -> String {
    let b = |s: &String| s.as_bytes().to_vec();
    match op {
        ClientOp::Pub {
            subject,
            reply,
            headers,
            payload,
        } => {
            let reply = reply.as_ref().map(b);
            match headers {
                Some(h) => encode_hpub(out, subject.as_bytes(), reply.as_deref(), h, payload),
                None => encode_pub(out, subject.as_bytes(), reply.as_deref(), payload),
            }
            render(&Op::Pub(Publish {
                subject: subject.as_bytes(),
                reply: reply.as_deref(),
                // nats-server delivers an empty header block as a plain MSG.
                headers: headers.as_deref().filter(|h| !h.is_empty()),
                payload,
            }))
        }
        ClientOp::Sub {
            subject,
            queue,
            sid,
        } => {
            let queue = queue.as_ref().map(b);
            encode_sub(out, subject.as_bytes(), queue.as_deref(), sid.as_bytes());
            render(&Op::Sub(Subscribe {
                subject: subject.as_bytes(),
                queue: queue.as_deref(),
                sid: sid.as_bytes(),
            }))
        }
        ClientOp::Unsub { sid, max } => {
            encode_unsub(out, sid.as_bytes(), *max);
            render(&Op::Unsub(Unsubscribe {
                sid: sid.as_bytes(),
                max: *max,
            }))
        }
        ClientOp::Connect(c) => {
            encode_connect(out, c);
            let json = serde_json::to_vec(c).unwrap_or_default();
            render(&Op::Connect(&json))
        }
        ClientOp::Ping => {
            encode_ping(out);
            "PING".into()
        }
        ClientOp::Pong => {
            encode_pong(out);
            "PONG".into()
        }
    }
}

/// Encodes `op` and returns what the parser must render for it.
fn encode_server(out: &mut Vec<u8>, op: &ServerOp) -> String {
    match op {
        ServerOp::Msg {
            subject,
            sid,
            reply,
            headers,
            payload,
        } => {
            let reply = reply.as_ref().map(|r| r.as_bytes());
            match headers {
                Some(h) => encode_hmsg(out, subject.as_bytes(), sid.as_bytes(), reply, h, payload),
                None => encode_msg(out, subject.as_bytes(), sid.as_bytes(), reply, payload),
            }
            render(&Op::Msg(Message {
                subject: subject.as_bytes(),
                sid: sid.as_bytes(),
                reply,
                headers: headers.as_deref(),
                payload,
            }))
        }
        ServerOp::Info(i) => {
            encode_info(out, i);
            let json = serde_json::to_vec(i).unwrap_or_default();
            render(&Op::Info(&json))
        }
        ServerOp::Ping => {
            encode_ping(out);
            "PING".into()
        }
        ServerOp::Pong => {
            encode_pong(out);
            "PONG".into()
        }
        ServerOp::Ok => {
            encode_ok(out);
            "+OK".into()
        }
        ServerOp::Err(t) => {
            encode_err(out, t);
            render(&Op::Err(t.as_bytes()))
        }
    }
}

/// Protocol-flavoured fragments, so random input reaches deep parser states.
fn soup() -> impl Strategy<Value = Vec<u8>> {
    const PIECES: &[&[u8]] = &[
        b"PUB ",
        b"HPUB ",
        b"SUB ",
        b"UNSUB ",
        b"PING",
        b"PONG",
        b"+OK",
        b"-ERR ",
        b"CONNECT ",
        b"INFO ",
        b"MSG ",
        b"HMSG ",
        b"pub ",
        b"foo",
        b"bar.baz",
        b" ",
        b"\t",
        b"  ",
        b"\r\n",
        b"\n",
        b"\r",
        b"0",
        b"1",
        b"2",
        b"5",
        b"12",
        b"999999999",
        b"-1",
        b"x",
        b"{}",
        b"{\"verbose\":false}",
        b"NATS/1.0\r\n\r\n",
        b"hello",
    ];
    prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(PIECES).prop_map(|p| p.to_vec()),
            1 => bytes(4),
        ],
        0..24,
    )
    .prop_map(|v| v.concat())
}

fn chunks() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..40, 1..8)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn client_ops_round_trip(ops in prop::collection::vec(client_op(), 1..12), ch in chunks()) {
        let mut wire = Vec::new();
        let want: Vec<String> = ops.iter().map(|op| encode_client(&mut wire, op)).collect();
        let limits = ParserLimits::default();
        prop_assert_eq!(parse_whole(Side::Server, limits, &wire), (want.clone(), Ok(0)));
        prop_assert_eq!(parse_chunked(Side::Server, limits, &wire, &ch), (want, Ok(0)));
    }

    #[test]
    fn server_ops_round_trip(ops in prop::collection::vec(server_op(), 1..12), ch in chunks()) {
        let mut wire = Vec::new();
        let want: Vec<String> = ops.iter().map(|op| encode_server(&mut wire, op)).collect();
        let limits = ParserLimits::default();
        prop_assert_eq!(parse_whole(Side::Client, limits, &wire), (want.clone(), Ok(0)));
        prop_assert_eq!(parse_chunked(Side::Client, limits, &wire, &ch), (want, Ok(0)));
    }

    #[test]
    fn connect_and_info_json_round_trip(c in connect(), s in server_op()) {
        prop_assert_eq!(Connect::parse(&serde_json::to_vec(&c).unwrap_or_default()), Ok(c));
        if let ServerOp::Info(i) = s {
            prop_assert_eq!(Info::parse(&serde_json::to_vec(&i).unwrap_or_default()), Ok(i));
        }
    }

    #[test]
    fn chunking_never_matters(input in soup(), ch in chunks(), client in any::<bool>(), small in any::<bool>()) {
        let side = if client { Side::Client } else { Side::Server };
        let limits = if small {
            ParserLimits { max_control_line_bytes: 40, max_payload_bytes: 8 }
        } else {
            ParserLimits::default()
        };
        let whole = parse_whole(side, limits, &input);
        prop_assert_eq!(parse_chunked(side, limits, &input, &ch), whole.clone());
        prop_assert_eq!(parse_chunked(side, limits, &input, &[1]), whole);
    }
}
