//! The JSON shapes of JetStream's API, as nats-server 2.9 reads and writes them.
//!
//! Field names, defaults and omitted-when-empty rules follow nats-server's Go structs
//! (`StreamConfig`, `StreamInfo`, `StreamState`, `ApiError`, the `JSApi*Response` types), and
//! the fields of every response come out in the order nats-server writes them. Durations
//! are integers of nanoseconds; times are RFC 3339 with up to nine fraction digits, trailing
//! zeros dropped, as Go's `time.Time` marshals (see [`format_time`]); the zero time, which
//! nats-server prints for an empty stream's `first_ts`, is `0001-01-01T00:00:00Z`.
//!
//! Requests are read as Go's `encoding/json` reads them, with two differences a client does
//! not meet in practice: field names must match exactly (Go also accepts other letter cases)
//! and a `null` field takes its default (as in Go). Bad JSON, a wrong type for a field or an
//! unknown enum string is nats-server's `invalid JSON` (10025).

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A JetStream API error: `{"code":…,"err_code":…,"description":…}`.
///
/// `code` is the HTTP-like status, `err_code` JetStream's own number (nats-server's
/// `server/errors.json`); clients branch on `err_code`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{description} ({err_code})")]
pub struct ApiError {
    /// HTTP-like status (400, 404, 500, 503).
    pub code: u16,
    /// JetStream's error number.
    pub err_code: u16,
    /// The text nats-server sends.
    pub description: Cow<'static, str>,
}

impl ApiError {
    const fn fixed(code: u16, err_code: u16, description: &'static str) -> ApiError {
        ApiError {
            code,
            err_code,
            description: Cow::Borrowed(description),
        }
    }

    fn formatted(code: u16, err_code: u16, description: String) -> ApiError {
        ApiError {
            code,
            err_code,
            description: Cow::Owned(description),
        }
    }

    /// `JSStreamInvalidConfigF` (500/10052) with nats-server's text for the fault.
    pub fn invalid_config(text: impl Into<String>) -> ApiError {
        ApiError::formatted(500, 10052, text.into())
    }

    /// `JSStreamWrongLastSequenceErrF` (400/10071): the stream's (or subject's) last sequence.
    pub fn wrong_last_sequence(seq: u64) -> ApiError {
        ApiError::formatted(400, 10071, format!("wrong last sequence: {seq}"))
    }

    /// `JSStreamWrongLastMsgIDErrF` (400/10070): the last stored message's `Nats-Msg-Id`.
    pub fn wrong_last_msg_id(id: &str) -> ApiError {
        ApiError::formatted(400, 10070, format!("wrong last msg ID: {id}"))
    }

    /// `JSSequenceNotFoundErrF` (400/10043).
    pub fn sequence_not_found(seq: u64) -> ApiError {
        ApiError::formatted(400, SEQUENCE_NOT_FOUND, format!("sequence {seq} not found"))
    }

    /// `JSStreamStoreFailedF` (503/10077): the store refused the message (discard new).
    pub fn store_failed(text: &'static str) -> ApiError {
        ApiError::fixed(503, 10077, text)
    }
}

/// `JSSequenceNotFoundErrF`'s `err_code`.
pub const SEQUENCE_NOT_FOUND: u16 = 10043;
/// `JSBadRequestErr`.
pub const BAD_REQUEST: ApiError = ApiError::fixed(400, 10003, "bad request");
/// `JSInvalidJSONErr`.
pub const INVALID_JSON: ApiError = ApiError::fixed(400, 10025, "invalid JSON");
/// `JSNotEmptyRequestErr`.
pub const NOT_EMPTY_REQUEST: ApiError =
    ApiError::fixed(400, 10038, "expected an empty request payload");
/// `JSNoMessageFoundErr`.
pub const NO_MESSAGE_FOUND: ApiError = ApiError::fixed(404, 10037, "no message found");
/// `JSStreamMessageExceedsMaximumErr`.
pub const MESSAGE_TOO_BIG: ApiError =
    ApiError::fixed(400, 10054, "message size exceeds maximum allowed");
/// `JSStreamMismatchErr`.
pub const STREAM_MISMATCH: ApiError =
    ApiError::fixed(400, 10056, "stream name in subject does not match request");
