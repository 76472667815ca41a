//! The encoder: one function per frame, each appending it to a [`Put`] sink.
//!
//! No function allocates: integers are formatted by hand into a stack buffer, and a
//! frame's control line (and, when small, its whole body) is assembled in one stack
//! buffer and handed to the sink with a single `put`. The engine writes one `MSG` per
//! subscriber, so this is the fan-out hot path. Arguments are not validated: callers
//! pass subjects, sids and reply subjects that hold no whitespace.

use std::io;

use super::{Connect, Info};

/// A byte sink frames are appended to (a `Vec<u8>`, an outbound chunk queue, ...).
pub trait Put {
    /// Appends `bytes`.
    fn put(&mut self, bytes: &[u8]);

    /// Appends `parts` one after another. A sink that can check its room once for all of
    /// them (an outbound chunk) overrides this; the default puts them one by one.
    fn put_parts(&mut self, parts: &[&[u8]]) {
        for part in parts {
            self.put(part);
        }
    }
}

impl Put for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Appends `MSG <subject> <sid> [reply] <#bytes>\r\n<payload>\r\n`.
pub fn encode_msg<P: Put + ?Sized>(
    out: &mut P,
    subject: &[u8],
    sid: &[u8],
    reply: Option<&[u8]>,
    payload: &[u8],
) {
    let mut size = Digits::new();
    let (sp, reply) = opt_arg(reply);
    let line = [
        b"MSG ",
        subject,
        b" ",
        sid,
        sp,
        reply,
        b" ",
        size.of(payload.len()),
        CRLF,
    ];
    put_frame(out, &line, &[payload]);
}

/// Appends `HMSG <subject> <sid> [reply] <#hdr> <#total>\r\n<headers><payload>\r\n`.
pub fn encode_hmsg<P: Put + ?Sized>(
    out: &mut P,
    subject: &[u8],
    sid: &[u8],
    reply: Option<&[u8]>,
    headers: &[u8],
    payload: &[u8],
) {
    let (mut hdr, mut total) = (Digits::new(), Digits::new());
    let (sp, reply) = opt_arg(reply);
    let line = [
        b"HMSG ",
        subject,
        b" ",
        sid,
        sp,
        reply,
        b" ",
        hdr.of(headers.len()),
        b" ",
        total.of(headers.len() + payload.len()),
        CRLF,
    ];
    put_frame(out, &line, &[headers, payload]);
}

/// One `MSG`/`HMSG` prepared once for many subscribers: everything but the sid, which is
/// the only part that differs between their copies.
///
/// Assembling each subscriber's frame on the stack copies the whole frame twice (into the
/// stack buffer, then into the outbound); putting it part by part costs eleven small copies
/// (tried and reverted: results/criterion.md). A template costs one assembly per message and
/// then three copies per subscriber: the bytes before the sid, the sid, the bytes after it.
/// Frames longer than [`MsgTemplate::MAX_BYTES`] are not templated (the copy into the
/// template would then cost as much as it saves); callers encode those directly.
#[derive(Debug, Default)]
pub struct MsgTemplate {
    /// `MSG <subject> ` then ` [reply] <#bytes>\r\n<payload>\r\n` (or the HMSG variant).
    buf: Vec<u8>,
    /// Where the sid goes: the end of `MSG <subject> `.
    split: usize,
}

impl MsgTemplate {
    /// Largest frame (without its sid) a template holds, in bytes: 4 KiB covers the
    /// messages fan-out is dominated by, and bounds the template's own buffer.
    pub const MAX_BYTES: usize = 4096;

