//! Every cap the engine enforces, with its unit in the name and the reason for its value.

use std::time::Duration;

/// Longest control line, in bytes of arguments (after the op name and its blanks), as
/// nats-server's `max_control_line`: the parser's default, defined once in
/// [`net::limits::DEFAULT_MAX_CONTROL_LINE_BYTES`]; the engine has no flag for it.
pub const MAX_CONTROL_LINE_BYTES: usize = net::limits::DEFAULT_MAX_CONTROL_LINE_BYTES;

/// Default largest PUB/HPUB size (`--max-payload`), as nats-server's default `max_payload`
/// (1 MiB): the parser's default, defined once in net.
pub use net::limits::DEFAULT_MAX_PAYLOAD_BYTES;

/// Upper bound accepted for `--max-payload`: beyond this one client could make the server
/// buffer unreasonable amounts per connection (nats-server warns past 8 MiB, refuses past 64 MiB).
pub const MAX_MAX_PAYLOAD_BYTES: usize = 64 * 1024 * 1024;

/// Default pending outbound bytes per connection before it is cut off as a slow consumer,
/// as nats-server's default `max_pending` (64 MiB).
pub const DEFAULT_MAX_PENDING_BYTES: usize = 64 * 1024 * 1024;

/// A connection with more than `max_pending / STALL_DIVISOR` bytes pending is *stalled*: the
/// publishers whose messages reach it stop being read until it drains below half of that.
/// A quarter of the hard cap (16 MiB by default) leaves room for what is already on the
/// rings and in the read batch when a publisher is paused (a few MiB), so a reader that
/// keeps reading, however slowly, never reaches the hard cap.
pub const STALL_DIVISOR: usize = 4;

/// Publishers one stalled connection pauses at most; later ones are not paused by it (the
/// hard `max_pending` cap still bounds it). Each entry is a 12-byte connection key.
pub const MAX_STALLED_PUBLISHERS: usize = 1024;

/// Default time a stalled connection may go without taking a single byte before it is cut
/// as a slow consumer (`--write-deadline`). nats-server's 10 s stalls every publisher to it
/// for that long; a healthy reader on a live network drains *something* within a few
/// hundred milliseconds, so 2 s only cuts a subscriber that has stopped reading, and halves
/// what its publishers (and their other subscribers) wait five times over.
pub const DEFAULT_WRITE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);

/// How often a worker holding a stalled connection checks its write deadline when it has
/// nothing else to do: a 10 ms wake-up costs nothing measurable, and cuts within 10 ms of
/// the deadline.
pub const STALL_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

/// Default interval between server PINGs to an idle client (nats-server: 2 minutes).
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(120);

/// Default number of unanswered PINGs before `Stale Connection` (nats-server: 2).
pub const DEFAULT_PING_MAX: u32 = 2;

/// Default time a client has to send CONNECT when auth is required (nats-server: 2 s).
pub const DEFAULT_AUTH_TIMEOUT: Duration = Duration::from_secs(2);

/// Default time graceful shutdown spends flushing pending bytes before closing anyway.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Default time lame-duck mode takes to close every connection, grace period included
/// (nats-server's `lame_duck_duration`: 2 minutes).
pub const DEFAULT_LAME_DUCK_DURATION: Duration = Duration::from_secs(120);

/// Default time between lame-duck mode's `ldm` INFO and its first close, so that servers
/// put into lame-duck mode together do not send clients to each other (nats-server's
/// `lame_duck_grace_period`: 10 s).
pub const DEFAULT_LAME_DUCK_GRACE_PERIOD: Duration = Duration::from_secs(10);

/// Longest wait between two closes in lame-duck mode, across the server: a handful of clients
/// need not take the whole duration (nats-server's cap, 1 s).
pub const LAME_DUCK_MAX_CLOSE_INTERVAL: Duration = Duration::from_secs(1);

/// Items each inter-worker ring holds. 4096 envelopes of a few words each is ~100 KiB per
/// ring: enough to ride out a whole read batch of small publishes without a full ring.
pub const RING_CAPACITY_ITEMS: usize = 4096;

