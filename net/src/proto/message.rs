//! `MSG <subject> <sid> [reply] <#bytes>` and
//! `HMSG <subject> <sid> [reply] <#hdr> <#total>`: what a client reads from the server.
//!
//! Split like nats-server's `splitArg` (spaces, tabs, CRs, LFs); sizes follow the
//! same 1-to-9-digit rule as `PUB`.

use super::args::{parse_size, split, Frame, Seps};
use super::ProtoError;

/// Interprets a `MSG` argument line found at `base` in the caller's buffer.
pub(crate) fn parse_msg(arg: &[u8], base: usize, max_payload: usize) -> Result<Frame, ProtoError> {
    let (t, n) = split::<4>(arg, base, Seps::BlankAndLineEnds);
    let (subject, sid, reply, size) = match n {
        3 => (t[0], t[1], None, t[2]),
        4 => (t[0], t[1], Some(t[2]), t[3]),
        _ => return Err(ProtoError::ArgCount { op: "MSG" }),
    };
    let size = parse_size(size.of_arg(arg, base)).ok_or(ProtoError::BadSize { op: "MSG" })?;
    if size > max_payload {
        return Err(ProtoError::MaxPayload);
    }
    Ok(Frame {
        subject,
        sid: Some(sid),
        reply,
        header_bytes: None,
        size,
    })
}

/// Interprets an `HMSG` argument line found at `base` in the caller's buffer.
pub(crate) fn parse_hmsg(arg: &[u8], base: usize, max_payload: usize) -> Result<Frame, ProtoError> {
    let (t, n) = split::<5>(arg, base, Seps::BlankAndLineEnds);
    let (subject, sid, reply, hdr, total) = match n {
        4 => (t[0], t[1], None, t[2], t[3]),
        5 => (t[0], t[1], Some(t[2]), t[3], t[4]),
        _ => return Err(ProtoError::ArgCount { op: "HMSG" }),
    };
    let bad = ProtoError::BadSize { op: "HMSG" };
    let hdr = parse_size(hdr.of_arg(arg, base)).ok_or(bad)?;
    let size = parse_size(total.of_arg(arg, base)).ok_or(bad)?;
    if hdr > size {
        return Err(ProtoError::HeaderSize);
    }
    if size > max_payload {
        return Err(ProtoError::MaxPayload);
    }
    Ok(Frame {
        subject,
        sid: Some(sid),
        reply,
        header_bytes: Some(hdr),
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msg_args() {
        let f = parse_msg(b"foo 1 bar 5", 0, 10).unwrap();
        assert_eq!(
            (f.sid.is_some(), f.reply.is_some(), f.size),
            (true, true, 5)
        );
        assert_eq!(
            parse_msg(b"foo 1", 0, 10),
            Err(ProtoError::ArgCount { op: "MSG" })
        );
        let f = parse_hmsg(b"foo 1 2 5", 0, 10).unwrap();
        assert_eq!((f.header_bytes, f.size), (Some(2), 5));
        assert_eq!(parse_hmsg(b"foo 1 6 5", 0, 10), Err(ProtoError::HeaderSize));
    }
}
