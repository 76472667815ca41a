//! One NATS connection driven by one thread: a mio `Poll`, a read buffer parsed with
//! `net::proto`, an outbound buffer, and the JetStream API's request/answer on top of it.
//!
//! The JetStream mode needs a single connection (its window is the load), so this is a
//! small client of its own rather than a role in `worker`, whose connections are all
//! subscribers or fire-and-forget publishers. Frames are encoded and parsed by `net::proto`
//! like everywhere else.
//!
//! Subscriptions of the connection (each with its own sid, so a message matches one only):
//! - [`API_SID`] on `<inbox>.a.*`: answers to API requests, one reply subject per request;
//! - [`ACK_SID`] on `<inbox>.k.*`: PubAcks, one reply subject per published message;
//! - `p<k>` on `<inbox>.p.<k>`: the messages of pull request slot `k` (consume mode).

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use net::proto::{self, Message, Op, Parser, ParserLimits, Side};
use serde_json::Value;

use crate::js::api::{self, AnswerError};
use crate::limits::{JS_REQUEST_TIMEOUT_SECS, MAX_PARTIAL_FRAME_BYTES, READ_CHUNK_BYTES};
use crate::Error;

/// The sid of the API answers' subscription.
pub const API_SID: &[u8] = b"1";

/// The sid of the PubAcks' subscription.
pub const ACK_SID: &[u8] = b"2";

/// The token of the connection's [`Waker`] (the connection itself is token 0).
const WAKE_TOKEN: Token = Token(1);

/// A connection to a NATS server with JetStream.
pub struct Client {
    poll: Poll,
    /// Made on first use ([`Client::waker`]); mio allows one per `Poll`.
    waker: Option<Arc<Waker>>,
    events: Events,
    stream: TcpStream,
    parser: Parser,
    /// Bytes read and not yet parsed: `buf[at..]`.
    buf: Vec<u8>,
    at: usize,
    chunk: Vec<u8>,
    /// Bytes queued for the server: `out[out_pos..]`.
    pub(crate) out: Vec<u8>,
    out_pos: usize,
    inbox: String,
    requests: u64,
    pongs: u64,
}