/// Message bytes in flight on one ring (pushed, not yet consumed). Past it the ring counts
/// as full even with free slots, so that 4096 slots of 1 MiB messages cannot pin 4 GiB, and
/// so that the burst a consumer hands one subscriber's socket in a batch stays far below
/// typical `max_pending` values. 2 MiB still holds thousands of chat-sized messages.
pub const RING_BUDGET_BYTES: u64 = 2 * 1024 * 1024;

/// How long a worker naps when it is waiting for a full ring to drain (and has nothing
/// else to do); a doorbell still wakes it at once for inbound work.
pub const OVERFLOW_NAP: std::time::Duration = std::time::Duration::from_millis(1);

/// Bytes read from a socket in one `read` call into the worker's shared read buffer.
pub const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Size of one pooled outbound chunk. Small, because in a large fan-out every subscriber
/// connection holds at least one chunk until the end-of-batch flush: a room of 10,000 with
/// 64 KiB chunks meant thousands of 64 KiB allocations per message (the criterion fan-out
/// bench and perf both showed it). 4 KiB still fills a 64-iovec `writev` with 256 KiB.
pub const OUTBOUND_CHUNK_BYTES: usize = 4 * 1024;

/// Free outbound chunks a worker keeps for reuse (32 MiB at most): enough for every
/// subscriber of a 10,000-member room split over two workers to get a pooled chunk.
pub const OUTBOUND_POOL_CHUNKS: usize = 8192;

/// Iovecs per vectored write: the outbound queue's own cap, defined once in
/// [`net::limits::MAX_IOVECS`] (the length of the array `flush_to` fills), so the two cannot
/// drift.
pub use net::limits::MAX_IOVECS;

/// Largest message (header, subject, reply, headers, payload) batched with others toward a
/// peer worker (`worker/links.rs`); larger ones get an allocation of their own, shared by
/// every destination worker instead of copied per destination. A copy of 4 KiB costs about
/// what a cross-thread allocation and free cost.
pub const BATCH_MSG_MAX_BYTES: usize = 4096;

/// A batch toward one peer is sealed (made one allocation and pushed) once it holds this
/// many bytes, so a block stays small enough that one slow delivery cannot pin much.
pub const BATCH_BLOCK_BYTES: usize = 64 * 1024;

/// Connections one io_uring submission sends to (the send ring's entries). A loop iteration
/// with more dirty connections makes one kernel entry per this many. 256 makes a kernel entry
/// cost well under 1 % of a round's sends, and keeps the memory the entries point at (a
/// `msghdr` and `MAX_IOVECS` iovecs each: ~1.1 KiB) near 280 KiB per worker.
pub const SEND_RING_ENTRIES: u32 = 256;

/// Most workers: a subscriber set records its workers in a 64-bit mask.
pub const MAX_WORKERS: usize = 64;

/// Connections the kernel may queue before `accept` (the listen backlog; Linux caps it at
/// `net.core.somaxconn`, 4096 by default). std's 128 overflows when thousands of clients
/// connect at once, and an overflowed connect waits a second or more for a SYN retry.
pub const LISTEN_BACKLOG: i32 = 4096;

/// Connections a server accepts at once (nats-server's default `max_connections`).
pub const MAX_CONNECTIONS: usize = 65536;

/// Reads from one connection per readiness event before others get a turn; the connection
/// is revisited on the next loop iteration, so one fast publisher cannot starve the rest.
pub const READS_PER_EVENT: usize = 16;

/// SUBs and UNSUBs one connection may have handled per turn before the worker moves on to
/// the others (its remaining ops wait, unparsed, for its next turn). 64 index changes cost
/// well under a millisecond at a million patterns, so a SUB flood delays nobody noticeably;
/// a client that subscribes to a few hundred subjects at start needs one or two turns.
pub const INDEX_CHANGES_PER_TURN: usize = 64;

/// Index removals a closing connection's subscriptions are applied in per loop iteration:
/// a connection with a million subscriptions is removed over many iterations instead of
/// freezing its worker (nothing is delivered to them meanwhile: their connection is gone).
/// A removal costs a few cache misses (~1-2 µs at a million patterns), so 64 hold the worker
/// ~0.1 ms per iteration; batches of 4096 took tens of milliseconds each, and made glibc
/// consolidate its free lists on every batch.
pub const INDEX_REMOVALS_PER_TURN: usize = 64;

