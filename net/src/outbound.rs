//! A connection's pending outbound bytes, kept in pooled fixed-size chunks and flushed
//! with vectored writes.
//!
//! Why chunks rather than one growing `Vec`: a slow reader can hold up to `max_pending`
//! bytes (64 MiB by default); a single vector would be reallocated and copied as it grows
//! and compacted with a memmove after each partial write. Chunks are appended and released
//! whole, come from a per-worker [`ChunkPool`], and map directly onto the iovecs of one
//! `writev` (the rejected alternative, a `Vec` of `Arc` payload slices per message, costs
//! an iovec and an atomic increment per delivery, which loses to a copy for the small
//! messages chat traffic is made of).

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

use crate::limits::MAX_IOVECS;
use crate::proto::Put;

/// Free chunks kept by one worker for reuse by all its connections.
#[derive(Debug)]
pub struct ChunkPool {
    free: Vec<Vec<u8>>,
    chunk_bytes: usize,
    max_free: usize,
}

impl ChunkPool {
    /// A pool handing out chunks of `chunk_bytes`, keeping at most `max_free` spare ones.
    pub fn new(chunk_bytes: usize, max_free: usize) -> ChunkPool {
        ChunkPool {
            free: Vec::new(),
            chunk_bytes: chunk_bytes.max(64),
            max_free,
        }
    }

    fn take(&mut self) -> Vec<u8> {
        self.free
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.chunk_bytes))
    }

    fn give(&mut self, mut chunk: Vec<u8>) {
        if self.free.len() < self.max_free && chunk.capacity() == self.chunk_bytes {
            chunk.clear();
            self.free.push(chunk);
        }
    }

    /// Spare chunks currently held.
    pub fn spare(&self) -> usize {
        self.free.len()
    }
}

/// Bytes waiting to be written to one connection.
#[derive(Debug, Default)]
pub struct Outbound {
    chunks: VecDeque<Vec<u8>>,
    /// Bytes of the front chunk already written.
    front_written: usize,
    pending: usize,
}

/// What one flush achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flushed {
    /// Everything pending was written.
    All,
    /// The socket would block with bytes still pending; wait for writability.
    Blocked,
}

impl Outbound {
    /// Bytes queued and not yet written.
    pub fn pending_bytes(&self) -> usize {
        self.pending
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.pending == 0
    }

    /// A sink that appends to this queue, taking chunks from `pool`.
    pub fn writer<'a>(&'a mut self, pool: &'a mut ChunkPool) -> OutboundWriter<'a> {
        OutboundWriter { out: self, pool }
    }

    /// Writes as much as the socket takes, in vectored writes of up to `max_iovecs` chunks
    /// (at most [`MAX_IOVECS`]).
    pub fn flush_to<W: Write>(
        &mut self,
        sink: &mut W,
        pool: &mut ChunkPool,
        max_iovecs: usize,
    ) -> io::Result<Flushed> {
        while self.pending > 0 {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let (n, _) = self.slices(&mut slices[..max_iovecs.min(MAX_IOVECS)]);
            let written = match sink.write_vectored(&slices[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(w) => w,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flushed::Blocked),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.consume(written, pool);
        }
        Ok(Flushed::All)
    }

    /// Fills `into` with the pending bytes, oldest first, one slice per chunk (as many chunks
    /// as `into` holds). Returns the slices filled and the bytes they cover.
    pub fn slices<'a>(&'a self, into: &mut [IoSlice<'a>]) -> (usize, usize) {
        let mut n = 0;
        let mut bytes = 0;
        for (i, chunk) in self.chunks.iter().enumerate() {
            if n == into.len() {
                break;
            }
            let start = if i == 0 { self.front_written } else { 0 };
            if start < chunk.len() {
                into[n] = IoSlice::new(&chunk[start..]);
                bytes += chunk.len() - start;
                n += 1;
            }
        }
        (n, bytes)
    }

    /// Marks the first `written` pending bytes as written (a write that went elsewhere, such
    /// as a batched send), returning emptied chunks to `pool`. More than is pending counts as
    /// all of it.
    pub fn advance(&mut self, written: usize, pool: &mut ChunkPool) {
        self.consume(written.min(self.pending), pool);
    }

    /// Drops every queued byte, returning the chunks to `pool`.
    pub fn clear(&mut self, pool: &mut ChunkPool) {
        while let Some(chunk) = self.chunks.pop_front() {
            pool.give(chunk);
        }
        self.front_written = 0;
        self.pending = 0;
    }

    fn consume(&mut self, mut written: usize, pool: &mut ChunkPool) {
        self.pending -= written;
        while written > 0 {
            let Some(front) = self.chunks.front() else {
                break;
            };
            let left = front.len() - self.front_written;
            if written < left {
                self.front_written += written;
                return;
            }
            written -= left;
            self.front_written = 0;
            if let Some(chunk) = self.chunks.pop_front() {
                pool.give(chunk);
            }
        }
        // The last chunk may have been fully written while still being the one appended to;
        // it was returned to the pool above, so appending starts a fresh chunk.
    }
}

/// Appends to an [`Outbound`]; see [`Outbound::writer`].
#[derive(Debug)]
pub struct OutboundWriter<'a> {
    out: &'a mut Outbound,
    pool: &'a mut ChunkPool,
}

