//! The per-shard write-ahead log under durable streams: an append-only log of records in
//! numbered segment files, recovered at start-up, with appends committed (written and
//! synced) on a thread of its own so that no worker's event loop ever waits for the disk.
//!
//! # Layout
//! - [`file`](mod@file): the seam to the file system: a directory and its files, the operating
//!   system's implementation and a simulated one that can lose power, fill up and fail.
//! - [`log`]: the segmented log: framing, rotation, reading by location, recovery,
//!   reclaiming whole segments.
//! - [`commit`]: the committer thread: group commit under an fsync policy, reports through
//!   a notifier the owner supplies.
//!
//! # On disk
//! A log is a directory of segment files named by their id, 20 decimal digits and `.log`
//! (`00000000000000000001.log`), so names sort as ids do; ids start at 1 and only grow.
//! Other files in the directory are ignored. A segment is a sequence of records, each:
//!
//! ```text
//! +----------------+----------------+---------------------+
//! | length: u32 LE | crc32c: u32 LE | payload: length B   |
//! +----------------+----------------+---------------------+
//! ```
//!
//! `length` is the payload's, 1 to [`limits::MAX_RECORD_BYTES`](crate::limits::MAX_RECORD_BYTES)
//! bytes (zero never starts a record, so a zero-filled tail is not mistaken for records);
//! `crc32c` is CRC-32C (Castagnoli) of the payload. There is no file header, no padding and
//! no trailer. A segment is closed (*sealed*, and synced) when the next record would take
//! it past [`limits::SEGMENT_BYTES`](crate::limits::SEGMENT_BYTES); a larger record gets a
//! segment to itself. A record is addressed by its [`Location`]: segment id, offset of its
//! header, payload length.
//!
//! # Invariants
//! - Only the last segment is appended to, and every earlier one was synced whole before
//!   the next was created: a torn record can only be at the end of the last segment.
//! - Recovery yields the records in log order and stops at the first it cannot trust; what
//!   it leaves on disk is exactly what it yielded, so new appends follow a valid record
//!   (details in [`log`]).
//! - A batch is reported committed only after what its policy promises has happened
//!   ([`commit`] lists what each policy risks on a process crash and on a power loss).
//!
//! # Caps
//! Record size [`limits::MAX_RECORD_BYTES`](crate::limits::MAX_RECORD_BYTES), segment size
//! [`limits::SEGMENT_BYTES`](crate::limits::SEGMENT_BYTES), the committer's queue
//! [`limits::COMMIT_QUEUE_BATCHES`](crate::limits::COMMIT_QUEUE_BATCHES) batches and
//! [`limits::COMMIT_QUEUE_BYTES`](crate::limits::COMMIT_QUEUE_BYTES) bytes, recovery's read
//! window [`limits::SCAN_WINDOW_BYTES`](crate::limits::SCAN_WINDOW_BYTES).

pub mod commit;
pub mod file;
pub mod log;

pub use commit::{Batch, CommitError, Committed, Committer, FsyncPolicy, Outcome, SubmitError};
pub use file::{Dir, LogFile, OsDir, SimDir};
pub use log::{Location, Log, LogError, Options, Reader, Recovery};