    /// Prepares the frame of one message: `MSG` when `headers` is `None`, else `HMSG`.
    /// Returns `false` (and holds nothing) when the frame is longer than [`Self::MAX_BYTES`].
    pub fn prepare(
        &mut self,
        subject: &[u8],
        reply: Option<&[u8]>,
        headers: Option<&[u8]>,
        payload: &[u8],
    ) -> bool {
        self.buf.clear();
        let (sp, reply) = opt_arg(reply);
        let (mut hdr, mut total) = (Digits::new(), Digits::new());
        let (op, sizes): (&[u8], [&[u8]; 3]) = match headers {
            Some(h) => (
                b"HMSG ",
                [hdr.of(h.len()), b" ", total.of(h.len() + payload.len())],
            ),
            None => (b"MSG ", [total.of(payload.len()), b"", b""]),
        };
        let parts: [&[u8]; 11] = [
            op,
            subject,
            b" ",
            sp,
            reply,
            b" ",
            sizes[0],
            sizes[1],
            sizes[2],
            CRLF,
            headers.unwrap_or_default(),
        ];
        let len = parts.iter().map(|p| p.len()).sum::<usize>() + payload.len() + CRLF.len();
        if len > Self::MAX_BYTES {
            return false;
        }
        for part in &parts[..3] {
            self.buf.extend_from_slice(part);
        }
        self.split = self.buf.len();
        for part in &parts[3..] {
            self.buf.extend_from_slice(part);
        }
        self.buf.extend_from_slice(payload);
        self.buf.extend_from_slice(CRLF);
        true
    }

    /// Appends the prepared frame with `sid` in its place.
    pub fn put<P: Put + ?Sized>(&self, out: &mut P, sid: &[u8]) {
        let (head, tail) = self.buf.split_at(self.split);
        out.put_parts(&[head, sid, tail]);
    }
}

/// Appends `PUB <subject> [reply] <#bytes>\r\n<payload>\r\n`.
pub fn encode_pub<P: Put + ?Sized>(
    out: &mut P,
    subject: &[u8],
    reply: Option<&[u8]>,
    payload: &[u8],
) {
    let mut size = Digits::new();
    let (sp, reply) = opt_arg(reply);
    let line = [
        b"PUB ",
        subject,
        sp,
        reply,
        b" ",
        size.of(payload.len()),
        CRLF,
    ];
    put_frame(out, &line, &[payload]);
}

/// Appends `HPUB <subject> [reply] <#hdr> <#total>\r\n<headers><payload>\r\n`.
pub fn encode_hpub<P: Put + ?Sized>(
    out: &mut P,
    subject: &[u8],
    reply: Option<&[u8]>,
    headers: &[u8],
    payload: &[u8],
) {
    let (mut hdr, mut total) = (Digits::new(), Digits::new());
    let (sp, reply) = opt_arg(reply);
    let line = [
        b"HPUB ",
        subject,
        sp,
        reply,
        b" ",
        hdr.of(headers.len()),
        b" ",
        total.of(headers.len() + payload.len()),
        CRLF,
    ];
    put_frame(out, &line, &[headers, payload]);
}

/// Appends `SUB <subject> [queue] <sid>\r\n`.
pub fn encode_sub<P: Put + ?Sized>(out: &mut P, subject: &[u8], queue: Option<&[u8]>, sid: &[u8]) {
    let (sp, queue) = opt_arg(queue);
    put_line(out, &[b"SUB ", subject, sp, queue, b" ", sid, CRLF]);
}

/// Appends `UNSUB <sid> [max]\r\n`.
pub fn encode_unsub<P: Put + ?Sized>(out: &mut P, sid: &[u8], max: Option<u64>) {
    let mut digits = Digits::new();
    let (sp, max): (&[u8], &[u8]) = match max {
        Some(m) => (b" ", digits.of_u64(m)),
        None => (b"", b""),
    };
    put_line(out, &[b"UNSUB ", sid, sp, max, CRLF]);
}

/// Appends `CONNECT {json}\r\n`.
pub fn encode_connect<P: Put + ?Sized>(out: &mut P, connect: &Connect) {
    out.put(b"CONNECT ");
    put_json(out, connect);
    out.put(CRLF);
}

/// Appends `INFO {json} \r\n`, with the space before CRLF that nats-server writes.
pub fn encode_info<P: Put + ?Sized>(out: &mut P, info: &Info) {
    out.put(b"INFO ");
    put_json(out, info);
    out.put(b" \r\n");
}

/// Appends `PING\r\n`.
pub fn encode_ping<P: Put + ?Sized>(out: &mut P) {
    out.put(b"PING\r\n");
}

