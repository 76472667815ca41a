//! Shared helpers for the engine's socket-level integration tests.
//!
//! - [`start`] runs a server for one test and shuts it down when the returned [`TestServer`]
//!   is dropped. By default that is the engine itself, in-process, on `127.0.0.1:0`.
//! - [`Client`] is a blocking raw-protocol client: send bytes, then wait (with a deadline, never
//!   a sleep) for exact bytes, for EOF, or for `PING`→`PONG` to prove the connection is open.
//!
//! Two environment variables point the same tests at nats-server, to prove that what they
//! assert is true of the reference:
//!
//! - `ENGINE_TEST_REFERENCE=nats-server`: every [`start`] launches `nats-server` (from `PATH`,
//!   or the path in `ENGINE_TEST_NATS_SERVER`) with a config file equivalent to the given
//!   [`Config`], on a loopback port, and kills it on drop.
//! - `ENGINE_TEST_EXTERNAL=host:port`: a [`start`] with `Config::default()` connects to that
//!   already running server instead. Any other config then runs as under
//!   `ENGINE_TEST_REFERENCE` when that is set too; otherwise [`try_start`] returns `None` and
//!   the test skips itself. Tests then share one server and its subjects: run them with
//!   `-- --test-threads=1`.
//!
//! And one chooses the engine's send path: `ENGINE_TEST_IO=writev|uring|auto` (default: the
//! engine's own default, auto). `scripts/test.sh` runs the integration tests under both.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

pub mod bin;

use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use engine::config::{Auth, Config, IoMode};
use engine::server::ServerHandle;

/// How long any wait for bytes, EOF or a server start may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(5);

/// `CONNECT` as real clients send it: not verbose, not pedantic.
pub const CONNECT: &[u8] = b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\n";

/// `CONNECT` of a client that understands headers (HPUB/HMSG).
pub const CONNECT_HEADERS: &[u8] =
    b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true}\r\n";

/// A server under test; shut down (or killed, for nats-server) on drop.
pub struct TestServer {
    addr: SocketAddr,
    kind: Kind,
}

enum Kind {
    Engine(Option<ServerHandle>),
    External,
    Reference(Child, std::path::PathBuf),
}

/// Starts a server with `config` (see the module doc for which server that is).
///
/// Panics when the environment asks for a server this config cannot have (use [`try_start`]
/// in tests that need a special config).
pub fn start(config: Config) -> TestServer {
    match try_start(config) {
        Some(server) => server,
        None => panic!("ENGINE_TEST_EXTERNAL only serves Config::default()"),
    }
}

/// Like [`start`], but `None` when only an external server with default settings is
/// available and `config` is not the default: the caller then skips the test.
pub fn try_start(config: Config) -> Option<TestServer> {
    let reference = reference_requested();
    if let Ok(external) = std::env::var("ENGINE_TEST_EXTERNAL") {
        if config == Config::default() {
            let addr = external
                .parse()
                .unwrap_or_else(|e| panic!("ENGINE_TEST_EXTERNAL={external}: {e}"));
            return Some(TestServer {
                addr,
                kind: Kind::External,
            });
        }
        if !reference {
            eprintln!("skipped: needs its own server config, ENGINE_TEST_EXTERNAL has defaults");
            return None;
        }
    }
    if reference {
        return Some(start_reference(&config));
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let handle = spawn(listener, config).expect("engine::server::spawn");
    Some(TestServer {
        addr: handle.local_addr(),
        kind: Kind::Engine(Some(handle)),
    })
}

/// A small deterministic generator (xorshift64): test inputs reproducible from a seed. The
/// seed must not be 0.
pub struct Rng(pub u64);

impl Rng {
    /// The next number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// The send path `ENGINE_TEST_IO` asks for, if any.
pub fn test_io() -> Option<IoMode> {
    let v = std::env::var("ENGINE_TEST_IO").ok()?;
    match v.as_str() {
        "writev" => Some(IoMode::Writev),
        "uring" => Some(IoMode::Uring),
        "auto" | "" => Some(IoMode::Auto),
        other => panic!("ENGINE_TEST_IO={other}: expected writev, uring or auto"),
    }
}

/// The `--io` flag for a test that starts the `engine` binary (empty: its default).
pub fn test_io_args() -> Vec<&'static str> {
    match test_io() {
        Some(IoMode::Writev) => vec!["--io", "writev"],
        Some(IoMode::Uring) => vec!["--io", "uring"],
        Some(IoMode::Auto) | None => Vec::new(),
    }
}

/// Starts the engine in-process on `listener` with `config`, on the send path
/// `ENGINE_TEST_IO` asks for.
pub fn spawn(listener: TcpListener, mut config: Config) -> io::Result<ServerHandle> {
    if let Some(io) = test_io() {
        config.io = io;
    }
    engine::server::spawn(listener, config)
}

/// Whether the tests run against nats-server rather than the engine.
pub fn against_reference() -> bool {
    reference_requested() || std::env::var("ENGINE_TEST_EXTERNAL").is_ok()
}

fn reference_requested() -> bool {
    std::env::var("ENGINE_TEST_REFERENCE").is_ok_and(|v| v == "nats-server")
}

impl TestServer {
    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Opens a connection and reads the server's INFO line (see [`Client::info_json`]).
    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// A client (headers on) subscribed to `_INBOX.t`, for [`Client::request_json`].
    pub fn requester(&self) -> Client {
        let mut c = self.client_with(CONNECT_HEADERS);
        c.send(b"SUB _INBOX.t 1\r\nPING\r\n");
        c.expect(b"PONG\r\n");
        c
    }

    /// Opens a connection, reads INFO and sends `connect` followed by `PING`, and waits for
    /// the `PONG` (so the server has processed CONNECT when this returns).
    pub fn client_with(&self, connect: &[u8]) -> Client {
        let mut client = self.client();
        client.send(connect);
        client.send(b"PING\r\n");
        client.expect(b"PONG\r\n");
        client
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        match &mut self.kind {
            Kind::Engine(handle) => {
                if let Some(handle) = handle.take() {
                    let result = handle.shutdown();
                    if !std::thread::panicking() {
                        result.expect("server shutdown");
                    }
                }
            }
            Kind::External => {}
            Kind::Reference(child, conf) => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = std::fs::remove_file(conf);
            }
        }
    }
}

