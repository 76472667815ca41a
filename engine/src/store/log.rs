//! The segmented log: framed records appended to numbered segment files, recovered by a
//! scan that stops at the first record it cannot trust.
//!
//! The format is in the [parent module](super). A [`Log`] is one writer, used from one
//! thread (the committer's); any number of [`Reader`]s read what it has written, from any
//! thread, through their own file handles.
//!
//! # Invariants
//! 1. Segment ids only grow; the last segment is the only one appended to (the *active*
//!    one). A segment is synced before the next one is created, so only the active
//!    segment can ever end in a torn record.
//! 2. Each segment is a sequence of whole valid records up to the length the writer knows
//!    (`written`); framed records not yet flushed wait in `pending`, and no location in it
//!    is handed to a reader before [`Log::flush`] or [`Log::sync`] returns.
//! 3. A failed write is cut back to `written` before the next append, so a record never
//!    follows a partial one. If that cut (or a sync) fails, the log is *broken*: it refuses
//!    appends until it is opened again, whose recovery sorts out what is on disk.
//!    After a failed `fdatasync`, Linux may have dropped the dirty pages and marked them
//!    clean, so a retried sync could succeed with data lost (PostgreSQL's "fsyncgate",
//!    2018): retrying is the rejected alternative.
//! 4. Recovery yields records in log order and never one at or after the first record
//!    that fails a check; the log it leaves holds exactly the records it yielded.
//!
//! # What recovery cannot see
//! A sealed segment that lost its end exactly at a record boundary looks whole: the format
//! has no per-segment trailer. Only a file system that loses synced data does that, which
//! is outside the model (a power loss only tears what was not yet synced, and only the
//! active segment holds such bytes).

use std::collections::VecDeque;
use std::io;

use super::file::{Dir, LogFile};
use crate::limits;

/// Where a record is: its segment, the offset of its header in the segment, and its
/// payload's length. Locations order as the records do in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// The segment's id (its file name's number).
    pub segment: u64,
    /// Offset of the record's header in the segment file.
    pub offset: u64,
    /// Payload bytes.
    pub len: u32,
}

/// How a log is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// A new segment starts when the active one would pass this many bytes (a record
    /// larger than this gets a segment of its own).
    pub segment_bytes: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            segment_bytes: limits::SEGMENT_BYTES,
        }
    }
}

/// What opening a log found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Segments kept.
    pub segments: usize,
    /// Records yielded.
    pub records: u64,
    /// Payload bytes of the records yielded.
    pub bytes: u64,
    /// A record cut short at the end of the last segment, truncated away.
    pub torn: Option<Torn>,
    /// The first record that failed its check; it and everything after it were dropped.
    pub corrupt: Option<Corrupt>,
}

/// A torn tail: the end of the last segment held part of a record (a write cut short by a
/// crash), or zeros where a record should start (a file extended but not written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Torn {
    /// The segment.
    pub segment: u64,
    /// Where the partial record started: the segment's length now.
    pub offset: u64,
    /// Bytes truncated away.
    pub bytes: u64,
}

/// A record that failed its check: a CRC mismatch, an impossible length, or a record cut
/// short in a segment that was sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Corrupt {
    /// The record's segment.
    pub segment: u64,
    /// The record's offset: the segment's length now.
    pub offset: u64,
    /// Bytes dropped: the rest of this segment and all of every later one.
    pub dropped_bytes: u64,
    /// Later segments removed.
    pub dropped_segments: usize,
}

/// A point in the log to roll back to ([`Log::mark`], [`Log::rollback`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    segment: u64,
    len: u64,
}

/// What went wrong in the log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The device is full (`ENOSPC`). Nothing of the write is kept; appends work again
    /// once space is freed.
    #[error("segment {segment}: {op}: no space left on the device")]
    DiskFull {
        /// What was being done.
        op: &'static str,
        /// The segment it was done to.
        segment: u64,
    },
    /// Any other I/O error.
    #[error("segment {segment}: {op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The segment it was done to (0: the directory).
        segment: u64,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A record must hold 1 to [`limits::MAX_RECORD_BYTES`] bytes.
    #[error(
        "a record of {bytes} bytes (records hold 1 to {} bytes)",
        limits::MAX_RECORD_BYTES
    )]
    RecordSize {
        /// The record's size.
        bytes: usize,
    },
    /// The record at a location does not check out: its header disagrees with the
    /// location, its CRC fails, or it lies past the end of its segment.
    #[error("the record at {location:?} is corrupt")]
    Corrupt {
        /// Where it was looked for.
        location: Location,
    },
    /// The location's segment is not there: reclaimed, or never written.
    #[error("segment {segment} does not exist")]
    Missing {
        /// The segment.
        segment: u64,
    },
    /// An earlier sync failed, or undoing a failed write did: the log takes no more appends
    /// until it is opened again (invariant 3).
    #[error("the log is unusable after an earlier failure; reopen it to recover")]
    Broken,
}

/// The writer of a segmented log (see the module docs).
pub struct Log<D: Dir> {
    dir: D,
    options: Options,
    /// Ids of the segments on disk, oldest first; the last is the active one (never empty).
    segments: VecDeque<u64>,
    active: D::File,
    /// Bytes of the active segment in its file.
    written: u64,
    /// Framed records after `written`, not yet in the file.
    pending: Vec<u8>,
    /// Something reached the active segment's file since its last sync.
    dirty: bool,
    broken: bool,
}