/// Appends `PONG\r\n`.
pub fn encode_pong<P: Put + ?Sized>(out: &mut P) {
    out.put(b"PONG\r\n");
}

/// Appends `+OK\r\n`.
pub fn encode_ok<P: Put + ?Sized>(out: &mut P) {
    out.put(b"+OK\r\n");
}

/// Appends `-ERR <text>\r\n`; `text` carries its quotes, e.g. `'Invalid Subject'`
/// (see [`ProtoError::err_text`](super::ProtoError::err_text)).
pub fn encode_err<P: Put + ?Sized>(out: &mut P, text: &str) {
    put_line(out, &[b"-ERR ", text.as_bytes(), CRLF]);
}

/// Line end.
const CRLF: &[u8] = b"\r\n";

/// `(" ", arg)` for a present optional argument, `("", "")` for an absent one.
fn opt_arg(arg: Option<&[u8]>) -> (&'static [u8], &[u8]) {
    match arg {
        Some(a) => (b" ", a),
        None => (b"", b""),
    }
}

/// Puts the control line `line`, the `body` pieces and a CRLF: once if everything fits
/// the stack buffer, else the line once and the body pieces as they are.
fn put_frame<P: Put + ?Sized>(out: &mut P, line: &[&[u8]], body: &[&[u8]]) {
    let line_len: usize = line.iter().map(|p| p.len()).sum();
    let body_len: usize = body.iter().map(|p| p.len()).sum();
    if line_len + body_len + CRLF.len() <= STACK_BYTES {
        let mut buf = [0u8; STACK_BYTES];
        let n = concat(&mut buf, line, 0);
        let n = concat(&mut buf, body, n);
        let n = concat(&mut buf, &[CRLF], n);
        out.put(&buf[..n]);
    } else {
        put_line(out, line);
        for piece in body.iter().filter(|p| !p.is_empty()) {
            out.put(piece);
        }
        out.put(CRLF);
    }
}

/// Puts `parts` with one `put` when they fit the stack buffer, piece by piece otherwise.
fn put_line<P: Put + ?Sized>(out: &mut P, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    if len <= STACK_BYTES {
        let mut buf = [0u8; STACK_BYTES];
        let n = concat(&mut buf, parts, 0);
        out.put(&buf[..n]);
    } else {
        for part in parts.iter().filter(|p| !p.is_empty()) {
            out.put(part);
        }
    }
}

/// Copies `parts` into `buf` from `at`; the caller checked that they fit.
fn concat(buf: &mut [u8; STACK_BYTES], parts: &[&[u8]], mut at: usize) -> usize {
    for p in parts {
        buf[at..at + p.len()].copy_from_slice(p);
        at += p.len();
    }
    at
}

/// Serializes `value` straight into the sink, without an intermediate `String`.
fn put_json<P: Put + ?Sized, T: serde::Serialize>(out: &mut P, value: &T) {
    // The sink never fails and CONNECT/INFO hold only strings, integers and bools,
    // so serialization cannot fail; there is nothing to report if it somehow did.
    let _ = serde_json::to_writer(Sink(out), value);
}

/// `io::Write` over a [`Put`].
struct Sink<'p, P: Put + ?Sized>(&'p mut P);

impl<P: Put + ?Sized> io::Write for Sink<'_, P> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.put(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Decimal formatting of an integer into a stack buffer.
struct Digits([u8; 20]);

impl Digits {
    fn new() -> Self {
        Self([0; 20])
    }

    fn of(&mut self, n: usize) -> &[u8] {
        self.of_u64(n as u64)
    }

