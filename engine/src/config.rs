//! The server's settings, with embedded defaults: `engine serve` needs no config file.

use std::time::Duration;

use crate::limits;

/// How clients prove who they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Auth {
    /// Anyone may connect; CONNECT's `user` is taken at face value.
    #[default]
    None,
    /// CONNECT must carry this `auth_token`.
    Token(String),
    /// CONNECT must carry one of these `user`/`pass` pairs.
    Users(Vec<(String, String)>),
}

impl Auth {
    /// Whether INFO must say `auth_required`.
    pub fn required(&self) -> bool {
        !matches!(self, Auth::None)
    }
}

/// How the workers' writes reach the kernel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum IoMode {
    /// io_uring where this kernel and sandbox allow it, `writev` otherwise (decided at
    /// start-up, logged once).
    #[default]
    Auto,
    /// One io_uring submission per loop iteration for every connection written to; start-up
    /// fails where io_uring is refused.
    Uring,
    /// One `writev` per connection written to.
    Writev,
}

/// Everything a running server needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Worker threads, each owning a `Poll`, its connections and a shard of subjects.
    pub workers: usize,
    /// Largest PUB/HPUB total size (headers + payload), in bytes.
    pub max_payload: usize,
    /// Longest control line, in bytes.
    pub max_control_line: usize,
    /// Pending outbound bytes per connection past which it is closed as a slow consumer.
    pub max_pending: usize,
    /// How long a stalled connection (over a quarter of `max_pending` queued) may take no
    /// bytes at all before it is closed as a slow consumer.
    pub write_deadline: Duration,
    /// Subscriptions one connection may hold; a SUB beyond it is refused.
    pub max_subscriptions: usize,
    /// How often an idle client is sent a PING.
    pub ping_interval: Duration,
    /// PINGs left unanswered before the connection is closed as stale.
    pub ping_max: u32,
    /// Credentials required from clients.
    pub auth: Auth,
    /// How long a client has to send CONNECT when auth is required.
    pub auth_timeout: Duration,
    /// How long graceful shutdown may spend flushing before it closes anyway.
    pub shutdown_grace: Duration,
    /// How long lame-duck mode takes to close every connection, grace period included.
    pub lame_duck_duration: Duration,
    /// How long lame-duck mode waits after its `ldm` INFO before the first close.
    pub lame_duck_grace_period: Duration,
    /// The name INFO reports (`server_name`); the server id when empty.
    pub server_name: String,
    /// Messages each chat room and direct conversation keeps for history.
    pub history: usize,
    /// Bytes of chat history the whole server keeps (split evenly between workers).
    pub history_bytes: usize,
    /// The send path.
    pub io: IoMode,
    /// JetStream's API and streams are served (`--jetstream`).
    pub jetstream: bool,
    /// Where durable state is kept (`--data-dir`); `None`: nothing is written to disk, and
    /// JetStream has memory streams only.
    pub data_dir: Option<std::path::PathBuf>,
    /// When the write-ahead log syncs before it confirms (`--fsync`).
    pub fsync: crate::store::FsyncPolicy,
    /// Bytes all JetStream memory streams may keep together (`--js-max-memory`).
    pub js_max_memory: u64,
    /// Bytes all JetStream file streams may keep together (`--js-max-storage`).
    pub js_max_storage: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_payload: limits::DEFAULT_MAX_PAYLOAD_BYTES,
            max_control_line: limits::MAX_CONTROL_LINE_BYTES,
            max_pending: limits::DEFAULT_MAX_PENDING_BYTES,
            write_deadline: limits::DEFAULT_WRITE_DEADLINE,
            max_subscriptions: limits::MAX_SUBS_PER_CONN,
            ping_interval: limits::DEFAULT_PING_INTERVAL,
            ping_max: limits::DEFAULT_PING_MAX,
            auth: Auth::None,
            auth_timeout: limits::DEFAULT_AUTH_TIMEOUT,
            shutdown_grace: limits::DEFAULT_SHUTDOWN_GRACE,
            lame_duck_duration: limits::DEFAULT_LAME_DUCK_DURATION,
            lame_duck_grace_period: limits::DEFAULT_LAME_DUCK_GRACE_PERIOD,
            server_name: String::new(),
            history: limits::DEFAULT_HISTORY_MESSAGES,
            history_bytes: limits::DEFAULT_HISTORY_BYTES,
            io: IoMode::Auto,
            jetstream: false,
            data_dir: None,
            fsync: crate::store::FsyncPolicy::Always,
            js_max_memory: limits::JS_DEFAULT_MAX_MEMORY_BYTES,
            js_max_storage: limits::JS_DEFAULT_MAX_STORAGE_BYTES,
        }
    }
}