/// Subscriptions one connection may hold. nats-server's default is unlimited; a cap keeps
/// one client from growing the index without bound (`-ERR 'maximum subscriptions exceeded'`,
/// the SUB is refused and the connection stays open, as nats-server's `max_subscriptions`).
pub const MAX_SUBS_PER_CONN: usize = 1 << 20;

/// Times a queue message is re-offered to another member of its group when the chosen one
/// turned out to be gone (unsubscribed, auto-unsubscribed or closed while the message was in
/// flight). Each try takes a fresh snapshot, so a few suffice; the bound stops a group that
/// churns faster than messages travel from bouncing one forever.
pub const QUEUE_REPICKS: u8 = 4;

/// Longest user or room name: one subject token, short enough to print and index.
pub const MAX_CHAT_NAME_BYTES: usize = 64;

/// Members one room may have (and the largest `limit` a room may set): a room's member set
/// is copied into every filtered subscriber set it builds, so it must stay bounded.
pub const MAX_ROOM_MEMBERS: usize = 100_000;

/// Default messages each room and direct conversation keeps for history (`--history`).
pub const DEFAULT_HISTORY_MESSAGES: usize = 1000;

/// Default bytes of history the whole server keeps (`--history-bytes`), split evenly between
/// workers; past it a worker drops its oldest kept messages first. 256 MiB keeps the full
/// default window of about 2,000 rooms of 128-byte messages.
pub const DEFAULT_HISTORY_BYTES: usize = 256 * 1024 * 1024;

/// Messages a history page holds when the request does not say.
pub const DEFAULT_HISTORY_PAGE: usize = 100;

/// Most messages one history page may ask for.
pub const MAX_HISTORY_PAGE: usize = 1000;

/// Rooms the whole server holds (split evenly between workers' shards): with member sets,
/// presence and cached subscriber sets, a room costs a few KiB before its history.
pub const MAX_ROOMS: usize = 65_536;

/// Direct conversations the whole server holds (split evenly between workers). One costs
/// about 850 bytes before its history (measured: 270,000 took 230 MB), so the cap bounds
/// that overhead near 55 MB. Conversations are never dropped (their sequence must go on).
pub const MAX_DM_CONVERSATIONS: usize = 65_536;

/// Rooms one user may have created and not closed (split evenly between workers), so that
/// one user cannot take every room of the server.
pub const MAX_ROOMS_PER_USER: usize = 1024;

/// Direct conversations one user may start (split evenly between workers), so that one user
/// cannot take every conversation of the server.
pub const MAX_DMS_PER_USER: usize = 1024;

/// Room memberships the whole server holds, over all rooms (split evenly between workers):
/// `room.add` takes any name, so without it rooms times `MAX_ROOM_MEMBERS` would bound
/// nothing in practice. A membership costs about 100 bytes (the name in two sets).
pub const MAX_MEMBERSHIPS: usize = 1 << 20;

/// Rooms one session may join (`room.join`, counting refused attempts): the session
/// remembers them to leave their presence when it closes.
pub const MAX_JOINED_ROOMS_PER_SESSION: usize = 4096;

/// Bytes a kept history message counts beyond its message: the entry itself and its slots
/// in the window and in the shard's queue of what was kept.
pub const HISTORY_ENTRY_OVERHEAD_BYTES: u64 = 96;

/// JSON bytes a history page item adds beyond its encoded payload and sender: field names,
/// quotes and three numbers of at most 20 digits (used to stop a page before `max_payload`).
pub const HISTORY_PAGE_ITEM_OVERHEAD_BYTES: usize = 120;

/// Names one page of `room.info` (members, admins) or `rooms.list` holds at most (and by
/// default): a page of 1,000 names stays well under 100 KiB.
pub const MAX_LIST_PAGE: usize = 1000;

/// Targets one `broadcast` may name.
pub const MAX_BROADCAST_TARGETS: usize = 1024;

