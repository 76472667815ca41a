//! Every captured nats-server 2.9.10 transcript in `testdata/`, replayed against
//! [`Consumer`] over a [`MemSource`]: status frames byte for byte, deliveries by subject,
//! ack subject (its time token normalised), headers and payload, API answers as JSON values
//! with times normalised.

use std::sync::Arc;

use serde_json::Value;

use super::api::{self, ApiError, ConsumerConfig, ResponseType};
use super::testdata::{self, Record};
use super::{Consumer, Effect, MemSource, Retention, StreamCtx};
use crate::subject::Pattern;

/// A stream as the tests need it: its messages and its configuration.
pub(crate) struct Stream {
    pub name: String,
    pub subjects: Vec<Pattern>,
    pub retention: Retention,
    pub src: MemSource,
}

impl Stream {
    pub fn new(name: &str, subjects: &[&str], retention: Retention) -> Stream {
        Stream {
            name: name.into(),
            subjects: subjects
                .iter()
                .map(|s| Pattern::parse(s.as_bytes()).unwrap())
                .collect(),
            retention,
            src: MemSource::new(),
        }
    }

    /// A stream `name` on `<subject's first token>.>` holding `n` messages of `size` bytes
    /// of `x` on `subject`.
    pub fn filled(name: &str, subject: &str, n: u64, size: usize) -> Stream {
        let token = subject.split('.').next().unwrap_or(subject);
        let mut s = Stream::new(name, &[&format!("{token}.>")], Retention::Limits);
        let big = vec![b'x'; size];
        for i in 0..n {
            s.push(subject, b"", &big, T0 + i);
        }
        s
    }

    pub fn ctx(&self) -> StreamCtx<'_> {
        StreamCtx {
            name: &self.name,
            subjects: &self.subjects,
            retention: self.retention,
        }
    }

    /// Stores a message at `now` (Unix ns, 19 digits like the captures' times, so ack
    /// subjects have the captured lengths).
    pub fn push(&mut self, subject: &str, headers: &[u8], payload: &[u8], now: u64) -> u64 {
        self.src
            .push(subject.as_bytes(), headers, payload, now as i64)
    }

    pub fn create(&self, cfg: Value, name: &str, now: u64) -> Result<Consumer, ApiError> {
        let cfg: ConsumerConfig = serde_json::from_value(cfg).unwrap();
        Consumer::create(&self.ctx(), cfg, name, now, &self.src)
    }
}

/// A time like the captures' (2026-12-02).
pub(crate) const T0: u64 = 1_796_191_220_000_000_000;
pub(crate) const MS: u64 = 1_000_000;

/// A frame as a transcript records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    pub subject: String,
    pub reply: Option<String>,
    pub headers: String,
    pub body: String,
}

/// The frames a list of effects puts on the wire, in order.
pub(crate) fn frames(out: &[Effect]) -> Vec<Frame> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    out.iter()
        .filter_map(|e| match e {
            Effect::Deliver(d) => Some(Frame {
                subject: text(&d.subject),
                reply: Some(norm(&text(&d.ack))),
                headers: text(&d.headers),
                body: text(&d.payload),
            }),
            Effect::Status { to, reply, headers } => Some(Frame {
                subject: text(to),
                reply: reply.as_deref().map(|r| norm(&text(r))),
                headers: text(headers),
                body: String::new(),
            }),
            Effect::Confirm { to } => Some(Frame {
                subject: text(to),
                reply: None,
                headers: String::new(),
                body: String::new(),
            }),
            _ => None,
        })
        .collect()
}

/// The consumer frames of a transcript: everything received except API answers and
/// publish acknowledgements (JSON bodies).
fn fixture_frames(text: &str) -> Vec<Frame> {
    testdata::parse(text)
        .into_iter()
        .filter_map(|r| match r {
            Record::Got {
                subject,
                reply,
                headers,
                body,
            } if !body.starts_with(b"{") => Some(Frame {
                subject,
                reply: reply.map(|r| norm(&r)),
                headers: String::from_utf8(headers).unwrap(),
                body: String::from_utf8(body).unwrap(),
            }),
            _ => None,
        })
        .collect()
}

/// The API answers of a transcript, in order, by request subject.
fn fixture_answers(text: &str) -> Vec<(String, Vec<u8>, Value)> {
    let records = testdata::parse(text);
    let mut out = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let Record::Sent {
            subject,
            reply: Some(reply),
            body,
        } = r
        else {
            continue;
        };
        if !subject.starts_with("$JS.API.CONSUMER.") || subject.contains(".MSG.NEXT.") {
            continue;
        }
        let answer = records.iter().skip(i + 1).find_map(|g| match g {
            Record::Got { subject, body, .. } if subject == reply => Some(body.clone()),
            _ => None,
        });
        let answer = answer.expect("every API request was answered");
        out.push((
            subject.clone(),
            body.clone(),
            normalise(serde_json::from_slice(&answer).unwrap()),
        ));
    }
    out
}

/// Ack subjects with their time token replaced; flow-control subjects with their id.
fn norm(subject: &str) -> String {
    let mut t: Vec<&str> = subject.split('.').collect();
    if subject.starts_with("$JS.ACK.") && t.len() == 9 {
        t[7] = "TS";
    }
    if subject.starts_with("$JS.FC.") && t.len() == 5 {
        t[4] = "ID";
    }
    t.join(".")
}

/// JSON with every time replaced by `"T"`.
fn normalise(mut v: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    if k == "created" || k == "last_active" {
                        *x = Value::from("T");
                    } else {
                        walk(x);
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut v);
    v
}

fn json<T: serde::Serialize>(kind: ResponseType, r: Result<&T, &ApiError>) -> Value {
    normalise(serde_json::from_slice(&api::response(kind, r)).unwrap())
}

fn info(c: &Consumer, s: &Stream, kind: ResponseType) -> Value {
    json(kind, Ok(&c.info(&s.src)))
}

