//! `SUB <subject> [queue] <sid>`: the argument rules of nats-server's `processSub`.
//!
//! Arguments are split at runs of spaces, tabs, CRs and LFs (nats-server's `splitArg`).
//! The subject is not validated here: the engine does that, because an invalid subject
//! keeps the connection open while a malformed line closes it.

use super::args::{split, Seps};
use super::{ProtoError, Subscribe};

/// Interprets a `SUB` argument line.
pub(crate) fn parse_sub(arg: &[u8]) -> Result<Subscribe<'_>, ProtoError> {
    let (t, n) = split::<3>(arg, 0, Seps::BlankAndLineEnds);
    match n {
        2 => Ok(Subscribe {
            subject: t[0].of(arg),
            queue: None,
            sid: t[1].of(arg),
        }),
        3 => Ok(Subscribe {
            subject: t[0].of(arg),
            queue: Some(t[1].of(arg)),
            sid: t[2].of(arg),
        }),
        _ => Err(ProtoError::ArgCount { op: "SUB" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_args() {
        let s = parse_sub(b"foo q 1").unwrap();
        assert_eq!(
            (s.subject, s.queue, s.sid),
            (&b"foo"[..], Some(&b"q"[..]), &b"1"[..])
        );
        assert_eq!(
            parse_sub(b"foo").unwrap_err(),
            ProtoError::ArgCount { op: "SUB" }
        );
        assert_eq!(
            parse_sub(b"a b c d").unwrap_err(),
            ProtoError::ArgCount { op: "SUB" }
        );
    }
}
