//! NATS header blocks: `NATS/1.0[ status[ description]]\r\n(Name: value\r\n)*\r\n`.
//!
//! [`Headers::parse`] reads the version line and yields the header lines one by one without
//! allocating; it never panics, whatever the bytes (proptested below). A value is what
//! follows the first `:` of its line, with the leading spaces skipped and nothing else
//! trimmed, and a name is compared byte for byte (case-sensitive): that is nats-server's
//! `getHeader`, which JetStream uses for every `Nats-*` header. One difference: `getHeader`
//! finds the first occurrence of `\r\nName:` anywhere in the block and gives up when the
//! name's first occurrence is elsewhere (inside another header's value, say); this parser
//! looks at line starts only, so such a value cannot hide a real header.
//!
//! The block is not otherwise validated, as nats-server stores and forwards it untouched.

/// Why a header block was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The block does not start with `NATS/1.0`.
    #[error("header block does not start with NATS/1.0")]
    Version,
    /// A status after the version is not three digits.
    #[error("invalid status in header block")]
    Status,
}

/// A parsed header block, borrowing from the bytes.
#[derive(Debug, Clone, Copy)]
pub struct Headers<'a> {
    /// The status code after the version (`503` for no responders), if any.
    pub status: Option<u16>,
    /// The text after the status (`No Messages`), empty if none.
    pub description: &'a [u8],
    /// The header lines, after the version line.
    lines: &'a [u8],
}

impl<'a> Headers<'a> {
    /// Reads the version line of `block`.
    ///
    /// # Errors
    /// [`HeaderError::Version`] when it is not `NATS/1.0`, [`HeaderError::Status`] when a
    /// status follows that is not three digits.
    pub fn parse(block: &'a [u8]) -> Result<Headers<'a>, HeaderError> {
        let (first, lines) = split_line(block);
        let rest = first.strip_prefix(VERSION).ok_or(HeaderError::Version)?;
        let rest = trim_start(rest);
        if rest.is_empty() {
            return Ok(Headers {
                status: None,
                description: rest,
                lines,
            });
        }
        let (code, description) = match rest.iter().position(|&b| b == b' ') {
            Some(at) => rest.split_at(at),
            None => (rest, &rest[rest.len()..]),
        };
        let status = match code {
            [a, b, c] if code.iter().all(u8::is_ascii_digit) => {
                u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
            }
            _ => return Err(HeaderError::Status),
        };
        Ok(Headers {
            status: Some(status),
            description: trim_start(description),
            lines,
        })
    }

    /// The header lines in order, as (name, value); a line without `:` is skipped.
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        let mut rest = self.lines;
        std::iter::from_fn(move || loop {
            if rest.is_empty() {
                return None;
            }
            let (line, next) = split_line(rest);
            rest = next;
            if line.is_empty() {
                // The blank line ends the block.
                rest = &[];
                return None;
            }
            if let Some(colon) = line.iter().position(|&b| b == b':') {
                let (name, value) = line.split_at(colon);
                return Some((name, trim_start(value.get(1..).unwrap_or_default())));
            }
        })
    }

    /// The value of the first header named exactly `name`.
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.iter()
            .find(|(n, _)| *n == name.as_bytes())
            .map(|(_, v)| v)
    }
}

/// The value of header `name` in `block`, or `None` when absent or the block is not a NATS
/// header block.
pub fn lookup<'a>(block: &'a [u8], name: &str) -> Option<&'a [u8]> {
    Headers::parse(block).ok()?.get(name)
}

/// Splits off the first line (without its `\r\n`); a line without one runs to the end.
fn split_line(bytes: &[u8]) -> (&[u8], &[u8]) {
    match bytes.windows(2).position(|w| w == b"\r\n") {
        Some(at) => (&bytes[..at], &bytes[at + 2..]),
        None => (bytes, &bytes[bytes.len()..]),
    }
}

fn trim_start(bytes: &[u8]) -> &[u8] {
    let skip = bytes.iter().take_while(|&&b| b == b' ').count();
    &bytes[skip..]
}

