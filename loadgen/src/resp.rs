//! A small RESP2 codec: enough of Redis's protocol to drive pub/sub (`SUBSCRIBE`, `PUBLISH`,
//! `PING`) and to read its replies and pushed messages.
//!
//! Like `net::proto`, [`parse`] looks at the front of a buffer and returns one complete frame
//! and the bytes it used, `Ok(None)` when more bytes are needed, or an error for bytes that are
//! not RESP. It never allocates: an array frame holds at most [`MAX_ARRAY_ITEMS`] flat items,
//! which covers every frame pub/sub produces (`message`, `subscribe` replies, `pong`).

use thiserror::Error;

/// Most items an array frame may have (pub/sub frames have 3, `pmessage` has 4).
pub const MAX_ARRAY_ITEMS: usize = 4;

/// Longest header line accepted (`$<len>`, `:<int>`, `+text`, `-text`), in bytes.
pub const MAX_LINE_BYTES: usize = 4096;

/// Largest bulk string accepted, in bytes (Redis's own default `proto-max-bulk-len` is 512 MiB;
/// a load generator never sends more than a few MiB).
pub const MAX_BULK_BYTES: usize = 64 * 1024 * 1024;

/// Bytes that are not a RESP2 frame this codec understands.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RespError {
    /// The first byte is not one of `+ - : $ *`.
    #[error("unknown RESP type byte {0:#04x}")]
    UnknownType(u8),
    /// A length or integer is not a valid number.
    #[error("invalid number in RESP header")]
    BadNumber,
    /// A line or bulk string is longer than this codec accepts.
    #[error("RESP frame too large")]
    TooLarge,
    /// A bulk string is not followed by CRLF.
    #[error("bulk string not terminated by CRLF")]
    BadTerminator,
    /// Arrays nested in arrays, or with more items than [`MAX_ARRAY_ITEMS`].
    #[error("unsupported RESP array shape")]
    UnsupportedArray,
}

/// One scalar value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    /// `+text`.
    Simple(&'a [u8]),
    /// `-text`.
    Error(&'a [u8]),
    /// `:n`.
    Integer(i64),
    /// `$len` + bytes; `None` for the null bulk string `$-1`.
    Bulk(Option<&'a [u8]>),
}

/// One complete frame: a scalar or a flat array of scalars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A scalar.
    Item(Item<'a>),
    /// An array of up to [`MAX_ARRAY_ITEMS`] scalars (the first `len` are set).
    Array {
        /// The items; those past `len` are `Bulk(None)`.
        items: [Item<'a>; MAX_ARRAY_ITEMS],
        /// How many items the array has.
        len: usize,
    },
}

impl<'a> Frame<'a> {
    /// The items of an array frame (empty for scalars).
    pub fn items(&self) -> &[Item<'a>] {
        match self {
            Frame::Array { items, len } => &items[..*len],
            Frame::Item(_) => &[],
        }
    }
}

/// Parses one frame from the front of `buf`: `Ok(Some((frame, consumed)))`, or `Ok(None)` if
/// `buf` does not yet hold a complete frame.
pub fn parse(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, RespError> {
    let Some(&kind) = buf.first() else {
        return Ok(None);
    };
    if kind != b'*' {
        return Ok(parse_item(buf)?.map(|(item, n)| (Frame::Item(item), n)));
    }
    let Some((line, mut at)) = line(buf)? else {
        return Ok(None);
    };
    let count = number(&line[1..])?;
    if count < 0 {
        // The null array: treat as an empty array.
        return Ok(Some((
            Frame::Array {
                items: [Item::Bulk(None); MAX_ARRAY_ITEMS],
                len: 0,
            },
            at,
        )));
    }
    let len = usize::try_from(count).map_err(|_| RespError::BadNumber)?;
    if len > MAX_ARRAY_ITEMS {
        return Err(RespError::UnsupportedArray);
    }
    let mut items = [Item::Bulk(None); MAX_ARRAY_ITEMS];
    for slot in items.iter_mut().take(len) {
        let rest = &buf[at..];
        if rest.first() == Some(&b'*') {
            return Err(RespError::UnsupportedArray);
        }
        match parse_item(rest)? {
            Some((item, n)) => {
                *slot = item;
                at += n;
            }
            None => return Ok(None),
        }
    }
    Ok(Some((Frame::Array { items, len }, at)))
}

/// Appends a command (an array of bulk strings) to `out`.
pub fn encode_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    push_decimal(out, args.len() as u64);
    out.extend_from_slice(b"\r\n");
    for arg in args {
        out.push(b'$');
        push_decimal(out, arg.len() as u64);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// Parses one scalar from the front of `buf`.
fn parse_item(buf: &[u8]) -> Result<Option<(Item<'_>, usize)>, RespError> {
    let Some((line, after)) = line(buf)? else {
        return Ok(None);
    };
    let body = &line[1..];
    let item = match line[0] {
        b'+' => Item::Simple(body),
        b'-' => Item::Error(body),
        b':' => Item::Integer(number(body)?),
        b'$' => {
            let n = number(body)?;
            if n < 0 {
                return Ok(Some((Item::Bulk(None), after)));
            }
            let n = usize::try_from(n).map_err(|_| RespError::BadNumber)?;
            if n > MAX_BULK_BYTES {
                return Err(RespError::TooLarge);
            }
            let end = after + n;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(RespError::BadTerminator);
            }
            return Ok(Some((Item::Bulk(Some(&buf[after..end])), end + 2)));
        }
        other => return Err(RespError::UnknownType(other)),
    };
    Ok(Some((item, after)))
}

/// The first line of `buf` without its CRLF, and the offset just past the CRLF.
fn line(buf: &[u8]) -> Result<Option<(&[u8], usize)>, RespError> {
    let window = &buf[..buf.len().min(MAX_LINE_BYTES + 2)];
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(0) => Err(RespError::UnknownType(b'\r')),
        Some(i) => Ok(Some((&buf[..i], i + 2))),
        None if buf.len() > MAX_LINE_BYTES + 1 => Err(RespError::TooLarge),
        None => Ok(None),
    }
}

/// A signed decimal integer.
fn number(digits: &[u8]) -> Result<i64, RespError> {
    let (negative, digits) = match digits.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, digits),
    };
    if digits.is_empty() || digits.len() > 18 {
        return Err(RespError::BadNumber);
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(RespError::BadNumber);
        }
        n = n * 10 + i64::from(d - b'0');
    }
    Ok(if negative { -n } else { n })
}

