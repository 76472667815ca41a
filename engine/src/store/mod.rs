//! The per-shard write-ahead log under durable streams (being built: the file seam first).
//!
//! # Layout
//! - [`file`](mod@file): the seam to the file system: a directory and its files, the operating
//!   system's implementation and a simulated one that can lose power, fill up and fail.

pub mod file;

pub use file::{Dir, LogFile, OsDir, SimDir};