impl Put for OutboundWriter<'_> {
    fn put_parts(&mut self, parts: &[&[u8]]) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        match self.out.chunks.back_mut() {
            // NB: one room check for the whole frame, then plain copies: the fan-out hot path
            // (results/2026-12-02-msg-template.md).
            Some(last) if last.capacity() - last.len() >= len => {
                self.out.pending += len;
                for part in parts {
                    last.extend_from_slice(part);
                }
            }
            _ => {
                for part in parts {
                    self.put(part);
                }
            }
        }
    }

    fn put(&mut self, mut bytes: &[u8]) {
        self.out.pending += bytes.len();
        while !bytes.is_empty() {
            let need_new = match self.out.chunks.back() {
                Some(last) => last.len() == last.capacity(),
                None => true,
            };
            if need_new {
                let chunk = self.pool.take();
                self.out.chunks.push_back(chunk);
            }
            // A chunk was pushed just above if there was none with room.
            let Some(last) = self.out.chunks.back_mut() else {
                return;
            };
            let room = last.capacity() - last.len();
            let n = room.min(bytes.len());
            last.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that accepts at most `limit` bytes per call, then blocks after `budget`.
    struct Sink {
        data: Vec<u8>,
        per_call: usize,
        budget: usize,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.budget == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.per_call).min(self.budget);
            self.data.extend_from_slice(&buf[..n]);
            self.budget -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn writes_everything_in_order_across_chunks_and_partial_writes() {
        let mut pool = ChunkPool::new(64, 4);
        let mut out = Outbound::default();
        let mut expect = Vec::new();
        for i in 0..100u32 {
            let piece = format!("message {i} ").into_bytes();
            out.writer(&mut pool).put(&piece);
            expect.extend_from_slice(&piece);
        }
        assert_eq!(out.pending_bytes(), expect.len());
        let mut sink = Sink {
            data: Vec::new(),
            per_call: 37,
            budget: 500,
        };
        assert_eq!(
            out.flush_to(&mut sink, &mut pool, 8).unwrap(),
            Flushed::Blocked
        );
        assert_eq!(sink.data.len(), 500);
        assert_eq!(out.pending_bytes(), expect.len() - 500);
        sink.budget = usize::MAX;
        assert_eq!(out.flush_to(&mut sink, &mut pool, 8).unwrap(), Flushed::All);
        assert_eq!(sink.data, expect);
        assert!(out.is_empty());
        assert!(pool.spare() <= 4);
    }

    #[test]
    fn large_put_spans_chunks_and_clear_returns_them() {
        let mut pool = ChunkPool::new(64, 16);
        let mut out = Outbound::default();
        out.writer(&mut pool).put(&[7u8; 1000]);
        assert_eq!(out.pending_bytes(), 1000);
        out.clear(&mut pool);
        assert!(out.is_empty());
        assert_eq!(pool.spare(), 16);
    }

    #[test]
    fn put_parts_fills_a_chunk_then_spills_into_the_next_in_order() {
        let mut pool = ChunkPool::new(16, 4);
        let mut out = Outbound::default();
        let mut expect = Vec::new();
        for i in 0..20u8 {
            let parts: [&[u8]; 3] = [b"MSG a ", &[b'0' + i % 10], b" 0\r\n\r\n"];
            out.writer(&mut pool).put_parts(&parts);
            expect.extend(parts.concat());
        }
        assert_eq!(out.pending_bytes(), expect.len());
        let mut sink = Sink {
            data: Vec::new(),
            per_call: usize::MAX,
            budget: usize::MAX,
        };
        assert_eq!(out.flush_to(&mut sink, &mut pool, 8).unwrap(), Flushed::All);
        assert_eq!(sink.data, expect);
    }
}