/// A blocking raw-protocol connection. Every wait ends after [`WAIT`] at the latest.
pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
    info: Vec<u8>,
}

impl Client {
    /// Connects without reading anything.
    pub fn connect_raw(addr: SocketAddr) -> Client {
        Client::from_stream(TcpStream::connect(addr).expect("connect to server"))
    }

    /// Connects and reads the server's INFO line (see [`Client::info_json`]).
    pub fn connect(addr: SocketAddr) -> Client {
        let mut client = Client::connect_raw(addr);
        client.info = client.read_line();
        assert!(
            client.info.starts_with(b"INFO {") && client.info.ends_with(b"} \r\n"),
            "first line is not INFO: {}",
            show(&client.info)
        );
        client
    }

    /// Wraps an already connected socket (one with socket options of its own), reading
    /// nothing.
    pub fn from_stream(stream: TcpStream) -> Client {
        stream.set_nodelay(true).expect("TCP_NODELAY");
        Client {
            stream,
            buf: Vec::new(),
            info: Vec::new(),
        }
    }

    /// The INFO line's JSON.
    pub fn info_json(&self) -> serde_json::Value {
        let json = self
            .info
            .strip_prefix(b"INFO ")
            .unwrap_or_else(|| panic!("not INFO: {}", show(&self.info)));
        serde_json::from_slice(json.trim_ascii_end()).expect("INFO is JSON")
    }

    /// Writes `bytes`. A write refused because the server already closed is ignored: the
    /// next expectation says whether that was right.
    pub fn send(&mut self, bytes: &[u8]) {
        if let Err(e) = self.stream.write_all(bytes) {
            assert!(is_disconnect(&e), "write failed: {e}");
        }
    }

    /// Writes `bytes` in writes of at most `chunk` bytes each (TCP_NODELAY is on, so the
    /// server usually sees several reads; the expected outcome never depends on that).
    pub fn send_chunked(&mut self, bytes: &[u8], chunk: usize) {
        for part in bytes.chunks(chunk) {
            self.send(part);
        }
    }

    /// Waits until exactly `expected` has arrived next; panics on other bytes, EOF or timeout.
    pub fn expect(&mut self, expected: &[u8]) {
        let deadline = Instant::now() + WAIT;
        while self.buf.len() < expected.len() && expected.starts_with(&self.buf) {
            match self.fill(deadline) {
                Fill::Data => {}
                Fill::Closed => panic!(
                    "connection closed; wanted {}, got {}",
                    show(expected),
                    show(&self.buf)
                ),
                Fill::Timeout => panic!(
                    "timed out; wanted {}, got {}",
                    show(expected),
                    show(&self.buf)
                ),
            }
        }
        let n = expected.len().min(self.buf.len());
        assert!(
            self.buf[..n] == *expected && n == expected.len(),
            "wanted {}, got {}",
            show(expected),
            show(&self.buf)
        );
        self.buf.drain(..n);
    }

