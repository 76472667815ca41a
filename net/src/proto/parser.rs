//! The resumable parser: recognises one op at the front of a buffer and cuts out its
//! argument line; the op's own file interprets the arguments.
//!
//! It follows nats-server 2.9's byte-level state machine (`server/parser.go`):
//!
//! - Op names are matched without regard to ASCII case, and a wrong byte is
//!   `'Unknown Protocol Operation'` as soon as it is seen, before any line end.
//! - Ops with arguments need one space or tab after the name (`CONNECT` and `INFO` do
//!   not); further spaces and tabs are skipped, and the next byte starts the argument
//!   whatever it is, even a CR or LF (so `SUB \nfoo 1\n` is `SUB foo 1`, as in
//!   nats-server).
//! - The line ends at the next LF. If a CR appeared in the argument after its first
//!   byte, the byte before that LF is dropped (nats-server's sticky `drop`), which
//!   removes the CR of an ordinary CRLF.
//! - `PING`, `PONG` and `+OK` ignore anything up to their LF.
//! - A payload is framed by its size and must be followed by exactly CRLF.
//!
//! The control-line cap ([`ParserLimits::max_control_line_bytes`]) applies, as in
//! nats-server, to the arguments: the bytes after the op name and its blanks, up to the
//! line end (the blanks may not exceed the cap either). A line is rejected as soon as the
//! buffered bytes prove it too long, whether it arrived in one read or many, so a frame
//! never needs more than [`ParserLimits::max_buffered_bytes`] buffered bytes.
//!
//! Between calls the parser remembers how far it scanned an incomplete control line,
//! and the parsed control line of a frame whose payload is incomplete, so bytes are not
//! scanned twice. It never keeps a slice of the caller's buffer, only offsets.

use super::args::Frame;
use super::info::Info;
use super::{message, publish, subscribe, unsubscribe};
use super::{Message, Op, ParserLimits, ProtoError, Publish, Side};

/// The protocol parser of one connection.
#[derive(Debug, Clone)]
pub struct Parser {
    side: Side,
    limits: ParserLimits,
    headers_allowed: bool,
    state: State,
}

impl Parser {
    /// A parser for `side` enforcing `limits` (a control-line cap below
    /// [`ParserLimits::MIN_CONTROL_LINE_BYTES`] is raised to it).
    ///
    /// `HPUB` is accepted until [`Parser::set_headers_allowed`] says otherwise.
    pub fn new(side: Side, limits: ParserLimits) -> Parser {
        let limits = ParserLimits {
            max_control_line_bytes: limits
                .max_control_line_bytes
                .max(ParserLimits::MIN_CONTROL_LINE_BYTES),
            ..limits
        };
        Parser {
            side,
            limits,
            headers_allowed: true,
            state: State::Idle,
        }
    }

    /// Which end of the connection this parser serves.
    pub fn side(&self) -> Side {
        self.side
    }

    /// The caps in force (after raising a too-small control-line cap).
    pub fn limits(&self) -> ParserLimits {
        self.limits
    }

    /// Whether `HPUB` is accepted. nats-server refuses it (closing silently with
    /// [`ProtoError::HeadersNotSupported`], decided on the control line before the
    /// payload cap) until the client's CONNECT says `"headers":true`, so a server should
    /// set this from each CONNECT and to `false` before the first.
    pub fn set_headers_allowed(&mut self, allowed: bool) {
        self.headers_allowed = allowed;
    }

    /// Forgets any partly parsed op, for a buffer that starts afresh.
    pub fn reset(&mut self) {
        self.state = State::Idle;
    }

