//! The binary field encoding every write-ahead log record body uses: unsigned LEB128
//! varints and varint-length byte strings, read back by a [`Reader`] that never panics on
//! any input.
//!
//! A record format built on it (a stream's [`Change`](crate::js::stream::Change), a
//! consumer's [`State`](crate::jsc::State), a checkpoint) maps [`CodecError`] into its own
//! error type.

/// Why bytes did not decode as a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The bytes end inside a field.
    #[error("truncated field")]
    Truncated,
    /// A varint longer than ten bytes, or one whose value does not fit in 64 bits.
    #[error("overlong varint")]
    Overlong,
}

/// Appends `value` as an unsigned LEB128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends `bytes` after its length as a varint.
pub fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Reads fields from the front of a byte slice.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// A reader of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader(bytes)
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.0.len() < n {
            return Err(CodecError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    /// The next byte.
    pub fn byte(&mut self) -> Result<u8, CodecError> {
        let (&b, rest) = self.0.split_first().ok_or(CodecError::Truncated)?;
        self.0 = rest;
        Ok(b)
    }

    /// The next varint.
    pub fn varint(&mut self) -> Result<u64, CodecError> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            if shift == 63 && b > 1 {
                return Err(CodecError::Overlong);
            }
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(CodecError::Overlong)
    }

    /// The next length-prefixed byte string (see [`put_bytes`]).
    pub fn bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let len = usize::try_from(self.varint()?).map_err(|_| CodecError::Truncated)?;
        self.take(len)
    }

    /// What is left.
    pub fn rest(&self) -> &'a [u8] {
        self.0
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_every_width() {
        let values = [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX - 1, u64::MAX];
        let mut out = Vec::new();
        for v in values {
            put_varint(&mut out, v);
        }
        put_bytes(&mut out, b"tail");
        let mut r = Reader::new(&out);
        for v in values {
            assert_eq!(r.varint(), Ok(v));
        }
        assert_eq!(r.bytes(), Ok(&b"tail"[..]));
        assert!(r.is_empty());
    }

    #[test]
    fn malformed_fields_are_errors() {
        assert_eq!(Reader::new(&[0x80]).varint(), Err(CodecError::Truncated));
        assert_eq!(Reader::new(&[0xff; 11]).varint(), Err(CodecError::Overlong));
        // Ten bytes whose last carries more than the 64th bit.
        let mut over = [0xff; 10];
        over[9] = 0x02;
        assert_eq!(Reader::new(&over).varint(), Err(CodecError::Overlong));
        assert_eq!(Reader::new(&[5, b'a']).bytes(), Err(CodecError::Truncated));
        assert_eq!(Reader::new(&[]).byte(), Err(CodecError::Truncated));
    }
}
