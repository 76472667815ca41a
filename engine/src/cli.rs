//! The `engine` command line: flags, their defaults, and their translation into a
//! [`Config`]. Lives in the library so tests can check it; `main` only calls it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::{Auth, Config, IoMode};
use crate::limits;

/// A thread-per-core pub/sub server that speaks the NATS client protocol.
#[derive(Debug, Parser)]
#[command(name = "engine", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the server (embedded defaults; no config file needed).
    Serve(ServeArgs),
}

/// Flags of `engine serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on for NATS clients.
    #[arg(long, default_value = "127.0.0.1:4222")]
    pub listen: SocketAddr,
    /// Worker threads (each owns a poll loop, its connections and a shard of subjects).
    /// Default: the number of cores.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Largest message (headers + payload) a client may publish, in bytes.
    #[arg(long, default_value_t = limits::DEFAULT_MAX_PAYLOAD_BYTES)]
    pub max_payload: usize,
    /// Pending outbound bytes per connection past which it is closed as a slow consumer.
    #[arg(long, default_value_t = limits::DEFAULT_MAX_PENDING_BYTES)]
    pub max_pending: usize,
    /// How long a connection with over a quarter of --max-pending queued may take no bytes
    /// at all before it is closed as a slow consumer; meanwhile the publishers whose
    /// messages reach it are read no further (e.g. 2s, 500ms).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub write_deadline: Duration,
    /// The send path: `uring` submits every connection written to in a loop iteration with one
    /// kernel entry; `writev` makes one call per connection. Default: uring where it works,
    /// writev otherwise (logged at start-up).
    #[arg(long, value_enum, default_value_t = IoMode::Auto)]
    pub io: IoMode,
    /// Subscriptions one connection may hold; a SUB beyond it gets
    /// `-ERR 'maximum subscriptions exceeded'`.
    #[arg(long, default_value_t = limits::MAX_SUBS_PER_CONN)]
    pub max_subscriptions: usize,
    /// Interval between server PINGs to an idle client (e.g. 2m, 30s, 500ms).
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    pub ping_interval: Duration,
    /// Unanswered PINGs after which the connection is closed as stale.
    #[arg(long, default_value_t = limits::DEFAULT_PING_MAX)]
    pub ping_max: u32,
    /// Require this token in CONNECT's `auth_token`.
    #[arg(long, conflicts_with = "users")]
    pub auth_token: Option<String>,
    /// Require a user and password from this file: one `user:password` per line,
    /// `#` starts a comment.
    #[arg(long)]
    pub users: Option<PathBuf>,
    /// Time a client has to send CONNECT when auth is required (e.g. 2s).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub auth_timeout: Duration,
    /// Longest graceful shutdown may spend flushing before closing anyway (e.g. 2s).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// Lame-duck mode (SIGUSR2): time over which every connection is closed, the grace
    /// period included (e.g. 2m, 30s).
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    pub lame_duck_duration: Duration,
    /// Lame-duck mode: time between telling clients (INFO `ldm`) and the first close; must be
    /// shorter than --lame-duck-duration.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub lame_duck_grace_period: Duration,
    /// Server name reported in INFO (default: the generated server id).
    #[arg(long, default_value = "")]
    pub name: String,
    /// Messages each chat room and direct conversation keeps for history.
    #[arg(long, default_value_t = limits::DEFAULT_HISTORY_MESSAGES)]
    pub history: usize,
    /// Bytes of chat history the whole server keeps, split between workers (oldest
    /// messages go first past it).
    #[arg(long, default_value_t = limits::DEFAULT_HISTORY_BYTES)]
    pub history_bytes: usize,
    /// Serve JetStream: the `$JS.API` requests and the streams they create (docs/streams.md).
    /// Off by default, as nats-server without `-js`.
    #[arg(long)]
    pub jetstream: bool,
    /// Keep durable state in this directory (JetStream's file streams, in `DIR/jetstream`).
    /// Without it the server writes no files and JetStream has memory streams only.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// When the write-ahead log confirms: `always` (after an fsync; many publishes share
    /// one), `interval=<ms>` (after the write, fsync within that many ms) or `never` (after
    /// the write; the page cache decides). docs/streams.md says what each risks.
    #[arg(long, default_value = "always")]
    pub fsync: crate::store::FsyncPolicy,
    /// Bytes all JetStream memory streams may keep together (nats-server's
    /// `max_memory_store`); a stream or publish past it gets nats-server's errors.
    #[arg(long, default_value_t = limits::JS_DEFAULT_MAX_MEMORY_BYTES)]
    pub js_max_memory: u64,
    /// Bytes all JetStream file streams may keep together (nats-server's `max_file_store`).
    /// Every kept message is also in memory, so this counts against RAM too.
    #[arg(long, default_value_t = limits::JS_DEFAULT_MAX_STORAGE_BYTES)]
    pub js_max_storage: u64,
}