    /// Parses one op at the front of `buf`.
    ///
    /// Returns `Ok(Some((op, consumed)))` for a complete op, where `consumed` counts
    /// its bytes (a payload's trailing CRLF included); `Ok(None)` when more bytes are
    /// needed, in which case call again with the same bytes plus more; or the error
    /// nats-server would close the connection for. After an error the parser starts
    /// afresh.
    pub fn parse<'a>(&mut self, buf: &'a [u8]) -> Result<Option<(Op<'a>, usize)>, ProtoError> {
        let r = self.parse_front(buf);
        if r.is_err() {
            self.state = State::Idle;
        }
        r
    }

    fn parse_front<'a>(&mut self, buf: &'a [u8]) -> Result<Option<(Op<'a>, usize)>, ProtoError> {
        let scan = match self.state {
            State::Payload { frame, body } if body <= buf.len() => {
                return self.finish_frame(buf, frame, body);
            }
            State::Line(scan) if scan.scanned <= buf.len() => scan,
            // Idle, or a caller that broke the contract with a shorter buffer: start over.
            _ => {
                self.state = State::Idle;
                match self.recognise(buf)? {
                    Some((verb, after)) => Scan {
                        verb,
                        arg_start: None,
                        scanned: after,
                    },
                    None => return Ok(None),
                }
            }
        };
        // As nats-server, the cap applies to the arguments (what follows the op name and its
        // blanks, up to the line end), and the blanks themselves may not exceed it either.
        let cap = self.limits.max_control_line_bytes;
        let verb = scan.verb;

        // Where the argument starts, and where to look for the LF that ends the line.
        let (arg_start, from) = if let Some(a) = scan.arg_start {
            (a, scan.scanned)
        } else if !verb.has_arg() {
            (scan.scanned, scan.scanned)
        } else {
            // The blanks are capped from where they start, just past the name and its
            // separator (not from where an earlier call stopped scanning them, or a line fed
            // a byte at a time could have any number of them).
            let blanks_cap = verb.name().len() + usize::from(verb.needs_separator()) + cap;
            let blanks_end = buf.len().min(blanks_cap);
            let mut p = scan.scanned;
            while p < blanks_end && matches!(buf[p], b' ' | b'\t') {
                p += 1;
            }
            if p >= blanks_end {
                return self.need_more(
                    buf,
                    blanks_cap,
                    Scan {
                        verb,
                        arg_start: None,
                        scanned: p,
                    },
                );
            }
            // The first byte of the argument is taken whatever it is (nats-server).
            (p, p + 1)
        };
        // The line may end in CR LF right after `cap` argument bytes.
        let line_cap = arg_start + cap + 2;
        let limit = buf.len().min(line_cap);
        let Some(nl) = find_byte(b'\n', &buf[from.min(limit)..limit]).map(|i| from.min(limit) + i)
        else {
            return self.need_more(
                buf,
                line_cap,
                Scan {
                    verb,
                    arg_start: Some(arg_start),
                    scanned: limit,
                },
            );
        };
        self.state = State::Idle;
        let line_len = nl + 1;

        let arg_end = if nl > arg_start + 1
            && (buf[nl - 1] == b'\r' || find_byte(b'\r', &buf[arg_start + 1..nl - 1]).is_some())
        {
            nl - 1
        } else {
            nl
        };
        if arg_end.saturating_sub(arg_start) > cap {
            return Err(ProtoError::MaxControlLine);
        }
        let arg = &buf[arg_start..arg_end];
        let max_payload = self.limits.max_payload_bytes;
        let op = match verb {
            Verb::Pub => {
                let frame = publish::parse_pub(arg, arg_start, max_payload)?;
                return self.finish_frame(buf, frame, line_len);
            }
            Verb::Hpub => {
                if !self.headers_allowed {
                    return Err(ProtoError::HeadersNotSupported);
                }
                let frame = publish::parse_hpub(arg, arg_start, max_payload)?;
                return self.finish_frame(buf, frame, line_len);
            }
            Verb::Msg => {
                let frame = message::parse_msg(arg, arg_start, max_payload)?;
                return self.finish_frame(buf, frame, line_len);
            }
            Verb::Hmsg => {
                let frame = message::parse_hmsg(arg, arg_start, max_payload)?;
                return self.finish_frame(buf, frame, line_len);
            }
            Verb::Sub => Op::Sub(subscribe::parse_sub(arg)?),
            Verb::Unsub => Op::Unsub(unsubscribe::parse_unsub(arg)?),
            Verb::Ping => Op::Ping,
            Verb::Pong => Op::Pong,
            Verb::Ok => Op::Ok,
            Verb::Connect => Op::Connect(super::args::trim_ws(arg)),
            Verb::Info => {
                let json = super::args::trim_ws(arg);
                if self.side == Side::Server {
                    // nats-server decodes a client's INFO, ignores it, and closes the
                    // connection if it is not valid.
                    Info::parse(json)?;
                }
                Op::Info(json)
            }
            Verb::Err => {
                if self.side == Side::Server {
                    return Err(ProtoError::ClientErr);
                }
                Op::Err(super::args::trim_ws(arg))
            }
        };
        Ok(Some((op, line_len)))
    }

    /// Recognises the op name at the front of `buf` and checks the byte after it.
    /// Returns the op and the offset just past the name (and its separator, if any).
    fn recognise(&self, buf: &[u8]) -> Result<Option<(Verb, usize)>, ProtoError> {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        let server = self.side == Side::Server;
        let verb = match first.to_ascii_uppercase() {
            b'P' => match buf.get(1).map(u8::to_ascii_uppercase) {
                None => return Ok(None),
                Some(b'U') if server => Verb::Pub,
                Some(b'I') => Verb::Ping,
                Some(b'O') => Verb::Pong,
                Some(_) => return Err(ProtoError::UnknownOp),
            },
            b'H' if server => Verb::Hpub,
            b'H' => Verb::Hmsg,
            b'S' if server => Verb::Sub,
            b'U' if server => Verb::Unsub,
            b'C' if server => Verb::Connect,
            b'M' if !server => Verb::Msg,
            b'I' => Verb::Info,
            b'+' => Verb::Ok,
            b'-' => Verb::Err,
            _ => return Err(ProtoError::UnknownOp),
        };
        let name = verb.name();
        let seen = buf.len().min(name.len());
        if !buf[..seen].eq_ignore_ascii_case(&name[..seen]) {
            return Err(ProtoError::UnknownOp);
        }
        if seen < name.len() {
            return Ok(None);
        }
        if !verb.needs_separator() {
            return Ok(Some((verb, name.len())));
        }
        match buf.get(name.len()) {
            None => Ok(None),
            Some(b' ' | b'\t') => Ok(Some((verb, name.len() + 1))),
            Some(_) => Err(ProtoError::UnknownOp),
        }
    }

    /// The control line is incomplete: fail if it is already too long, else remember
    /// how far it was scanned and ask for more.
    fn need_more<'a>(
        &mut self,
        buf: &[u8],
        max_len: usize,
        scan: Scan,
    ) -> Result<Option<(Op<'a>, usize)>, ProtoError> {
        // No LF among the first `max_len` bytes: the arguments (or the blanks before them)
        // are longer than the cap.
        if buf.len() >= max_len {
            return Err(ProtoError::MaxControlLine);
        }
        self.state = State::Line(scan);
        Ok(None)
    }

    /// The control line of a frame is parsed and its payload starts at `body`: return
    /// the frame if the payload and its CRLF are all in `buf`, else wait for them.
    fn finish_frame<'a>(
        &mut self,
        buf: &'a [u8],
        frame: Frame,
        body: usize,
    ) -> Result<Option<(Op<'a>, usize)>, ProtoError> {
        let end = body + frame.size;
        if buf.len() > end && buf[end] != b'\r' {
            return Err(ProtoError::PayloadEnd);
        }
        if buf.len() > end + 1 && buf[end + 1] != b'\n' {
            return Err(ProtoError::PayloadEnd);
        }
        if buf.len() < end + 2 {
            self.state = State::Payload { frame, body };
            return Ok(None);
        }
        self.state = State::Idle;
        let split = body + frame.header_bytes.unwrap_or(0);
        let headers = frame.header_bytes.map(|_| &buf[body..split]);
        let payload = &buf[split..end];
        let subject = frame.subject.of(buf);
        let reply = frame.reply.map(|r| r.of(buf));
        let op = match frame.sid {
            None => Op::Pub(Publish {
                subject,
                reply,
                headers,
                payload,
            }),
            Some(sid) => Op::Msg(Message {
                subject,
                sid: sid.of(buf),
                reply,
                headers,
                payload,
            }),
        };
        Ok(Some((op, end + 2)))
    }
}