/// A consumer over its stream, the effects so far and the time.
pub(crate) struct H {
    pub s: Stream,
    pub c: Consumer,
    pub out: Vec<Effect>,
    pub now: u64,
}

impl H {
    /// A consumer created at [`T0`] with `cfg` (JSON), named `EPH` if ephemeral.
    pub fn new(s: Stream, cfg: Value) -> H {
        let c = s.create(cfg, "EPH", T0).unwrap();
        H {
            s,
            c,
            out: Vec::new(),
            now: T0,
        }
    }

    /// A pull request from `_INBOX.pull`.
    pub fn next(&mut self, body: &str) {
        let (s, out) = (&self.s.src, &mut self.out);
        self.c
            .handle_next(b"_INBOX.pull", body.as_bytes(), self.now, s, out);
    }

    /// A message on an ack subject.
    pub fn ack(&mut self, subject: &[u8], reply: Option<&[u8]>, body: &[u8]) {
        let (s, out) = (&self.s.src, &mut self.out);
        self.c.handle_ack(subject, reply, body, self.now, s, out);
    }

    /// `ms` milliseconds pass.
    pub fn tick(&mut self, ms: u64) {
        self.now += ms * MS;
        self.c.handle_timeout(self.now, &self.s.src, &mut self.out);
    }

    /// Time passes until the consumer's next timeout.
    pub fn until_due(&mut self) {
        self.now = self.c.poll_timeout().expect("a timeout is due");
        self.c.handle_timeout(self.now, &self.s.src, &mut self.out);
    }

    /// The ack subjects delivered so far, in order.
    pub fn acks(&self) -> Vec<Vec<u8>> {
        self.out
            .iter()
            .filter_map(|e| match e {
                Effect::Deliver(d) => Some(d.ack.clone()),
                _ => None,
            })
            .collect()
    }
}

/// The effects give the transcript's consumer frames (its pull requests went to `inbox`,
/// these tests' to `_INBOX.pull`), and the consumer's info is its last INFO answer.
fn assert_transcript(h: &H, fixture: &str, inbox: &str) {
    let mut want = fixture_frames(fixture);
    for f in &mut want {
        f.subject = f.subject.replace(inbox, "_INBOX.pull");
    }
    assert_eq!(frames(&h.out), want);
    let answers = fixture_answers(fixture);
    let last = answers.last().map(|a| a.2.clone());
    assert_eq!(Some(info(&h.c, &h.s, ResponseType::Info)), last);
}

const NO_WAIT_1: &str = r#"{"batch": 1, "no_wait": true}"#;

#[test]
fn api_transcript() {
    let answers = fixture_answers(testdata::API);
    let mut s = Stream::new("CAPI", &["capi.>"], Retention::Limits);
    for (i, subject) in ["capi.a", "capi.b", "capi.a"].iter().enumerate() {
        s.push(subject, b"", format!("m{i}").as_bytes(), T0 + i as u64);
    }
    let create = |s: &Stream, i: usize, name: &str| -> Result<Consumer, ApiError> {
        let (subject, body, _) = &answers[i];
        let (_, req) = api::check_create(subject.as_bytes(), body)
            .unwrap()
            .unwrap();
        Consumer::create(&s.ctx(), req.config, name, T0, &s.src)
    };
    let mut d1 = create(&s, 0, "").unwrap();
    assert_eq!(info(&d1, &s, ResponseType::Create), answers[0].2);
    let (_, body, want) = &answers[1];
    let again: api::CreateRequest = serde_json::from_slice(body).unwrap();
    d1.update(&s.ctx(), again.config).unwrap();
    assert_eq!(info(&d1, &s, ResponseType::Create), *want);
    let (_, body, want) = &answers[2];
    let changed: api::CreateRequest = serde_json::from_slice(body).unwrap();
    let e = d1.update(&s.ctx(), changed.config).unwrap_err();
    assert_eq!(json::<()>(ResponseType::Create, Err(&e)), *want);
    let generated = answers[3].2["name"].as_str().unwrap().to_owned();
    let eph = create(&s, 3, &generated).unwrap();
    let mut want = answers[3].2.clone();
    // Created without a subscriber on its deliver subject, so it is not bound here.
    assert!(want.get("push_bound").is_none());
    assert_eq!(info(&eph, &s, ResponseType::Create), want);
    let d2 = create(&s, 4, "").unwrap();
    assert_eq!(info(&d2, &s, ResponseType::Create), answers[4].2);
    assert_eq!(info(&d1, &s, ResponseType::Info), answers[5].2);
    let e = ApiError::new(api::CONSUMER_NOT_FOUND);
    assert_eq!(json::<()>(ResponseType::Info, Err(&e)), answers[6].2);
    let mut all = [&d1, &d2, &eph];
    all.sort_by(|a, b| a.name().cmp(b.name()));
    let names: Vec<String> = all.iter().map(|c| c.name().to_owned()).collect();
    for i in [7, 8] {
        let offset = api::parse_page_request(&answers[i].1).unwrap().offset;
        let (total, consumers) = api::page(&names, offset, crate::limits::JS_API_NAMES_LIMIT);
        let page = api::NamesPage {
            total,
            offset,
            limit: crate::limits::JS_API_NAMES_LIMIT,
            consumers,
        };
        assert_eq!(json(ResponseType::Names, Ok(&page)), answers[i].2);
    }
    let infos: Vec<_> = all.iter().map(|c| c.info(&s.src)).collect();
    let offset = api::parse_page_request(&answers[9].1).unwrap().offset;
    let (total, consumers) = api::page(&infos, offset, crate::limits::JS_API_LIST_LIMIT);
    let page = api::ListPage {
        total,
        offset,
        limit: crate::limits::JS_API_LIST_LIMIT,
        consumers,
    };
    want = answers[9].2.clone();
    assert_eq!(json(ResponseType::List, Ok(&page)), want);
    let ok = api::Deleted { success: true };
    assert_eq!(json(ResponseType::Delete, Ok(&ok)), answers[10].2);
    assert_eq!(json::<()>(ResponseType::Delete, Err(&e)), answers[11].2);
}