/// Bytes one connection's chat requests to other workers may have in flight: what each
/// request carries there plus the most its answer can take
/// ([`crate::chat::request::Op::answer_bytes`]), counted when it is sent. Once a
/// connection's requests since its last barrier reach this, its parsing pauses behind a
/// barrier until every owner has answered all of them: however many requests a client
/// pipelines, the owners build at most this much (and one more request's answer) for it
/// before its outbound has taken the answers, and from there the stall mark, the write
/// deadline and `--max-pending` bound it. Without it, a 90-byte `history` request made its
/// owner build a 1 MB page, and a client that never read had gigabytes of answers built and
/// queued between workers for it, while everyone else on those workers waited.
///
/// 1 MiB, the default `max_payload`: one full history page at a time (a client paging
/// through history waits for each page's cursor anyway), or about 1,800 small requests per
/// round trip between workers (tens of microseconds), so pipelined requests and messages
/// lose little. It also keeps what one connection has in flight within one ring's byte
/// budget ([`RING_BUDGET_BYTES`]), so one client cannot fill an owner's ring toward its
/// worker by itself (an owner with a full ring stops reading its own clients). And it
/// bounds what one client makes an owner build between two turns of everyone else: the
/// owner builds a flooder's pages while its other clients wait, so four pages at a time
/// (4 MiB) would mean four times that wait.
pub const CHAT_IN_FLIGHT_BYTES_PER_CONN: u64 = 1024 * 1024;

/// What an answer other than a page is counted at before it is built: every
/// acknowledgement, room setting and error (names are at most [`MAX_CHAT_NAME_BYTES`])
/// fits, as do a history page's fields besides its messages.
pub const CHAT_SMALL_ANSWER_BYTES: u64 = 256;

/// JSON bytes a name in a `room.info` or `rooms.list` page, or a user in `room.presence`,
/// takes at most beside the name itself: a `rooms.list` item's other fields, the largest.
pub const NAME_ITEM_OVERHEAD_BYTES: u64 = 128;

/// Requests waiting for several workers' answers (`rooms.list`, `broadcast`) that one
/// connection may have at once; past it such a request is answered `429` at once.
pub const MAX_GATHERS_PER_CONN: usize = 64;

/// Stream names per `$JS.API.STREAM.NAMES` page, as nats-server's `JSApiNamesLimit`: clients
/// page with `offset` and stop at `total`, so the page size is part of the wire contract.
pub const JS_NAMES_PAGE_STREAMS: usize = 1024;

/// Stream infos per `$JS.API.STREAM.LIST` page, as nats-server's `JSApiListLimit` (a page of
/// full infos is much larger than a page of names).
pub const JS_LIST_PAGE_STREAMS: usize = 256;

/// Subjects per page of a `STREAM.INFO` request with `subjects_filter`, as nats-server's
/// `JSMaxSubjectDetails`.
pub const JS_INFO_PAGE_SUBJECTS: usize = 100_000;

/// After a write-ahead log batch fails (a full disk, an I/O error), how long file streams
/// refuse publishes before the next try: each failure makes the owner rebuild its streams
/// from the log (a replay of everything kept), so retrying per publish would spend the
/// owner's loop on rebuilds; one second is as long as a client waits for its refusal anyway
/// and short enough that service resumes promptly once space is back.
pub const JS_LOG_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// Consumers one stream may have (a stream's `max_consumers` may ask for fewer): each holds
/// its pending acknowledgements (up to `max_ack_pending`) and waiting pulls in the owner's
/// memory, so their number is bounded like everything else a client can make the server keep.
pub const JS_MAX_CONSUMERS_PER_STREAM: usize = 1024;

/// Longest stream or consumer name, in bytes, as nats-server's `JSMaxNameLen` (it names a
/// directory, and a consumer's name is a subject token).
pub const JS_MAX_NAME_BYTES: usize = 255;

/// Longest stream or consumer description, in bytes, as nats-server's `JSMaxDescriptionLen`.
pub const JS_MAX_DESCRIPTION_BYTES: usize = 4 * 1024;

/// Largest header block a stream stores, in bytes: nats-server keeps the length in 16 bits.
pub const JS_MAX_HEADER_BYTES: usize = u16::MAX as usize;

/// Most replicas a stream config may ask for, as nats-server's `StreamMaxReplicas` (a
/// non-clustered server then refuses anything above 1 anyway).
pub const JS_MAX_REPLICAS: i64 = 5;

/// Default `duplicate_window`, in nanoseconds, as nats-server's
/// `StreamDefaultDuplicatesWindow` (2 minutes).
pub const JS_DEFAULT_DUPLICATE_WINDOW_NS: i64 = 120_000_000_000;