/// What the parser remembers between calls.
#[derive(Debug, Clone, Copy)]
enum State {
    /// Nothing: the next op starts at the front of the buffer.
    Idle,
    /// An op was recognised but its control line has no LF yet.
    Line(Scan),
    /// A frame's control line was parsed; its payload starts at `body`.
    Payload {
        /// The parsed control line.
        frame: Frame,
        /// Offset of the first payload byte (just past the control line's LF).
        body: usize,
    },
}

/// Progress through an incomplete control line.
#[derive(Debug, Clone, Copy)]
struct Scan {
    verb: Verb,
    /// Where the argument starts, once the whitespace after the name was skipped.
    arg_start: Option<usize>,
    /// Bytes already looked at: none of them ends the line.
    scanned: usize,
}

/// The op names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Pub,
    Hpub,
    Sub,
    Unsub,
    Connect,
    Ping,
    Pong,
    Info,
    Ok,
    Err,
    Msg,
    Hmsg,
}

impl Verb {
    fn name(self) -> &'static [u8] {
        match self {
            Verb::Pub => b"PUB",
            Verb::Hpub => b"HPUB",
            Verb::Sub => b"SUB",
            Verb::Unsub => b"UNSUB",
            Verb::Connect => b"CONNECT",
            Verb::Ping => b"PING",
            Verb::Pong => b"PONG",
            Verb::Info => b"INFO",
            Verb::Ok => b"+OK",
            Verb::Err => b"-ERR",
            Verb::Msg => b"MSG",
            Verb::Hmsg => b"HMSG",
        }
    }

    /// Needs a space or tab right after the name (nats-server's `OP_PUB` etc.;
    /// `CONNECT` and `INFO` go straight to skipping whitespace).
    fn needs_separator(self) -> bool {
        !matches!(
            self,
            Verb::Connect | Verb::Info | Verb::Ping | Verb::Pong | Verb::Ok
        )
    }

    /// Has an argument line (`PING`, `PONG` and `+OK` ignore what follows the name).
    fn has_arg(self) -> bool {
        !matches!(self, Verb::Ping | Verb::Pong | Verb::Ok)
    }
}