impl<D: Dir> Log<D> {
    /// Opens the log in `dir` (an empty directory makes an empty log), recovering it:
    /// `each` is called with every valid record, in order; a torn tail is truncated away, a
    /// corrupt record and everything after it dropped (see [`Recovery`]). Files whose names
    /// are not segment names are left alone.
    ///
    /// The scan (reading, checking CRCs, cutting a bad tail) runs on a thread of its own,
    /// [`limits::SCAN_CHUNK_BYTES`] of records ahead at most, while `each` runs on the
    /// caller's: on a restart the two overlap instead of adding up.
    pub fn open(
        dir: D,
        options: Options,
        mut each: impl FnMut(Location, &[u8]),
    ) -> Result<(Log<D>, Recovery), LogError> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Chunk>(SCAN_CHUNKS_AHEAD);
        std::thread::scope(|scope| {
            let scan_dir = dir.clone();
            let scanner = scope.spawn(move || {
                let mut chunk = Chunk::default();
                let result = Log::scan_all(scan_dir, options, &mut |location, payload| {
                    chunk.push(location, payload);
                    if chunk.data.len() >= limits::SCAN_CHUNK_BYTES {
                        // The receiver only goes away once this thread is done.
                        let _ = tx.send(std::mem::take(&mut chunk));
                    }
                });
                if !chunk.records.is_empty() {
                    let _ = tx.send(chunk);
                }
                result
            });
            for chunk in rx {
                for &(location, start, end) in &chunk.records {
                    each(location, &chunk.data[start..end]);
                }
            }
            scanner
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// [`Log::open`]'s scan, on its own thread: hands every valid record to `each`.
    fn scan_all(
        dir: D,
        options: Options,
        each: &mut dyn FnMut(Location, &[u8]),
    ) -> Result<(Log<D>, Recovery), LogError> {
        let names = dir.list().map_err(io_error("list", 0))?;
        let mut ids: Vec<u64> = names.iter().filter_map(|n| parse_name(n)).collect();
        ids.sort_unstable();
        let mut report = Recovery::default();
        let mut window = Window::default();
        let mut active = None;
        for (i, &id) in ids.iter().enumerate() {
            let mut file = dir.open(&segment_name(id)).map_err(io_error("open", id))?;
            let last = i + 1 == ids.len();
            let scan = scan(&file, id, last, &mut window, &mut |location, payload| {
                report.records += 1;
                report.bytes += payload.len() as u64;
                each(location, payload);
            })?;
            match scan.end {
                End::Clean => {}
                End::Torn => {
                    report.torn = Some(Torn {
                        segment: id,
                        offset: scan.valid,
                        bytes: scan.len - scan.valid,
                    });
                }
                End::Corrupt => {
                    let later = &ids[i + 1..];
                    let dropped = remove_all(&dir, later)?;
                    report.corrupt = Some(Corrupt {
                        segment: id,
                        offset: scan.valid,
                        dropped_bytes: scan.len - scan.valid + dropped,
                        dropped_segments: later.len(),
                    });
                }
            }
            if scan.end != End::Clean {
                // Invariant 4: later segments are gone before the bad record is, so a crash
                // in between finds the same bad record and finishes the job.
                file.truncate(scan.valid)
                    .map_err(io_error("truncate", id))?;
                file.sync().map_err(io_error("sync", id))?;
            }
            let stop = scan.end == End::Corrupt;
            active = Some((i, file, scan.valid));
            if stop {
                break;
            }
        }
        let (segments, active, written) = match active {
            Some((i, file, written)) => (ids[..=i].iter().copied().collect(), file, written),
            None => {
                let file = dir
                    .create(&segment_name(1))
                    .map_err(io_error("create", 1))?;
                (VecDeque::from([1]), file, 0)
            }
        };
        report.segments = segments.len();
        let log = Log {
            dir,
            options,
            segments,
            active,
            written,
            pending: Vec::new(),
            dirty: false,
            broken: false,
        };
        Ok((log, report))
    }

    /// Appends a record and returns where it will be. It is framed into memory only: it
    /// reaches the file at the next [`Log::flush`] or [`Log::sync`] (or when the segment
    /// fills), and readers must not be given its location before then.
    pub fn append(&mut self, payload: &[u8]) -> Result<Location, LogError> {
        self.usable()?;
        let len = match u32::try_from(payload.len()) {
            Ok(len) if len > 0 && payload.len() <= limits::MAX_RECORD_BYTES => len,
            _ => {
                return Err(LogError::RecordSize {
                    bytes: payload.len(),
                })
            }
        };
        let frame = (HEADER_BYTES + payload.len()) as u64;
        let size = self.written + self.pending.len() as u64;
        if size > 0 && size + frame > self.options.segment_bytes {
            self.rotate()?;
        }
        let offset = self.written + self.pending.len() as u64;
        self.pending.extend_from_slice(&len.to_le_bytes());
        self.pending
            .extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
        self.pending.extend_from_slice(payload);
        Ok(Location {
            segment: self.active_id(),
            offset,
            len,
        })
    }

    /// Writes the appended records to the active segment's file (one write), without
    /// syncing: they are then readable, and survive a process crash but not a power loss.
    /// On error none of them is kept (the file is cut back to before them).
    pub fn flush(&mut self) -> Result<(), LogError> {
        self.usable()?;
        if self.pending.is_empty() {
            return Ok(());
        }
        let id = self.active_id();
        let result = self.active.append(&self.pending);
        self.pending.clear();
        self.dirty = true;
        match result {
            Ok(()) => {
                self.written = self.active.len().map_err(io_error("len", id))?;
                Ok(())
            }
            Err(e) => {
                if self.active.truncate(self.written).is_err() {
                    self.broken = true;
                }
                Err(io_error("append", id)(e))
            }
        }
    }

    /// Flushes, then makes everything appended durable (`fdatasync` of the active segment;
    /// earlier segments were synced when they were sealed). A failed sync breaks the log
    /// (invariant 3).
    pub fn sync(&mut self) -> Result<(), LogError> {
        self.flush()?;
        if !self.dirty {
            return Ok(());
        }
        if let Err(e) = self.active.sync() {
            self.broken = true;
            return Err(io_error("sync", self.active_id())(e));
        }
        self.dirty = false;
        Ok(())
    }

    /// The current end of the log, to [roll back](Log::rollback) to.
    pub fn mark(&self) -> Mark {
        Mark {
            segment: self.active_id(),
            len: self.written + self.pending.len() as u64,
        }
    }

    /// Drops every record appended after `mark` (removing segments started since), so the
    /// next append follows the record before it. The cut is durable at the next sync. If
    /// it fails the log is broken.
    pub fn rollback(&mut self, mark: Mark) -> Result<(), LogError> {
        self.usable()?;
        self.pending.clear();
        let result = self.rollback_files(mark);
        if result.is_err() {
            self.broken = true;
        }
        result
    }

    /// Removes every segment older than `first_kept`'s, oldest first: the caller needs no
    /// record before `first_kept`. The active segment is never removed. Returns how many
    /// segments went.
    pub fn remove_before(&mut self, first_kept: Location) -> Result<usize, LogError> {
        self.remove_segments_before(first_kept.segment)
    }

    /// A reader of this log's directory.
    pub fn reader(&self) -> Reader<D> {
        Reader::new(self.dir.clone())
    }

    /// Removes every segment older than segment `id`, except the active one.
    pub(super) fn remove_segments_before(&mut self, id: u64) -> Result<usize, LogError> {
        let mut removed = 0;
        while let Some(&oldest) = self.segments.front() {
            if oldest >= id || self.segments.len() == 1 {
                break;
            }
            self.dir
                .remove(&segment_name(oldest))
                .map_err(io_error("remove", oldest))?;
            self.segments.pop_front();
            removed += 1;
        }
        Ok(removed)
    }

    fn active_id(&self) -> u64 {
        // Invariant: `segments` is never empty (open puts one in, nothing takes the last).
        self.segments.back().copied().unwrap_or(0)
    }

    fn usable(&self) -> Result<(), LogError> {
        match self.broken {
            true => Err(LogError::Broken),
            false => Ok(()),
        }
    }

    /// Seals the active segment (flushed and synced, invariant 1) and starts the next.
    fn rotate(&mut self) -> Result<(), LogError> {
        self.sync()?;
        let id = self.active_id() + 1;
        let name = segment_name(id);
        let file = match self.dir.create(&name) {
            Ok(file) => file,
            Err(e) => {
                // The file may exist without its directory entry being durable; take it away
                // so the next rotation can create it again (an empty segment left behind
                // would be harmless to recovery anyway).
                let _ = self.dir.remove(&name);
                return Err(io_error("create", id)(e));
            }
        };
        self.active = file;
        self.segments.push_back(id);
        self.written = 0;
        self.dirty = false;
        Ok(())
    }

    fn rollback_files(&mut self, mark: Mark) -> Result<(), LogError> {
        while self.active_id() > mark.segment && self.segments.len() > 1 {
            let newest = self.active_id();
            self.dir
                .remove(&segment_name(newest))
                .map_err(io_error("remove", newest))?;
            self.segments.pop_back();
            let id = self.active_id();
            self.active = self
                .dir
                .open(&segment_name(id))
                .map_err(io_error("open", id))?;
            self.written = self.active.len().map_err(io_error("len", id))?;
        }
        if self.written > mark.len {
            self.active
                .truncate(mark.len)
                .map_err(io_error("truncate", mark.segment))?;
            self.written = mark.len;
            self.dirty = true;
        }
        Ok(())
    }
}

/// Reads records by location, from any thread: it opens segments read-only and reads with
/// positioned reads, so it shares nothing with the writer but the files. Each clone keeps
/// one segment open (the last it read); a reclaimed segment it still holds stays readable
/// until it moves on, as Unix keeps a removed file for its open handles.
pub struct Reader<D: Dir> {
    dir: D,
    open: Option<(u64, D::File)>,
}

impl<D: Dir> Clone for Reader<D> {
    fn clone(&self) -> Reader<D> {
        Reader::new(self.dir.clone())
    }
}

impl<D: Dir> Reader<D> {
    /// A reader of the log in `dir`.
    pub fn new(dir: D) -> Reader<D> {
        Reader { dir, open: None }
    }

    /// Reads the record at `location` into `buf` (reused: it holds the header too) and
    /// returns its payload, checked against its CRC. Only locations the writer has flushed
    /// may be read; any other gives an error, never a wrong record.
    pub fn read<'b>(
        &mut self,
        location: Location,
        buf: &'b mut Vec<u8>,
    ) -> Result<&'b [u8], LogError> {
        let len = location.len as usize;
        if len == 0 || len > limits::MAX_RECORD_BYTES {
            return Err(LogError::RecordSize { bytes: len });
        }
        let file = self.file(location.segment)?;
        buf.clear();
        buf.resize(HEADER_BYTES + len, 0);
        match file.read_at(location.offset, buf) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(LogError::Corrupt { location })
            }
            Err(e) => return Err(io_error("read", location.segment)(e)),
        }
        let (header, payload) = buf.split_at(HEADER_BYTES);
        let (stored_len, crc) = parse_header(header);
        if stored_len != location.len || crc != crc32c::crc32c(payload) {
            return Err(LogError::Corrupt { location });
        }
        Ok(payload)
    }

    fn file(&mut self, segment: u64) -> Result<&D::File, LogError> {
        if !matches!(&self.open, Some((id, _)) if *id == segment) {
            self.open = None;
            let file = self
                .dir
                .open_read(&segment_name(segment))
                .map_err(|e| match e.kind() {
                    io::ErrorKind::NotFound => LogError::Missing { segment },
                    _ => io_error("open", segment)(e),
                })?;
            self.open = Some((segment, file));
        }
        self.open
            .as_ref()
            .map(|(_, file)| file)
            .ok_or(LogError::Missing { segment })
    }
}

