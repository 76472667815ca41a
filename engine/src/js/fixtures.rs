//! Replays the nats-server 2.9.10 transcripts in `testdata/` (written by
//! `scripts/js-capture.py`) through [`Streams`] and compares every answer.
//!
//! API answers are compared as bytes, after every non-zero timestamp on both sides is
//! replaced by a placeholder (nats-server stamps them with its clock); PubAcks are compared
//! as bytes, and so are direct gets' header blocks (with `Nats-Time-Stamp`'s value
//! replaced) and payloads. A step in [`DEVIATIONS`] is one where the engine answers
//! differently on purpose (see the module doc of [`crate::js`]); its own answer is checked
//! instead.
//!
//! - `capture.json` (the stream API, no limits) runs under the default [`JsLimits`]; its
//!   `$JS.API.INFO` answers say `-1` (unlimited) where the engine reports its bounds, so
//!   those are compared with the engine's limits put in.
//! - `capture-limits.json` runs under the limits the capture's server and account had.
//! - `capture-direct.json`: one step, a direct get on `$JS.API.DIRECT.GET.D.` (an invalid
//!   subject), got nats-server's no-responders status (`NATS/1.0 503`) from its router, not
//!   from JetStream; the engine's router refuses such a subject before JetStream, so the
//!   core must answer nothing there.
//! - `capture-server-limits.json` (server limits, no account limits) is not replayed: the
//!   engine's one account has the server's limits (see [`crate::js`]'s "Resource bounds").

use serde::Deserialize;

use super::{api, Answer, JsLimits, Streams};

#[derive(Deserialize)]
struct Step {
    subject: String,
    headers: Option<Vec<(String, String)>>,
    body: String,
    reply: Option<String>,
    /// The reply's header block, for the captures that record it.
    #[serde(default)]
    reply_headers: Option<String>,
}

/// Bytes two filtered purges removed (`PURGE.S {"filter":"s.c"}`: 90, `PURGE.LO
/// {"filter":"lo.*","keep":1}`: 92) that nats-server 2.9.10 never subtracts from the
/// account's `storage` in `$JS.API.INFO` (each stream's own `state.bytes` is right, and
/// matched). The engine reports the sum of its streams' bytes, so the last account info of
/// the transcript, the only one after those purges, is compared with them subtracted.
const UNSUBTRACTED_PURGE_BYTES: u64 = 90 + 92;

/// (subject, body, the engine's answer) for the steps it answers differently.
const DEVIATIONS: &[(&str, &str, &str)] = &[(
    "$JS.API.STREAM.UPDATE.B",
    r#"{"name": "B", "subjects": ["b"], "num_replicas": 3}"#,
    r#"{"type":"io.nats.jetstream.api.v1.stream_update_response","error":{"code":500,"err_code":10074,"description":"replicas \u003e 1 not supported in non-clustered mode"}}"#,
)];

#[test]
fn capture_is_reproduced() {
    replay(
        include_str!("testdata/capture.json"),
        Streams::new(),
        UNSUBTRACTED_PURGE_BYTES,
    );
}

#[test]
fn limits_capture_is_reproduced() {
    let limits = JsLimits {
        max_memory: 10 * 1024,
        max_storage: 10 * 1024,
        max_streams: 3,
    };
    replay(
        include_str!("testdata/capture-limits.json"),
        Streams::with_limits(limits),
        0,
    );
}

#[test]
fn direct_capture_is_reproduced() {
    replay(
        include_str!("testdata/capture-direct.json"),
        Streams::new(),
        0,
    );
}

