//! Batched sends through io_uring: every connection a loop iteration wrote to is flushed with
//! one kernel entry for the whole batch, instead of one `writev` per connection.
//!
//! mio keeps readiness, accepting and wake-ups; only the writes go through the ring. A flush
//! is **synchronous**: [`SendRing::flush`] submits the batch and returns only once every send
//! it submitted has completed and been reaped. Each send carries `MSG_DONTWAIT`, so the kernel
//! runs it inline during the submission and a full socket answers `EAGAIN` at once (never a
//! poll armed in the background, never a send that outlives the call).
//!
//! # Invariants (what makes the `unsafe` sound)
//! 1. A submitted entry points at a `msghdr` and an iovec array in `Slots`, and through them
//!    at chunks of an [`Outbound`] held in the caller's `&mut [Send]`. Neither is touched,
//!    moved or freed until that entry's completion has been reaped: `Slots` is filled only
//!    before a submission, the batch is borrowed mutably for the whole call, and the call
//!    does not return while any entry of the round is unreaped.
//! 2. If the ring fails in a way that leaves entries possibly in flight (an `io_uring_enter`
//!    error other than `EINTR`/`EAGAIN`/`EBUSY`), the chunks they point at are leaked on
//!    purpose, the ring is marked broken, and every later flush reports an error: memory is
//!    never reused while the kernel may still read it.
//! 3. One entry per connection per round, so two sends to one socket never race.
//!
//! Connections closed while a send is in flight cannot happen here by construction: nothing
//! else runs on the worker during a flush. A peer that resets during one gets its error in
//! the completion, and the caller closes it after the flush returns.

use std::io::{self, IoSlice};
use std::os::fd::RawFd;

use io_uring::{opcode, types, IoUring, Probe};
use net::limits::MAX_IOVECS;
use net::outbound::{ChunkPool, Flushed, Outbound};

/// One connection's part of a batch: its socket, its pending bytes (moved in for the call)
/// and, after [`SendRing::flush`], what happened.
#[derive(Debug)]
pub struct Send {
    /// The socket.
    pub fd: RawFd,
    /// The bytes to send; what was sent is gone from it afterwards.
    pub out: Outbound,
    /// The caller's key for this connection (its slot), untouched here.
    pub key: usize,
    /// Bytes sent by the flush.
    pub sent: usize,
    /// What the flush achieved: everything sent, the socket full, or an error.
    pub outcome: io::Result<Flushed>,
}

impl Send {
    /// A connection to flush.
    pub fn new(fd: RawFd, out: Outbound, key: usize) -> Send {
        Send {
            fd,
            out,
            key,
            sent: 0,
            outcome: Ok(Flushed::All),
        }
    }
}

/// The memory a round's entries point at: one `msghdr` and one iovec array per entry.
struct Slots {
    hdrs: Box<[libc::msghdr]>,
    iovs: Box<[[libc::iovec; MAX_IOVECS]]>,
}

// SAFETY: the raw pointers in `hdrs` and `iovs` are written and used only inside one
// `SendRing::flush` call, on the thread making it, and are dead (never read again before being
// rewritten) once it returns; moving the arrays to another thread between calls moves no live
// reference.
unsafe impl std::marker::Send for Slots {}

/// A worker's send ring.
pub struct SendRing {
    ring: IoUring,
    slots: Slots,
    /// Bytes offered to each entry of the current round.
    offered: Vec<usize>,
    /// Indexes into the batch of the connections still to send.
    todo: Vec<usize>,
    broken: bool,
    /// Kernel entries made (`io_uring_enter` calls), for tests and benchmarks.
    enters: u64,
}

impl std::fmt::Debug for SendRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendRing")
            .field("entries", &self.slots.hdrs.len())
            .field("broken", &self.broken)
            .field("enters", &self.enters)
            .finish()
    }
}

fn empty_iovec() -> libc::iovec {
    libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }
}

fn empty_msghdr() -> libc::msghdr {
    libc::msghdr {
        msg_name: std::ptr::null_mut(),
        msg_namelen: 0,
        msg_iov: std::ptr::null_mut(),
        msg_iovlen: 0,
        msg_control: std::ptr::null_mut(),
        msg_controllen: 0,
        msg_flags: 0,
    }
}

