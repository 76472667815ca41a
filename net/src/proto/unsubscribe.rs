//! `UNSUB <sid> [max]`: the argument rules of nats-server's `processUnsub`.
//!
//! A max that is not a valid size (`UNSUB 1 x`) is ignored, so the subscription ends
//! at once, exactly as nats-server does.

use super::args::{parse_size, split, Seps};
use super::{ProtoError, Unsubscribe};

/// Interprets an `UNSUB` argument line.
pub(crate) fn parse_unsub(arg: &[u8]) -> Result<Unsubscribe<'_>, ProtoError> {
    let (t, n) = split::<2>(arg, 0, Seps::BlankAndLineEnds);
    match n {
        1 => Ok(Unsubscribe {
            sid: t[0].of(arg),
            max: None,
        }),
        2 => Ok(Unsubscribe {
            sid: t[0].of(arg),
            max: parse_size(t[1].of(arg)).map(|m| m as u64),
        }),
        _ => Err(ProtoError::ArgCount { op: "UNSUB" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsub_args() {
        assert_eq!(parse_unsub(b"1 5").unwrap().max, Some(5));
        assert_eq!(parse_unsub(b"1 x").unwrap().max, None);
        assert_eq!(parse_unsub(b"1").unwrap().max, None);
        assert_eq!(
            parse_unsub(b"1 2 3").unwrap_err(),
            ProtoError::ArgCount { op: "UNSUB" }
        );
    }
}