/// Appends the decimal form of `n`.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_commands() {
        let mut out = Vec::new();
        encode_command(&mut out, &[b"PUBLISH", b"room.1", b"hi"]);
        assert_eq!(out, b"*3\r\n$7\r\nPUBLISH\r\n$6\r\nroom.1\r\n$2\r\nhi\r\n");
    }

    #[test]
    fn parses_scalars() {
        assert_eq!(
            parse(b"+PONG\r\nrest").unwrap(),
            Some((Frame::Item(Item::Simple(b"PONG")), 7))
        );
        assert_eq!(
            parse(b":42\r\n").unwrap(),
            Some((Frame::Item(Item::Integer(42)), 5))
        );
        assert_eq!(
            parse(b"-ERR x\r\n").unwrap(),
            Some((Frame::Item(Item::Error(b"ERR x")), 8))
        );
        assert_eq!(
            parse(b"$-1\r\n").unwrap(),
            Some((Frame::Item(Item::Bulk(None)), 5))
        );
    }

    #[test]
    fn parses_pushed_messages_split_anywhere() {
        let frame = b"*3\r\n$7\r\nmessage\r\n$6\r\nroom.1\r\n$4\r\n\r\nab\r\n";
        for cut in 0..frame.len() {
            assert_eq!(parse(&frame[..cut]).unwrap(), None, "cut at {cut}");
        }
        let (f, n) = parse(frame).unwrap().unwrap();
        assert_eq!(n, frame.len());
        assert_eq!(
            f.items(),
            &[
                Item::Bulk(Some(b"message")),
                Item::Bulk(Some(b"room.1")),
                Item::Bulk(Some(b"\r\nab"))
            ]
        );
    }

    #[test]
    fn subscribe_confirmation() {
        let frame = b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n";
        let (f, _) = parse(frame).unwrap().unwrap();
        assert_eq!(f.items()[2], Item::Integer(1));
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(parse(b"?x\r\n"), Err(RespError::UnknownType(b'?')));
        assert_eq!(parse(b":1x\r\n"), Err(RespError::BadNumber));
        assert_eq!(parse(b"$2\r\nabXY"), Err(RespError::BadTerminator));
        assert_eq!(parse(b"*9\r\n"), Err(RespError::UnsupportedArray));
        assert_eq!(parse(b"*1\r\n*1\r\n"), Err(RespError::UnsupportedArray));
        assert_eq!(parse(&[b'+'; 5000]), Err(RespError::TooLarge));
    }

    proptest::proptest! {
        #[test]
        fn commands_round_trip(args in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..50), 1..4)) {
            let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
            let mut out = Vec::new();
            encode_command(&mut out, &refs);
            let (frame, n) = parse(&out).unwrap().unwrap();
            proptest::prop_assert_eq!(n, out.len());
            let got: Vec<&[u8]> = frame.items().iter().map(|i| match i { Item::Bulk(Some(b)) => *b, _ => &b""[..] }).collect();
            proptest::prop_assert_eq!(got, refs);
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = parse(&bytes);
        }
    }
}