/// The file name of segment `id`: 20 digits, so names sort as ids do.
fn segment_name(id: u64) -> String {
    format!("{id:020}{SEGMENT_SUFFIX}")
}

/// The id in a segment's file name; `None` for any other name.
fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A header's payload length and CRC. `header` is [`HEADER_BYTES`] long.
fn parse_header(header: &[u8]) -> (u32, u32) {
    let mut len = [0u8; 4];
    let mut crc = [0u8; 4];
    len.copy_from_slice(&header[..4]);
    crc.copy_from_slice(&header[4..HEADER_BYTES]);
    (u32::from_le_bytes(len), u32::from_le_bytes(crc))
}

fn io_error(op: &'static str, segment: u64) -> impl FnOnce(io::Error) -> LogError {
    move |source| match source.kind() {
        io::ErrorKind::StorageFull => LogError::DiskFull { op, segment },
        _ => LogError::Io {
            op,
            segment,
            source,
        },
    }
}

/// Removes the segments `ids`, newest first; returns the bytes they held.
fn remove_all<D: Dir>(dir: &D, ids: &[u64]) -> Result<u64, LogError> {
    let mut bytes = 0;
    for &id in ids.iter().rev() {
        let name = segment_name(id);
        let file = dir.open_read(&name).map_err(io_error("open", id))?;
        bytes += file.len().map_err(io_error("len", id))?;
        dir.remove(&name).map_err(io_error("remove", id))?;
    }
    Ok(bytes)
}