impl SendRing {
    /// A ring of `entries` (a power of two) sends per round. Fails where io_uring is refused
    /// (an old kernel, seccomp, `kernel.io_uring_disabled`) or lacks `SENDMSG`.
    pub fn new(entries: u32) -> io::Result<SendRing> {
        let ring = IoUring::new(entries)?;
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        if !probe.is_supported(opcode::SendMsg::CODE) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "io_uring without IORING_OP_SENDMSG",
            ));
        }
        let n = ring.params().sq_entries() as usize;
        Ok(SendRing {
            ring,
            slots: Slots {
                hdrs: (0..n).map(|_| empty_msghdr()).collect(),
                iovs: (0..n).map(|_| [empty_iovec(); MAX_IOVECS]).collect(),
            },
            offered: vec![0; n],
            todo: Vec::with_capacity(n),
            broken: false,
            enters: 0,
        })
    }

    /// Kernel entries made so far.
    pub fn enters(&self) -> u64 {
        self.enters
    }

    /// Whether the ring has failed (every flush now fails; use `writev` instead).
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Sends what each connection of `batch` has pending, as far as its socket takes it, with
    /// one kernel entry per round of up to `entries` connections. Sets each one's `outcome`;
    /// sent bytes leave its `out` (their chunks go back to `pool`).
    pub fn flush(&mut self, batch: &mut [Send], pool: &mut ChunkPool) {
        self.todo.clear();
        for (i, s) in batch.iter_mut().enumerate() {
            s.outcome = Ok(Flushed::All);
            s.sent = 0;
            if self.broken {
                s.outcome = Err(broken());
            } else if !s.out.is_empty() {
                self.todo.push(i);
            }
        }
        let mut next = 0;
        while next < self.todo.len() && !self.broken {
            let round = (self.todo.len() - next).min(self.slots.hdrs.len());
            self.round(batch, next, round, pool);
            next += round;
            // Connections with more than MAX_IOVECS chunks that took everything offered go
            // again, behind the rest.
            for k in next - round..next {
                let i = self.todo[k];
                if matches!(batch[i].outcome, Ok(Flushed::All)) && !batch[i].out.is_empty() {
                    self.todo.push(i);
                }
            }
        }
        if self.broken {
            for &i in &self.todo {
                if !batch[i].out.is_empty() && batch[i].outcome.is_ok() {
                    batch[i].outcome = Err(broken());
                }
            }
        }
    }

    /// Submits the sends of `todo[from..from + n]` and reaps all of them.
    fn round(&mut self, batch: &mut [Send], from: usize, n: usize, pool: &mut ChunkPool) {
        let mut sq = self.ring.submission();
        // Entries actually queued: all `n`, unless a push is refused (see below).
        let mut queued = 0;
        for (entry, &i) in self.todo[from..from + n].iter().enumerate() {
            let s = &batch[i];
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let (count, bytes) = s.out.slices(&mut slices);
            let iov = &mut self.slots.iovs[entry];
            for (v, slice) in iov.iter_mut().zip(&slices[..count]) {
                *v = libc::iovec {
                    iov_base: slice.as_ptr() as *mut libc::c_void,
                    iov_len: slice.len(),
                };
            }
            let hdr = &mut self.slots.hdrs[entry];
            *hdr = empty_msghdr();
            hdr.msg_iov = iov.as_mut_ptr();
            hdr.msg_iovlen = count as _;
            self.offered[entry] = bytes;
            let sqe = opcode::SendMsg::new(types::Fd(s.fd), &*hdr as *const libc::msghdr)
                .flags((libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) as u32)
                .build()
                .user_data(entry as u64);
            // SAFETY: the entry points at `self.slots.{hdrs,iovs}[entry]` and, through them, at
            // chunks of `batch[i].out`. Neither changes until this round's completions are all
            // reaped below (invariant 1): `slots` is not written again in this round, and
            // `batch` is borrowed mutably by this call. `round` never pushes more entries than
            // the queue holds, and the queue is empty at the start of a round, so the push
            // cannot fail; if it did, that entry is not queued and the ones before it are
            // submitted and reaped as usual (never left in the queue for a later call).
            if unsafe { sq.push(&sqe) }.is_err() {
                break;
            }
            queued += 1;
        }
        drop(sq);
        let n = queued;
        let mut reaped = 0;
        while reaped < n {
            self.enters += 1;
            match self.ring.submit_and_wait(n - reaped) {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
                    ) => {}
                Err(_) => {
                    self.fail_round(batch, from, n);
                    return;
                }
            }
            for cqe in self.ring.completion() {
                let entry = cqe.user_data() as usize;
                let Some(&i) = self.todo.get(from + entry) else {
                    continue;
                };
                reaped += 1;
                let s = &mut batch[i];
                let res = cqe.result();
                s.outcome = if res >= 0 {
                    let written = res as usize;
                    s.out.advance(written, pool);
                    s.sent += written;
                    if written < self.offered[entry] {
                        // The socket took part: it is full now, and will say when it is not.
                        Ok(Flushed::Blocked)
                    } else {
                        Ok(Flushed::All)
                    }
                } else if -res == libc::EAGAIN {
                    Ok(Flushed::Blocked)
                } else if -res == libc::EINTR {
                    // Nothing sent; the next round tries again.
                    Ok(Flushed::All)
                } else {
                    Err(io::Error::from_raw_os_error(-res))
                };
            }
        }
    }

    /// The ring failed with entries possibly in flight: leak the chunks they point at so the
    /// kernel never reads reused memory (invariant 2), and fail their connections.
    fn fail_round(&mut self, batch: &mut [Send], from: usize, n: usize) {
        self.broken = true;
        for &i in &self.todo[from..from + n] {
            std::mem::forget(std::mem::take(&mut batch[i].out));
            batch[i].outcome = Err(broken());
        }
    }
}

