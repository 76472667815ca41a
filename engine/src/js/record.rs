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
//!
//! a checkpoint ([`CheckpointRecord`]): a begin, parts of at most
//! `limits::CHECKPOINT_PART_BYTES`, an end, logged one after another in one batch:
//! begin:   0x07 | id (varint)
//! part:    0x08 | the next bytes of the checkpoint's body
//! end:     0x09 | id (varint) | parts (varint)
//! body:    items, each a varint length and: 0x01 | Stream::encode_base
//!                                           0x02 | a consumer upsert, as above
//! ```
//!
//! A checkpoint holds the state of every file stream but its messages' contents, and every
//! durable consumer of one, as of the point in the log where it ends; recovery can start
//! there once it has seen the contents of the messages it keeps (`worker::js_log`).
//!
//! The log frames and checksums each record (`store::log`), so this encoding carries no
//! length of its own and trusts nothing: [`decode`] refuses anything malformed with a
//! [`RecordError`] instead of panicking (a record that passed its CRC but does not decode is
//! a bug or a foreign file, and recovery stops there). The config is JSON, not a binary
//! form: creates are rare, and JSON keeps every field the API knows without a second
//! schema to keep in step.

use super::api::StreamConfig;
use super::stream::{Base, Change, DecodeError, Stream};
use super::Record;
use crate::codec::{self, put_bytes, put_varint};
use crate::jsc::api::ConsumerConfig;
use crate::jsc::state::StateError;
use crate::jsc::{State, StateChange};
use crate::limits;

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
    /// A piece of a checkpoint.
    Checkpoint(CheckpointRecord),
}

/// A piece of a checkpoint, as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointRecord {
    /// A checkpoint starts.
    Begin {
        /// Its id (they only grow).
        id: u64,
    },
    /// The next bytes of its body.
    Part(Vec<u8>),
    /// It is whole: `parts` parts since its begin.
    End {
        /// Its id.
        id: u64,
        /// How many parts it has.
        parts: u64,
    },
}

/// What a checkpoint's body holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A file stream, without its messages' contents.
    Stream(Box<Base>),
    /// A durable consumer (always a [`ConsumerRecord::Upsert`]).
    Consumer(ConsumerRecord),
}

/// Builds a checkpoint's body, then logs it as records.
#[derive(Debug, Default)]
pub struct CheckpointWriter {
    body: Vec<u8>,
    scratch: Vec<u8>,
}

impl CheckpointWriter {
    /// An empty checkpoint.
    pub fn new() -> CheckpointWriter {
        CheckpointWriter::default()
    }

    /// Adds a stream.
    pub fn stream(&mut self, stream: &Stream) {
        self.scratch.clear();
        self.scratch.push(ITEM_STREAM);
        stream.encode_base(&mut self.scratch);
        put_bytes(&mut self.body, &self.scratch);
    }

    /// Adds a durable consumer, as its upsert record.
    pub fn consumer(&mut self, record: &ConsumerRecord) {
        self.scratch.clear();
        self.scratch.push(ITEM_CONSUMER);
        encode_consumer(record, &mut self.scratch);
        put_bytes(&mut self.body, &self.scratch);
    }

    /// The body's size so far.
    pub fn len(&self) -> usize {
        self.body.len()
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.body.is_empty()
    }

    /// Hands the checkpoint's records, in order, to `push`, under `id`.
    pub fn records(&self, id: u64, mut push: impl FnMut(&[u8])) {
        let mut record = vec![KIND_CHECKPOINT_BEGIN];
        put_varint(&mut record, id);
        push(&record);
        let mut parts = 0;
        for part in self.body.chunks(limits::CHECKPOINT_PART_BYTES) {
            record.clear();
            record.push(KIND_CHECKPOINT_PART);
            record.extend_from_slice(part);
            push(&record);
            parts += 1;
        }
        record.clear();
        record.push(KIND_CHECKPOINT_END);
        put_varint(&mut record, id);
        put_varint(&mut record, parts);
        push(&record);
    }
}

/// Whether a record starting with `kind` is a piece of a checkpoint.
pub fn is_checkpoint_kind(kind: u8) -> bool {
    (KIND_CHECKPOINT_BEGIN..=KIND_CHECKPOINT_END).contains(&kind)
}