/// Records the scan has checked, on their way to the caller of [`Log::open`].
#[derive(Default)]
struct Chunk {
    data: Vec<u8>,
    /// Each record's location and its payload's range in `data`.
    records: Vec<(Location, usize, usize)>,
}

impl Chunk {
    fn push(&mut self, location: Location, payload: &[u8]) {
        let start = self.data.len();
        self.data.extend_from_slice(payload);
        self.records.push((location, start, self.data.len()));
    }
}

/// Chunks the scan may have ready before the caller takes them.
const SCAN_CHUNKS_AHEAD: usize = 4;

/// How a segment's scan ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// At the end of the file, after a whole record.
    Clean,
    /// At a partial record at the end of the last segment.
    Torn,
    /// At a record that failed a check.
    Corrupt,
}

/// A segment's scan.
struct Scan {
    /// Bytes of whole valid records from the start.
    valid: u64,
    /// The file's length.
    len: u64,
    end: End,
}

/// Yields the valid records of one segment and says where and why the scan stopped.
fn scan<F: LogFile>(
    file: &F,
    id: u64,
    last: bool,
    window: &mut Window,
    each: &mut dyn FnMut(Location, &[u8]),
) -> Result<Scan, LogError> {
    let len = file.len().map_err(io_error("len", id))?;
    let read = |e| io_error("read", id)(e);
    window.clear();
    // A sealed segment was synced whole (invariant 1): a short record there is corruption.
    let short = if last { End::Torn } else { End::Corrupt };
    let mut offset = 0;
    let end = loop {
        let remaining = len - offset;
        if remaining == 0 {
            break End::Clean;
        }
        if remaining < HEADER_BYTES as u64 {
            break short;
        }
        let header = window
            .bytes(file, offset, HEADER_BYTES, len)
            .map_err(read)?;
        let (payload_len, crc) = parse_header(header);
        if payload_len == 0 {
            // Zeros to the end are a file extended but never written (some file systems
            // leave that after a crash); a zero length anywhere else is damage.
            break match last && window.zeros_to_end(file, offset, len).map_err(read)? {
                true => End::Torn,
                false => End::Corrupt,
            };
        }
        if payload_len as usize > limits::MAX_RECORD_BYTES {
            break End::Corrupt;
        }
        let frame = HEADER_BYTES as u64 + u64::from(payload_len);
        if frame > remaining {
            break short;
        }
        let payload = window
            .bytes(
                file,
                offset + HEADER_BYTES as u64,
                payload_len as usize,
                len,
            )
            .map_err(read)?;
        if crc32c::crc32c(payload) != crc {
            break End::Corrupt;
        }
        let location = Location {
            segment: id,
            offset,
            len: payload_len,
        };
        each(location, payload);
        offset += frame;
    };
    Ok(Scan {
        valid: offset,
        len,
        end,
    })
}

