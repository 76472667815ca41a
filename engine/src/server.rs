//! Runs the workers on an already-bound listener until shutdown, or the end of lame-duck
//! mode.
//!
//! [`spawn`] starts one thread per worker and returns a [`ServerHandle`]; the `engine`
//! binary and the integration tests both go through it, so tests run the real server. A
//! [`Control`] steers the server from another thread while the handle is waited on.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_utils::CachePadded;
use mio::{Interest, Poll, Token, Waker};
use socket2::{Domain, Protocol, Socket, Type};
use tracing::info;

use crate::config::{Config, IoMode};
use crate::counters::{Counters, Snapshot};
use crate::envelope::Envelope;
use crate::limits;
use crate::park::Doorbell;
use crate::ring;
use crate::sublist::Sublist;
use crate::uring::SendRing;
use crate::worker::js::JetStream;
use crate::worker::lame_duck::LameDuck;
use crate::worker::{Parts, Shared, Worker};

/// Binds a listening socket on `addr` for [`spawn`], with address reuse and a listen backlog
/// of [`limits::LISTEN_BACKLOG`] (std's `TcpListener::bind` uses 128).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(limits::LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// A server running on background threads.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<io::Result<()>>>,
    send_path: IoMode,
}

/// Starts the server on `listener` with `config`, one thread per worker.
pub fn spawn(listener: TcpListener, mut config: Config) -> io::Result<ServerHandle> {
    config.workers = config.workers.clamp(1, limits::MAX_WORKERS);
    let n = config.workers;
    let addr = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let mut listener = Some(mio::net::TcpListener::from_std(listener));

    let mut polls = Vec::with_capacity(n);
    let mut wakers = Vec::with_capacity(n);
    for _ in 0..n {
        let poll = Poll::new()?;
        wakers.push(Waker::new(poll.registry(), Token(1))?);
        polls.push(poll);
    }
    if let Some(l) = listener.as_mut() {
        polls[0]
            .registry()
            .register(l, Token(0), Interest::READABLE)?;
    }

    // One ring per ordered pair of distinct workers: producers[i][j] feeds inbound[j].
    let mut producers: Vec<Vec<Option<ring::Producer<Envelope>>>> =
        (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
    let mut inbound: Vec<Vec<ring::Consumer<Envelope>>> = (0..n).map(|_| Vec::new()).collect();
    let mut inbound_from: Vec<Vec<usize>> = (0..n).map(|_| Vec::new()).collect();
    for (i, row) in producers.iter_mut().enumerate() {
        for (j, cell) in row.iter_mut().enumerate() {
            if i != j {
                let (p, c) = ring::ring(limits::RING_CAPACITY_ITEMS);
                *cell = Some(p);
                inbound[j].push(c);
                inbound_from[j].push(i);
            }
        }
    }
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..n).map(|_| flume::unbounded()).unzip();

    let shared = Arc::new(Shared {
        config,
        sublist: Sublist::new(),
        doorbells: (0..n).map(|_| Doorbell::new()).collect(),
        wakers,
        counters: (0..n)
            .map(|_| CachePadded::new(Counters::default()))
            .collect(),
        consumed: (0..n * n)
            .map(|_| CachePadded::new(AtomicU64::new(0)))
            .collect(),
        handoff: senders,
        shutdown: AtomicBool::new(false),
        server_id: server_id(),
        addr,
        next_client_id: AtomicU64::new(1),
        open: AtomicUsize::new(0),
        lame_duck: LameDuck::new(n),
        js_waiting_interest: AtomicBool::new(false),
    });

    let (send_path, send_rings) = send_rings(shared.config.io, n, limits::SEND_RING_ENTRIES)?;
    let mut send_rings = send_rings.into_iter();
    let crate::router::Route::Worker(js_owner) = crate::router::Router::new(n).jetstream();
    let mut jetstream = match shared.config.jetstream {
        true => Some(Box::new(JetStream::start(&shared, js_owner)?)),
        false => None,
    };
    let mut threads = Vec::with_capacity(n);
    let parts = polls
        .into_iter()
        .zip(producers)
        .zip(inbound)
        .zip(inbound_from)
        .zip(receivers)
        .enumerate();
    for (id, ((((poll, producers), inbound), inbound_from), handoff)) in parts {
        let parts = Parts {
            id,
            poll,
            listener: if id == 0 { listener.take() } else { None },
            handoff,
            inbound,
            inbound_from,
            producers,
            send_ring: send_rings.next().flatten(),
            jetstream: if id == js_owner {
                jetstream.take()
            } else {
                None
            },
        };
        let shared = Arc::clone(&shared);
        let t = std::thread::Builder::new()
            .name(format!("worker-{id}"))
            .spawn(move || Worker::new(parts, shared).run())?;
        threads.push(t);
    }
    Ok(ServerHandle {
        addr,
        shared,
        threads,
        send_path,
    })
}