impl Client {
    /// Connects, subscribes to the answer inboxes and waits until the server has answered
    /// a `PING` (so every `SUB` is in place).
    pub fn connect(addr: SocketAddr) -> Result<Client, Error> {
        let what = |e: io::Error| Error::Connect(format!("cannot connect to {addr}: {e}"));
        let std_stream =
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10)).map_err(what)?;
        std_stream.set_nodelay(true).map_err(what)?;
        std_stream.set_nonblocking(true).map_err(what)?;
        let mut stream = TcpStream::from_std(std_stream);
        let poll = Poll::new()?;
        poll.registry().register(
            &mut stream,
            Token(0),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut client = Client {
            poll,
            waker: None,
            events: Events::with_capacity(64),
            stream,
            parser: Parser::new(Side::Client, ParserLimits::default()),
            buf: Vec::new(),
            at: 0,
            chunk: vec![0; READ_CHUNK_BYTES],
            out: Vec::new(),
            out_pos: 0,
            inbox: format!("_INBOX.lgjs.{}x{nanos}", std::process::id()),
            requests: 0,
            pongs: 0,
        };
        let connect = proto::Connect {
            verbose: false,
            pedantic: false,
            echo: false,
            // Status messages: 503 for a request nobody answers, 404/408 for pull requests.
            headers: true,
            no_responders: true,
            name: Some("loadgen-js".to_string()),
            lang: Some("rust".to_string()),
            version: Some(env!("CARGO_PKG_VERSION").to_string()),
            protocol: 1,
            ..proto::Connect::default()
        };
        proto::encode_connect(&mut client.out, &connect);
        let api = format!("{}.a.*", client.inbox);
        let acks = format!("{}.k.*", client.inbox);
        proto::encode_sub(&mut client.out, api.as_bytes(), None, API_SID);
        proto::encode_sub(&mut client.out, acks.as_bytes(), None, ACK_SID);
        client.sync()?;
        Ok(client)
    }

    /// Sends `PING` and handles everything until its `PONG`: every frame sent before is
    /// then processed by the server. Messages arriving meanwhile are dropped.
    pub fn sync(&mut self) -> Result<(), Error> {
        proto::encode_ping(&mut self.out);
        let want = self.pongs + 1;
        let deadline = Instant::now() + Duration::from_secs(JS_REQUEST_TIMEOUT_SECS);
        while self.pongs < want {
            if Instant::now() > deadline {
                return Err(Error::Connect(format!(
                    "no PONG within {JS_REQUEST_TIMEOUT_SECS} s"
                )));
            }
            self.pump(Duration::from_millis(50), |_, _| Ok(()))?;
        }
        Ok(())
    }

    /// The reply subject of the PubAck of message `n`: `<inbox>.k.<n>`, appended to `out`.
    pub fn ack_reply(&self, n: u64, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(self.inbox.as_bytes());
        out.extend_from_slice(b".k.");
        // Invariant: writing into a Vec cannot fail.
        let _ = write!(out, "{n}");
    }

    /// The subject and sid of pull request slot `k`.
    pub fn pull_inbox(&self, k: usize) -> (String, Vec<u8>) {
        (
            format!("{}.p.{k}", self.inbox),
            format!("p{k}").into_bytes(),
        )
    }

    /// Sends one API request and waits for its answer (anything else that arrives
    /// meanwhile is dropped). A server without JetStream answers with a 503 status.
    pub fn request(
        &mut self,
        subject: &str,
        body: &[u8],
    ) -> Result<Result<Value, AnswerError>, Error> {
        self.requests += 1;
        let reply = format!("{}.a.{}", self.inbox, self.requests);
        proto::encode_pub(
            &mut self.out,
            subject.as_bytes(),
            Some(reply.as_bytes()),
            body,
        );
        let deadline = Instant::now() + Duration::from_secs(JS_REQUEST_TIMEOUT_SECS);
        let mut answer: Option<Result<Result<Value, AnswerError>, Error>> = None;
        while answer.is_none() {
            if Instant::now() > deadline {
                return Err(Error::Js(format!(
                    "no answer to {subject} within {JS_REQUEST_TIMEOUT_SECS} s"
                )));
            }
            self.pump(Duration::from_millis(50), |_, m| {
                if m.sid != API_SID || m.subject != reply.as_bytes() {
                    return Ok(());
                }
                answer = Some(match m.headers.and_then(api::status_code) {
                    Some(503) => Err(Error::Js(format!(
                        "no responders for {subject}: the server does not serve JetStream \
                         (engine serve --jetstream, nats-server -js)"
                    ))),
                    Some(code) => Err(Error::Js(format!("{subject} answered with status {code}"))),
                    None => Ok(api::answer(m.payload)),
                });
                Ok(())
            })?;
        }
        // Invariant: the loop above ends only once `answer` is set.
        answer.unwrap_or_else(|| Err(Error::Js("no answer".to_string())))
    }

    /// Like [`Client::request`], but an error answer is an error of the run.
    pub fn request_ok(&mut self, subject: &str, body: &[u8]) -> Result<Value, Error> {
        self.request(subject, body)?
            .map_err(|e| Error::Js(format!("{subject}: {e}")))
    }

    /// A waker that makes a [`Client::pump`] waiting on this connection return (another
    /// thread's alarm: mio's own timeouts are whole milliseconds).
    pub fn waker(&mut self) -> Result<Arc<Waker>, Error> {
        if let Some(w) = &self.waker {
            return Ok(Arc::clone(w));
        }
        let w = Arc::new(Waker::new(self.poll.registry(), WAKE_TOKEN)?);
        self.waker = Some(Arc::clone(&w));
        Ok(w)
    }

    /// Unsent bytes queued.
    pub fn backlog(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Writes what is queued, waits up to `timeout` for the socket, reads what arrived and
    /// hands every `MSG`/`HMSG` to `on` with the outbound buffer (to queue replies such as
    /// acks). Answers server `PING`s; a `-ERR` or a closed connection is an error. A
    /// [`Client::waker`]'s wake ends the wait early. Returns the messages handled.
    pub fn pump(
        &mut self,
        timeout: Duration,
        mut on: impl FnMut(&mut Vec<u8>, &Message<'_>) -> Result<(), Error>,
    ) -> Result<usize, Error> {
        self.flush()?;
        self.poll.poll(&mut self.events, Some(timeout))?;
        if self.events.is_empty() {
            return Ok(0);
        }
        let mut handled = 0;
        loop {
            let n = match self.stream.read(&mut self.chunk) {
                Ok(0) => return Err(Error::Js("the server closed the connection".to_string())),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Js(format!("read: {e}"))),
            };
            self.buf.extend_from_slice(&self.chunk[..n]);
            handled += self.parse_all(&mut on)?;
        }
        self.flush()?;
        Ok(handled)
    }

    fn parse_all(
        &mut self,
        on: &mut impl FnMut(&mut Vec<u8>, &Message<'_>) -> Result<(), Error>,
    ) -> Result<usize, Error> {
        let mut handled = 0;
        loop {
            let (op, used) = match self.parser.parse(&self.buf[self.at..]) {
                Ok(Some(x)) => x,
                Ok(None) => break,
                Err(e) => return Err(Error::Js(format!("protocol error from the server: {e}"))),
            };
            match op {
                Op::Msg(m) => {
                    handled += 1;
                    on(&mut self.out, &m)?;
                }
                Op::Ping => proto::encode_pong(&mut self.out),
                Op::Pong => self.pongs += 1,
                Op::Err(text) => {
                    return Err(Error::Js(format!("-ERR {}", String::from_utf8_lossy(text))))
                }
                _ => {}
            }
            self.at += used;
        }
        // Keep only the unparsed tail (a frame split by the read).
        self.buf.drain(..self.at);
        self.at = 0;
        if self.buf.len() > MAX_PARTIAL_FRAME_BYTES {
            return Err(Error::Js(format!(
                "a frame from the server is over {MAX_PARTIAL_FRAME_BYTES} bytes"
            )));
        }
        Ok(handled)
    }

    fn flush(&mut self) -> Result<(), Error> {
        while self.out_pos < self.out.len() {
            match self.stream.write(&self.out[self.out_pos..]) {
                Ok(0) => return Err(Error::Js("the server closed the connection".to_string())),
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::Js(format!("write: {e}"))),
            }
        }
        self.out.clear();
        self.out_pos = 0;
        Ok(())
    }
}

/// The message number of a PubAck's subject `<inbox>.k.<n>`: its last token (the
/// subscription on `<inbox>.k.*` matches nothing else).
pub fn ack_number(subject: &[u8]) -> Option<u64> {
    let at = subject.iter().rposition(|&b| b == b'.')?;
    std::str::from_utf8(&subject[at + 1..]).ok()?.parse().ok()
}
