//! A stream's `republish`: every message it stores on a subject matching `src` is published
//! again on `dest`, with headers saying where it was stored, as nats-server 2.9 does.
//!
//! What nats-server 2.9.10 does, observed over raw protocol (the test
//! `a_stream_republishes_what_it_stores` in `engine/tests/jetstream.rs` passes against it):
//! - the copy goes out before the PubAck, as `HMSG <dest> …` with the published headers
//!   (without their `NATS/1.0` line) followed by `Nats-Stream`, `Nats-Subject`,
//!   `Nats-Sequence`, `Nats-Last-Sequence` (the subject's previous sequence, 0 if none) and,
//!   with `headers_only`, `Nats-Msg-Size` (the payload's length) and an empty payload;
//! - a message on a subject `src` does not match is not republished;
//! - `src` defaults to `>`; a `dest` that collides with one of the stream's subjects is
//!   refused as a cycle, an `src` that is not `>` nor a subset of one of them as not a
//!   subset, and a mapping `dest` cannot be made from `src` as not valid (all 500 / 10052).
//!
//! The mapping is nats-server's subject transform: `dest` is literal tokens, `$N` or
//! `{{wildcard(N)}}` for the token the N-th `*` of `src` matched, and a last `>` for what
//! `src`'s last `>` matched.

use serde::{Deserialize, Serialize};

use super::api::ApiError;
use super::stream::{is_subset, is_valid_subject, subjects_collide, StoredMsg};

/// The `republish` of a stream config.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RePublish {
    /// Which stored subjects are republished (`>` when empty).
    #[serde(default)]
    pub src: String,
    /// Where to: a subject, or a mapping of `src`'s wildcards.
    #[serde(default)]
    pub dest: String,
    /// Republish the headers only, with the payload's size.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub headers_only: bool,
}

/// A message to publish for a stored one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Republished {
    /// Its subject.
    pub subject: String,
    /// Its header block.
    pub headers: Vec<u8>,
    /// Its payload (empty with `headers_only`).
    pub payload: Vec<u8>,
}

/// One token of a `dest`.
enum Part<'a> {
    Literal(&'a str),
    /// The token the N-th `*` of `src` matched (from 1).
    Wildcard(usize),
    /// What `src`'s last `>` matched.
    Rest,
}

/// nats-server's checks of a `republish`, with `src` defaulted; `subjects` are the
/// stream's.
///
/// # Errors
/// `JSStreamInvalidConfigF` (500 / 10052) with nats-server's text.
pub fn validate(mut rp: RePublish, subjects: &[String]) -> Result<RePublish, ApiError> {
    if rp.src.is_empty() {
        rp.src = ">".to_owned();
    }
    if subjects.iter().any(|s| subjects_collide(&rp.dest, s)) {
        return Err(ApiError::invalid_config(
            "stream configuration for republish destination forms a cycle",
        ));
    }
    if rp.src != ">" && !subjects.iter().any(|s| is_subset(&rp.src, s)) {
        return Err(ApiError::invalid_config(
            "stream configuration for republish source is not valid subset of subjects",
        ));
    }
    if parse(&rp.src, &rp.dest).is_none() {
        return Err(ApiError::invalid_config(
            "stream configuration for republish not valid",
        ));
    }
    Ok(rp)
}

/// `dest`'s parts, if it is a mapping `src` can feed.
fn parse<'a>(src: &str, dest: &'a str) -> Option<Vec<Part<'a>>> {
    if !is_valid_subject(src) || !is_valid_subject(dest) {
        return None;
    }
    let stars = src.split('.').filter(|&t| t == "*").count();
    let src_rest = src == ">" || src.ends_with(".>");
    let tokens: Vec<&str> = dest.split('.').collect();
    let mut parts = Vec::with_capacity(tokens.len());
    for (i, token) in tokens.iter().enumerate() {
        let part = if *token == ">" {
            if !src_rest || i + 1 != tokens.len() {
                return None;
            }
            Part::Rest
        } else if *token == "*" {
            return None;
        } else if let Some(n) = wildcard_index(token) {
            if n == 0 || n > stars {
                return None;
            }
            Part::Wildcard(n)
        } else {
            Part::Literal(token)
        };
        parts.push(part);
    }
    Some(parts)
}

/// `N` of a `$N` or `{{wildcard(N)}}` token.
fn wildcard_index(token: &str) -> Option<usize> {
    let digits = token.strip_prefix('$').or_else(|| {
        token
            .strip_prefix("{{")?
            .strip_suffix("}}")?
            .trim()
            .strip_prefix("wildcard(")?
            .strip_suffix(')')
            .map(str::trim)
    })?;
    digits.parse().ok()
}