/// A flag that cannot be turned into a configuration.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The users file could not be read.
    #[error("cannot read users file {path}: {source}")]
    UsersFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A users file line is not `user:password`.
    #[error("users file {path} line {line}: expected `user:password`")]
    UsersLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// A value is out of range.
    #[error("{0}")]
    Range(String),
}

impl ServeArgs {
    /// The configuration these flags describe.
    pub fn to_config(&self) -> Result<Config, CliError> {
        let defaults = Config::default();
        if self.max_payload == 0 || self.max_payload > limits::MAX_MAX_PAYLOAD_BYTES {
            return Err(CliError::Range(format!(
                "--max-payload must be between 1 and {} bytes",
                limits::MAX_MAX_PAYLOAD_BYTES
            )));
        }
        if self.max_pending < self.max_payload {
            return Err(CliError::Range(
                "--max-pending must be at least --max-payload".into(),
            ));
        }
        let workers = self.workers.unwrap_or(defaults.workers);
        if workers == 0 || workers > limits::MAX_WORKERS {
            return Err(CliError::Range(format!(
                "--workers must be between 1 and {}",
                limits::MAX_WORKERS
            )));
        }
        if self.write_deadline.is_zero() {
            return Err(CliError::Range("--write-deadline must be positive".into()));
        }
        if self.ping_interval.is_zero() || self.ping_max == 0 {
            return Err(CliError::Range(
                "--ping-interval and --ping-max must be positive".into(),
            ));
        }
        if self.lame_duck_grace_period >= self.lame_duck_duration {
            // nats-server refuses the same configuration at startup.
            return Err(CliError::Range(
                "--lame-duck-grace-period must be shorter than --lame-duck-duration".into(),
            ));
        }
        let auth = match (&self.auth_token, &self.users) {
            (Some(t), _) => Auth::Token(t.clone()),
            (None, Some(path)) => Auth::Users(read_users(path)?),
            (None, None) => Auth::None,
        };
        Ok(Config {
            workers,
            max_payload: self.max_payload,
            max_control_line: limits::MAX_CONTROL_LINE_BYTES,
            max_pending: self.max_pending,
            write_deadline: self.write_deadline,
            max_subscriptions: self.max_subscriptions,
            ping_interval: self.ping_interval,
            ping_max: self.ping_max,
            auth,
            auth_timeout: self.auth_timeout,
            shutdown_grace: self.shutdown_grace,
            lame_duck_duration: self.lame_duck_duration,
            lame_duck_grace_period: self.lame_duck_grace_period,
            server_name: self.name.clone(),
            history: self.history,
            history_bytes: self.history_bytes,
            io: self.io,
            jetstream: self.jetstream,
            data_dir: self.data_dir.clone(),
            fsync: self.fsync,
            js_max_memory: self.js_max_memory,
            js_max_storage: self.js_max_storage,
        })
    }
}

/// Reads a users file: one `user:password` per line; blank lines and `#` comments skipped.
pub fn read_users(path: &Path) -> Result<Vec<(String, String)>, CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| CliError::UsersFile {
        path: path.to_owned(),
        source,
    })?;
    parse_users(&text).map_err(|line| CliError::UsersLine {
        path: path.to_owned(),
        line,
    })
}