/// `JSStreamNameExistErr`.
pub const STREAM_NAME_IN_USE: ApiError = ApiError::fixed(
    400,
    10058,
    "stream name already in use with a different configuration",
);
/// `JSStreamNotFoundErr`.
pub const STREAM_NOT_FOUND: ApiError = ApiError::fixed(404, 10059, "stream not found");
/// `JSStreamNotMatchErr` (`Nats-Expected-Stream`).
pub const STREAM_NOT_MATCH: ApiError =
    ApiError::fixed(400, 10060, "expected stream does not match");
/// `JSStreamSubjectOverlapErr`.
pub const SUBJECT_OVERLAP: ApiError =
    ApiError::fixed(400, 10065, "subjects overlap with an existing stream");
/// `JSStreamReplicasNotSupportedErr`.
pub const REPLICAS_NOT_SUPPORTED: ApiError = ApiError::fixed(
    500,
    10074,
    "replicas > 1 not supported in non-clustered mode",
);
/// `JSStreamHeaderExceedsMaximumErr`.
pub const HEADER_TOO_BIG: ApiError =
    ApiError::fixed(400, 10097, "header size exceeds maximum allowed of 64k");
/// `JSStreamSealedErr`.
pub const STREAM_SEALED: ApiError =
    ApiError::fixed(400, 10109, "invalid operation on sealed stream");
/// `JSStreamNameContainsPathSeparatorsErr`.
pub const NAME_HAS_PATH_SEPARATORS: ApiError =
    ApiError::fixed(400, 10128, "Stream name can not contain path separators");
/// `JSReplicasCountCannotBeNegative`.
pub const REPLICAS_NEGATIVE: ApiError =
    ApiError::fixed(400, 10133, "replicas count cannot be negative");
/// `JSStreamMsgDeleteFailedF` for a stream with `deny_delete`.
pub const DELETE_NOT_PERMITTED: ApiError =
    ApiError::fixed(500, 10057, "message delete not permitted");
/// `JSStreamPurgeFailedF` for a stream with `deny_purge`.
pub const PURGE_NOT_PERMITTED: ApiError = ApiError::fixed(500, 10110, "stream purge not permitted");
/// `JSStreamRollupFailedF` for a `Nats-Rollup` header the stream does not allow.
pub const ROLLUP_NOT_PERMITTED: ApiError = ApiError::fixed(500, 10111, "rollup not permitted");
/// `JSConsumerNotFoundErr`.
pub const CONSUMER_NOT_FOUND: ApiError = ApiError::fixed(404, 10014, "consumer not found");
/// `JSConsumerCreateErrF`, for a consumer create while consumers are not built yet.
pub const CONSUMERS_NOT_SUPPORTED: ApiError =
    ApiError::fixed(500, 10012, "consumers are not supported yet");
/// `JSAccountResourcesExceededErr`: a stored message took the account's memory or storage
/// past its limit, and was taken back.
pub const ACCOUNT_RESOURCES_EXCEEDED: ApiError =
    ApiError::fixed(400, 10002, "resource limits exceeded for account");
/// `JSInsufficientResourcesErr`: the server's memory or storage was already past its limit
/// before the publish.
pub const INSUFFICIENT_RESOURCES: ApiError = ApiError::fixed(503, 10023, "insufficient resources");
/// `JSMaximumStreamsLimitErr`.
pub const MAX_STREAMS_REACHED: ApiError =
    ApiError::fixed(400, 10027, "maximum number of streams reached");
/// `JSMemoryResourcesExceededErr`: a memory stream's `max_bytes` does not fit in what is left.
pub const MEMORY_RESOURCES_EXCEEDED: ApiError =
    ApiError::fixed(500, 10028, "insufficient memory resources available");
/// `JSStorageResourcesExceededErr`: a file stream's `max_bytes` does not fit in what is left.
pub const STORAGE_RESOURCES_EXCEEDED: ApiError =
    ApiError::fixed(500, 10047, "insufficient storage resources available");
/// The store's text for `max_msgs` reached with discard new.
pub const MAX_MSGS_TEXT: &str = "maximum messages exceeded";
/// The store's text for `max_bytes` reached with discard new.
pub const MAX_BYTES_TEXT: &str = "maximum bytes exceeded";
/// The store's text for `max_msgs_per_subject` reached with `discard_new_per_subject`.
pub const MAX_MSGS_PER_SUBJECT_TEXT: &str = "maximum messages per subject exceeded";

/// `retention`: when a stream may drop a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Retention {
    /// Kept until a limit (count, bytes, age) removes it.
    #[default]
    Limits,
    /// Kept while a consumer has not acknowledged it (needs consumers).
    Interest,
    /// Removed once one consumer acknowledges it (needs consumers).
    #[serde(rename = "workqueue")]
    WorkQueue,
}