fn broken() -> io::Error {
    io::Error::other("the io_uring send ring failed")
}

#[cfg(test)]
mod tests {
    use super::*;
    use net::proto::Put;
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    fn ring() -> Option<SendRing> {
        match SendRing::new(8) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("io_uring unavailable here ({e}); nothing to test");
                None
            }
        }
    }

    fn queued(pool: &mut ChunkPool, bytes: &[u8]) -> Outbound {
        let mut out = Outbound::default();
        out.writer(pool).put(bytes);
        out
    }

    #[test]
    fn a_batch_larger_than_the_ring_is_sent_whole_in_rounds() {
        let Some(mut ring) = ring() else { return };
        let mut pool = ChunkPool::new(64, 16);
        let pairs: Vec<(UnixStream, UnixStream)> =
            (0..20).map(|_| UnixStream::pair().unwrap()).collect();
        let mut batch: Vec<Send> = pairs
            .iter()
            .enumerate()
            .map(|(i, (a, _))| {
                // Several chunks each, some more than MAX_IOVECS of them.
                let body: Vec<u8> = (0..(i * 300 + 1)).map(|b| (b + i) as u8).collect();
                Send::new(a.as_raw_fd(), queued(&mut pool, &body), i)
            })
            .collect();
        let expect: Vec<Vec<u8>> = (0..20)
            .map(|i| (0..(i * 300 + 1)).map(|b| (b + i) as u8).collect())
            .collect();
        ring.flush(&mut batch, &mut pool);
        for (i, s) in batch.iter().enumerate() {
            assert!(
                matches!(s.outcome, Ok(Flushed::All)),
                "{i}: {:?}",
                s.outcome
            );
            assert!(s.out.is_empty());
            let mut got = vec![0; expect[i].len()];
            let mut peer = &pairs[i].1;
            peer.read_exact(&mut got).unwrap();
            assert_eq!(got, expect[i], "connection {i}");
        }
        // 20 connections through an 8-entry ring, some needing a second pass: at least 3
        // kernel entries, and far fewer than one per chunk.
        assert!(
            ring.enters() >= 3 && ring.enters() <= 8,
            "{}",
            ring.enters()
        );
    }

    #[test]
    fn a_full_socket_reports_blocked_at_once_and_keeps_the_rest() {
        let Some(mut ring) = ring() else { return };
        let mut pool = ChunkPool::new(4096, 16);
        let (a, mut b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let body: Vec<u8> = (0..8 << 20).map(|i| (i % 253) as u8).collect();
        let mut batch = vec![Send::new(a.as_raw_fd(), queued(&mut pool, &body), 0)];
        ring.flush(&mut batch, &mut pool);
        assert!(
            matches!(batch[0].outcome, Ok(Flushed::Blocked)),
            "{:?}",
            batch[0].outcome
        );
        let left = batch[0].out.pending_bytes();
        assert!(left > 0 && left < body.len(), "{left}");
        // Draining the peer and flushing again delivers the rest, in order. The peer always
        // has bytes to read here: the socket was full, or everything sent is not read yet.
        let mut got = Vec::new();
        let mut buf = vec![0; 1 << 16];
        while got.len() < body.len() {
            let n = b.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
            if !batch[0].out.is_empty() {
                ring.flush(&mut batch, &mut pool);
                assert!(batch[0].outcome.is_ok(), "{:?}", batch[0].outcome);
            }
        }
        assert_eq!(got, body);
    }

    #[test]
    fn a_closed_peer_is_an_error_for_that_connection_only() {
        let Some(mut ring) = ring() else { return };
        let mut pool = ChunkPool::new(64, 16);
        let (a, b) = UnixStream::pair().unwrap();
        let (c, mut d) = UnixStream::pair().unwrap();
        drop(b);
        let mut batch = vec![
            Send::new(a.as_raw_fd(), queued(&mut pool, b"lost"), 0),
            Send::new(c.as_raw_fd(), queued(&mut pool, b"kept"), 1),
        ];
        ring.flush(&mut batch, &mut pool);
        let err = batch[0].outcome.as_ref().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err}");
        assert!(matches!(batch[1].outcome, Ok(Flushed::All)));
        let mut got = [0; 4];
        d.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"kept");
    }
}
