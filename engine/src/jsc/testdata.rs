//! The captured nats-server 2.9.10 transcripts (`testdata/*.txt`, made by
//! `scripts/jsc-capture.py`) and a reader for their format.

/// `api.txt`: create, info, names, list, delete.
pub(crate) const API: &str = include_str!("testdata/api.txt");
/// `errors.txt`: refused creates.
pub(crate) const ERRORS: &str = include_str!("testdata/errors.txt");
/// `pull.txt`: 404, 408, batches, no_wait, max_waiting, consumer deleted.
pub(crate) const PULL: &str = include_str!("testdata/pull.txt");
/// `pull_max_bytes.txt`: max_bytes and pull heartbeats.
pub(crate) const PULL_MAX_BYTES: &str = include_str!("testdata/pull_max_bytes.txt");
/// `acks.txt`: +ACK, ack as a request, -NAK, +WPI, +TERM, ack_wait, max_deliver.
pub(crate) const ACKS: &str = include_str!("testdata/acks.txt");
/// `nak_delay_next.txt`: -NAK with a delay and +NXT.
pub(crate) const NAK_DELAY_NEXT: &str = include_str!("testdata/nak_delay_next.txt");
/// `ack_all.txt`: ack policy all with max_ack_pending.
pub(crate) const ACK_ALL: &str = include_str!("testdata/ack_all.txt");
/// `policies.txt`: every deliver policy and a filter.
pub(crate) const POLICIES: &str = include_str!("testdata/policies.txt");
/// `push_heartbeat.txt`: push delivery and idle heartbeats.
pub(crate) const PUSH_HEARTBEAT: &str = include_str!("testdata/push_heartbeat.txt");
/// `push_flow_control.txt`: push flow control.
pub(crate) const PUSH_FLOW_CONTROL: &str = include_str!("testdata/push_flow_control.txt");

/// One line group of a transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    /// `>>> subject reply body`: what the capture script published.
    Sent {
        subject: String,
        reply: Option<String>,
        body: Vec<u8>,
    },
    /// `<<< subject reply` / `HDR` / `BODY` / `===`: a MSG or HMSG received.
    Got {
        subject: String,
        reply: Option<String>,
        headers: Vec<u8>,
        body: Vec<u8>,
    },
}

/// Reads a transcript (see the capture script's docs for the format).
pub(crate) fn parse(text: &str) -> Vec<Record> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    let reply_of = |r: &str| (r != "-").then(|| r.to_owned());
    while let Some(line) = lines.next() {
        if let Some(rest) = line.strip_prefix(">>> ") {
            let mut parts = rest.splitn(3, ' ');
            let subject = parts.next().unwrap_or_default().to_owned();
            let reply = reply_of(parts.next().unwrap_or("-"));
            let body = parts.next().unwrap_or_default().as_bytes().to_vec();
            out.push(Record::Sent {
                subject,
                reply,
                body,
            });
        } else if let Some(rest) = line.strip_prefix("<<< ") {
            let (subject, reply) = rest.split_once(' ').unwrap_or((rest, "-"));
            let (mut headers, mut body) = (Vec::new(), Vec::new());
            for l in lines.by_ref() {
                if l == "===" {
                    break;
                }
                if let Some(h) = l.strip_prefix("HDR ") {
                    headers = h.replace("\\r\\n", "\r\n").into_bytes();
                } else if let Some(b) = l.strip_prefix("BODY ").or(l.strip_prefix("BODY")) {
                    body = b.as_bytes().to_vec();
                }
            }
            out.push(Record::Got {
                subject: subject.to_owned(),
                reply: reply_of(reply),
                headers,
                body,
            });
        }
    }
    out
}