/// `discard`: what a full stream does with a new message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Discard {
    /// Drop the oldest messages to make room.
    #[default]
    Old,
    /// Refuse the new message.
    New,
}

/// `storage`: where a stream keeps its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// On disk (nats-server's default).
    #[default]
    File,
    /// In memory only.
    Memory,
}

/// A stream's configuration, as sent in `STREAM.CREATE`/`UPDATE` and echoed in `config`.
///
/// Zero means "not set" for the numeric limits; [`crate::js::stream::validate`] turns them
/// into nats-server's defaults (-1 for unlimited, a 2 minute `duplicate_window`, …).
/// `placement` is accepted and echoed (a single server has nowhere else to place a stream);
/// `mirror`, `sources` and `template_owner` are refused by validation.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StreamConfig {
    /// The stream's name.
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    /// Free text.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub description: String,
    /// Subjects (wildcards allowed) whose publishes the stream stores.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub subjects: Vec<String>,
    /// When messages may be dropped.
    #[serde(default, deserialize_with = "nullable")]
    pub retention: Retention,
    /// Most consumers (-1: unlimited).
    #[serde(default, deserialize_with = "nullable")]
    pub max_consumers: i64,
    /// Most messages (-1: unlimited).
    #[serde(default, deserialize_with = "nullable")]
    pub max_msgs: i64,
    /// Most bytes, counted as the store counts them (-1: unlimited).
    #[serde(default, deserialize_with = "nullable")]
    pub max_bytes: i64,
    /// Oldest message age, in nanoseconds (0: unlimited).
    #[serde(default, deserialize_with = "nullable")]
    pub max_age: i64,
    /// Most messages per subject (-1: unlimited).
    #[serde(default, deserialize_with = "nullable")]
    pub max_msgs_per_subject: i64,
    /// Largest header + payload, in bytes (-1: unlimited).
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_zero_i32"
    )]
    pub max_msg_size: i32,
    /// What a full stream does.
    #[serde(default, deserialize_with = "nullable")]
    pub discard: Discard,
    /// Where messages are kept.
    #[serde(default, deserialize_with = "nullable")]
    pub storage: Storage,
    /// Copies in a cluster: 1 here.
    #[serde(default, deserialize_with = "nullable")]
    pub num_replicas: i64,
    /// Publishes get no PubAck.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_false"
    )]
    pub no_ack: bool,
    /// Stream templates (deprecated in nats-server): refused.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub template_owner: String,
    /// `Nats-Msg-Id` de-duplication window, in nanoseconds.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_zero_i64"
    )]
    pub duplicate_window: i64,
    /// Cluster placement: accepted and echoed, meaningless on one server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<serde_json::Value>,
    /// Mirroring another stream: refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<serde_json::Value>,
    /// Sourcing other streams: refused when not empty.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub sources: Vec<serde_json::Value>,
    /// Republishing stored messages (`js::republish`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub republish: Option<super::republish::RePublish>,
    /// Direct get (`$JS.API.DIRECT.GET`) allowed.
    #[serde(default, deserialize_with = "nullable")]
    pub allow_direct: bool,
    /// Direct get on a mirror.
    #[serde(default, deserialize_with = "nullable")]
    pub mirror_direct: bool,
    /// Discard new applies per subject at `max_msgs_per_subject`.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "is_false"
    )]
    pub discard_new_per_subject: bool,
    /// No message gets in or out any more.
    #[serde(default, deserialize_with = "nullable")]
    pub sealed: bool,
    /// `STREAM.MSG.DELETE` refused.
    #[serde(default, deserialize_with = "nullable")]
    pub deny_delete: bool,
    /// `STREAM.PURGE` refused.
    #[serde(default, deserialize_with = "nullable")]
    pub deny_purge: bool,
    /// `Nats-Rollup` headers allowed.
    #[serde(default, deserialize_with = "nullable")]
    pub allow_rollup_hdrs: bool,
}

