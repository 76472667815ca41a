//! How a [`Record`] is written to the write-ahead log: one log record per `Record`.
//!
//! ```text
//! create:  0x01 | created (i64 LE) | config (JSON, nats-server's field names)
//! delete:  0x02 | name (UTF-8)
//! stream:  0x03 | name length (u16 LE) | name (UTF-8) | change (Change::encode)
//! ```
//!
//! The log frames and checksums each record (`store::log`), so this encoding carries no
//! length of its own and trusts nothing: [`decode`] refuses anything malformed with a
//! [`RecordError`] instead of panicking (a record that passed its CRC but does not decode is
//! a bug or a foreign file, and recovery stops there). The config is JSON, not a binary
//! form: creates are rare, and JSON keeps every field the API knows without a second
//! schema to keep in step.

use super::api::StreamConfig;
use super::stream::{Change, DecodeError};
use super::Record;

/// Why a log record is not a [`Record`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    /// The record is empty or ends inside a field.
    #[error("record truncated")]
    Truncated,
    /// The first byte is not a record kind.
    #[error("unknown record kind {0}")]
    Kind(u8),
    /// A name is not UTF-8 or the config is not a stream config.
    #[error("malformed field in record")]
    Field,
    /// The stream change inside does not decode.
    #[error("stream change: {0}")]
    Change(#[from] DecodeError),
}

const KIND_CREATE: u8 = 1;
const KIND_DELETE: u8 = 2;
const KIND_STREAM: u8 = 3;

/// Appends `record`'s encoding to `out`.
pub fn encode(record: &Record, out: &mut Vec<u8>) {
    match record {
        Record::Create { config, created } => {
            out.push(KIND_CREATE);
            out.extend_from_slice(&created.to_le_bytes());
            // A StreamConfig holds strings, numbers and enums only: it always serializes.
            let _ = serde_json::to_writer(&mut *out, config);
        }
        Record::Delete { name } => {
            out.push(KIND_DELETE);
            out.extend_from_slice(name.as_bytes());
        }
        Record::Stream { name, change } => {
            out.push(KIND_STREAM);
            // Stream names are at most 255 bytes (validated at create).
            let len = u16::try_from(name.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&name.as_bytes()[..usize::from(len)]);
            change.encode(out);
        }
    }
}

/// Reads back a record written by [`encode`].
pub fn decode(bytes: &[u8]) -> Result<Record, RecordError> {
    let (&kind, rest) = bytes.split_first().ok_or(RecordError::Truncated)?;
    match kind {
        KIND_CREATE => {
            let (created, config) = rest
                .split_first_chunk::<8>()
                .ok_or(RecordError::Truncated)?;
            let config: StreamConfig =
                serde_json::from_slice(config).map_err(|_| RecordError::Field)?;
            Ok(Record::Create {
                config: Box::new(config),
                created: i64::from_le_bytes(*created),
            })
        }
        KIND_DELETE => {
            let name = std::str::from_utf8(rest).map_err(|_| RecordError::Field)?;
            Ok(Record::Delete { name: name.into() })
        }
        KIND_STREAM => {
            let (len, rest) = rest
                .split_first_chunk::<2>()
                .ok_or(RecordError::Truncated)?;
            let len = usize::from(u16::from_le_bytes(*len));
            if rest.len() < len {
                return Err(RecordError::Truncated);
            }
            let (name, change) = rest.split_at(len);
            let name = std::str::from_utf8(name).map_err(|_| RecordError::Field)?;
            Ok(Record::Stream {
                name: name.into(),
                change: Change::decode(change)?,
            })
        }
        other => Err(RecordError::Kind(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::js::Streams;

    fn roundtrip(record: &Record) {
        let mut bytes = Vec::new();
        encode(record, &mut bytes);
        assert_eq!(&decode(&bytes).unwrap(), record);
    }

    #[test]
    fn every_record_an_api_session_makes_reads_back_identical() {
        let mut streams = Streams::new();
        let mut out = Vec::new();
        let create = br#"{"name":"S","subjects":["s.>"],"storage":"memory","max_msgs":3}"#;
        assert!(streams
            .handle("$JS.API.STREAM.CREATE.S", create, 1, &mut out)
            .is_some());
        for i in 0..5 {
            let hdrs = format!("NATS/1.0\r\nNats-Msg-Id: m{i}\r\n\r\n");
            streams.publish("S", "s.x", hdrs.as_bytes(), b"payload", 10 + i, &mut out);
        }
        streams.handle("$JS.API.STREAM.PURGE.S", b"", 20, &mut out);
        streams.handle("$JS.API.STREAM.DELETE.S", b"", 30, &mut out);
        assert!(out.len() >= 8, "{out:?}");
        for record in &out {
            roundtrip(record);
        }
    }

    #[test]
    fn malformed_records_are_refused_never_a_panic() {
        assert_eq!(decode(b""), Err(RecordError::Truncated));
        assert_eq!(decode(&[9]), Err(RecordError::Kind(9)));
        assert_eq!(decode(&[KIND_CREATE, 1, 2]), Err(RecordError::Truncated));
        assert_eq!(decode(&[KIND_DELETE, 0xff]), Err(RecordError::Field));
        assert_eq!(
            decode(&[KIND_STREAM, 5, 0, b'a']),
            Err(RecordError::Truncated)
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = decode(&bytes);
        }
    }
}