/// `subject` mapped by `src` → `dest`, if `src` matches it.
pub fn map(src: &str, dest: &str, subject: &str) -> Option<String> {
    let parts = parse(src, dest)?;
    let tokens: Vec<&str> = subject.split('.').collect();
    let mut stars = Vec::new();
    let mut rest = None;
    let pattern: Vec<&str> = src.split('.').collect();
    for (i, p) in pattern.iter().enumerate() {
        match *p {
            ">" => {
                if i >= tokens.len() {
                    return None;
                }
                rest = Some(tokens[i..].join("."));
                break;
            }
            "*" => stars.push(*tokens.get(i)?),
            literal => {
                if tokens.get(i) != Some(&literal) {
                    return None;
                }
            }
        }
        if i + 1 == pattern.len() && tokens.len() != pattern.len() {
            return None;
        }
    }
    let mut out = String::with_capacity(dest.len() + subject.len());
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        match part {
            Part::Literal(t) => out.push_str(t),
            Part::Wildcard(n) => out.push_str(stars.get(n - 1)?),
            Part::Rest => out.push_str(rest.as_deref()?),
        }
    }
    Some(out)
}

/// The copy of `msg`, stored by stream `stream` after `previous` on its subject (0: none),
/// that `rp` publishes, if its subject matches `rp.src`.
pub fn message(
    rp: &RePublish,
    stream: &str,
    msg: &StoredMsg,
    previous: u64,
) -> Option<Republished> {
    let subject = map(&rp.src, &rp.dest, &msg.subject)?;
    let mut headers = b"NATS/1.0\r\n".to_vec();
    if let Some(i) = msg.headers.windows(2).position(|w| w == b"\r\n") {
        // The published header lines, without their status line and the closing blank line.
        let lines = &msg.headers[i + 2..];
        headers.extend_from_slice(lines.strip_suffix(b"\r\n").unwrap_or(lines));
    }
    let mut line = |name: &str, value: &str| {
        headers.extend_from_slice(name.as_bytes());
        headers.extend_from_slice(b": ");
        headers.extend_from_slice(value.as_bytes());
        headers.extend_from_slice(b"\r\n");
    };
    line("Nats-Stream", stream);
    line("Nats-Subject", &msg.subject);
    line("Nats-Sequence", &msg.seq.to_string());
    line("Nats-Last-Sequence", &previous.to_string());
    if rp.headers_only {
        line("Nats-Msg-Size", &msg.payload.len().to_string());
    }
    headers.extend_from_slice(b"\r\n");
    let payload = if rp.headers_only {
        Vec::new()
    } else {
        msg.payload.clone()
    };
    Some(Republished {
        subject,
        headers,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn rp(src: &str, dest: &str) -> RePublish {
        RePublish {
            src: src.into(),
            dest: dest.into(),
            headers_only: false,
        }
    }

    #[test]
    fn mappings_as_nats_server_transforms() {
        assert_eq!(map(">", "bar.>", "foo.a").as_deref(), Some("bar.foo.a"));
        assert_eq!(
            map("w.*.*", "m.$2.$1", "w.one.two").as_deref(),
            Some("m.two.one")
        );
        assert_eq!(
            map("w.*.*", "m.{{wildcard(1)}}", "w.one.two").as_deref(),
            Some("m.one")
        );
        assert_eq!(map("g.x", "lit", "g.x").as_deref(), Some("lit"));
        assert_eq!(map("g.x", "lit", "g.y"), None);
        assert_eq!(map("a.>", "b.>", "a"), None);
        assert_eq!(map("a.*", "b.$1", "a.x.y"), None);
    }

    #[test]
    fn validation_as_nats_server() {
        let subjects = ["foo.>".to_owned()];
        assert_eq!(validate(rp("", "bar.>"), &subjects).unwrap().src, ">");
        let text = |r: Result<RePublish, ApiError>| r.unwrap_err().description.into_owned();
        assert_eq!(
            text(validate(rp(">", "foo.x"), &subjects)),
            "stream configuration for republish destination forms a cycle"
        );
        assert_eq!(
            text(validate(rp("e.>", "z.>"), &subjects)),
            "stream configuration for republish source is not valid subset of subjects"
        );
        for dest in ["", "z.*", "z.$1", "z.>.y"] {
            assert_eq!(
                text(validate(rp("foo.a", dest), &subjects)),
                "stream configuration for republish not valid",
                "{dest:?}"
            );
        }
    }

    #[test]
    fn the_copy_carries_the_headers_nats_server_adds() {
        let msg = StoredMsg {
            seq: 2,
            subject: Arc::from("foo.b"),
            headers: b"NATS/1.0\r\nNats-Msg-Id: x1\r\nA: b\r\n\r\n".to_vec(),
            payload: b"with headers".to_vec(),
            time: 0,
        };
        let copy = message(&rp(">", "bar.>"), "S1", &msg, 0).unwrap();
        assert_eq!(copy.subject, "bar.foo.b");
        assert_eq!(
            copy.headers,
            b"NATS/1.0\r\nNats-Msg-Id: x1\r\nA: b\r\nNats-Stream: S1\r\nNats-Subject: foo.b\r\nNats-Sequence: 2\r\nNats-Last-Sequence: 0\r\n\r\n"
        );
        assert_eq!(copy.payload, b"with headers");
        let only = RePublish {
            headers_only: true,
            ..rp(">", "q.>")
        };
        let copy = message(&only, "S1", &msg, 1).unwrap();
        assert!(copy.payload.is_empty());
        assert!(copy
            .headers
            .ends_with(b"Nats-Last-Sequence: 1\r\nNats-Msg-Size: 12\r\n\r\n"));
    }
}