    /// Waits for the server to close the connection, with nothing more arriving first.
    pub fn expect_closed(&mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(self.buf.is_empty(), "wanted close, got {}", show(&self.buf));
            match self.fill(deadline) {
                Fill::Data => {}
                Fill::Closed => return,
                Fill::Timeout => panic!("timed out waiting for the server to close"),
            }
        }
    }

    /// Sends `PING` and expects `PONG` next: the connection is open and nothing else was
    /// queued for it before.
    pub fn expect_open(&mut self) {
        self.send(b"PING\r\n");
        self.expect(b"PONG\r\n");
    }

    /// Reads the next line (up to and including `\n`).
    pub fn read_line(&mut self) -> Vec<u8> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                return self.buf.drain(..=end).collect();
            }
            match self.fill(deadline) {
                Fill::Data => {}
                Fill::Closed => panic!("closed before a full line: {}", show(&self.buf)),
                Fill::Timeout => panic!("timed out waiting for a line: {}", show(&self.buf)),
            }
        }
    }

    /// Reads until the received bytes end with `tail`, returning everything up to and
    /// including it.
    pub fn read_until(&mut self, tail: &[u8]) -> Vec<u8> {
        let deadline = Instant::now() + WAIT;
        // Only the newly arrived bytes (plus an overlap) are searched, so a long read stays
        // linear.
        let mut searched: usize = 0;
        loop {
            let from = searched.saturating_sub(tail.len());
            if let Some(at) = self.buf[from..].windows(tail.len()).position(|w| w == tail) {
                return self.buf.drain(..from + at + tail.len()).collect();
            }
            searched = self.buf.len();
            match self.fill(deadline) {
                Fill::Data => {}
                Fill::Closed => panic!("closed before {}: {}", show(tail), show(&self.buf)),
                Fill::Timeout => {
                    panic!("timed out waiting for {}: {}", show(tail), show(&self.buf))
                }
            }
        }
    }

    /// Publishes `body` (nothing for `Null`) on `subject` with the reply subject `_INBOX.t`,
    /// and returns the JSON answer (for a client made by [`TestServer::requester`]).
    pub fn request_json(&mut self, subject: &str, body: &serde_json::Value) -> serde_json::Value {
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        self.send(format!("PUB {subject} _INBOX.t {}\r\n{body}\r\n", body.len()).as_bytes());
        let (to, payload) = self.read_msg();
        assert_eq!(to, "_INBOX.t");
        serde_json::from_slice(&payload).expect("a JSON answer")
    }

    /// Reads the next frame, which must be a `MSG`: its subject and payload.
    pub fn read_msg(&mut self) -> (String, Vec<u8>) {
        let (subject, _, payload) = self.read_msg_with_reply();
        (subject, payload)
    }

    /// Reads the next frame, which must be a `MSG`: its subject, reply subject and payload.
    pub fn read_msg_with_reply(&mut self) -> (String, Option<String>, Vec<u8>) {
        let line = String::from_utf8(self.read_line()).expect("a UTF-8 control line");
        let parts: Vec<&str> = line.split_whitespace().collect();
        assert!(
            parts.first() == Some(&"MSG") && (4..=5).contains(&parts.len()),
            "not a MSG: {line:?}"
        );
        let len: usize = parts[parts.len() - 1]
            .parse()
            .unwrap_or_else(|_| panic!("bad size in {line:?}"));
        let reply = (parts.len() == 5).then(|| parts[3].to_string());
        let mut payload = self.read_len(len + 2);
        payload.truncate(len);
        (parts[1].to_string(), reply, payload)
    }

    /// Reads exactly `len` bytes (more may stay buffered for the next call).
    pub fn read_len(&mut self, len: usize) -> Vec<u8> {
        let deadline = Instant::now() + WAIT;
        while self.buf.len() < len {
            match self.fill(deadline) {
                Fill::Data => {}
                Fill::Closed => panic!("closed after {}", show(&self.buf)),
                Fill::Timeout => panic!("timed out with {}", show(&self.buf)),
            }
        }
        self.buf.drain(..len).collect()
    }

    /// Whatever arrives within `wait` (possibly nothing), for tests that wait on several
    /// connections at once under their own overall deadline.
    pub fn read_some(&mut self, wait: Duration) -> Vec<u8> {
        if self.buf.is_empty() {
            match self.fill(Instant::now() + wait) {
                Fill::Data | Fill::Timeout => {}
                Fill::Closed => panic!("connection closed"),
            }
        }
        std::mem::take(&mut self.buf)
    }

    /// Reads and counts bytes until the server closes the connection (or [`WAIT`] passes,
    /// which panics). Used for a connection the server is expected to cut off.
    pub fn drain_until_closed(&mut self) -> usize {
        let deadline = Instant::now() + WAIT;
        let mut total = 0;
        loop {
            total += self.buf.len();
            self.buf.clear();
            match self.fill(deadline) {
                Fill::Data => {}
                Fill::Closed => return total,
                Fill::Timeout => panic!("timed out waiting for the server to close"),
            }
        }
    }

    fn fill(&mut self, deadline: Instant) -> Fill {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Fill::Timeout;
        }
        self.stream
            .set_read_timeout(Some(left))
            .expect("set_read_timeout");
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => Fill::Closed,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Fill::Data
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Fill::Timeout
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => Fill::Data,
            Err(e) if is_disconnect(&e) => Fill::Closed,
            Err(e) => panic!("read failed: {e}"),
        }
    }
}