/// Reads back a checkpoint's body (its parts, joined).
pub fn decode_checkpoint(body: &[u8]) -> Result<Vec<Item>, RecordError> {
    let mut r = codec::Reader::new(body);
    let mut items = Vec::new();
    while !r.is_empty() {
        let item = r.bytes().map_err(|_| RecordError::Truncated)?;
        let (&kind, rest) = item.split_first().ok_or(RecordError::Truncated)?;
        items.push(match kind {
            ITEM_STREAM => Item::Stream(Box::new(Base::decode(rest)?)),
            ITEM_CONSUMER => match decode_entry(rest)? {
                Entry::Consumer(upsert @ ConsumerRecord::Upsert { .. }) => Item::Consumer(upsert),
                _ => return Err(RecordError::Field),
            },
            other => return Err(RecordError::Kind(other)),
        });
    }
    Ok(items)
}

fn decode_checkpoint_record(kind: u8, rest: &[u8]) -> Result<CheckpointRecord, RecordError> {
    let mut r = codec::Reader::new(rest);
    let varint = |r: &mut codec::Reader<'_>| r.varint().map_err(|_| RecordError::Truncated);
    let record = match kind {
        KIND_CHECKPOINT_BEGIN => CheckpointRecord::Begin {
            id: varint(&mut r)?,
        },
        KIND_CHECKPOINT_PART => return Ok(CheckpointRecord::Part(rest.to_vec())),
        _ => CheckpointRecord::End {
            id: varint(&mut r)?,
            parts: varint(&mut r)?,
        },
    };
    if !r.is_empty() {
        return Err(RecordError::Field);
    }
    Ok(record)
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
const KIND_CHECKPOINT_BEGIN: u8 = 7;
const KIND_CHECKPOINT_PART: u8 = 8;
const KIND_CHECKPOINT_END: u8 = 9;
const ITEM_STREAM: u8 = 1;
const ITEM_CONSUMER: u8 = 2;

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
    if is_checkpoint_kind(kind) {
        return decode_checkpoint_record(kind, rest).map(Entry::Checkpoint);
    }
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

    #[test]
    fn a_checkpoint_reads_back_from_its_records_in_parts() {
        let mut streams = Streams::new();
        let mut out = Vec::new();
        let create = br#"{"name":"S","subjects":["s.>"],"storage":"file"}"#;
        streams.handle("$JS.API.STREAM.CREATE.S", create, 1, &mut out);
        // Enough msg ids for a body of several parts.
        for i in 0..80_000 {
            let hdrs = format!("NATS/1.0\r\nNats-Msg-Id: id-{i}\r\n\r\n");
            streams.publish("S", "s.x", hdrs.as_bytes(), b"p", 10 + i, &mut out);
        }
        let stream = streams.stream("S").unwrap();
        let consumer = ConsumerRecord::Upsert {
            stream: "S".into(),
            name: "dur".into(),
            config: Box::new(ConsumerConfig {
                durable_name: "dur".into(),
                ..ConsumerConfig::default()
            }),
            created: 7,
            state: Box::default(),
        };
        let mut writer = CheckpointWriter::new();
        writer.stream(stream);
        writer.consumer(&consumer);
        let mut records = Vec::new();
        writer.records(3, |r| records.push(decode_entry(r).unwrap()));
        assert_eq!(
            records.first(),
            Some(&Entry::Checkpoint(CheckpointRecord::Begin { id: 3 }))
        );
        let parts = records.len() as u64 - 2;
        assert!(parts > 1, "{parts} parts");
        assert_eq!(
            records.last(),
            Some(&Entry::Checkpoint(CheckpointRecord::End { id: 3, parts }))
        );
        let mut body = Vec::new();
        for r in &records[1..records.len() - 1] {
            match r {
                Entry::Checkpoint(CheckpointRecord::Part(p)) => body.extend_from_slice(p),
                other => panic!("not a part: {other:?}"),
            }
        }
        let items = decode_checkpoint(&body).unwrap();
        assert_eq!(items.len(), 2);
        let Item::Stream(base) = &items[0] else {
            panic!("{:?}", items[0]);
        };
        assert_eq!(base.name(), "S");
        assert_eq!(base.kept().count(), 80_000);
        assert_eq!(items[1], Item::Consumer(consumer));
        assert!(decode_checkpoint(&body[..body.len() - 1]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = decode(&bytes);
            let _ = decode_entry(&bytes);
            let _ = decode_checkpoint(&bytes);
        }
    }
}
