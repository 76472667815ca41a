//! Replays the nats-server 2.9.10 transcript in `testdata/capture.json` (written by
//! `scripts/js-capture.py`) through [`Streams`] and compares every answer.
//!
//! API answers are compared as bytes, after every non-zero timestamp on both sides is
//! replaced by a placeholder (nats-server stamps them with its clock); PubAcks are compared
//! as bytes. A step in [`DEVIATIONS`] is one where the engine answers differently on
//! purpose (see the module doc of [`crate::js`]); its own answer is checked instead.

use serde::Deserialize;

use super::Streams;

#[derive(Deserialize)]
struct Step {
    subject: String,
    headers: Option<Vec<(String, String)>>,
    body: String,
    reply: Option<String>,
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
    let steps: Vec<Step> =
        serde_json::from_str(include_str!("testdata/capture.json")).expect("fixture parses");
    let mut streams = Streams::new();
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
            streams.handle(&step.subject, step.body.as_bytes(), now, &mut out)
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
        let expected = step.reply.as_deref().filter(|r| !r.is_empty());
        match (expected, ours.as_deref()) {
            (None, None) => {}
            (Some(want), Some(got)) => {
                let mut want = normalise(want);
                if want.contains("account_info_response") {
                    want = adjust(&want, "\"errors\":", |n| n + extra_errors);
                    if i + 1 == steps.len() {
                        want = adjust(&want, "\"storage\":", |n| n - UNSUBTRACTED_PURGE_BYTES);
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