/// The offset of the first `needle` in `hay`, eight bytes at a time.
///
/// std has no public memchr; this is the usual zero-byte trick on `u64` words, inlined into
/// the parser. Rejected alternatives: a plain byte loop (PUB lines are short, but
/// INFO/CONNECT lines and long subjects are not), and the memchr crate's SIMD search. NB:
/// memchr measured 11-36 % slower on the parser benches' 16- and 128-byte PUBs (an
/// out-of-line call through its CPU-feature dispatch per line, where this loop is inlined):
/// results/2026-12-01-memchr-parser.md.
pub(crate) fn find_byte(needle: u8, hay: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pattern = LO * u64::from(needle);
    let mut chunks = hay.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word) ^ pattern;
        // The lowest set bit marks the first zero byte exactly (borrows only reach
        // higher bytes), and little-endian order puts the first byte lowest.
        let found = x.wrapping_sub(LO) & !x & HI;
        if found != 0 {
            return Some(offset + (found.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == needle)
        .map(|i| offset + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_byte_agrees_with_position() {
        let hay: Vec<u8> = (0..200u32)
            .map(|i| (i * 7 % 13) as u8 + b'\n' - 3)
            .collect();
        for start in 0..hay.len() {
            for needle in [b'\n', b'\r', 0, 255, b'\n' + 1] {
                let h = &hay[start..];
                assert_eq!(find_byte(needle, h), h.iter().position(|&b| b == needle));
            }
        }
        assert_eq!(find_byte(0x80, &[0x00, 0x80]), Some(1));
        assert_eq!(find_byte(0x01, &[0x00; 9]), None);
    }

    #[test]
    fn small_cap_is_raised() {
        let p = Parser::new(
            Side::Server,
            ParserLimits {
                max_control_line_bytes: 1,
                max_payload_bytes: 0,
            },
        );
        assert_eq!(
            p.limits().max_control_line_bytes,
            ParserLimits::MIN_CONTROL_LINE_BYTES
        );
    }

    #[test]
    fn blanks_past_the_cap_are_refused_however_they_arrive() {
        let cap = ParserLimits::default().max_control_line_bytes;
        for line in [
            [&b"SUB"[..], &vec![b'\t'; cap + 2], b"a 1\r\n"].concat(),
            [&b"CONNECT"[..], &vec![b' '; cap + 2], b"{}\r\n"].concat(),
        ] {
            let mut whole = Parser::new(Side::Server, ParserLimits::default());
            assert_eq!(whole.parse(&line), Err(ProtoError::MaxControlLine));
            // Fed a byte at a time: refused too, once the blanks pass the cap.
            let mut p = Parser::new(Side::Server, ParserLimits::default());
            let end = (1..=line.len())
                .find(|&n| p.parse(&line[..n]).is_err())
                .expect("refused before the line ends");
            assert!(end <= line.len() - 4, "refused at {end} of {}", line.len());
        }
    }

    #[test]
    fn hpub_refused_when_headers_off() {
        let mut p = Parser::new(Side::Server, ParserLimits::default());
        p.set_headers_allowed(false);
        assert_eq!(
            p.parse(b"HPUB a 1 999999999\r\n"),
            Err(ProtoError::HeadersNotSupported)
        );
    }
}