/// A stream's state, as in `STREAM.INFO`'s `state`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct StreamState {
    /// Messages kept.
    pub messages: u64,
    /// Bytes kept, as the store counts them.
    pub bytes: u64,
    /// Sequence of the first kept message (last + 1 when empty after a purge).
    pub first_seq: u64,
    /// Time of the first kept message.
    pub first_ts: GoTime,
    /// Sequence of the last stored message.
    pub last_seq: u64,
    /// Time of the last stored message.
    pub last_ts: GoTime,
    /// Distinct subjects kept.
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub num_subjects: u64,
    /// Messages per subject, when asked for with `subjects_filter`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subjects: Option<BTreeMap<String, u64>>,
    /// Sequences between first and last that are gone.
    #[serde(skip_serializing_if = "is_zero_u64")]
    pub num_deleted: u64,
    /// Those sequences, when asked for with `deleted_details`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted: Option<Vec<u64>>,
    /// Consumers on the stream (set by the consumer layer).
    pub consumer_count: u64,
}

/// `config`, `created` and `state` of one stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamInfo {
    /// The configuration with defaults applied.
    pub config: StreamConfig,
    /// When the stream was created.
    pub created: GoTime,
    /// Its state now.
    pub state: StreamState,
}

/// A stored message as `STREAM.MSG.GET` returns it (header and payload in base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredMsgJson {
    /// The subject it was published to.
    pub subject: String,
    /// Its sequence.
    pub seq: u64,
    /// Its header block, base64 (absent when empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hdrs: Option<String>,
    /// Its payload, base64 (absent when empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// When it was stored.
    pub time: GoTime,
}

/// Paging fields of list responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Paged {
    /// Items in all pages.
    pub total: usize,
    /// Index of this page's first item.
    pub offset: usize,
    /// Most items per page.
    pub limit: usize,
}

/// Account limits in `$JS.API.INFO`: the engine's server-wide [`crate::js::JsLimits`] for
/// memory, storage and streams (its one account has the whole server), -1 (unlimited) for
/// the rest, as nats-server reports an account with `jetstream { max_mem, max_file,
/// max_streams }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AccountLimits {
    /// Memory bytes.
    pub max_memory: i64,
    /// Storage bytes.
    pub max_storage: i64,
    /// Streams.
    pub max_streams: i64,
    /// Consumers.
    pub max_consumers: i64,
    /// Unacknowledged messages per consumer.
    pub max_ack_pending: i64,
    /// Bytes per memory stream.
    pub memory_max_stream_bytes: i64,
    /// Bytes per file stream.
    pub storage_max_stream_bytes: i64,
    /// Whether streams must set `max_bytes`.
    pub max_bytes_required: bool,
}

impl AccountLimits {
    /// No limit at all, as nats-server reports an account without JetStream limits (even
    /// when the server has `max_memory_store`/`max_file_store`).
    pub const UNLIMITED: AccountLimits = AccountLimits {
        max_memory: -1,
        max_storage: -1,
        max_streams: -1,
        max_consumers: -1,
        max_ack_pending: -1,
        memory_max_stream_bytes: -1,
        storage_max_stream_bytes: -1,
        max_bytes_required: false,
    };
}

/// API request counters in `$JS.API.INFO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct ApiStats {
    /// Requests answered.
    pub total: u64,
    /// Of which errors.
    pub errors: u64,
}

/// The body of `$JS.API.INFO`'s answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AccountInfo {
    /// Bytes in memory streams.
    pub memory: u64,
    /// Bytes in file streams.
    pub storage: u64,
    /// Streams.
    pub streams: usize,
    /// Consumers.
    pub consumers: u64,
    /// Limits.
    pub limits: AccountLimits,
    /// Request counters, before this request. nats-server counts a request when it answers
    /// through its API response path: a successful `STREAM.MSG.GET` is not counted, and a
    /// `STREAM.MSG.DELETE` of a missing sequence counts as a success.
    pub api: ApiStats,
}

/// `STREAM.NAMES` and `STREAM.LIST` request.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListRequest {
    /// First item wanted.
    #[serde(default, deserialize_with = "nullable")]
    pub offset: usize,
    /// Only streams whose subjects collide with this one.
    #[serde(default, deserialize_with = "nullable")]
    pub subject: String,
}

/// `STREAM.INFO` request.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct InfoRequest {
    /// First subject wanted (with `subjects_filter`).
    #[serde(default, deserialize_with = "nullable")]
    pub offset: usize,
    /// List the deleted sequences.
    #[serde(default, deserialize_with = "nullable")]
    pub deleted_details: bool,
    /// Count messages per subject matching this filter.
    #[serde(default, deserialize_with = "nullable")]
    pub subjects_filter: String,
}