/// The part of a segment recovery has read, [`limits::SCAN_WINDOW_BYTES`] at a time.
#[derive(Default)]
struct Window {
    /// The file offset of `buf[0]`.
    start: u64,
    buf: Vec<u8>,
}

impl Window {
    fn clear(&mut self) {
        self.start = 0;
        self.buf.clear();
    }

    /// The `n` bytes at `offset`, reading ahead when they are not already here. The caller
    /// has checked that they lie within the file's `len`.
    fn bytes<F: LogFile>(
        &mut self,
        file: &F,
        offset: u64,
        n: usize,
        len: u64,
    ) -> io::Result<&[u8]> {
        let end = offset + n as u64;
        if offset < self.start || end > self.start + self.buf.len() as u64 {
            let ahead = (n.max(limits::SCAN_WINDOW_BYTES) as u64).min(len - offset);
            // `ahead` is at most the window or `n`, both of which fit in memory.
            self.buf.resize(usize::try_from(ahead).unwrap_or(n), 0);
            file.read_at(offset, &mut self.buf)?;
            self.start = offset;
        }
        let from = usize::try_from(offset - self.start).unwrap_or(usize::MAX);
        self.buf
            .get(from..from.saturating_add(n))
            .ok_or_else(|| io::ErrorKind::UnexpectedEof.into())
    }

    /// Whether every byte from `offset` to the file's `len` is zero.
    fn zeros_to_end<F: LogFile>(&mut self, file: &F, offset: u64, len: u64) -> io::Result<bool> {
        let mut at = offset;
        while at < len {
            let n = (len - at).min(limits::SCAN_WINDOW_BYTES as u64) as usize;
            if self.bytes(file, at, n, len)?.iter().any(|&b| b != 0) {
                return Ok(false);
            }
            at += n as u64;
        }
        Ok(true)
    }
}

/// A record header: payload length, then CRC32C of the payload, both u32 little-endian.
const HEADER_BYTES: usize = 8;