    fn of_u64(&mut self, mut n: u64) -> &[u8] {
        let mut i = self.0.len();
        loop {
            i -= 1;
            self.0[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        &self.0[i..]
    }
}

/// Frames up to this size are assembled on the stack and put once. Covers the control
/// line of any realistic subject and whole frames with small payloads (the common case
/// in fan-out), while zeroing the buffer stays cheap.
const STACK_BYTES: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames() {
        let mut v = Vec::new();
        encode_msg(&mut v, b"foo", b"1", None, b"hi");
        encode_msg(&mut v, b"foo", b"1", Some(b"r"), b"");
        encode_hmsg(&mut v, b"foo", b"22", None, b"NATS/1.0\r\n\r\n", b"x");
        encode_pub(&mut v, b"a", Some(b"b"), b"abc");
        encode_hpub(&mut v, b"a", None, b"H", b"");
        encode_sub(&mut v, b"a", Some(b"q"), b"7");
        encode_sub(&mut v, b"a", None, b"7");
        encode_unsub(&mut v, b"7", Some(10));
        encode_unsub(&mut v, b"7", None);
        encode_ping(&mut v);
        encode_pong(&mut v);
        encode_ok(&mut v);
        encode_err(&mut v, "'Invalid Subject'");
        let want: &[u8] = b"MSG foo 1 2\r\nhi\r\nMSG foo 1 r 0\r\n\r\n\
            HMSG foo 22 12 13\r\nNATS/1.0\r\n\r\nx\r\nPUB a b 3\r\nabc\r\nHPUB a 1 1\r\nH\r\n\
            SUB a q 7\r\nSUB a 7\r\nUNSUB 7 10\r\nUNSUB 7\r\nPING\r\nPONG\r\n+OK\r\n\
            -ERR 'Invalid Subject'\r\n";
        assert_eq!(String::from_utf8_lossy(&v), String::from_utf8_lossy(want));
    }

    #[test]
    fn large_frames_match_small_path() {
        let subject = vec![b's'; 300];
        let payload = vec![b'p'; 1000];
        let mut v = Vec::new();
        encode_msg(&mut v, &subject, b"1", Some(b"r"), &payload);
        let mut want = b"MSG ".to_vec();
        want.extend_from_slice(&subject);
        want.extend_from_slice(b" 1 r 1000\r\n");
        want.extend_from_slice(&payload);
        want.extend_from_slice(b"\r\n");
        assert_eq!(v, want);
    }

    #[test]
    fn digits() {
        let mut d = Digits::new();
        assert_eq!(d.of_u64(0), b"0");
        assert_eq!(d.of_u64(u64::MAX), u64::MAX.to_string().as_bytes());
        assert_eq!(d.of(1_048_576), b"1048576");
    }

    #[test]
    fn info_has_space_before_crlf() {
        let mut v = Vec::new();
        encode_info(
            &mut v,
            &Info {
                max_payload: 1,
                ..Info::default()
            },
        );
        assert!(v.starts_with(b"INFO {\"server_id\":\"\""));
        assert!(v.ends_with(b"} \r\n"));
        v.clear();
        encode_connect(&mut v, &Connect::default());
        assert!(v.starts_with(b"CONNECT {\"verbose\":true"));
        assert!(v.ends_with(b"}\r\n"));
    }

    proptest::proptest! {
        /// A template puts exactly the bytes `encode_msg`/`encode_hmsg` would, or declines.
        #[test]
        fn template_matches_the_encoder(
            subject in "[a-z.]{1,40}",
            sid in "[0-9]{1,12}",
            reply in proptest::option::of("[a-z_.]{1,30}"),
            headers in proptest::option::of("NATS/1.0\r\n[a-z: ]{0,40}\r\n\r\n"),
            payload in proptest::collection::vec(proptest::num::u8::ANY, 0..5000),
        ) {
            let (reply, headers) = (reply.as_deref().map(str::as_bytes), headers.as_deref().map(str::as_bytes));
            let mut want = Vec::new();
            match headers {
                Some(h) => encode_hmsg(&mut want, subject.as_bytes(), sid.as_bytes(), reply, h, &payload),
                None => encode_msg(&mut want, subject.as_bytes(), sid.as_bytes(), reply, &payload),
            }
            let mut t = MsgTemplate::default();
            if t.prepare(subject.as_bytes(), reply, headers, &payload) {
                let mut got = Vec::new();
                t.put(&mut got, sid.as_bytes());
                t.put(&mut got, sid.as_bytes());
                proptest::prop_assert_eq!(&got[..want.len()], &want[..]);
                proptest::prop_assert_eq!(&got[want.len()..], &want[..]);
            } else {
                proptest::prop_assert!(want.len() - sid.len() > MsgTemplate::MAX_BYTES);
            }
        }
    }
}
