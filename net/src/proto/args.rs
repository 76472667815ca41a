//! Argument-line helpers shared by the per-op files: token splitting, sizes, spans.
//!
//! Offsets instead of slices let the parser keep a parsed control line across calls
//! (while the payload is still arriving) without borrowing the caller's buffer.

/// A byte range of the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Span {
    /// First byte.
    pub(crate) start: usize,
    /// One past the last byte.
    pub(crate) end: usize,
}

impl Span {
    /// The bytes of `buf` this span covers.
    ///
    /// Callers only pass the buffer the span was cut from (or that buffer with more
    /// bytes appended), so the range is in bounds.
    pub(crate) fn of(self, buf: &[u8]) -> &[u8] {
        &buf[self.start..self.end]
    }

    /// The bytes of an argument line `arg` that starts at `base` in the buffer.
    ///
    /// Callers pass the line the span was cut from with the same `base`.
    pub(crate) fn of_arg(self, arg: &[u8], base: usize) -> &[u8] {
        &arg[self.start - base..self.end - base]
    }
}

/// The parsed control line of a frame that carries a payload (`PUB`, `HPUB`, `MSG`, `HMSG`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Frame {
    /// The subject.
    pub(crate) subject: Span,
    /// The sid (`MSG`/`HMSG` only).
    pub(crate) sid: Option<Span>,
    /// The reply subject.
    pub(crate) reply: Option<Span>,
    /// The header size (`HPUB`/`HMSG` only); at most `size`.
    pub(crate) header_bytes: Option<usize>,
    /// Total bytes after the control line, headers included, CRLF excluded.
    pub(crate) size: usize,
}

/// Which bytes separate arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seps {
    /// Space and tab (nats-server's `processPub`/`processHeaderPub`).
    Blank,
    /// Space, tab, CR and LF (nats-server's `splitArg`, used by SUB and UNSUB).
    BlankAndLineEnds,
}

/// Splits `arg` at runs of separators into at most `N` tokens, offset by `base`.
///
/// Returns the tokens and their count; a count of `N + 1` means "more than `N`".
pub(crate) fn split<const N: usize>(arg: &[u8], base: usize, seps: Seps) -> ([Span; N], usize) {
    let mask = match seps {
        Seps::Blank => BLANK,
        Seps::BlankAndLineEnds => BLANK | LINE_END,
    };
    let mut spans = [Span::default(); N];
    let mut count = 0;
    let mut start: Option<usize> = None;
    for (i, &b) in arg.iter().enumerate() {
        // One table lookup per byte rather than a chain of compares: this loop runs over
        // every PUB line, and the table made pipelined small PUBs parse markedly faster.
        let is_sep = SEPARATORS[usize::from(b)] & mask != 0;
        if is_sep {
            if let Some(s) = start.take() {
                if count == N {
                    return (spans, N + 1);
                }
                spans[count] = Span {
                    start: base + s,
                    end: base + i,
                };
                count += 1;
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        if count == N {
            return (spans, N + 1);
        }
        spans[count] = Span {
            start: base + s,
            end: base + arg.len(),
        };
        count += 1;
    }
    (spans, count)
}

/// Parses a size as nats-server's `parseSize` does: 1 to 9 ASCII digits, nothing else
/// (no sign, no spaces). Leading zeros are allowed.
pub(crate) fn parse_size(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > MAX_SIZE_DIGITS {
        return None;
    }
    let mut n = 0usize;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + usize::from(d - b'0');
    }
    Some(n)
}

/// Trims JSON whitespace (space, tab, CR, LF) from both ends.
pub(crate) fn trim_ws(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !matches!(first, b' ' | b'\t' | b'\r' | b'\n') {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !matches!(last, b' ' | b'\t' | b'\r' | b'\n') {
            break;
        }
        s = rest;
    }
    s
}

/// [`SEPARATORS`] bit for space and tab.
const BLANK: u8 = 1;

/// [`SEPARATORS`] bit for CR and LF.
const LINE_END: u8 = 2;

/// Which class each byte belongs to, for [`split`].
static SEPARATORS: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b' ' as usize] = BLANK;
    t[b'\t' as usize] = BLANK;
    t[b'\r' as usize] = LINE_END;
    t[b'\n' as usize] = LINE_END;
    t
};

/// nats-server refuses sizes longer than this ("999M"), so sizes never overflow.
const MAX_SIZE_DIGITS: usize = 9;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size(b"0"), Some(0));
        assert_eq!(parse_size(b"000000001"), Some(1));
        assert_eq!(parse_size(b"999999999"), Some(999_999_999));
        assert_eq!(parse_size(b"0000000001"), None);
        assert_eq!(parse_size(b""), None);
        assert_eq!(parse_size(b"-1"), None);
        assert_eq!(parse_size(b"+1"), None);
        assert_eq!(parse_size(b"1a"), None);
    }

    #[test]
    fn splitting() {
        let (s, n) = split::<3>(b"  a \t bb  c ", 10, Seps::Blank);
        assert_eq!(n, 3);
        assert_eq!(s[0], Span { start: 12, end: 13 });
        assert_eq!(s[2], Span { start: 20, end: 21 });
        assert_eq!(split::<2>(b"a b c", 0, Seps::Blank).1, 3);
        assert_eq!(split::<3>(b"a\rb", 0, Seps::Blank).1, 1);
        assert_eq!(split::<3>(b"a\rb", 0, Seps::BlankAndLineEnds).1, 2);
        assert_eq!(split::<3>(b" \t ", 0, Seps::Blank).1, 0);
    }

    #[test]
    fn trimming() {
        assert_eq!(trim_ws(b" \r\n{} \t"), b"{}");
        assert_eq!(trim_ws(b"  "), b"");
    }
}
