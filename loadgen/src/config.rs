//! What one run does: the scenario (users, rooms, publishers, rate, payload), how long, and
//! where to connect. The same struct is the `loadgen run` command line and the input of
//! [`crate::run`].

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use serde::Serialize;

use crate::Error;

/// Which wire protocol to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// The NATS client protocol (the engine and nats-server), through `net::proto`.
    Nats,
    /// Redis pub/sub over RESP2 (`SUBSCRIBE`/`PUBLISH`).
    Redis,
}

/// One load-generation run.
///
/// Every user has one subscribing connection, subscribed to its room (`room.<n>`); users are
/// spread evenly over rooms (user `u` is in room `u % rooms`). Each publishing user also has a
/// publishing connection (Redis forbids publishing on a subscribed connection, so both
/// protocols get the same shape); publisher `p` publishes to room `p % rooms`. Every message
/// is therefore delivered to every member of its room, the publisher's own subscription
/// included.
///
/// With `chat` the rooms are rooms of the engine's chat layer instead of plain subjects
/// (see [`crate::chat`]); the shape is the same.
#[derive(Debug, Clone, Serialize, clap::Args)]
pub struct Config {
    /// Server URL: nats://host:port or redis://host:port
    /// [default: nats://127.0.0.1:4222, or redis://127.0.0.1:6379 with --protocol redis].
    #[arg(long)]
    pub url: Option<String>,

    /// Wire protocol.
    #[arg(long, value_enum, default_value = "nats")]
    pub protocol: Protocol,

    /// Subscribing users (one connection each).
    #[arg(long, default_value_t = 10_000)]
    pub users: usize,

    /// Rooms of the engine's chat layer instead of plain subjects (NATS only): every
    /// connection CONNECTs as user `u<id>` with headers, the rooms `lg<r>` are created and
    /// joined through `$CHAT.API`, and messages go to `$CHAT.MSG.lg<r>`.
    #[arg(long)]
    pub chat: bool,

    /// Rooms the users are spread over evenly [default: one per 100 users].
    #[arg(long)]
    pub rooms: Option<usize>,

    /// Publishing users (one extra connection each) [default: one per room].
    #[arg(long)]
    pub publishers: Option<usize>,

    /// Total offered publishes per second, open loop (ignored with --max).
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,

    /// Closed loop: publish as fast as possible with a bounded in-flight window per publisher.
    #[arg(long)]
    pub max: bool,

    /// In-flight window per publisher with --max, in messages not yet received back by the
    /// publishing user's own subscription [default: 65,536 deliveries in flight over all
    /// publishers, 1 to 2,048 messages each].
    #[arg(long)]
    pub window: Option<u64>,

    /// Payload size in bytes (at least 16: send time, publisher id and sequence number).
    #[arg(long, default_value_t = 128)]
    pub payload: usize,

    /// Measured time, in seconds (after the warmup).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,

    /// Warmup time before measuring, in seconds (published and delivered, not counted).
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,

    /// Longest wait for in-flight deliveries after publishing stops, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub drain: f64,

    /// Worker threads of the load generator [default: half the cores, at least 1, leaving
    /// the rest to a server on the same machine].
    #[arg(long)]
    pub threads: Option<usize>,

    /// Directory the JSON result is written to.
    #[arg(long, default_value = "results")]
    pub out: PathBuf,

    /// Do not write a JSON result.
    #[arg(long)]
    pub no_save: bool,

    /// A name for this run, used in the file name and the report.
    #[arg(long)]
    pub label: Option<String>,

    /// The server's process id: report its CPU % and RSS (from /proc).
    #[arg(long)]
    pub server_pid: Option<u32>,

    /// No progress lines on stderr.
    #[arg(long)]
    pub quiet: bool,