/// `STREAM.PURGE` request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeRequest {
    /// Purge up to (not including) this sequence.
    #[serde(default, deserialize_with = "nullable")]
    pub seq: u64,
    /// Only messages whose subject matches.
    #[serde(default, deserialize_with = "nullable")]
    pub filter: String,
    /// Keep this many of the newest (matching) messages.
    #[serde(default, deserialize_with = "nullable")]
    pub keep: u64,
}

/// `STREAM.MSG.GET` request.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct MsgGetRequest {
    /// By sequence (or the start for `next_by_subj`).
    #[serde(default, deserialize_with = "nullable")]
    pub seq: u64,
    /// The last message on this subject.
    #[serde(default, deserialize_with = "nullable")]
    pub last_by_subj: String,
    /// The first message at or after `seq` matching this subject.
    #[serde(default, deserialize_with = "nullable")]
    pub next_by_subj: String,
}

/// `STREAM.MSG.DELETE` request.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct MsgDeleteRequest {
    /// The message to delete.
    #[serde(default, deserialize_with = "nullable")]
    pub seq: u64,
    /// Remove without overwriting the bytes on disk (same effect here).
    #[serde(default, deserialize_with = "nullable")]
    pub no_erase: bool,
}

/// A time as Go marshals a `time.Time` in UTC: `None` is Go's zero time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GoTime(pub Option<i64>);

impl Serialize for GoTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(ns) => s.serialize_str(&format_time(ns)),
            None => s.serialize_str(ZERO_TIME),
        }
    }
}

/// Formats unix nanoseconds as Go's `time.RFC3339Nano` in UTC:
/// `2026-12-02T05:45:52.355419023Z`, trailing fraction zeros dropped, no fraction at all
/// for a whole second.
pub fn format_time(unix_ns: i64) -> String {
    crate::gotime::rfc3339(unix_ns)
}

/// Reads a request body as nats-server does: bad JSON, a wrong type or an unknown enum string
/// is `invalid JSON`; `null` is an empty request.
///
/// # Errors
/// [`INVALID_JSON`].
pub fn parse_request<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    let trimmed = body.trim_ascii();
    if trimmed == b"null" {
        return Ok(T::default());
    }
    // serde would also read a struct from a JSON array; Go's decoder refuses it.
    if !trimmed.starts_with(b"{") {
        return Err(INVALID_JSON);
    }
    serde_json::from_slice(body).map_err(|_| INVALID_JSON)
}

/// A request whose body may be empty (nats-server's `isEmptyRequest`): the defaults then.
///
/// # Errors
/// [`INVALID_JSON`].
pub fn parse_optional<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if is_empty_request(body) {
        return Ok(T::default());
    }
    parse_request(body)
}

/// True for nats-server's "empty request": no bytes, `{}`, or a JSON object with no field.
pub fn is_empty_request(body: &[u8]) -> bool {
    if body.is_empty() || body == b"{}" {
        return true;
    }
    matches!(
        serde_json::from_slice::<serde_json::Value>(body),
        Ok(serde_json::Value::Object(map)) if map.is_empty()
    )
}

/// Serialises a response as Go's `encoding/json` does, byte for byte for these shapes:
/// compact, with `<`, `>` and `&` escaped as `\u003c`, `\u003e`, `\u0026` (they can only
/// occur inside strings, so replacing them everywhere is exact).
pub fn to_go_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Every type serialised here is made of strings, numbers, booleans, maps with string
    // keys and sequences, which serde_json cannot fail on.
    let raw = serde_json::to_vec(value).unwrap_or_default();
    let mut out = Vec::with_capacity(raw.len());
    for &b in &raw {
        match b {
            b'<' => out.extend_from_slice(b"\\u003c"),
            b'>' => out.extend_from_slice(b"\\u003e"),
            b'&' => out.extend_from_slice(b"\\u0026"),
            _ => out.push(b),
        }
    }
    out
}

