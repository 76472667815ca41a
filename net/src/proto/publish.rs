//! `PUB <subject> [reply] <#bytes>` and `HPUB <subject> [reply] <#hdr> <#total>`:
//! the argument rules of nats-server's `processPub` and `processHeaderPub`.
//!
//! Arguments are separated by runs of spaces and tabs only (a stray CR is part of a
//! token, as in nats-server). The order of checks is nats-server's, so the same bad
//! line gets the same reply: argument count, sizes, header size, then the payload cap.
//! An `HPUB` whose header size is 0 comes out like a `PUB` (`headers: None`), because
//! nats-server delivers it as a plain `MSG`.

use super::args::{parse_size, split, Frame, Seps};
use super::ProtoError;

/// Interprets a `PUB` argument line found at `base` in the caller's buffer.
pub(crate) fn parse_pub(arg: &[u8], base: usize, max_payload: usize) -> Result<Frame, ProtoError> {
    let (t, n) = split::<3>(arg, base, Seps::Blank);
    let (subject, reply, size) = match n {
        2 => (t[0], None, t[1]),
        3 => (t[0], Some(t[1]), t[2]),
        _ => return Err(ProtoError::ArgCount { op: "PUB" }),
    };
    let size = parse_size(size.of_arg(arg, base)).ok_or(ProtoError::BadSize { op: "PUB" })?;
    if size > max_payload {
        return Err(ProtoError::MaxPayload);
    }
    Ok(Frame {
        subject,
        sid: None,
        reply,
        header_bytes: None,
        size,
    })
}

/// Interprets an `HPUB` argument line found at `base` in the caller's buffer.
pub(crate) fn parse_hpub(arg: &[u8], base: usize, max_payload: usize) -> Result<Frame, ProtoError> {
    let (t, n) = split::<4>(arg, base, Seps::Blank);
    let (subject, reply, hdr, total) = match n {
        3 => (t[0], None, t[1], t[2]),
        4 => (t[0], Some(t[1]), t[2], t[3]),
        _ => return Err(ProtoError::ArgCount { op: "HPUB" }),
    };
    let bad = ProtoError::BadSize { op: "HPUB" };
    let hdr = parse_size(hdr.of_arg(arg, base)).ok_or(bad)?;
    let size = parse_size(total.of_arg(arg, base)).ok_or(bad)?;
    if hdr > size {
        return Err(ProtoError::HeaderSize);
    }
    if size > max_payload {
        return Err(ProtoError::MaxPayload);
    }
    // nats-server delivers an HPUB with an empty header block as a plain MSG.
    let header_bytes = (hdr > 0).then_some(hdr);
    Ok(Frame {
        subject,
        sid: None,
        reply,
        header_bytes,
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pub_args() {
        let f = parse_pub(b"foo bar 5", 4, 10).unwrap();
        assert_eq!((f.subject.start, f.subject.end), (4, 7));
        assert!(f.reply.is_some());
        assert_eq!(f.size, 5);
        assert_eq!(parse_pub(b"foo 11", 0, 10), Err(ProtoError::MaxPayload));
        assert_eq!(
            parse_pub(b"foo", 0, 10),
            Err(ProtoError::ArgCount { op: "PUB" })
        );
        assert_eq!(
            parse_pub(b"foo -1", 0, 10),
            Err(ProtoError::BadSize { op: "PUB" })
        );
    }

    #[test]
    fn hpub_args() {
        let f = parse_hpub(b"foo 2 5", 0, 10).unwrap();
        assert_eq!((f.header_bytes, f.size), (Some(2), 5));
        assert_eq!(parse_hpub(b"foo 6 5", 0, 10), Err(ProtoError::HeaderSize));
        assert_eq!(parse_hpub(b"foo 6 50", 0, 10), Err(ProtoError::MaxPayload));
        assert_eq!(
            parse_hpub(b"foo 6", 0, 10),
            Err(ProtoError::ArgCount { op: "HPUB" })
        );
    }
}