    /// The full command line, as recorded in the report (filled in by the binary).
    #[arg(skip)]
    pub command_line: Vec<String>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            url: None,
            protocol: Protocol::Nats,
            users: 10_000,
            chat: false,
            rooms: None,
            publishers: None,
            rate: 1000.0,
            max: false,
            window: None,
            payload: 128,
            duration: 10.0,
            warmup: 2.0,
            drain: 10.0,
            threads: None,
            out: PathBuf::from("results"),
            no_save: false,
            label: None,
            server_pid: None,
            quiet: false,
            command_line: Vec::new(),
        }
    }
}

/// A [`Config`] with every default filled in and checked.
#[derive(Debug, Clone, Serialize)]
pub struct Resolved {
    /// The server URL.
    pub url: String,
    /// The resolved server address.
    pub addr: SocketAddr,
    /// Protocol.
    pub protocol: Protocol,
    /// Subscribing users.
    pub users: usize,
    /// Rooms of the engine's chat layer (`$CHAT.MSG.lg<r>`, users `u<id>`) instead of plain
    /// subjects (`room.<r>`).
    pub chat: bool,
    /// Rooms.
    pub rooms: usize,
    /// Publishing users.
    pub publishers: usize,
    /// Offered publishes per second (open loop); `None` with `max`.
    pub rate: Option<f64>,
    /// Closed loop.
    pub max: bool,
    /// In-flight window per publisher (closed loop), in messages not yet received back by
    /// the publishing user's own subscription.
    pub window: u64,
    /// Payload bytes.
    pub payload: usize,
    /// Measured seconds.
    pub duration: f64,
    /// Warmup seconds.
    pub warmup: f64,
    /// Longest drain, seconds.
    pub drain: f64,
    /// Threads.
    pub threads: usize,
    /// How the thread count was chosen.
    pub threads_note: String,
    /// The server's process id, sampled for CPU and RSS.
    pub server_pid: Option<u32>,
    /// Members of each room.
    pub room_sizes: Vec<usize>,
    /// Deliveries each publish should cause, summed over publishers' rooms divided by
    /// publishers (the fan-out).
    pub mean_fanout: f64,
}

impl Config {
    /// Fills in defaults and checks the scenario makes sense.
    pub fn resolve(&self) -> Result<Resolved, Error> {
        let bad = |m: String| Err(Error::Config(m));
        if self.users == 0 {
            return bad("--users must be at least 1".into());
        }
        if self.chat && self.protocol != Protocol::Nats {
            return bad(
                "--chat needs --protocol nats: the chat rooms are the engine's, reached through \
                 the NATS protocol (Redis has no chat layer)"
                    .into(),
            );
        }
        if self.users > u32::MAX as usize {
            return bad(format!("--users must be at most {}", u32::MAX));
        }
        let rooms = self.rooms.unwrap_or((self.users / 100).max(1));
        if rooms == 0 || rooms > self.users {
            return bad(format!(
                "--rooms must be between 1 and --users ({})",
                self.users
            ));
        }
        let publishers = self.publishers.unwrap_or(rooms);
        if publishers == 0 {
            return bad("--publishers must be at least 1".into());
        }
        if publishers > self.users {
            return bad(format!(
                "--publishers ({publishers}) cannot exceed --users ({}): publishers are users",
                self.users
            ));
        }
        if self.payload < crate::payload::STAMP_BYTES {
            return bad(format!(
                "--payload must be at least {} bytes (send time, publisher id, sequence)",
                crate::payload::STAMP_BYTES
            ));
        }
        let rate_ok = self.rate > 0.0 && self.rate.is_finite();
        if !self.max && !rate_ok {
            return bad("--rate must be a positive number (or use --max)".into());
        }
        if !(self.duration > 0.0 && self.duration.is_finite()) {
            return bad("--duration must be positive".into());
        }
        let non_negative = |v: f64| v >= 0.0 && v.is_finite();
        if !non_negative(self.warmup) || !non_negative(self.drain) {
            return bad("--warmup and --drain must be zero or positive".into());
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (threads, threads_note) = match self.threads {
            Some(0) => return bad("--threads must be at least 1".into()),
            Some(t) => (t, format!("{t} (from --threads; {cores} cores)")),
            None => {
                let t = (cores / 2).max(1);
                (
                    t,
                    format!(
                        "{t} (default: half of {cores} cores, leaving the rest to the server \
                         on the same machine; set --threads to change)"
                    ),
                )
            }
        };
        let url = match &self.url {
            Some(u) => u.clone(),
            None => match self.protocol {
                Protocol::Nats => "nats://127.0.0.1:4222".to_string(),
                Protocol::Redis => "redis://127.0.0.1:6379".to_string(),
            },
        };
        let host_port = url
            .split_once("://")
            .map_or(url.as_str(), |(_, rest)| rest)
            .trim_end_matches('/');
        let addr = host_port
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| Error::Config(format!("cannot resolve --url {url}")))?;
        let mut room_sizes = vec![0usize; rooms];
        for u in 0..self.users {
            room_sizes[u % rooms] += 1;
        }
        let fanout_sum: usize = (0..publishers).map(|p| room_sizes[p % rooms]).sum();
        let window = self.window.unwrap_or(
            (crate::limits::DEFAULT_WINDOW_DELIVERIES / fanout_sum.max(1) as u64)
                .clamp(1, crate::limits::MAX_DEFAULT_WINDOW_MESSAGES),
        );
        Ok(Resolved {
            url,
            addr,
            protocol: self.protocol,
            users: self.users,
            chat: self.chat,
            rooms,
            publishers,
            rate: (!self.max).then_some(self.rate),
            max: self.max,
            window: window.max(1),
            payload: self.payload,
            duration: self.duration,
            warmup: self.warmup,
            drain: self.drain,
            threads,
            threads_note,
            server_pid: self.server_pid,
            room_sizes,
            mean_fanout: fanout_sum as f64 / publishers as f64,
        })
    }
}