/// Standard base64 with padding, as Go marshals a `[]byte`.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> shift & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Response `type` strings.
pub mod types {
    /// `$JS.API.INFO`.
    pub const ACCOUNT_INFO: &str = "io.nats.jetstream.api.v1.account_info_response";
    /// `STREAM.CREATE`.
    pub const STREAM_CREATE: &str = "io.nats.jetstream.api.v1.stream_create_response";
    /// `STREAM.UPDATE`.
    pub const STREAM_UPDATE: &str = "io.nats.jetstream.api.v1.stream_update_response";
    /// `STREAM.INFO`.
    pub const STREAM_INFO: &str = "io.nats.jetstream.api.v1.stream_info_response";
    /// `STREAM.DELETE`.
    pub const STREAM_DELETE: &str = "io.nats.jetstream.api.v1.stream_delete_response";
    /// `STREAM.PURGE`.
    pub const STREAM_PURGE: &str = "io.nats.jetstream.api.v1.stream_purge_response";
    /// `STREAM.NAMES`.
    pub const STREAM_NAMES: &str = "io.nats.jetstream.api.v1.stream_names_response";
    /// `STREAM.LIST`.
    pub const STREAM_LIST: &str = "io.nats.jetstream.api.v1.stream_list_response";
    /// `STREAM.MSG.GET`.
    pub const MSG_GET: &str = "io.nats.jetstream.api.v1.stream_msg_get_response";
    /// `STREAM.MSG.DELETE`.
    pub const MSG_DELETE: &str = "io.nats.jetstream.api.v1.stream_msg_delete_response";
    /// `CONSUMER.CREATE` and `CONSUMER.DURABLE.CREATE`.
    pub const CONSUMER_CREATE: &str = "io.nats.jetstream.api.v1.consumer_create_response";
    /// `CONSUMER.INFO`.
    pub const CONSUMER_INFO: &str = "io.nats.jetstream.api.v1.consumer_info_response";
    /// `CONSUMER.DELETE`.
    pub const CONSUMER_DELETE: &str = "io.nats.jetstream.api.v1.consumer_delete_response";
    /// `CONSUMER.NAMES`.
    pub const CONSUMER_NAMES: &str = "io.nats.jetstream.api.v1.consumer_names_response";
    /// `CONSUMER.LIST`.
    pub const CONSUMER_LIST: &str = "io.nats.jetstream.api.v1.consumer_list_response";
}

/// A `null` JSON value takes the field's default, as Go leaves the field untouched.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero_i32(n: &i32) -> bool {
    *n == 0
}

fn is_zero_i64(n: &i64) -> bool {
    *n == 0
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// Go's zero `time.Time`, marshalled.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_as_go_prints_them() {
        let cases = [
            (0, "1970-01-01T00:00:00Z"),
            (1_796_190_352_355_419_023, "2026-12-02T05:45:52.355419023Z"),
            (1_796_190_352_869_946_690, "2026-12-02T05:45:52.86994669Z"),
            (1_796_190_352_500_000_000, "2026-12-02T05:45:52.5Z"),
            (951_782_400_000_000_000, "2000-02-29T00:00:00Z"),
            (-1, "1969-12-31T23:59:59.999999999Z"),
        ];
        for (ns, text) in cases {
            assert_eq!(format_time(ns), text, "{ns}");
        }
        assert_eq!(
            serde_json::to_string(&GoTime(None)).unwrap(),
            "\"0001-01-01T00:00:00Z\""
        );
    }

    #[test]
    fn base64_matches_go() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"x"), "eA==");
        assert_eq!(base64(b"hello"), "aGVsbG8=");
        assert_eq!(base64(b"memory"), "bWVtb3J5");
        assert_eq!(
            base64(b"NATS/1.0\r\nNats-Msg-Id: id1\r\n\r\n"),
            "TkFUUy8xLjANCk5hdHMtTXNnLUlkOiBpZDENCg0K"
        );
    }

    #[test]
    fn requests_parse_as_go_reads_them() {
        assert!(is_empty_request(b""));
        assert!(is_empty_request(b"{}"));
        assert!(is_empty_request(b" { } "));
        assert!(!is_empty_request(b"x"));
        assert!(!is_empty_request(b"{\"seq\":1}"));
        let req: PurgeRequest = parse_request(b"{\"seq\":null,\"keep\":2}").unwrap();
        assert_eq!(req.keep, 2);
        let req: PurgeRequest = parse_request(b"null").unwrap();
        assert_eq!(req, PurgeRequest::default());
        assert_eq!(parse_request::<PurgeRequest>(b"{bad"), Err(INVALID_JSON));
        assert_eq!(parse_request::<PurgeRequest>(b"[1]"), Err(INVALID_JSON));
        assert_eq!(parse_request::<StreamConfig>(b""), Err(INVALID_JSON));
        assert_eq!(
            parse_request::<StreamConfig>(b"{\"retention\":\"bogus\"}"),
            Err(INVALID_JSON)
        );
    }

    #[test]
    fn go_json_escapes_html_characters() {
        let out = to_go_json(&serde_json::json!({"s": "a.> <&"}));
        assert_eq!(out, b"{\"s\":\"a.\\u003e \\u003c\\u0026\"}".to_vec());
    }
}
