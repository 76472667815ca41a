//! Every cap and default of the load generator, with its unit and why it has that value.

/// Missing sequence numbers remembered per (publisher, subscriber) pair. A gap wider than this
/// is still counted in full; only its oldest numbers can no longer be told apart from
/// duplicates if they arrive late. 4096 covers any reordering a TCP-based server produces.
pub const MAX_TRACKED_GAPS: usize = 4096;

/// Connections a worker thread has in their handshake at once. Opening 10,000 at once would
/// overflow the server's accept backlog (`net.core.somaxconn` is 4096 here) and turn into SYN
/// retransmits of a second or more, which would be measured as connection time.
pub const MAX_CONNECTING_PER_THREAD: usize = 256;

/// Bytes read from a socket per `read` call, into a buffer shared by a thread's connections.
pub const READ_CHUNK_BYTES: usize = 256 * 1024;

/// Unsent bytes a publisher may queue before scheduled messages are dropped (and counted as
/// such). Far beyond what a healthy server leaves unread; it only bounds memory when a server
/// stops reading altogether.
pub const MAX_PUBLISHER_BACKLOG_BYTES: usize = 64 * 1024 * 1024;

/// Leftover bytes of a partial frame a connection may hold between reads: nats-server's
/// default `max_payload` (1 MiB, [`net::limits::DEFAULT_MAX_PAYLOAD_BYTES`]) plus room for
/// the control line.
pub const MAX_PARTIAL_FRAME_BYTES: usize = net::limits::DEFAULT_MAX_PAYLOAD_BYTES + 8 * 1024;

/// File descriptors kept beyond one per connection (stdio, epoll, wakers, files written).
pub const SPARE_FDS: u64 = 64;

/// How long to wait for every connection to be confirmed before giving up, in seconds.
pub const CONNECT_TIMEOUT_SECS: u64 = 120;

/// Largest latency the histograms hold, in nanoseconds (one minute); larger values are
/// recorded as this value.
pub const MAX_LATENCY_NS: u64 = 60_000_000_000;

/// Significant decimal digits the latency histograms keep (0.1 % resolution).
pub const HISTOGRAM_SIGFIGS: u8 = 3;

/// Delay between telling the threads to start and the first scheduled tick, in nanoseconds,
/// so every thread has received the start time before it is due.
pub const START_DELAY_NS: u64 = 20_000_000;

/// If no delivery has arrived for this long after publishing stopped, draining ends (seconds).
pub const DRAIN_QUIET_SECS: f64 = 1.0;

/// Default in-flight window of the closed-loop (`--max`) mode, in deliveries over all
/// publishers: each publisher's window in messages is this divided by the deliveries one
/// message of every publisher causes. Counting deliveries rather than messages keeps what a
/// server must buffer similar across fan-outs (64 Ki deliveries of 128 B is 8 MiB), far below
/// the slow-consumer limits of nats-server (64 MiB per connection) and Redis (32 MiB), and
/// keeps closed-loop latency a measure of the server rather than of a deep queue.
pub const DEFAULT_WINDOW_DELIVERIES: u64 = 65_536;

/// Largest default window, in messages: enough pipelining to saturate a 1 -> 1 path.
pub const MAX_DEFAULT_WINDOW_MESSAGES: u64 = 2048;

/// Longest wait for the answer to a chat request (`room.create`) during setup, in seconds.
/// A loopback server answers in well under a millisecond; this only bounds a server that
/// never answers (no chat layer, or a peer that is not the engine).
pub const CHAT_REPLY_TIMEOUT_SECS: u64 = 10;

/// Longest wait for the answer to a JetStream API request (`loadgen js`), in seconds. A
/// loopback server answers in well under a millisecond, a file stream's create or delete
/// in a few; this only bounds a server that never answers.
pub const JS_REQUEST_TIMEOUT_SECS: u64 = 10;

/// How long `loadgen js` waits with PubAcks (or pulled messages) outstanding and nothing
/// arriving before it gives up, in seconds. A healthy server confirms within milliseconds
/// even under `--fsync always`; five seconds of silence means it stopped answering.
pub const JS_STALL_SECS: u64 = 5;

/// Default byte cap of the stream `loadgen js` creates (`--max-bytes`): 1 GiB, about 10 s
/// of 128 B messages at 800k/s. docs/streams.md: a stream without a cap grows until the
/// server runs out of memory; with the cap, old messages are discarded instead.
pub const JS_DEFAULT_MAX_BYTES: u64 = 1 << 30;

/// `max_ack_pending` of the consumer `loadgen js --mode consume` creates: far above
/// `--batch` × `--pulls`, so the consumer never waits for its own acks to be processed
/// (the server's default would apply otherwise, and differs between servers), and within
/// the engine's cap per consumer (20,000; nats-server has none).
pub const JS_MAX_ACK_PENDING: u64 = 20_000;

/// `ack_wait` of that consumer, in nanoseconds (30 s, the NATS default): every message is
/// acked at once, so a redelivery during a drain means an ack was lost.
pub const JS_ACK_WAIT_NS: u64 = 30_000_000_000;

/// `expires` of each pull request, in nanoseconds: a request the stream cannot fill ends
/// with a 408 after one second and is sent again.
pub const JS_PULL_EXPIRES_NS: u64 = 1_000_000_000;

/// Unsent bytes past which the JetStream publisher waits for the socket instead of queueing
/// more (a window of 1024 × 128 B is ~200 KiB of frames).
pub const JS_HIGH_WATER_BYTES: usize = 512 * 1024;

/// PubAck or pull errors whose text a JetStream report keeps (all are counted).
pub const JS_ERRORS_KEPT: usize = 8;