impl Resolved {
    /// The subject (NATS) or channel (Redis) a room's messages are published to: a plain
    /// subject, or the room's chat subject with `chat`.
    pub fn room_subject(&self, room: usize) -> String {
        if self.chat {
            crate::chat::room_subject(room)
        } else {
            room_subject(room)
        }
    }
}

/// The plain subject (NATS) or channel (Redis) of a room.
pub fn room_subject(room: usize) -> String {
    format!("room.{room}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_make_a_meaningful_scenario() {
        let r = Config::default().resolve().unwrap();
        assert_eq!(r.users, 10_000);
        assert_eq!(r.rooms, 100);
        assert_eq!(r.publishers, 100);
        assert_eq!(r.mean_fanout, 100.0);
        assert_eq!(r.addr.port(), 4222);
        assert!(r.threads >= 1);
    }

    #[test]
    fn rejects_nonsense() {
        let c = Config {
            payload: 8,
            ..Config::default()
        };
        assert!(c.resolve().is_err());
        let c = Config {
            users: 5,
            rooms: Some(6),
            ..Config::default()
        };
        assert!(c.resolve().is_err());
    }

    #[test]
    fn uneven_rooms() {
        let c = Config {
            users: 10,
            rooms: Some(3),
            publishers: Some(1),
            url: Some("redis://127.0.0.1:1".into()),
            protocol: Protocol::Redis,
            ..Config::default()
        };
        let r = c.resolve().unwrap();
        assert_eq!(r.room_sizes, vec![4, 3, 3]);
        assert_eq!(r.mean_fanout, 4.0);
        assert!(!r.chat);
        assert_eq!(r.room_subject(2), "room.2");
    }

    #[test]
    fn chat_is_nats_only() {
        let c = Config {
            chat: true,
            url: Some("redis://127.0.0.1:1".into()),
            protocol: Protocol::Redis,
            ..Config::default()
        };
        let e = c.resolve().unwrap_err().to_string();
        assert!(e.contains("--chat needs --protocol nats"), "{e}");
        let c = Config {
            chat: true,
            users: 10,
            rooms: Some(2),
            ..Config::default()
        };
        let r = c.resolve().unwrap();
        assert!(r.chat);
        assert_eq!(r.room_subject(1), "$CHAT.MSG.lg1");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json.get("chat"), Some(&serde_json::Value::Bool(true)));
    }
}