#[test]
fn errors_transcript() {
    let answers = fixture_answers(testdata::ERRORS);
    let cerr = Stream::new("CERR", &["cerr.>"], Retention::Limits);
    let cwq = Stream::new("CWQ", &["cwq.>"], Retention::WorkQueue);
    assert_eq!(answers.len(), 31);
    for (subject, body, want) in &answers {
        let got = match api::check_create(subject.as_bytes(), body) {
            Err(e) => e,
            Ok(None) => panic!("{subject} ignored"),
            Ok(Some((parsed, req))) => {
                let stream = match parsed.stream.as_str() {
                    "CERR" => &cerr,
                    "CWQ" => &cwq,
                    _ => {
                        let e = ApiError::new(api::STREAM_NOT_FOUND);
                        assert_eq!(json::<()>(ResponseType::Create, Err(&e)), *want);
                        continue;
                    }
                };
                Consumer::create(&stream.ctx(), req.config, "EPH", T0, &stream.src)
                    .expect_err(subject)
            }
        };
        let got = json::<()>(ResponseType::Create, Err(&got));
        assert_eq!(got, *want, "{subject} {}", String::from_utf8_lossy(body));
    }
}

#[test]
fn pull_transcript() {
    let s = Stream::new("CPULL", &["cpull.>"], Retention::Limits);
    let cfg = serde_json::json!({"durable_name": "P", "ack_policy": "explicit", "max_waiting": 2});
    let mut h = H::new(s, cfg);
    h.next(NO_WAIT_1);
    h.next(r#"{"batch": 2, "expires": 200000000}"#);
    assert_eq!(h.c.poll_timeout(), Some(h.now + 200 * MS));
    h.tick(200);
    let now = h.now;
    h.s.push("cpull.a", b"NATS/1.0\r\nX-Key: v1\r\n\r\n", b"one", now);
    h.s.push("cpull.b", b"", b"two", now + 1);
    h.s.push("cpull.a", b"", b"three", now + 2);
    h.c.handle_stored(now, &h.s.src, &mut h.out);
    h.next("2");
    h.next(r#"{"batch": 5, "no_wait": true}"#);
    h.next(r#"{"batch": 1, "max_bytes": 10}"#);
    for _ in 0..3 {
        h.next(r#"{"batch": 1, "expires": 500000000}"#);
    }
    h.tick(500);
    h.next(r#"{"batch": 1, "expires": 5000000000}"#);
    h.c.handle_delete(&mut h.out);
    assert_eq!(frames(&h.out), fixture_frames(testdata::PULL));
}

#[test]
fn pull_max_bytes_and_heartbeat_transcript() {
    let mut s = Stream::new("CPULL", &["cpull.>"], Retention::Limits);
    s.push("cpull.a", b"NATS/1.0\r\nX-Key: v1\r\n\r\n", b"one", T0);
    s.push("cpull.b", b"", b"two", T0 + 1);
    s.push("cpull.a", b"", b"three", T0 + 2);
    let mut h = H::new(
        s,
        serde_json::json!({"durable_name": "B", "ack_policy": "explicit"}),
    );
    h.next(r#"{"batch": 3, "max_bytes": 10}"#);
    h.next(r#"{"batch": 3, "max_bytes": 200}"#);
    h.next(r#"{"batch": 1, "expires": 100000000, "idle_heartbeat": 200000000}"#);
    h.next(r#"{"batch": 1, "expires": 500000000, "idle_heartbeat": 200000000}"#);
    h.until_due();
    h.until_due();
    assert_eq!(frames(&h.out), fixture_frames(testdata::PULL_MAX_BYTES));
    h.until_due();
    let last = frames(&h.out).pop().unwrap();
    assert!(
        last.headers.starts_with("NATS/1.0 408 Request Timeout\r\n"),
        "{last:?}"
    );
}

#[test]
fn acks_transcript() {
    let mut s = Stream::new("CACK", &["cack.>"], Retention::Limits);
    for i in 1..=6 {
        s.push("cack.x", b"", format!("m{i}").as_bytes(), T0 + i);
    }
    let cfg = serde_json::json!({"durable_name": "A", "ack_policy": "explicit",
        "ack_wait": 1_000_000_000, "max_deliver": 2});
    let mut h = H::new(s, cfg);
    h.next("5");
    let acks = h.acks();
    let confirm_to = testdata::parse(testdata::ACKS)
        .into_iter()
        .find_map(|r| match r {
            Record::Sent { subject, reply, .. } if subject.starts_with("$JS.ACK.") => reply,
            _ => None,
        })
        .unwrap();
    h.ack(&acks[0], None, b"+ACK");
    h.ack(&acks[1], Some(confirm_to.as_bytes()), b"+ACK");
    h.ack(&acks[2], None, b"-NAK");
    h.ack(&acks[3], None, b"+WPI");
    h.ack(&acks[4], None, b"+TERM");
    // The capture waited 5 s here for a frame that did not come (no request was waiting).
    h.tick(5_000);
    h.next(r#"{"batch": 1, "expires": 3000000000}"#);
    let answers = fixture_answers(testdata::ACKS);
    assert_eq!(info(&h.c, &h.s, ResponseType::Info), answers[0].2);
    h.next(r#"{"batch": 2, "expires": 2500000000}"#);
    h.tick(3_000);
    assert_transcript(&h, testdata::ACKS, "_INBOX.ack");
}

#[test]
fn nak_delay_and_next_transcript() {
    let mut s = Stream::new("CNAK", &["cnak.>"], Retention::Limits);
    for i in 1..=3 {
        s.push("cnak.x", b"", format!("m{i}").as_bytes(), T0 + i);
    }
    let mut h = H::new(
        s,
        serde_json::json!({"durable_name": "N", "ack_policy": "explicit"}),
    );
    h.next("1");
    let first = h.acks()[0].clone();
    h.ack(&first, None, br#"-NAK {"delay": 500000000}"#);
    h.next(r#"{"batch": 1, "expires": 2000000000}"#);
    h.next(r#"{"batch": 1, "expires": 2000000000}"#);
    let third = h.acks()[2].clone();
    h.ack(&third, Some(b"_INBOX.pull"), b"+NXT");
    assert_eq!(h.c.poll_timeout(), Some(h.now + 500 * MS));
    h.tick(500);
    assert_transcript(&h, testdata::NAK_DELAY_NEXT, "_INBOX.nak");
}

#[test]
fn ack_all_transcript() {
    let mut s = Stream::new("CALL", &["call.>"], Retention::Limits);
    for i in 1..=4 {
        s.push("call.x", b"", format!("m{i}").as_bytes(), T0 + i);
    }
    let cfg = serde_json::json!({"durable_name": "L", "ack_policy": "all", "max_ack_pending": 3});
    let mut h = H::new(s, cfg);
    h.next(r#"{"batch": 4, "expires": 300000000}"#);
    h.tick(300);
    let second = h.acks()[1].clone();
    h.ack(&second, None, b"+ACK");
    assert_transcript(&h, testdata::ACK_ALL, "_INBOX.all");
}

#[test]
fn deliver_policies_transcript() {
    let mut s = Stream::new("CPOL", &["cpol.>"], Retention::Limits);
    for (i, (subject, body)) in [
        ("cpol.a", "a1"),
        ("cpol.b", "b1"),
        ("cpol.a", "a2"),
        ("cpol.b", "b2"),
    ]
    .iter()
    .enumerate()
    {
        s.push(subject, b"", body.as_bytes(), T0 + i as u64 * 1000);
    }
    let answers = fixture_answers(testdata::POLICIES);
    let mut got = Vec::new();
    for (subject, body, want) in &answers {
        let (_, req) = api::check_create(subject.as_bytes(), body)
            .unwrap()
            .unwrap();
        let mut c = Consumer::create(&s.ctx(), req.config, "", T0 + 10_000, &s.src).unwrap();
        assert_eq!(info(&c, &s, ResponseType::Create), *want, "{subject}");
        let reply = format!("_INBOX.pol{}", c.name());
        let mut out = Vec::new();
        let body = br#"{"batch": 4, "no_wait": true}"#;
        c.handle_next(reply.as_bytes(), body, T0 + 10_000, &s.src, &mut out);
        got.extend(frames(&out));
    }
    assert_eq!(got, fixture_frames(testdata::POLICIES));
}

#[test]
fn push_heartbeat_transcript() {
    let mut s = Stream::new("CPUSH", &["cpush.>"], Retention::Limits);
    s.push("cpush.a", b"", b"p1", T0);
    let cfg = serde_json::json!({"durable_name": "H", "ack_policy": "explicit",
        "deliver_subject": "cap.deliver", "idle_heartbeat": 500_000_000, "flow_control": true});
    let mut c = s.create(cfg, "", T0).unwrap();
    let answers = fixture_answers(testdata::PUSH_HEARTBEAT);
    let mut out = Vec::new();
    c.handle_interest(true, T0, &s.src, &mut out);
    let mut want = answers[0].2.clone();
    // The capture's answer was made before the first delivery.
    let mut now_info = normalise(serde_json::to_value(c.info(&s.src)).unwrap());
    now_info["delivered"] = want["delivered"].clone();
    now_info["num_pending"] = want["num_pending"].clone();
    now_info["num_ack_pending"] = want["num_ack_pending"].clone();
    if let Some(m) = want.as_object_mut() {
        m.remove("type");
    }
    assert_eq!(now_info, want);
    let mut want = fixture_frames(testdata::PUSH_HEARTBEAT);
    for _ in 1..want.len() {
        let now = c.poll_timeout().unwrap();
        c.handle_timeout(now, &s.src, &mut out);
    }
    assert_eq!(want.remove(0).subject, "cpush.a");
    let mut got = frames(&out);
    assert_eq!(got.remove(0).subject, "cpush.a");
    assert_eq!(got, want);
    assert!(matches!(&out[1], Effect::Deliver(d) if *d.to == *b"cap.deliver"));
}

#[test]
fn push_flow_control_transcript() {
    let s = Stream::filled("CFC", "cfc.x", 20, 65536);
    let cfg = serde_json::json!({"ack_policy": "none", "deliver_subject": "cap.fc",
        "idle_heartbeat": 5_000_000_000i64, "flow_control": true});
    let answers = fixture_answers(testdata::PUSH_FLOW_CONTROL);
    let generated = answers[0].2["name"].as_str().unwrap().to_owned();
    let mut c = s.create(cfg, &generated, T0).unwrap();
    assert_eq!(
        answers[0].2["config"],
        serde_json::to_value(c.config()).unwrap()
    );
    let mut out = Vec::new();
    c.handle_interest(true, T0, &s.src, &mut out);
    let mut got = frames(&out);
    for f in &mut got {
        if f.body.len() == 65536 {
            f.body = "<65536 x>".into();
        }
    }
    assert_eq!(got, fixture_frames(testdata::PUSH_FLOW_CONTROL));
    let fc = match out.iter().find_map(|e| match e {
        Effect::Status { reply: Some(r), .. } => Some(r.clone()),
        _ => None,
    }) {
        Some(r) => r,
        None => panic!("no flow-control request"),
    };
    assert!(fc.starts_with(format!("$JS.FC.CFC.{generated}.").as_bytes()));
    let _ = Arc::<[u8]>::from(fc);
}

// Behaviour beyond the transcripts.

use super::consumer::parse_ack_subject;
use super::state::{State, StateChange};
use proptest::prelude::*;

fn stream_of(n: u64) -> Stream {
    let mut s = Stream::new("S", &["s.>"], Retention::Limits);
    for i in 1..=n {
        let subject = if i % 2 == 1 { "s.odd" } else { "s.even" };
        s.push(subject, b"", format!("m{i}").as_bytes(), T0 + i * MS);
    }
    s
}

/// The stream sequences delivered, in order.
fn delivered(out: &[Effect]) -> Vec<u64> {
    out.iter()
        .filter_map(|e| match e {
            Effect::Deliver(d) => Some(d.seq),
            _ => None,
        })
        .collect()
}

fn statuses(out: &[Effect]) -> Vec<String> {
    out.iter()
        .filter_map(|e| match e {
            Effect::Status { headers, .. } => Some(String::from_utf8_lossy(headers).into_owned()),
            _ => None,
        })
        .collect()
}

#[test]
fn max_ack_pending_stops_delivery_until_an_ack() {
    let cfg =
        serde_json::json!({"durable_name": "D", "ack_policy": "explicit", "max_ack_pending": 2});
    let mut h = H::new(stream_of(5), cfg);
    h.next(r#"{"batch": 5, "expires": 1000000000}"#);
    assert_eq!(delivered(&h.out), [1, 2]);
    let first = h.acks()[0].clone();
    h.ack(&first, None, b"+ACK");
    assert_eq!(delivered(&h.out), [1, 2, 3]);
    assert_eq!(h.c.info(&h.s.src).num_ack_pending, 2);
}

#[test]
fn redelivery_after_ack_wait_counts_deliveries_and_stops_at_max_deliver() {
    let cfg = serde_json::json!({"durable_name": "D", "ack_policy": "explicit",
        "ack_wait": 1_000_000_000, "max_deliver": 2});
    let mut h = H::new(stream_of(1), cfg);
    h.next(r#"{"batch": 10, "expires": 10000000000}"#);
    h.tick(1_000);
    let acks = h.acks();
    assert_eq!(acks.len(), 2);
    let second = parse_ack_subject(&acks[1]).unwrap();
    assert_eq!(
        (second.deliveries, second.stream_seq, second.consumer_seq),
        (2, 1, 2)
    );
    h.tick(1_000);
    assert_eq!(h.acks().len(), 2, "no third delivery");
    assert!(h.out.contains(&Effect::MaxDeliveries {
        stream_seq: 1,
        deliveries: 2
    }));
    assert!(h
        .out
        .contains(&Effect::Persist(StateChange::Dropped { sseq: 1 })));
    assert_eq!(h.c.info(&h.s.src).num_ack_pending, 0);
}

#[test]
fn backoff_sets_each_redelivery_wait() {
    let cfg = serde_json::json!({"durable_name": "D", "ack_policy": "explicit",
        "backoff": [100_000_000, 300_000_000], "max_deliver": 5});
    let mut h = H::new(stream_of(1), cfg);
    assert_eq!(h.c.config().ack_wait, 100_000_000);
    h.next(r#"{"batch": 10, "expires": 10000000000}"#);
    let mut times = Vec::new();
    while h.acks().len() < 4 {
        h.until_due();
        if times.len() < h.acks().len() - 1 {
            times.push((h.now - T0) / MS);
        }
    }
    assert_eq!(times, [100, 400, 700]);
}

#[test]
fn nak_plain_redelivers_at_once_and_wpi_restarts_the_wait() {
    let cfg = serde_json::json!({"durable_name": "D", "ack_policy": "explicit", "ack_wait": 1_000_000_000});
    let mut h = H::new(stream_of(2), cfg);
    h.next(r#"{"batch": 3, "expires": 5000000000}"#);
    let acks = h.acks();
    h.ack(&acks[0], None, b"-NAK");
    assert_eq!(delivered(&h.out), [1, 2, 1]);
    h.tick(600);
    h.ack(&acks[1], Some(b"_INBOX.wpi"), b"+WPI");
    assert!(h.out.contains(&Effect::Confirm {
        to: b"_INBOX.wpi".to_vec()
    }));
    assert_eq!(
        h.c.poll_timeout(),
        Some(h.now + 400 * MS),
        "the redelivered one is next"
    );
    h.tick(500);
    assert_eq!(
        h.c.poll_timeout(),
        Some(h.now + 500 * MS),
        "m2 waits a full ack_wait from +WPI (m1 is queued for redelivery)"
    );
}

#[test]
fn ack_none_moves_the_floor_and_keeps_nothing() {
    let mut s = stream_of(3);
    s.retention = Retention::Interest;
    let mut h = H::new(
        s,
        serde_json::json!({"durable_name": "D", "ack_policy": "none"}),
    );
    h.next("3");
    let info = h.c.info(&h.s.src);
    assert_eq!(
        (info.ack_floor.consumer_seq, info.ack_floor.stream_seq),
        (3, 3)
    );
    assert_eq!(info.num_ack_pending, 0);
    let removed: Vec<_> = h
        .out
        .iter()
        .filter(|e| matches!(e, Effect::Remove { .. }))
        .collect();
    assert_eq!(removed.len(), 3);
    assert_eq!(h.c.poll_timeout(), None);
}

#[test]
fn ack_all_acks_everything_below_and_tells_the_stream() {
    let mut s = stream_of(4);
    s.retention = Retention::WorkQueue;
    let cfg = serde_json::json!({"durable_name": "D", "ack_policy": "explicit"});
    let mut h = H::new(s, cfg);
    h.next("4");
    let acks = h.acks();
    h.ack(&acks[2], None, b"+TERM");
    h.ack(&acks[0], None, b"");
    let removed: Vec<u64> = h
        .out
        .iter()
        .filter_map(|e| match e {
            Effect::Remove { seq } => Some(*seq),
            _ => None,
        })
        .collect();
    assert_eq!(removed, [3, 1]);
    let info = h.c.info(&h.s.src);
    assert_eq!((info.ack_floor.stream_seq, info.num_ack_pending), (1, 2));

    let mut s = stream_of(4);
    s.retention = Retention::Interest;
    let mut h = H::new(
        s,
        serde_json::json!({"durable_name": "D", "ack_policy": "all"}),
    );
    h.next("4");
    let acks = h.acks();
    h.ack(&acks[2], None, b"+ACK");
    let removed = h
        .out
        .iter()
        .filter(|e| matches!(e, Effect::Remove { .. }))
        .count();
    assert_eq!(removed, 3);
    let info = h.c.info(&h.s.src);
    assert_eq!((info.ack_floor.stream_seq, info.num_ack_pending), (3, 1));
    h.ack(&acks[1], None, b"+ACK");
    assert_eq!(
        h.c.info(&h.s.src).ack_floor.stream_seq,
        3,
        "an older ack changes nothing"
    );
}

#[test]
fn deliver_policies_and_filters_choose_the_start() {
    let first = |cfg: Value| {
        let mut h = H::new(stream_of(6), cfg);
        h.next(r#"{"batch": 10, "no_wait": true}"#);
        delivered(&h.out)
    };
    let j = |v: Value| v;
    assert_eq!(
        first(j(serde_json::json!({"ack_policy": "none"}))),
        [1, 2, 3, 4, 5, 6]
    );
    let last = serde_json::json!({"ack_policy": "none", "deliver_policy": "last", "filter_subject": "s.odd"});
    assert_eq!(first(last), [5]);
    let new = serde_json::json!({"ack_policy": "none", "deliver_policy": "new"});
    assert_eq!(first(new), Vec::<u64>::new());
    let seq = serde_json::json!({"ack_policy": "none", "deliver_policy": "by_start_sequence", "opt_start_seq": 4});
    assert_eq!(first(seq), [4, 5, 6]);
    let at = super::time::rfc3339((T0 + 3 * MS) as i64);
    let time = serde_json::json!({"ack_policy": "none", "deliver_policy": "by_start_time", "opt_start_time": at});
    assert_eq!(first(time), [3, 4, 5, 6]);
    let lps = serde_json::json!({"ack_policy": "none", "deliver_policy": "last_per_subject", "filter_subject": "s.*"});
    assert_eq!(first(lps), [5, 6]);
    let filtered = serde_json::json!({"ack_policy": "none", "filter_subject": "s.even"});
    assert_eq!(first(filtered), [2, 4, 6]);
    let beyond = serde_json::json!({"ack_policy": "none", "deliver_policy": "by_start_sequence", "opt_start_seq": 99});
    let h = H::new(stream_of(6), beyond);
    assert_eq!(h.c.info(&h.s.src).delivered.stream_seq, 6);
}

#[test]
fn last_per_subject_then_new_messages() {
    let cfg = serde_json::json!({"ack_policy": "none", "deliver_policy": "last_per_subject", "filter_subject": "s.>"});
    let mut h = H::new(stream_of(4), cfg);
    h.next("1");
    assert!(
        h.acks()[0].ends_with(b".1"),
        "one subject left after the first"
    );
    h.next("1");
    let seq = h.s.push("s.new", b"", b"n", T0 + 10 * MS);
    h.next("1");
    assert_eq!(delivered(&h.out), [3, 4, seq]);
}

#[test]
fn pull_request_limits_and_errors() {
    let cfg = serde_json::json!({"durable_name": "D", "ack_policy": "explicit",
        "max_batch": 10, "max_expires": 1_000_000_000, "max_bytes": 1000});
    let mut h = H::new(stream_of(3), cfg);
    h.next(r#"{"batch": 11}"#);
    h.next(r#"{"batch": 1, "expires": 2000000000}"#);
    h.next(r#"{"batch": 1, "max_bytes": 2000}"#);
    h.next(r#"{"batch": "x"}"#);
    assert_eq!(
        statuses(&h.out),
        [
            "NATS/1.0 409 Exceeded MaxRequestBatch of 10\r\n\r\n",
            "NATS/1.0 409 Exceeded MaxRequestExpires of 1s\r\n\r\n",
            "NATS/1.0 409 Exceeded MaxRequestMaxBytes of 1000\r\n\r\n",
            "NATS/1.0 400 Bad Request - invalid type: string \"x\", expected i64 at line 1 column 13\r\n\r\n",
        ]
    );
    // Another request already wants every pending message: a no_wait one is refused.
    h.out.clear();
    let mut h2 = H::new(
        stream_of(3),
        serde_json::json!({"durable_name": "E", "ack_policy": "explicit", "max_ack_pending": 1}),
    );
    h2.next(r#"{"batch": 5, "expires": 1000000000}"#);
    h2.next(r#"{"batch": 1, "no_wait": true}"#);
    assert_eq!(statuses(&h2.out), ["NATS/1.0 408 Requests Pending\r\n\r\n"]);
    let push = serde_json::json!({"ack_policy": "explicit", "deliver_subject": "p.x"});
    let mut h3 = H::new(stream_of(1), push);
    h3.next("1");
    assert_eq!(
        statuses(&h3.out),
        ["NATS/1.0 409 Consumer is push based\r\n\r\n"]
    );
}

#[test]
fn headers_only_sends_the_size_instead_of_the_payload() {
    let mut s = Stream::new("S", &["s.>"], Retention::Limits);
    s.push("s.a", b"NATS/1.0\r\nA: b\r\n\r\n", b"12345", T0);
    s.push("s.b", b"", b"xy", T0);
    let cfg = serde_json::json!({"ack_policy": "none", "headers_only": true});
    let mut h = H::new(s, cfg);
    h.next("2");
    let got: Vec<(Vec<u8>, Vec<u8>)> = h
        .out
        .iter()
        .filter_map(|e| match e {
            Effect::Deliver(d) => Some((d.headers.clone(), d.payload.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(got[0].0, b"NATS/1.0\r\nA: b\r\nNats-Msg-Size: 5\r\n\r\n");
    assert_eq!(got[1].0, b"NATS/1.0\r\nNats-Msg-Size: 2\r\n\r\n");
    assert!(got.iter().all(|(_, p)| p.is_empty()));
}

#[test]
fn push_flow_control_stalls_until_answered() {
    let s = Stream::filled("S", "s.x", 40, 100_000);
    let cfg = serde_json::json!({"ack_policy": "none", "deliver_subject": "p.x", "deliver_group": "g",
        "idle_heartbeat": 1_000_000_000, "flow_control": true});
    let mut h = H::new(s, cfg);
    h.c.handle_interest(true, h.now, &h.s.src, &mut h.out);
    // A 2 MiB window: a request past 1 MiB, delivery stops past 2 MiB.
    assert_eq!(delivered(&h.out).len(), 21);
    assert!(matches!(&h.out[1], Effect::Deliver(d) if d.group.as_deref() == Some(&b"g"[..])));
    let fc = h
        .out
        .iter()
        .find_map(|e| match e {
            Effect::Status { reply: Some(r), .. } => Some(r.clone()),
            _ => None,
        })
        .unwrap();
    h.tick(1_000);
    let hb = statuses(&h.out).pop().unwrap();
    let stalled = format!(
        "Nats-Consumer-Stalled: {}\r\n\r\n",
        String::from_utf8_lossy(&fc)
    );
    assert!(
        hb.starts_with("NATS/1.0 100 Idle Heartbeat\r\n") && hb.ends_with(&stalled),
        "{hb}"
    );
    h.c.handle_flow_control(b"$JS.FC.S.EPH.nope", h.now, &h.s.src, &mut h.out);
    assert_eq!(
        delivered(&h.out).len(),
        21,
        "only the outstanding request's subject counts"
    );
    h.c.handle_flow_control(&fc, h.now, &h.s.src, &mut h.out);
    assert_eq!(delivered(&h.out).len(), 40);
    h.c.handle_interest(false, h.now, &h.s.src, &mut h.out);
    assert!(!h.c.info(&h.s.src).push_bound);
}

#[test]
fn push_waits_for_interest_and_a_new_deliver_subject_redelivers() {
    let cfg = serde_json::json!({"durable_name": "D", "ack_policy": "explicit", "deliver_subject": "p.x"});
    let mut h = H::new(stream_of(2), cfg.clone());
    h.c.handle_stored(h.now, &h.s.src, &mut h.out);
    assert!(delivered(&h.out).is_empty());
    h.c.handle_interest(true, h.now, &h.s.src, &mut h.out);
    assert_eq!(delivered(&h.out), [1, 2]);
    let mut moved = cfg;
    moved["deliver_subject"] = Value::from("p.y");
    let ctx_err =
        h.c.update(&h.s.ctx(), serde_json::from_value(moved.clone()).unwrap());
    assert_eq!(ctx_err.unwrap_err().err_code, 10013, "bound: name in use");
    h.c.handle_interest(false, h.now, &h.s.src, &mut h.out);
    h.c.update(&h.s.ctx(), serde_json::from_value(moved).unwrap())
        .unwrap();
    h.c.handle_interest(true, h.now, &h.s.src, &mut h.out);
    assert_eq!(delivered(&h.out), [1, 2, 1, 2]);
    assert!(matches!(h.out.last(), Some(Effect::Deliver(d)) if *d.to == *b"p.y"));
}

#[test]
fn removed_messages_are_dropped_from_pending() {
    let cfg = serde_json::json!({"durable_name": "D", "ack_policy": "explicit", "ack_wait": 1_000_000_000});
    let mut h = H::new(stream_of(2), cfg);
    h.next("2");
    h.s.src.delete(1);
    h.tick(1_000);
    assert!(h
        .out
        .contains(&Effect::Persist(StateChange::Dropped { sseq: 1 })));
    h.next("1");
    assert_eq!(delivered(&h.out), [1, 2, 2]);
}

#[test]
fn acks_to_foreign_or_malformed_subjects_change_nothing() {
    let cfg = serde_json::json!({"durable_name": "D", "ack_policy": "explicit"});
    let mut h = H::new(stream_of(2), cfg);
    h.next("2");
    let before = h.c.state().clone();
    for subject in [
        &b"$JS.ACK.S.D.1.1"[..],
        b"$JS.ACK.S.D.x.y.z.w.v",
        b"",
        b"$JS.ACK.S.D.1.99.99.0.0",
    ] {
        for body in [
            &b"+ACK"[..],
            b"-NAK",
            b"+TERM",
            b"+WPI",
            b"-NAK {",
            b"+NXT 5",
            b"junk",
        ] {
            h.ack(subject, Some(b"_INBOX.r"), body);
        }
    }
    assert_eq!(h.c.state().pending, before.pending);
}

proptest! {
    #[test]
    fn ack_subject_parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
        let _ = parse_ack_subject(&bytes);
        let mut with_prefix = b"$JS.ACK.".to_vec();
        with_prefix.extend_from_slice(&bytes);
        let _ = parse_ack_subject(&with_prefix);
    }

    #[test]
    fn ack_subjects_round_trip(d in any::<u64>(), s in any::<u64>(), c in any::<u64>(), t in any::<u64>(), p in any::<u64>()) {
        let subject = format!("$JS.ACK.ST.CO.{d}.{s}.{c}.{t}.{p}");
        let a = parse_ack_subject(subject.as_bytes()).unwrap();
        prop_assert_eq!((a.stream, a.consumer), (&b"ST"[..], &b"CO"[..]));
        prop_assert_eq!((a.deliveries, a.stream_seq, a.consumer_seq, a.time_ns, a.pending), (d, s, c, t, p));
    }

    /// Replaying the persisted records onto a snapshot rebuilds the live state exactly,
    /// from the start and from a snapshot taken midway; the caps hold throughout.
    #[test]
    fn replay_and_snapshot_rebuild_the_state(
        policy in 0..3usize,
        ops in proptest::collection::vec((0..6u8, any::<u16>()), 1..80),
        cut in any::<prop::sample::Index>(),
    ) {
        let ack_policy = ["explicit", "all", "none"][policy];
        let cfg = serde_json::json!({"durable_name": "D", "ack_policy": ack_policy,
            "ack_wait": 200_000_000, "max_deliver": 3, "max_ack_pending": 4, "max_waiting": 3});
        let mut h = H::new(stream_of(3), cfg);
        let mut snapshot = Vec::new();
        h.c.state().encode(&mut snapshot);
        let cut = cut.index(ops.len());
        let mut mid = None;
        for (i, (op, arg)) in ops.iter().enumerate() {
            if i == cut {
                let mut bytes = Vec::new();
                h.c.state().encode(&mut bytes);
                mid = Some((bytes, h.out.len()));
            }
            match op {
                0 => {
                    let now = h.now;
                    h.s.push("s.odd", b"", b"new", now as u64);
                    h.c.handle_stored(now, &h.s.src, &mut h.out);
                }
                1 => h.next(&format!(r#"{{"batch": {}, "expires": 500000000}}"#, arg % 4)),
                2 | 3 => {
                    let acks = h.acks();
                    if let Some(ack) = acks.get(usize::from(*arg) % acks.len().max(1)) {
                        let body = [&b"+ACK"[..], b"-NAK", b"+WPI", b"+TERM", b"+NXT", b"-NAK 1ms"]
                            [usize::from(*arg) % 6];
                        h.ack(&ack.clone(), Some(b"_INBOX.pull"), body);
                    }
                }
                4 => h.tick(u64::from(*arg % 400)),
                _ => {
                    h.s.src.delete(u64::from(*arg % 8) + 1);
                }
            }
            prop_assert!(h.c.state().pending.len() <= 4);
            prop_assert!(h.c.info(&h.s.src).num_waiting <= 3);
        }
        let records: Vec<StateChange> = h
            .out
            .iter()
            .filter_map(|e| match e {
                Effect::Persist(c) => Some(*c),
                _ => None,
            })
            .collect();
        let rebuild = |snapshot: &[u8], records: &[StateChange]| {
            let mut c = Consumer::restore(&h.s.ctx(), "D", h.c.config().clone(), T0, State::decode(snapshot).unwrap()).unwrap();
            for r in records {
                let mut bytes = Vec::new();
                r.encode(&mut bytes);
                c.apply(&StateChange::decode(&bytes).unwrap());
            }
            c.state().clone()
        };
        prop_assert_eq!(&rebuild(&snapshot, &records), h.c.state());
        if let Some((bytes, at)) = mid {
            let before = h.out[..at].iter().filter(|e| matches!(e, Effect::Persist(_))).count();
            prop_assert_eq!(&rebuild(&bytes, &records[before..]), h.c.state());
        }
        for d in h.acks() {
            prop_assert!(parse_ack_subject(&d).unwrap().deliveries <= 3);
        }
    }
}

#[test]
fn one_operation_delivers_a_bounded_slice_and_the_rest_is_due_at_once() {
    let cap = crate::limits::JS_MAX_DELIVERIES_PER_OP;
    let n = cap as u64 * 2 + 10;
    let mut h = H::new(stream_of(n), serde_json::json!({"ack_policy": "none"}));
    h.next(&format!(r#"{{"batch": {n}, "expires": 60000000000}}"#));
    assert_eq!(delivered(&h.out).len(), cap);
    assert_eq!(h.c.poll_timeout(), Some(h.now));
    h.until_due();
    h.until_due();
    assert_eq!(delivered(&h.out), (1..=n).collect::<Vec<_>>());
    assert_eq!(
        h.c.poll_timeout(),
        None,
        "the filled request is gone, nothing is due"
    );

    let s = Stream::filled("S", "s.x", 10, 1024 * 1024);
    let cfg = serde_json::json!({"ack_policy": "none", "deliver_subject": "p.x"});
    let mut h = H::new(s, cfg);
    h.c.handle_interest(true, h.now, &h.s.src, &mut h.out);
    assert_eq!(delivered(&h.out).len(), 4, "4 MiB per operation");
}

#[test]
fn updates_allowed_and_refused_as_nats_server() {
    let cfg =
        serde_json::json!({"durable_name": "D", "ack_policy": "none", "filter_subject": "s.odd"});
    let mut h = H::new(stream_of(4), cfg);
    h.next("1");
    let ctx = h.s.ctx();
    let update = |v: Value| serde_json::from_value::<ConsumerConfig>(v).unwrap();
    let even = update(
        serde_json::json!({"durable_name": "D", "ack_policy": "none", "filter_subject": "s.even"}),
    );
    h.c.update(&ctx, even).unwrap();
    let refused = [
        (
            serde_json::json!({"durable_name": "D", "ack_policy": "none", "deliver_policy": "new"}),
            "deliver policy can not be updated",
        ),
        (
            serde_json::json!({"durable_name": "D", "ack_policy": "none", "max_waiting": 9}),
            "max waiting can not be updated",
        ),
        (
            serde_json::json!({"durable_name": "D", "ack_policy": "none", "deliver_subject": "p.x"}),
            "max waiting can not be updated",
        ),
    ];
    for (cfg, why) in refused {
        let e = h.c.update(&ctx, update(cfg)).unwrap_err();
        assert_eq!((e.err_code, e.description.as_str()), (10012, why));
    }
    h.next("5");
    assert_eq!(delivered(&h.out), [1, 2, 4]);
}

#[test]
fn a_waiting_request_nobody_listens_for_is_dropped_and_gets_nothing() {
    let cfg = serde_json::json!({"durable_name": "D", "ack_policy": "explicit"});
    let mut h = H::new(stream_of(0), cfg);
    h.next(r#"{"batch": 1, "expires": 5000000000}"#);
    assert!(h.c.has_waiting());
    h.c.drop_unwanted_requests(|reply| reply != b"_INBOX.pull");
    assert!(!h.c.has_waiting());
    let now = h.now;
    h.s.push("s.odd", b"", b"late", now);
    h.c.handle_stored(now, &h.s.src, &mut h.out);
    assert_eq!(delivered(&h.out), Vec::<u64>::new());
    assert_eq!(h.c.info(&h.s.src).num_pending, 1);
}