enum Fill {
    Data,
    Closed,
    Timeout,
}

fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
    )
}

/// A round trip through the server for an async-nats client: once it returns, the server
/// has handled every op `client` sent before (its subscriptions are in place). async-nats'
/// `flush` only writes the socket, so it cannot prove that; a request nobody answers comes
/// back as the server's no-responders status, behind the earlier ops.
pub async fn nats_sync(client: &async_nats::Client) {
    let r = tokio::time::timeout(2 * WAIT, client.request("sync.nobody", "".into()))
        .await
        .expect("no-responders must answer at once");
    let err = r.expect_err("nobody subscribes to sync.nobody");
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
}

/// Bytes as an escaped string for failure messages (long runs are cut).
pub fn show(bytes: &[u8]) -> String {
    let mut out = String::from("b\"");
    let cut = bytes.len() > 300;
    for &b in &bytes[..bytes.len().min(300)] {
        out.extend(std::ascii::escape_default(b).map(char::from));
    }
    out.push('"');
    if cut {
        let _ = write!(out, "... ({} bytes)", bytes.len());
    }
    out
}

/// Launches nats-server with a config file equivalent to `config`, and waits (by reading its
/// log, not by sleeping) until it is ready.
fn start_reference(config: &Config) -> TestServer {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("pick a free loopback port")
        .port();
    let conf = std::env::temp_dir().join(format!("engine-test-{}-{port}.conf", std::process::id()));
    std::fs::write(&conf, reference_config(config, port)).expect("write nats-server config");
    let program =
        std::env::var("ENGINE_TEST_NATS_SERVER").unwrap_or_else(|_| "nats-server".to_owned());
    let mut child = Command::new(&program)
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let stderr = child.stderr.take().expect("piped stderr");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    // The log must be drained for the server's whole life, or it blocks on a full pipe.
    std::thread::spawn(move || {
        let mut ready = Some(ready_tx);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("Server is ready") {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(());
                }
            }
        }
    });
    if ready_rx.recv_timeout(WAIT).is_err() {
        let _ = child.kill();
        panic!("{program} did not become ready with {}", conf.display());
    }
    TestServer {
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        kind: Kind::Reference(child, conf),
    }
}

/// nats-server's config file for `config` (settings nats-server lacks, such as `workers`,
/// are left out).
fn reference_config(config: &Config, port: u16) -> String {
    let mut conf = format!("listen: \"127.0.0.1:{port}\"\n");
    let _ = writeln!(conf, "max_payload: {}", config.max_payload);
    let _ = writeln!(conf, "max_pending: {}", config.max_pending);
    let _ = writeln!(conf, "max_control_line: {}", config.max_control_line);
    let _ = writeln!(
        conf,
        "write_deadline: \"{}ms\"",
        config.write_deadline.as_millis()
    );
    let _ = writeln!(
        conf,
        "ping_interval: \"{}ms\"",
        config.ping_interval.as_millis()
    );
    let _ = writeln!(conf, "ping_max: {}", config.ping_max);
    if config.max_subscriptions != Config::default().max_subscriptions {
        let _ = writeln!(conf, "max_subscriptions: {}", config.max_subscriptions);
    }
    if !config.server_name.is_empty() {
        let _ = writeln!(conf, "server_name: {:?}", config.server_name);
    }
    if config.jetstream {
        let dir =
            std::env::temp_dir().join(format!("engine-test-js-{}-{port}", std::process::id()));
        let _ = writeln!(
            conf,
            "jetstream {{ store_dir: {:?} }}",
            dir.display().to_string()
        );
    }
    let timeout = config.auth_timeout.as_secs_f64();
    match &config.auth {
        Auth::None => {}
        Auth::Token(token) => {
            let _ = writeln!(
                conf,
                "authorization {{ token: {token:?}, timeout: {timeout} }}"
            );
        }
        Auth::Users(users) => {
            let list: Vec<String> = users
                .iter()
                .map(|(user, pass)| format!("{{ user: {user:?}, password: {pass:?} }}"))
                .collect();
            let _ = writeln!(
                conf,
                "authorization {{ users: [{}], timeout: {timeout} }}",
                list.join(", ")
            );
        }
    }
    conf
}