/// What every segment file's name ends with.
const SEGMENT_SUFFIX: &str = ".log";

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::store::file::{SimDir, SplitMix64, TempDir};

    /// Small segments, so a few records rotate.
    const SMALL: Options = Options { segment_bytes: 256 };

    fn record(i: u64, rng: &mut SplitMix64) -> Vec<u8> {
        let len = 1 + rng.upto(60) as usize;
        let mut bytes = i.to_le_bytes().to_vec();
        bytes.extend((0..len).map(|_| rng.next() as u8));
        bytes
    }

    fn records(n: u64, seed: u64) -> Vec<Vec<u8>> {
        let mut rng = SplitMix64::new(seed);
        (0..n).map(|i| record(i, &mut rng)).collect()
    }

    /// The records recovery yielded, with their locations.
    type Seen = Vec<(Location, Vec<u8>)>;

    fn open<D: Dir>(dir: &D, options: Options) -> (Log<D>, Recovery, Seen) {
        let mut seen = Vec::new();
        let (log, report) = Log::open(dir.clone(), options, |loc, payload| {
            seen.push((loc, payload.to_vec()))
        })
        .unwrap();
        (log, report, seen)
    }

    /// A log in `dir` holding `records`, synced; returns their locations.
    fn write<D: Dir>(dir: &D, options: Options, records: &[Vec<u8>]) -> Vec<Location> {
        let (mut log, _, seen) = open(dir, options);
        assert!(seen.is_empty());
        let locations = records.iter().map(|r| log.append(r).unwrap()).collect();
        log.sync().unwrap();
        locations
    }

    /// Rewrites a file through the seam.
    fn edit(dir: &SimDir, name: &str, change: impl FnOnce(&mut Vec<u8>)) {
        let mut file = dir.open(name).unwrap();
        let mut bytes = vec![0; file.len().unwrap() as usize];
        file.read_at(0, &mut bytes).unwrap();
        change(&mut bytes);
        file.truncate(0).unwrap();
        file.append(&bytes).unwrap();
        file.sync().unwrap();
    }

    fn segment_names(dir: &impl Dir) -> Vec<String> {
        let mut names = dir.list().unwrap();
        names.sort();
        names
    }

    #[test]
    fn records_round_trip_through_recovery_and_the_reader() {
        let dir = SimDir::new(0);
        let records = records(40, 1);
        let locations = write(&dir, SMALL, &records);
        let (_log, report, seen) = open(&dir, SMALL);
        let expect: Vec<_> = locations.iter().copied().zip(records.clone()).collect();
        assert_eq!(seen, expect);
        assert_eq!(report.records, 40);
        assert_eq!(
            report.bytes,
            records.iter().map(|r| r.len() as u64).sum::<u64>()
        );
        assert_eq!((report.torn, report.corrupt), (None, None));
        let mut reader = Reader::new(dir.clone());
        let mut buf = Vec::new();
        for (location, record) in &expect {
            assert_eq!(reader.read(*location, &mut buf).unwrap(), &record[..]);
        }
    }

    #[test]
    fn framing_is_length_crc_payload() {
        let dir = SimDir::new(0);
        write(&dir, Options::default(), &[b"abc".to_vec()]);
        let mut bytes = [0u8; 11];
        dir.open("00000000000000000001.log")
            .unwrap()
            .read_at(0, &mut bytes)
            .unwrap();
        assert_eq!(&bytes[..4], &3u32.to_le_bytes());
        assert_eq!(&bytes[4..8], &crc32c::crc32c(b"abc").to_le_bytes());
        assert_eq!(&bytes[8..], b"abc");
    }

    #[test]
    fn segments_rotate_past_their_size() {
        let dir = SimDir::new(0);
        let (mut log, _, _) = open(&dir, SMALL);
        let mut previous: Option<Location> = None;
        for i in 0..20u8 {
            let location = log.append(&[i; 100]).unwrap();
            // 108-byte frames: two fit in 256 bytes.
            assert_eq!(location.segment, 1 + u64::from(i) / 2);
            if let Some(previous) = previous {
                assert!(previous < location);
            }
            previous = Some(location);
        }
        let big = log.append(&[7; 1000]).unwrap();
        let after = log.append(b"x").unwrap();
        assert_eq!((big.segment, big.offset), (11, 0));
        assert_eq!((after.segment, after.offset), (12, 0));
        log.sync().unwrap();
        assert_eq!(segment_names(&dir).len(), 12);
        assert_eq!(segment_names(&dir)[11], "00000000000000000012.log");
    }

    #[test]
    fn a_torn_tail_at_every_byte_is_cut_and_reported() {
        let records = records(6, 2);
        let dir = SimDir::new(0);
        let locations = write(&dir, SMALL, &records);
        let last = locations[5];
        let name = segment_name(last.segment);
        let end = last.offset + HEADER_BYTES as u64 + u64::from(last.len);
        for cut in last.offset..end {
            let dir = dir.kill();
            dir.open(&name).unwrap().truncate(cut).unwrap();
            let (mut log, report, seen) = open(&dir, SMALL);
            assert_eq!(seen.len(), 5, "cut at {cut}");
            let torn = Torn {
                segment: last.segment,
                offset: last.offset,
                bytes: cut - last.offset,
            };
            assert_eq!(report.torn, (cut > last.offset).then_some(torn));
            assert_eq!(report.corrupt, None);
            // Appends continue where the last whole record ended.
            assert_eq!(log.append(b"again").unwrap().offset, last.offset);
            log.sync().unwrap();
            let (_, report, seen) = open(&dir, SMALL);
            assert_eq!((seen.len(), report.torn), (6, None));
            assert_eq!(seen[5].1, b"again");
        }
    }

    #[test]
    fn a_zero_filled_tail_is_torn_not_corrupt() {
        let dir = SimDir::new(0);
        let locations = write(&dir, SMALL, &records(1, 3));
        let name = segment_name(1);
        let end = dir.open(&name).unwrap().len().unwrap();
        dir.open(&name).unwrap().append(&[0; 40]).unwrap();
        let (_, report, seen) = open(&dir, SMALL);
        assert_eq!(seen.len(), 1);
        assert_eq!(locations.len(), 1);
        assert_eq!(
            report.torn,
            Some(Torn {
                segment: 1,
                offset: end,
                bytes: 40
            })
        );
    }

    #[test]
    fn a_flipped_bit_in_any_record_stops_recovery_exactly_there() {
        let records = records(12, 4);
        let dir = SimDir::new(0);
        let locations = write(&dir, SMALL, &records);
        let last_segment = locations[11].segment;
        for (i, location) in locations.iter().enumerate() {
            let frame = HEADER_BYTES + location.len as usize;
            for byte in 0..frame {
                let dir = dir.kill();
                let at = location.offset as usize + byte;
                edit(&dir, &segment_name(location.segment), |b| {
                    b[at] ^= 1 << (byte % 8)
                });
                let (mut log, report, seen) = open(&dir, SMALL);
                assert_eq!(seen.len(), i, "record {i}, byte {byte}");
                let at_record =
                    |segment, offset| (segment, offset) == (location.segment, location.offset);
                match (report.torn, report.corrupt) {
                    (None, Some(c)) => {
                        assert!(at_record(c.segment, c.offset), "{c:?}");
                        assert_eq!(c.dropped_segments as u64, last_segment - location.segment);
                    }
                    // A longer length running past the end of the last segment looks like
                    // a torn tail: still cut exactly at this record.
                    (Some(t), None) => {
                        assert!(byte < 4 && location.segment == last_segment);
                        assert!(at_record(t.segment, t.offset), "{t:?}");
                    }
                    other => panic!("record {i}, byte {byte}: {other:?}"),
                }
                assert_eq!(segment_names(&dir).len() as u64, location.segment);
                // Nothing after the bad record ever comes back, and appends go on from it.
                let next = log.append(b"next").unwrap();
                assert_eq!(
                    (next.segment, next.offset),
                    (location.segment, location.offset)
                );
                log.sync().unwrap();
                let (_, report, seen) = open(&dir, SMALL);
                assert_eq!(
                    (seen.len(), report.corrupt, report.torn),
                    (i + 1, None, None)
                );
            }
        }
    }

    #[test]
    fn reading_checks_the_record() {
        let dir = SimDir::new(0);
        let locations = write(&dir, SMALL, &records(3, 5));
        let mut reader = Reader::new(dir.clone());
        let mut buf = Vec::new();
        let wrong_len = Location {
            len: locations[1].len + 1,
            ..locations[1]
        };
        let past_end = Location {
            offset: 10_000,
            ..locations[1]
        };
        let nowhere = Location {
            segment: 99,
            ..locations[1]
        };
        for (location, corrupt) in [(wrong_len, true), (past_end, true), (nowhere, false)] {
            match reader.read(location, &mut buf) {
                Err(LogError::Corrupt { .. }) if corrupt => {}
                Err(LogError::Missing { segment: 99 }) if !corrupt => {}
                other => panic!("{location:?}: {other:?}"),
            }
        }
        edit(&dir, &segment_name(locations[2].segment), |b| {
            let last = b.len() - 1;
            b[last] ^= 0x80;
        });
        let mut fresh = reader.clone();
        assert!(matches!(
            fresh.read(locations[2], &mut buf),
            Err(LogError::Corrupt { .. })
        ));
    }

    #[test]
    fn whole_segments_before_a_location_are_reclaimed() {
        let dir = SimDir::new(0);
        let records = records(30, 6);
        let (mut log, _, _) = open(&dir, SMALL);
        let locations: Vec<_> = records.iter().map(|r| log.append(r).unwrap()).collect();
        log.sync().unwrap();
        let keep = locations[17];
        let before = segment_names(&dir).len();
        let removed = log.remove_before(keep).unwrap();
        assert_eq!(removed as u64, keep.segment - 1);
        assert_eq!(segment_names(&dir).len(), before - removed);
        let mut reader = log.reader();
        let mut buf = Vec::new();
        assert!(matches!(
            reader.read(locations[0], &mut buf),
            Err(LogError::Missing { .. })
        ));
        assert_eq!(reader.read(keep, &mut buf).unwrap(), &records[17][..]);
        // Never the active segment, however far the caller asks.
        let end = Location {
            segment: u64::MAX,
            offset: 0,
            len: 1,
        };
        log.remove_before(end).unwrap();
        assert_eq!(segment_names(&dir).len(), 1);
        log.append(b"still going").unwrap();
        log.sync().unwrap();
        let (_, report, seen) = open(&dir, SMALL);
        assert_eq!(report.segments, 1);
        assert_eq!(seen.last().unwrap().1, b"still going");
    }

    #[test]
    fn rollback_undoes_appends_across_a_rotation() {
        let dir = SimDir::new(0);
        let records = records(20, 7);
        let (mut log, _, _) = open(&dir, SMALL);
        for record in &records[..3] {
            log.append(record).unwrap();
        }
        log.sync().unwrap();
        let mark = log.mark();
        for record in &records[3..] {
            log.append(record).unwrap();
        }
        log.flush().unwrap();
        log.rollback(mark).unwrap();
        let next = log.append(b"after").unwrap();
        log.sync().unwrap();
        let (_, _, seen) = open(&dir, SMALL);
        let kept: Vec<_> = seen.iter().map(|(_, r)| r.clone()).collect();
        assert_eq!(kept[..3], records[..3]);
        assert_eq!(kept[3], b"after");
        assert_eq!(seen.len(), 4);
        assert_eq!(seen[3].0, next);
    }

    #[test]
    fn a_full_disk_keeps_nothing_of_the_failed_write() {
        let dir = SimDir::new(0);
        let (mut log, _, _) = open(&dir, Options::default());
        log.append(b"first").unwrap();
        log.sync().unwrap();
        dir.set_space_bytes(Some(30));
        log.append(&[1; 40]).unwrap();
        assert!(matches!(
            log.sync(),
            Err(LogError::DiskFull { op: "append", .. })
        ));
        dir.set_space_bytes(None);
        log.append(b"second").unwrap();
        log.sync().unwrap();
        let (_, _, seen) = open(&dir, Options::default());
        let kept: Vec<_> = seen.into_iter().map(|(_, r)| r).collect();
        assert_eq!(kept, vec![b"first".to_vec(), b"second".to_vec()]);
    }

    #[test]
    fn a_failed_sync_breaks_the_log_until_it_is_reopened() {
        let dir = SimDir::new(0);
        let (mut log, _, _) = open(&dir, Options::default());
        log.append(b"kept").unwrap();
        log.sync().unwrap();
        log.append(b"unsure").unwrap();
        // The next operation is the write, the one after it the sync.
        dir.fail_op(dir.ops() + 2);
        assert!(matches!(log.sync(), Err(LogError::Io { op: "sync", .. })));
        assert!(matches!(log.append(b"more"), Err(LogError::Broken)));
        let (_, _, seen) = open(&dir, Options::default());
        assert_eq!(seen[0].1, b"kept");
    }

    #[test]
    fn records_of_a_bad_size_are_refused() {
        let (mut log, _, _) = open(&SimDir::new(0), SMALL);
        assert!(matches!(
            log.append(b""),
            Err(LogError::RecordSize { bytes: 0 })
        ));
        let huge = vec![0; limits::MAX_RECORD_BYTES + 1];
        assert!(matches!(
            log.append(&huge),
            Err(LogError::RecordSize { .. })
        ));
    }

    #[test]
    fn strangers_in_the_directory_are_left_alone() {
        let dir = SimDir::new(0);
        let mut other = dir.create("notes.txt").unwrap();
        other.append(b"not a segment").unwrap();
        dir.create("1.log").unwrap();
        write(&dir, SMALL, &records(2, 8));
        let (_, report, seen) = open(&dir, SMALL);
        assert_eq!((seen.len(), report.segments), (2, 1));
        assert_eq!(segment_names(&dir).len(), 3);
    }

    #[test]
    fn the_os_dir_round_trips_and_cuts_a_torn_tail() {
        let temp = TempDir::new("log");
        let dir = temp.dir();
        let records = records(50, 9);
        let locations = write(&dir, SMALL, &records);
        let last = *locations.last().unwrap();
        dir.open(&segment_name(last.segment))
            .unwrap()
            .truncate(last.offset + 3)
            .unwrap();
        let (_, report, seen) = open(&dir, SMALL);
        assert_eq!(seen.len(), 49);
        assert_eq!(report.torn.map(|t| t.bytes), Some(3));
        let mut reader = Reader::new(dir.clone());
        let mut buf = Vec::new();
        assert_eq!(
            reader.read(locations[20], &mut buf).unwrap(),
            &records[20][..]
        );
    }

    /// A change to the bytes of a log on disk.
    #[derive(Debug, Clone)]
    enum Damage {
        /// Garbage after the end of a segment.
        Append { segment: usize, bytes: Vec<u8> },
        /// Garbage over bytes somewhere in a segment.
        Overwrite {
            segment: usize,
            at: usize,
            bytes: Vec<u8>,
        },
        /// The last segment cut somewhere (a sealed segment cut at a record boundary is
        /// outside what recovery can see: see the module docs).
        Truncate { at: usize },
    }

    fn damage() -> impl Strategy<Value = Damage> {
        let bytes = proptest::collection::vec(any::<u8>(), 1..40);
        prop_oneof![
            (any::<usize>(), bytes.clone())
                .prop_map(|(segment, bytes)| Damage::Append { segment, bytes }),
            (any::<usize>(), any::<usize>(), bytes)
                .prop_map(|(segment, at, bytes)| Damage::Overwrite { segment, at, bytes }),
            any::<usize>().prop_map(|at| Damage::Truncate { at }),
        ]
    }

    proptest! {
        /// Whatever is done to the bytes on disk: no panic, recovery yields a prefix of what
        /// was written, and the log it leaves takes appends and recovers them.
        #[test]
        fn any_damage_yields_a_prefix_of_the_records(
            n in 1u64..30,
            seed in any::<u64>(),
            damages in proptest::collection::vec(damage(), 1..4),
        ) {
            let dir = SimDir::new(seed);
            let records = records(n, seed);
            write(&dir, SMALL, &records);
            let names = segment_names(&dir);
            for damage in damages {
                let pick = |segment: usize| names[segment % names.len()].clone();
                match damage {
                    Damage::Append { segment, bytes } => {
                        dir.open(&pick(segment)).unwrap().append(&bytes).unwrap();
                    }
                    Damage::Overwrite { segment, at, bytes } => edit(&dir, &pick(segment), |b| {
                        if b.is_empty() {
                            return;
                        }
                        let at = at % b.len();
                        for (i, byte) in bytes.into_iter().enumerate() {
                            if let Some(slot) = b.get_mut(at + i) {
                                *slot = byte;
                            }
                        }
                    }),
                    Damage::Truncate { at } => {
                        let mut file = dir.open(&pick(names.len() - 1)).unwrap();
                        let len = file.len().unwrap();
                        file.truncate(at as u64 % (len + 1)).unwrap();
                    }
                }
            }
            let (mut log, report, seen) = open(&dir, SMALL);
            prop_assert!(seen.len() <= records.len());
            for (i, (_, record)) in seen.iter().enumerate() {
                prop_assert_eq!(record, &records[i]);
            }
            prop_assert_eq!(report.records as usize, seen.len());
            log.append(b"after").unwrap();
            log.sync().unwrap();
            let (_, report, again) = open(&dir, SMALL);
            prop_assert_eq!(report.corrupt, None);
            prop_assert_eq!(report.torn, None);
            prop_assert_eq!(again.len(), seen.len() + 1);
            prop_assert_eq!(&again[seen.len()].1, b"after");
        }
    }
}