/// Parses users-file text; `Err(line)` names the first bad line (1-based).
pub fn parse_users(text: &str) -> Result<Vec<(String, String)>, usize> {
    let mut users = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once(':') {
            Some((u, p)) if !u.is_empty() && !p.is_empty() => {
                users.push((u.to_string(), p.to_string()));
            }
            _ => return Err(i + 1),
        }
    }
    Ok(users)
}

/// Parses `500ms`, `2s`, `2m`, `1h` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 500ms, 2s or 2m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "" | "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("`{s}`: unknown unit `{unit}` (use ms, s, m or h)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(args: &[&str]) -> ServeArgs {
        let mut argv = vec!["engine", "serve"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Serve(a) => a,
        }
    }

    #[test]
    fn defaults_match_nats_server() {
        let c = serve(&[]).to_config().unwrap();
        assert_eq!(c.max_payload, 1024 * 1024);
        assert_eq!(c.max_pending, 64 * 1024 * 1024);
        assert_eq!(c.ping_interval, Duration::from_secs(120));
        assert_eq!(c.ping_max, 2);
        assert_eq!(c.auth, Auth::None);
        assert_eq!(c.lame_duck_duration, Duration::from_secs(120));
        assert_eq!(c.lame_duck_grace_period, Duration::from_secs(10));
        // The flags' defaults are the embedded ones.
        assert_eq!(
            c,
            Config {
                workers: c.workers,
                ..Config::default()
            }
        );
        assert_eq!(serve(&[]).listen, "127.0.0.1:4222".parse().unwrap());
    }

    #[test]
    fn flags_reach_the_config() {
        let c = serve(&[
            "--workers",
            "3",
            "--max-payload",
            "2048",
            "--max-pending",
            "4096",
            "--ping-interval",
            "250ms",
            "--auth-token",
            "s3cret",
            "--lame-duck-duration",
            "3s",
            "--lame-duck-grace-period",
            "500ms",
            "--io",
            "writev",
        ])
        .to_config()
        .unwrap();
        assert_eq!(c.workers, 3);
        assert_eq!(c.max_payload, 2048);
        assert_eq!(c.max_pending, 4096);
        assert_eq!(c.ping_interval, Duration::from_millis(250));
        assert_eq!(c.auth, Auth::Token("s3cret".into()));
        assert_eq!(c.lame_duck_duration, Duration::from_secs(3));
        assert_eq!(c.lame_duck_grace_period, Duration::from_millis(500));
        assert_eq!(c.io, IoMode::Writev);
        assert_eq!(
            serve(&["--io", "uring"]).to_config().unwrap().io,
            IoMode::Uring
        );
        assert_eq!(serve(&[]).to_config().unwrap().io, IoMode::Auto);
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(serve(&["--workers", "0"]).to_config().is_err());
        assert!(serve(&["--max-payload", "0"]).to_config().is_err());
        assert!(serve(&["--max-payload", "4096", "--max-pending", "100"])
            .to_config()
            .is_err());
        assert!(Cli::try_parse_from(["engine", "serve", "--ping-interval", "5x"]).is_err());
        assert!(Cli::try_parse_from(["engine", "serve", "--io", "epoll"]).is_err());
        assert!(serve(&["--lame-duck-duration", "10s"]).to_config().is_err());
        assert!(serve(&[
            "--lame-duck-grace-period",
            "0s",
            "--lame-duck-duration",
            "0s"
        ])
        .to_config()
        .is_err());
    }

    #[test]
    fn users_file_format() {
        assert_eq!(
            parse_users("# staff\nalice:pw1\n\n bob:pw:2 \n"),
            Ok(vec![
                ("alice".to_string(), "pw1".to_string()),
                ("bob".to_string(), "pw:2".to_string())
            ])
        );
        assert_eq!(parse_users("alice\n"), Err(1));
        assert_eq!(parse_users("ok:1\n:nouser\n"), Err(2));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("ms").is_err());
    }
}
