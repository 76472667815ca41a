//! How a [`Record`] is written to the write-ahead log: one log record per `Record`.
//!
//! ```text
//! create:  0x01 | created (i64 LE) | config (JSON, nats-server's field names)
//! delete:  0x02 | name (UTF-8)
//! stream:  0x03 | name length (u16 LE) | name (UTF-8) | change (Change::encode)
//!
//! a durable consumer of a file stream ([`ConsumerRecord`]), after `stream | consumer`, each
//! as u16 LE length and UTF-8:
//! upsert:  0x04 | stream | consumer | created (u64 LE) | config length (u32 LE) |
//!          config (JSON) | state (State::encode: its snapshot at that point)
//! delete:  0x05 | stream | consumer
//! change:  0x06 | stream | consumer | change (StateChange::encode)
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
use crate::jsc::api::ConsumerConfig;
use crate::jsc::state::StateError;
use crate::jsc::{State, StateChange};

/// A change to a durable consumer, as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumerRecord {
    /// Created, or its configuration updated: the whole consumer as it is now.
    Upsert {
        /// Its stream.
        stream: String,
        /// Its name.
        name: String,
        /// Its configuration.
        config: Box<ConsumerConfig>,
        /// When it was created, unix ns.
        created: u64,
        /// Its state at this point.
        state: Box<State>,
    },
    /// Deleted.
    Delete {
        /// Its stream.
        stream: String,
        /// Its name.
        name: String,
    },
    /// One state change.
    Change {
        /// Its stream.
        stream: String,
        /// Its name.
        name: String,
        /// The change.
        change: StateChange,
    },
}

/// One log record: a stream's or a consumer's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A change to the streams.
    Streams(Record),
    /// A change to a durable consumer.
    Consumer(ConsumerRecord),
}

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
    /// The consumer state or change inside does not decode.
    #[error("consumer state: {0}")]
    State(#[from] StateError),
}

const KIND_CREATE: u8 = 1;
const KIND_DELETE: u8 = 2;
const KIND_STREAM: u8 = 3;
const KIND_CONSUMER_UPSERT: u8 = 4;
const KIND_CONSUMER_DELETE: u8 = 5;
const KIND_CONSUMER_CHANGE: u8 = 6;

/// Appends a consumer record's encoding to `out`.
pub fn encode_consumer(record: &ConsumerRecord, out: &mut Vec<u8>) {
    let (kind, stream, name) = match record {
        ConsumerRecord::Upsert { stream, name, .. } => (KIND_CONSUMER_UPSERT, stream, name),
        ConsumerRecord::Delete { stream, name } => (KIND_CONSUMER_DELETE, stream, name),
        ConsumerRecord::Change { stream, name, .. } => (KIND_CONSUMER_CHANGE, stream, name),
    };
    out.push(kind);
    put_name(out, stream);
    put_name(out, name);
    match record {
        ConsumerRecord::Upsert {
            config,
            created,
            state,
            ..
        } => {
            out.extend_from_slice(&created.to_le_bytes());
            // A ConsumerConfig holds strings, numbers and enums only: it always serializes.
            let json = serde_json::to_vec(config).unwrap_or_default();
            out.extend_from_slice(&(json.len() as u32).to_le_bytes());
            out.extend_from_slice(&json);
            state.encode(out);
        }
        ConsumerRecord::Delete { .. } => {}
        ConsumerRecord::Change { change, .. } => change.encode(out),
    }
}

/// Reads back any record written by [`encode`] or [`encode_consumer`].
pub fn decode_entry(bytes: &[u8]) -> Result<Entry, RecordError> {
    let Some((&kind, rest)) = bytes.split_first() else {
        return Err(RecordError::Truncated);
    };
    if !(KIND_CONSUMER_UPSERT..=KIND_CONSUMER_CHANGE).contains(&kind) {
        return decode(bytes).map(Entry::Streams);
    }
    let (stream, rest) = take_name(rest)?;
    let (name, rest) = take_name(rest)?;
    let record = match kind {
        KIND_CONSUMER_UPSERT => {
            let (created, rest) = rest
                .split_first_chunk::<8>()
                .ok_or(RecordError::Truncated)?;
            let (len, rest) = rest
                .split_first_chunk::<4>()
                .ok_or(RecordError::Truncated)?;
            let len = u32::from_le_bytes(*len) as usize;
            if rest.len() < len {
                return Err(RecordError::Truncated);
            }
            let (config, state) = rest.split_at(len);
            ConsumerRecord::Upsert {
                stream,
                name,
                config: Box::new(serde_json::from_slice(config).map_err(|_| RecordError::Field)?),
                created: u64::from_le_bytes(*created),
                state: Box::new(State::decode(state)?),
            }
        }
        KIND_CONSUMER_DELETE => ConsumerRecord::Delete { stream, name },
        _ => ConsumerRecord::Change {
            stream,
            name,
            change: StateChange::decode(rest)?,
        },
    };
    Ok(Entry::Consumer(record))
}

/// A name as u16 LE length and UTF-8 (names are at most 255 bytes, validated at create).
fn put_name(out: &mut Vec<u8>, name: &str) {
    let len = u16::try_from(name.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&name.as_bytes()[..usize::from(len)]);
}

fn take_name(bytes: &[u8]) -> Result<(String, &[u8]), RecordError> {
    let (len, rest) = bytes
        .split_first_chunk::<2>()
        .ok_or(RecordError::Truncated)?;
    let len = usize::from(u16::from_le_bytes(*len));
    if rest.len() < len {
        return Err(RecordError::Truncated);
    }
    let (name, rest) = rest.split_at(len);
    let name = std::str::from_utf8(name).map_err(|_| RecordError::Field)?;
    Ok((name.to_owned(), rest))
}

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
            put_name(out, name);
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
            let (name, change) = take_name(rest)?;
            Ok(Record::Stream {
                name,
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

    #[test]
    fn consumer_records_read_back_identical() {
        let state = State::default();
        let records = [
            ConsumerRecord::Upsert {
                stream: "S".into(),
                name: "dur".into(),
                config: Box::new(ConsumerConfig {
                    durable_name: "dur".into(),
                    ..ConsumerConfig::default()
                }),
                created: 42,
                state: Box::new(state),
            },
            ConsumerRecord::Delete {
                stream: "S".into(),
                name: "dur".into(),
            },
        ];
        for r in &records {
            let mut bytes = Vec::new();
            encode_consumer(r, &mut bytes);
            assert_eq!(decode_entry(&bytes).unwrap(), Entry::Consumer(r.clone()));
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = decode(&bytes);
            let _ = decode_entry(&bytes);
        }
    }
}