/// Smallest non-zero `max_age` and `duplicate_window`, in nanoseconds (nats-server: 100 ms):
/// shorter windows would make the expiry timer the busiest thing on the worker.
pub const JS_MIN_WINDOW_NS: i64 = 100_000_000;

/// Bytes past which the write-ahead log starts a new segment (`store::log`). Space comes
/// back a whole segment at a time, so this is how precisely retention can free it; each
/// segment costs one directory sync when it is made and one sync when it is sealed, which
/// at 8 MiB is a few per second even at 100 MB/s of appends. A million 128-byte records
/// are 17 segments.
pub const SEGMENT_BYTES: u64 = 8 * 1024 * 1024;

/// Largest record payload the write-ahead log takes: the largest message
/// ([`MAX_MAX_PAYLOAD_BYTES`]) and 64 KiB for its subject, reply and the stream's own
/// fields. It is also the most recovery believes a length field: a longer one is
/// corruption, so garbage on disk never makes it allocate gigabytes.
pub const MAX_RECORD_BYTES: usize = MAX_MAX_PAYLOAD_BYTES + 64 * 1024;

/// Bytes recovery reads from a segment at a time: large enough that reading is a few
/// hundred system calls per segment rather than two per record, small enough to not
/// matter beside the segment itself.
pub const SCAN_WINDOW_BYTES: usize = 1024 * 1024;

/// Record bytes recovery's scan thread hands over at a time; it runs at most four such
/// chunks ahead of the replay (`store::log`).
pub const SCAN_CHUNK_BYTES: usize = 1024 * 1024;

/// Batches waiting for one log's committer thread (`store::commit`). A worker submits at
/// most one batch per log per loop iteration, so 1024 is a thousand iterations ahead of
/// the disk: far beyond what one fsync (about 0.5 ms here) lets pile up, and small enough
/// that a disk that has stopped answering makes submits fail within a second of load.
pub const COMMIT_QUEUE_BATCHES: usize = 1024;

/// Record bytes waiting for one log's committer thread; a batch is taken while less than
/// this is queued, so the queue holds at most this plus one batch. 16 MiB is 120,000
/// records of 128 bytes, far more than a round between two fsyncs ever takes, and bounds
/// what a slow disk makes the server hold per log.
pub const COMMIT_QUEUE_BYTES: u64 = 16 * 1024 * 1024;

/// The most bytes one record of a JetStream checkpoint carries: a checkpoint larger than
/// this is logged as several parts.
pub const CHECKPOINT_PART_BYTES: usize = 1024 * 1024;

/// The JetStream owner writes a checkpoint once this many bytes were logged since the last
/// one, or eight times the last checkpoint's size if that is more (so a checkpoint's cost
/// stays under an eighth of the log's write volume); the segments before the oldest one a
/// kept message is in are then removed.
pub const JS_CHECKPOINT_BYTES: u64 = 32 * 1024 * 1024;

/// Default `ack_wait` of an acknowledged consumer, in nanoseconds: nats-server's
/// `JsAckWaitDefault` (30 s), which clients rely on when they leave it out.
pub const JS_DEFAULT_ACK_WAIT_NS: i64 = 30_000_000_000;

/// Default `inactive_threshold` of an ephemeral consumer, in nanoseconds: nats-server's
/// `JsDeleteWaitTimeDefault` (5 s), written back in the consumer's config.
pub const JS_DEFAULT_INACTIVE_THRESHOLD_NS: i64 = 5_000_000_000;

/// Smallest push `idle_heartbeat`, in nanoseconds, as nats-server (100 ms): anything
/// faster is a timer storm, not a liveness signal.
pub const JS_MIN_HEARTBEAT_NS: i64 = 100_000_000;

/// Default `max_waiting` of a pull consumer, in requests: nats-server's
/// `JSWaitQueueDefaultMax` (512).
pub const JS_DEFAULT_MAX_WAITING: i64 = 512;

/// Largest `max_waiting` a consumer may ask for, in requests. Each waiting request keeps its
/// reply subject (up to a control line) and a few counters, so 4,096 is at most ~16 MiB per
/// consumer even with the longest reply subjects, and far above what clients use (nats.py,
/// async-nats and nats.js keep one or two requests outstanding per puller).
pub const JS_MAX_WAITING: i64 = 4096;