/// Replays `fixture` through `streams`; `unsubtracted` is what nats-server left in the
/// account's last reported `storage` after filtered purges.
fn replay(fixture: &str, mut streams: Streams, unsubtracted: u64) {
    let steps: Vec<Step> = serde_json::from_str(fixture).expect("fixture parses");
    let unlimited =
        String::from_utf8(api::to_go_json(&api::AccountLimits::UNLIMITED)).expect("JSON is UTF-8");
    let ours_limits =
        String::from_utf8(api::to_go_json(&streams.account_limits())).expect("JSON is UTF-8");
    let mut out = Vec::new();
    let mut now = 1_796_190_352_000_000_000i64;
    // Deviation steps nats-server answered with success and the engine with an error.
    let mut extra_errors = 0;
    for (i, step) in steps.iter().enumerate() {
        now += 1_000_123;
        let headers = step.headers.as_ref().map(|h| {
            let mut block = b"NATS/1.0\r\n".to_vec();
            for (k, v) in h {
                block.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
            }
            block.extend_from_slice(b"\r\n");
            block
        });
        let headers = headers.as_deref().unwrap_or_default();
        let ours = if step.subject.starts_with("$JS.API") {
            match streams.handle_request(&step.subject, step.body.as_bytes(), now, &mut out) {
                Some(Answer::Msg { headers, payload }) => {
                    let context = format!("step {i}: {} {}", step.subject, step.body);
                    let headers = String::from_utf8(headers).expect("headers are UTF-8");
                    let want = step.reply_headers.as_deref().map(normalise_headers);
                    assert_eq!(Some(normalise_headers(&headers)), want, "{context}");
                    Some(payload)
                }
                Some(Answer::Json(json)) => Some(json),
                None => None,
            }
        } else {
            match streams.capture(&step.subject).map(str::to_owned) {
                Some(name) => streams.publish(
                    &name,
                    &step.subject,
                    headers,
                    step.body.as_bytes(),
                    now,
                    &mut out,
                ),
                None => None,
            }
        };
        let ours = ours.map(|b| String::from_utf8(b).expect("answers are UTF-8"));
        let context = format!("step {i}: {} {}", step.subject, step.body);
        if let Some(&(_, _, answer)) = DEVIATIONS
            .iter()
            .find(|(s, b, _)| *s == step.subject && *b == step.body)
        {
            assert_eq!(ours.as_deref(), Some(answer), "{context}");
            extra_errors += 1;
            continue;
        }
        let no_responders = step
            .reply_headers
            .as_deref()
            .is_some_and(|h| h.starts_with("NATS/1.0 503"));
        if no_responders {
            assert_eq!(ours, None, "{context}");
            continue;
        }
        let expected = step.reply.as_deref().filter(|r| !r.is_empty());
        let status_only = step.reply_headers.is_some() && expected.is_none();
        match (expected, ours.as_deref()) {
            (None, None) => {}
            (None, Some("")) if status_only => {}
            (Some(want), Some(got)) => {
                let mut want = normalise(want);
                if want.contains("account_info_response") {
                    want = want.replace(&unlimited, &ours_limits);
                    want = adjust(&want, "\"errors\":", |n| n + extra_errors);
                    if i + 1 == steps.len() {
                        want = adjust(&want, "\"storage\":", |n| n - unsubtracted);
                    }
                }
                assert_eq!(normalise(got), want, "{context}");
            }
            (want, got) => panic!("{context}: nats-server {want:?}, engine {got:?}"),
        }
    }
    assert!(!out.is_empty());
}

/// Replaces every JSON string that is a non-zero RFC 3339 time by `"<time>"`.
fn normalise(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut rest = json;
    while let Some(start) = rest.find('"') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find('"') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let text = &after[..end];
        let b = text.as_bytes();
        let is_time = b.len() >= 20
            && b[4] == b'-'
            && b[10] == b'T'
            && text.ends_with('Z')
            && text
                .chars()
                .all(|c| c.is_ascii_digit() || "-T:.Z".contains(c));
        if is_time && text != "0001-01-01T00:00:00Z" {
            out.push_str("\"<time>\"");
        } else {
            out.push('"');
            out.push_str(text);
            out.push('"');
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Replaces the value of `Nats-Time-Stamp` by `<time>`.
fn normalise_headers(block: &str) -> String {
    let key = "Nats-Time-Stamp: ";
    let Some(at) = block.find(key) else {
        return block.to_owned();
    };
    let start = at + key.len();
    let end = block[start..]
        .find("\r\n")
        .map_or(block.len(), |n| start + n);
    format!("{}<time>{}", &block[..start], &block[end..])
}

/// Changes the number after the first `key` in `json`.
fn adjust(json: &str, key: &str, f: impl Fn(u64) -> u64) -> String {
    let Some(at) = json.find(key) else {
        return json.to_owned();
    };
    let digits_start = at + key.len();
    let digits: String = json[digits_start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let n: u64 = digits.parse().unwrap_or(0);
    format!(
        "{}{}{}",
        &json[..digits_start],
        f(n),
        &json[digits_start + digits.len()..]
    )
}