/// The only version NATS headers have.
const VERSION: &[u8] = b"NATS/1.0";

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn header_blocks_table() {
        type Case = (
            &'static [u8],
            Option<u16>,
            &'static [u8],
            &'static [(&'static [u8], &'static [u8])],
        );
        let cases: &[Case] = &[
            (b"NATS/1.0\r\n\r\n", None, b"", &[]),
            (b"NATS/1.0\r\nA: b\r\n\r\n", None, b"", &[(b"A", b"b")]),
            (
                b"NATS/1.0\r\nA:b\r\nC:  d \r\n\r\n",
                None,
                b"",
                &[(b"A", b"b"), (b"C", b"d ")],
            ),
            (b"NATS/1.0 503\r\n\r\n", Some(503), b"", &[]),
            (
                b"NATS/1.0 404 No Messages\r\n\r\n",
                Some(404),
                b"No Messages",
                &[],
            ),
            (b"NATS/1.0\r\nA: b", None, b"", &[(b"A", b"b")]),
            (
                b"NATS/1.0\r\nnocolon\r\nA: x:y\r\n\r\nB: after\r\n",
                None,
                b"",
                &[(b"A", b"x:y")],
            ),
            (b"NATS/1.0", None, b"", &[]),
            (b"NATS/1.0\r\nA : b\r\n\r\n", None, b"", &[(b"A ", b"b")]),
        ];
        for &(block, status, description, lines) in cases {
            let h = Headers::parse(block).unwrap();
            assert_eq!(h.status, status, "{block:?}");
            assert_eq!(h.description, description, "{block:?}");
            let got: Vec<_> = h.iter().collect();
            assert_eq!(got, lines.to_vec(), "{block:?}");
        }
        assert_eq!(Headers::parse(b"").unwrap_err(), HeaderError::Version);
        assert_eq!(
            Headers::parse(b"NATS/2.0\r\n\r\n").unwrap_err(),
            HeaderError::Version
        );
        assert_eq!(
            Headers::parse(b"NATS/1.0 5x3\r\n").unwrap_err(),
            HeaderError::Status
        );
        assert_eq!(
            Headers::parse(b"NATS/1.0 5030\r\n").unwrap_err(),
            HeaderError::Status
        );
    }

    #[test]
    fn lookup_is_exact_and_first() {
        let block = b"NATS/1.0\r\nNats-Msg-Id: a\r\nnats-msg-id: b\r\nNats-Msg-Id: c\r\n\r\n";
        assert_eq!(lookup(block, "Nats-Msg-Id"), Some(&b"a"[..]));
        assert_eq!(lookup(block, "nats-msg-id"), Some(&b"b"[..]));
        assert_eq!(lookup(block, "Nats-Msg"), None);
        assert_eq!(lookup(b"garbage", "Nats-Msg-Id"), None);
        let hidden = b"NATS/1.0\r\nX: \r\nNats-Msg-Id: in value\r\nNats-Msg-Id: real\r\n\r\n";
        assert_eq!(lookup(hidden, "Nats-Msg-Id"), Some(&b"in value"[..]));
    }

    proptest! {
        #[test]
        fn never_panics(block in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(h) = Headers::parse(&block) {
                for (name, value) in h.iter() {
                    prop_assert!(!name.windows(2).any(|w| w == b"\r\n"));
                    prop_assert!(!value.windows(2).any(|w| w == b"\r\n"));
                }
                let _ = h.get("Nats-Msg-Id");
            }
        }

        #[test]
        fn never_panics_near_valid(
            status in proptest::option::of("[0-9a ]{0,5}"),
            lines in proptest::collection::vec(("[A-Za-z: -]{0,8}", "[ -~\r\n]{0,8}"), 0..6),
            tail in "[\r\n]{0,3}",
        ) {
            let mut block = b"NATS/1.0".to_vec();
            if let Some(s) = status {
                block.push(b' ');
                block.extend_from_slice(s.as_bytes());
            }
            block.extend_from_slice(b"\r\n");
            for (n, v) in &lines {
                block.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
            }
            block.extend_from_slice(tail.as_bytes());
            if let Ok(h) = Headers::parse(&block) {
                prop_assert!(h.iter().count() <= lines.len() * 3 + 1);
                let _ = h.get("A");
            }
        }
    }
}