/// Default `max_ack_pending` of an acknowledged consumer, in messages: nats-server's
/// `JsDefaultMaxAckPending` (1,000).
pub const JS_DEFAULT_MAX_ACK_PENDING: i64 = 1000;

/// Largest `max_ack_pending`, in messages (and so the most entries a consumer's pending map
/// holds: redeliveries reuse their entry). nats-server has no default limit; a bound is
/// ours to pick: each entry is ~48 bytes in the map, so 20,000 is ~1 MiB per consumer, 20×
/// nats-server's default, and the ack timer scans it in well under a millisecond. An
/// unlimited (`-1`) or larger value is refused with nats-server's own "exceeds system
/// limit" error (10121).
pub const JS_MAX_ACK_PENDING: i64 = 20_000;

/// Subjects a `last_per_subject` consumer may start from, in sequence numbers kept (8 bytes
/// each, 800 KiB at most); a stream with more distinct subjects under the filter is refused
/// at create rather than held in an unbounded skip list.
pub const JS_MAX_LAST_PER_SUBJECT: usize = 100_000;

/// Bytes a push consumer with flow control may have delivered and unconfirmed at most:
/// nats-server's `JsFlowControlMaxPending` (32 MiB). Its window starts at a sixteenth of
/// this (2 MiB), a flow-control request goes out past half the window, and every answer
/// doubles the window up to this cap.
pub const JS_FLOW_CONTROL_MAX_PENDING_BYTES: u64 = 32 * 1024 * 1024;

/// Names one `CONSUMER.NAMES` page holds, as nats-server's `JSApiNamesLimit`.
pub const JS_API_NAMES_LIMIT: usize = 1024;

/// Infos one `CONSUMER.LIST` page holds, as nats-server's `JSApiListLimit`.
pub const JS_API_LIST_LIMIT: usize = 256;

/// Messages one consumer operation delivers at most; the rest is due at once through the
/// consumer's timeout, so a batch of a million, or a push consumer far behind its stream,
/// never builds one unbounded list of effects, and other work on the worker gets a turn
/// between slices. 256 keeps the per-call overhead (one timeout round per slice) well under
/// a percent of the deliveries' own cost.
pub const JS_MAX_DELIVERIES_PER_OP: usize = 256;

/// Bytes (subject, ack subject, headers and payload) one consumer operation delivers at
/// most, for the same reason: 4 MiB, four default-sized payloads, bounds the effect list of
/// one call however large the messages.
pub const JS_MAX_DELIVERY_BYTES_PER_OP: usize = 4 * 1024 * 1024;

/// Default bytes all memory streams keep together (`JsLimits::max_memory`), counted as
/// `state.bytes` counts them. nats-server defaults to 75 % of RAM, which suits a server
/// that can page file streams out; here every stored message, file streams' included, stays
/// in memory with an index entry beside it, so memory and storage together must fit in RAM
/// next to the connections' buffers. 1 GiB each (2 GiB in all) fits a small 4 GiB machine
/// and holds about 7 million 128-byte messages per storage.
pub const JS_DEFAULT_MAX_MEMORY_BYTES: u64 = 1024 * 1024 * 1024;

/// Default bytes all file streams keep together (`JsLimits::max_storage`), counted as
/// `state.bytes` counts them (nats-server's `fileStoreMsgSize`). nats-server defaults to
/// the disk's free space; the same in-memory copy as [`JS_DEFAULT_MAX_MEMORY_BYTES`] bounds
/// this one, so it gets the same 1 GiB.
pub const JS_DEFAULT_MAX_STORAGE_BYTES: u64 = 1024 * 1024 * 1024;

/// Default most streams (`JsLimits::max_streams`; a KV bucket is a stream too). A stream's
/// config counts in no byte limit and can be as large as a request (one max payload), so
/// the count is what bounds configs: 1024 (one `STREAM.NAMES` page) of at most 1 MiB each.
/// nats-server has no server-wide count, only accounts' `max_streams` (unlimited by default).
pub const JS_DEFAULT_MAX_STREAMS: usize = 1024;