/// One send ring per worker for `mode` (none for writev), logged once. `Auto` falls back to
/// writev where io_uring is refused; `Uring` fails instead.
fn send_rings(
    mode: IoMode,
    workers: usize,
    entries: u32,
) -> io::Result<(IoMode, Vec<Option<SendRing>>)> {
    if mode == IoMode::Writev {
        info!("send path: writev, one call per connection written to (--io writev)");
        return Ok((IoMode::Writev, (0..workers).map(|_| None).collect()));
    }
    let rings: io::Result<Vec<SendRing>> = (0..workers).map(|_| SendRing::new(entries)).collect();
    match rings {
        Ok(rings) => {
            info!(
                entries,
                "send path: io_uring, one submission per loop iteration's writes"
            );
            Ok((IoMode::Uring, rings.into_iter().map(Some).collect()))
        }
        Err(e) if mode == IoMode::Auto => {
            info!(error = %e, "send path: writev (io_uring unavailable here)");
            Ok((IoMode::Writev, (0..workers).map(|_| None).collect()))
        }
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("--io uring: io_uring unavailable here: {e}"),
        )),
    }
}

impl ServerHandle {
    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The send path in use: [`IoMode::Uring`] or [`IoMode::Writev`] (what `Auto` became).
    pub fn send_path(&self) -> IoMode {
        self.send_path
    }

    /// Counters summed over all workers, read while the server runs.
    pub fn stats(&self) -> Snapshot {
        total_stats(&self.shared)
    }

    /// Each worker's counters.
    pub fn worker_stats(&self) -> Vec<Snapshot> {
        worker_stats(&self.shared)
    }

    /// Enters lame-duck mode, as nats-server does on SIGUSR2: stop accepting connections,
    /// send each client that sent CONNECT with `protocol` 1 its INFO again with `"ldm":true`,
    /// wait `lame_duck_grace_period`, close the connections (each after its pending bytes)
    /// spread over the rest of `lame_duck_duration`, then stop; with no connection open it
    /// stops at once. Returns at once: [`ServerHandle::wait`] waits for the end. A second
    /// call changes nothing.
    pub fn lame_duck(&self) {
        self.shared.enter_lame_duck();
    }

    /// A handle that other threads keep to steer the server while this one is waited on.
    pub fn control(&self) -> Control {
        Control {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Waits until the server stops by itself (lame-duck mode closed its last connection, or
    /// [`Control::shutdown`] was called) and joins every worker thread.
    pub fn wait(mut self) -> io::Result<Snapshot> {
        self.join()
    }

    /// Graceful shutdown: stop accepting, flush pending bytes (bounded by the configured
    /// grace period), close every connection, join every worker thread.
    pub fn shutdown(mut self) -> io::Result<Snapshot> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> io::Result<Snapshot> {
        self.shared.stop();
        self.join()
    }

    fn join(&mut self) -> io::Result<Snapshot> {
        let mut result = Ok(());
        for t in self.threads.drain(..) {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(e),
                Err(_) => result = Err(io::Error::other("a worker thread panicked")),
            }
        }
        result.map(|()| total_stats(&self.shared))
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            let _ = self.stop_and_join();
        }
    }
}

/// Steers a running server from another thread (the binary's signal handler) while its
/// [`ServerHandle`] is waited on.
#[derive(Debug, Clone)]
pub struct Control {
    shared: Arc<Shared>,
}

impl Control {
    /// Enters lame-duck mode: see [`ServerHandle::lame_duck`].
    pub fn lame_duck(&self) {
        self.shared.enter_lame_duck();
    }

    /// Asks for a graceful shutdown (as [`ServerHandle::shutdown`], without waiting for it).
    pub fn shutdown(&self) {
        self.shared.stop();
    }

    /// Each worker's counters.
    pub fn worker_stats(&self) -> Vec<Snapshot> {
        worker_stats(&self.shared)
    }
}

fn total_stats(shared: &Shared) -> Snapshot {
    shared
        .counters
        .iter()
        .fold(Snapshot::default(), |acc, c| acc.merge(c.snapshot()))
}

fn worker_stats(shared: &Shared) -> Vec<Snapshot> {
    shared.counters.iter().map(|c| c.snapshot()).collect()
}

/// A 22-character upper-case id, unique per start (time and pid mixed by a 64-bit hash).
fn server_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut x = nanos ^ (u64::from(std::process::id()) << 32) ^ 0x243F_6A88_85A3_08D3;
    let mut id = String::from("N");
    for _ in 0..21 {
        // splitmix64 step
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        id.push(ALPHABET[(z & 31) as usize] as char);
    }
    id
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::net::TcpStream;

    use super::*;

    #[test]
    fn auto_falls_back_to_writev_where_io_uring_is_refused_and_uring_then_fails() {
        // A ring of 0 entries is refused by io_uring_setup (EINVAL), as a kernel or sandbox
        // without io_uring refuses every ring.
        let (path, rings) = send_rings(IoMode::Auto, 3, 0).unwrap();
        assert_eq!(path, IoMode::Writev);
        assert_eq!(rings.len(), 3);
        assert!(rings.iter().all(Option::is_none));
        let err = send_rings(IoMode::Uring, 3, 0).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--io uring: io_uring unavailable here"),
            "{err}"
        );
        let (path, rings) = send_rings(IoMode::Writev, 2, limits::SEND_RING_ENTRIES).unwrap();
        assert_eq!(path, IoMode::Writev);
        assert!(rings.iter().all(Option::is_none));
    }

    #[test]
    fn bind_gives_a_listener_spawn_serves() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let server = spawn(
            listener,
            Config {
                workers: 1,
                ..Config::default()
            },
        )
        .unwrap();
        let mut c = TcpStream::connect(server.local_addr()).unwrap();
        let mut info = [0u8; 5];
        c.read_exact(&mut info).unwrap();
        assert_eq!(&info, b"INFO ");
        server.shutdown().unwrap();
    }
}
