//! The JetStream owner's write-ahead log (`--data-dir`): which records are logged, recovery
//! at start-up, and the answers that wait for their records to be durable.
//!
//! # What is logged
//! Only what concerns **file streams**: their creation and configuration, every change of
//! their messages, their deletion. Memory streams are transient, as nats-server's on a
//! single server: they are gone after a restart, configuration included.
//!
//! # One batch per loop iteration
//! The records one loop iteration produces go into one [`Batch`], submitted to the
//! committer thread at the end of the iteration (`JsLog::submit`), so many publishes share a
//! write and (under `--fsync always`) an fsync, on top of the committer's own grouping of
//! whatever batches queued during its last round. Every answer whose operation logged a
//! record carries that batch's token and is published only once the committer has reported
//! the token (`JsLog::outcome`); answers leave in the order they were made, so a later
//! answer with nothing to log waits behind an earlier one that has.
//!
//! # Checkpoints, and reclaiming the log
//! Once [`limits::JS_CHECKPOINT_BYTES`] were logged since the last checkpoint (or eight
//! times the last checkpoint's size, if more), the owner appends a checkpoint to the
//! iteration's batch (`JsLog::checkpoint`): every file stream as
//! [`Stream::encode_base`](crate::js::stream::Stream::encode_base)
//! writes it (all its state but its messages' contents) and every durable consumer of one
//! as an upsert. Once that batch is reported durable, every segment older than the one
//! holding the oldest kept message's append is removed: no record in it is needed any
//! more. To know which segment that is, the log keeps, per file stream, the token each run
//! of appends went out under, and per reported token the segment its batch began in.
//!
//! Recovery reads whatever segments are left. If the first is segment 1, the log holds the
//! whole history and is replayed record by record (its checkpoints are skipped: the replay
//! is already exact there). Otherwise it keeps the contents of the appends it reads until a
//! checkpoint whose every kept message it has seen; it rebuilds the streams and consumers
//! from that checkpoint and those contents, and replays every record after it. A checkpoint
//! with a kept message whose append is gone (one reclaimed for a later checkpoint) is
//! passed over: the checkpoint the reclaiming was done for is always usable.
//!
//! What this bounds: recovery reads the log from the oldest kept message's append on, and
//! the disk holds that span plus up to one checkpoint interval. A message kept for long (an
//! unacknowledged work-queue message, a stream without limits) keeps every segment after
//! its own; nothing copies old messages forward yet.
//!
//! # When the disk fails
//! A failed batch (disk full, an I/O error) is answered with JetStream's `insufficient
//! resources` (503 / 10023) for every operation in it: nothing that was not written is
//! confirmed. The owner's streams already hold those operations in memory, so they no
//! longer match the log: once no batch is in flight, the owner closes the log, reopens it
//! and rebuilds its streams from it (`JsLog::reload`), so what it serves is again exactly
//! what is durable. Meanwhile, for [`limits::JS_LOG_RETRY`] after the failure, and while the
//! committer's queue is full, a publish to a file stream is answered `insufficient
//! resources` without being stored, so memory cannot run ahead of the disk without bound and
//! a full disk costs one rebuild per retry period, not one per publish.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::Shared;
use crate::js::api::{ApiError, Storage};
use crate::js::record::{CheckpointRecord, CheckpointWriter, ConsumerRecord, Entry, Item};
use crate::js::stream::{Change, Content};
use crate::js::{record, Record, Streams};
use crate::jsc::api::ConsumerConfig;
use crate::jsc::State;
use crate::limits;
use crate::store::{
    Batch, Committed, Committer, FsyncPolicy, Location, Log, Options, OsDir, SubmitError,
};

/// The owner's log and what is waiting on it.
pub(super) struct JsLog {
    committer: Option<Committer>,
    reports: flume::Receiver<Committed>,
    notify: flume::Sender<Committed>,
    shared: Arc<Shared>,
    owner: usize,
    dir: OsDir,
    policy: FsyncPolicy,
    /// Records of this loop iteration, under token `next_token`.
    batch: Batch,
    next_token: u64,
    /// Batches submitted and not yet reported.
    in_flight: usize,
    /// Every token up to this one has been reported.
    reported: u64,
    /// Reported tokens that failed and that answers may still ask about.
    failed: BTreeSet<u64>,
    /// The streams whose records are logged.
    file_streams: HashSet<String>,
    /// The streams in memory hold operations the log refused.
    diverged: bool,
    /// After a failed batch, file streams refuse writes until then, so a full disk costs
    /// one rebuild per `limits::JS_LOG_RETRY`, not one per publish.
    retry_at: Option<Instant>,
    /// Scratch for one record's encoding.
    scratch: Vec<u8>,
    /// The durable consumers the last recovery found, for the owner to take.
    recovered: Recovered,
    /// Where records are, for checkpoints and reclaiming.
    places: Places,
    /// Spent batches the committer gave back, to fill again (at most [`SPARE_BATCHES`]).
    spare: Vec<Batch>,
}

/// Spent batches kept for reuse: one being filled while another is committed needs two;
/// more only hold memory.
const SPARE_BATCHES: usize = 2;

/// What the log knows of where its records are (see the module docs).
#[derive(Debug, Default)]
struct Places {
    /// Reported batches, ascending by token: (token, the segment its first record is in).
    /// Entries below the oldest token a kept message is in are pruned at each checkpoint.
    segments: VecDeque<(u64, u64)>,
    /// Per file stream, ascending: (sequence, token) of the first append of each token.
    appends: HashMap<String, VecDeque<(u64, u64)>>,
    /// Checkpoints logged and not yet reported: (their token, the oldest token a message
    /// they keep was appended under; 0: unknown, reclaim nothing).
    checkpoints: VecDeque<(u64, u64)>,
    /// Bytes logged since the last checkpoint.
    since: u64,
    /// The last checkpoint's size.
    last_size: u64,
    /// The next checkpoint's id.
    next_id: u64,
}

impl Places {
    /// Message `seq` of file stream `stream` goes out under `token`.
    fn appended(&mut self, stream: &str, seq: u64, token: u64) {
        let runs = match self.appends.get_mut(stream) {
            Some(runs) => runs,
            None => self.appends.entry(stream.to_owned()).or_default(),
        };
        if runs.back().is_none_or(|&(_, t)| t != token) {
            runs.push_back((seq, token));
        }
    }

    /// The token message `first` (a stream's oldest kept) was appended under, dropping
    /// what is known of older appends; 0 if unknown.
    fn token_of(&mut self, stream: &str, first: u64) -> u64 {
        let Some(runs) = self.appends.get_mut(stream) else {
            return 0;
        };
        let at = runs.partition_point(|&(seq, _)| seq <= first);
        if at == 0 {
            return 0;
        }
        runs.drain(..at - 1);
        runs.front().map_or(0, |&(_, token)| token)
    }

    /// The segment batch `token` began in, dropping what is known of older batches.
    fn segment_of(&mut self, token: u64) -> Option<u64> {
        let at = self.segments.partition_point(|&(t, _)| t <= token);
        if at == 0 {
            return None;
        }
        self.segments.drain(..at - 1);
        self.segments.front().map(|&(_, segment)| segment)
    }
}

/// Durable consumers read back from the log: by (stream, name), their configuration,
/// creation time and state.
pub(super) type Recovered = BTreeMap<(String, String), (ConsumerConfig, u64, State)>;

impl std::fmt::Debug for JsLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsLog")
            .field("dir", &self.dir.path())
            .field("policy", &self.policy)
            .field("next_token", &self.next_token)
            .field("in_flight", &self.in_flight)
            .field("diverged", &self.diverged)
            .finish_non_exhaustive()
    }
}

/// JetStream's `insufficient resources`: what an operation the log could not keep gets.
pub(super) fn insufficient_resources() -> ApiError {
    ApiError {
        code: 503,
        err_code: 10023,
        description: "insufficient resources".into(),
    }
}

impl JsLog {
    /// Opens (recovering) the log in `dir`, replays it into `streams`, and starts its
    /// committer, whose reports wake worker `owner`.
    pub(super) fn open(
        dir: &Path,
        policy: FsyncPolicy,
        shared: Arc<Shared>,
        owner: usize,
        streams: &mut Streams,
    ) -> io::Result<JsLog> {
        std::fs::create_dir_all(dir)?;
        let dir = OsDir::open(dir)?;
        let (notify, reports) = flume::unbounded();
        let mut log = JsLog {
            committer: None,
            reports,
            notify,
            shared,
            owner,
            dir,
            policy,
            batch: Batch::new(1),
            next_token: 1,
            in_flight: 0,
            reported: 0,
            failed: BTreeSet::new(),
            file_streams: HashSet::new(),
            diverged: false,
            retry_at: None,
            scratch: Vec::new(),
            recovered: BTreeMap::new(),
            places: Places::default(),
            spare: Vec::new(),
        };
        log.recover(streams)?;
        Ok(log)
    }

    /// Adds what `records` says about file streams to this iteration's batch; returns the
    /// token an answer to the operation must wait for, if anything was added.
    pub(super) fn log(&mut self, records: &[Record]) -> Option<u64> {
        let before = self.batch.len();
        for r in records {
            let durable = match r {
                Record::Create { config, .. } => {
                    let file = config.storage == Storage::File;
                    if file {
                        self.file_streams.insert(config.name.clone());
                        self.places.appends.remove(&config.name);
                    }
                    file
                }
                Record::Delete { name } => {
                    self.places.appends.remove(name);
                    self.file_streams.remove(name)
                }
                Record::Stream { name, change } => {
                    let file = self.file_streams.contains(name);
                    if let (true, Change::Append { seq, .. }) = (file, change) {
                        self.places.appended(name, *seq, self.next_token);
                    }
                    file
                }
            };
            if !durable {
                continue;
            }
            self.scratch.clear();
            record::encode(r, &mut self.scratch);
            self.places.since += self.scratch.len() as u64;
            if self.batch.push(&self.scratch).is_err() {
                // Larger than a log record may be (limits::MAX_RECORD_BYTES, above any
                // message the server accepts): the operation cannot be made durable.
                self.diverged = true;
                tracing::error!(
                    bytes = self.scratch.len(),
                    "a JetStream record too large to log"
                );
            }
        }
        (self.batch.len() > before).then_some(self.next_token)
    }

    /// The token of the latest records logged (0 before any): what a message that must not
    /// leave before everything logged so far is durable waits for.
    pub(super) fn latest_token(&self) -> u64 {
        if self.batch.is_empty() {
            self.next_token - 1
        } else {
            self.next_token
        }
    }

    /// The durable consumers the last recovery found (taken once).
    pub(super) fn take_recovered(&mut self) -> Recovered {
        std::mem::take(&mut self.recovered)
    }

    /// Adds a durable consumer's record to this iteration's batch if its stream is a file
    /// stream (a memory stream's consumers are as transient as it is); returns its token.
    pub(super) fn log_consumer(&mut self, record: &ConsumerRecord) -> Option<u64> {
        let stream = match record {
            ConsumerRecord::Upsert { stream, .. }
            | ConsumerRecord::Delete { stream, .. }
            | ConsumerRecord::Change { stream, .. } => stream,
        };
        if !self.file_streams.contains(stream) {
            return None;
        }
        self.scratch.clear();
        record::encode_consumer(record, &mut self.scratch);
        self.places.since += self.scratch.len() as u64;
        if self.batch.push(&self.scratch).is_err() {
            self.diverged = true;
            return None;
        }
        Some(self.next_token)
    }

    /// Whether enough was logged since the last checkpoint for the next one (and the log
    /// is in a state to take it: open, matching the streams, the last one reported).
    pub(super) fn wants_checkpoint(&self) -> bool {
        let due = limits::JS_CHECKPOINT_BYTES.max(self.places.last_size.saturating_mul(8));
        self.places.since >= due
            && self.committer.is_some()
            && !self.diverged
            && self.places.checkpoints.is_empty()
    }

    /// Adds a checkpoint of the file streams in `streams` and the durable consumers
    /// `consumers` (upserts; those of other streams are left out) to this iteration's
    /// batch, after everything else in it: the state as of the end of the batch.
    pub(super) fn checkpoint(&mut self, streams: &Streams, consumers: &[ConsumerRecord]) {
        let mut writer = CheckpointWriter::new();
        let mut names: Vec<&String> = self.file_streams.iter().collect();
        names.sort_unstable();
        let mut oldest = self.next_token;
        for name in names {
            let Some(stream) = streams.stream(name) else {
                continue;
            };
            writer.stream(stream);
            if let Some(first) = stream.first_kept() {
                oldest = oldest.min(self.places.token_of(name, first));
            }
        }
        for c in consumers {
            if let ConsumerRecord::Upsert { stream, .. } = c {
                if self.file_streams.contains(stream) {
                    writer.consumer(c);
                }
            }
        }
        let id = self.places.next_id;
        self.places.next_id += 1;
        let mut refused = false;
        writer.records(id, |r| refused |= self.batch.push(r).is_err());
        if refused {
            // A part is far below a record's cap: only a bug gets here. The log still
            // matches the streams; the checkpoint is incomplete and recovery passes it over.
            tracing::error!("a JetStream checkpoint record was refused by the log");
            return;
        }
        self.places.checkpoints.push_back((self.next_token, oldest));
        self.places.since = 0;
        self.places.last_size = writer.len() as u64;
        tracing::debug!(id, bytes = writer.len(), "JetStream checkpoint logged");
    }

    /// Whether a publish to file stream `stream` must be refused now: the log cannot take
    /// more (its queue is full with this iteration's batch on top, or it refused records
    /// the streams still hold).
    pub(super) fn refuses(&self, stream: &str) -> bool {
        let cooling = self.retry_at.is_some_and(|at| Instant::now() < at);
        (self.diverged || cooling || self.batch.bytes() as u64 > limits::COMMIT_QUEUE_BYTES)
            && self.file_streams.contains(stream)
    }

    /// Submits this iteration's batch, unless the committer's queue is full (then it is kept
    /// and grows until the next try; [`JsLog::refuses`] bounds it).
    pub(super) fn submit(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let Some(committer) = &self.committer else {
            return;
        };
        // The next batch is a spent one the committer gave back, or gets this one's size
        // (capped): no allocation per iteration under a steady load.
        let next = match self.spare.pop() {
            Some(spent) => spent.reuse(self.next_token + 1),
            None => Batch::with_capacity(
                self.next_token + 1,
                self.batch.bytes().min(limits::COMMIT_QUEUE_BYTES as usize),
                self.batch.len(),
            ),
        };
        let batch = std::mem::replace(&mut self.batch, next);
        match committer.try_submit(batch) {
            Ok(()) => {
                self.in_flight += 1;
                self.next_token += 1;
            }
            Err(SubmitError::Full(batch) | SubmitError::Closed(batch)) => self.batch = batch,
        }
    }

    /// Takes the committer's reports.
    pub(super) fn poll(&mut self) {
        while let Ok(committed) = self.reports.try_recv() {
            for spent in committed.spent {
                if self.spare.len() < SPARE_BATCHES
                    && spent.capacity() <= limits::COMMIT_QUEUE_BYTES as usize
                {
                    self.spare.push(spent);
                }
            }
            for outcome in committed.batches {
                self.in_flight = self.in_flight.saturating_sub(1);
                self.reported = self.reported.max(outcome.token);
                match outcome.result {
                    Ok(locations) => {
                        if let Some(first) = locations.first() {
                            self.places
                                .segments
                                .push_back((outcome.token, first.segment));
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "JetStream write-ahead log refused a batch");
                        self.failed.insert(outcome.token);
                        self.diverged = true;
                        self.retry_at = Some(Instant::now() + limits::JS_LOG_RETRY);
                    }
                }
            }
        }
        self.reclaim();
    }

    /// For each checkpoint now reported durable: removes the segments before the one its
    /// oldest kept message's append is in.
    fn reclaim(&mut self) {
        while let Some(&(token, oldest)) = self.places.checkpoints.front() {
            if token > self.reported {
                return;
            }
            self.places.checkpoints.pop_front();
            if self.failed.contains(&token) || oldest == 0 {
                continue;
            }
            let (Some(segment), Some(committer)) =
                (self.places.segment_of(oldest), &self.committer)
            else {
                continue;
            };
            committer.reclaim_before(Location {
                segment,
                offset: 0,
                len: 0,
            });
        }
    }

    /// `Some(true)` once token `token` is durable, `Some(false)` if it failed, `None` while
    /// it is pending.
    pub(super) fn outcome(&mut self, token: u64) -> Option<bool> {
        if token > self.reported {
            return None;
        }
        // Answers ask in token order: older failures are no longer asked about.
        while self.failed.first().is_some_and(|&t| t < token) {
            self.failed.pop_first();
        }
        Some(!self.failed.contains(&token))
    }

    /// After a failure, once nothing is in flight: reopens the log and rebuilds `streams`
    /// from it. True when `streams` were rebuilt.
    pub(super) fn reload(&mut self, streams: &mut Streams) -> bool {
        if !self.diverged || self.in_flight > 0 || !self.batch.is_empty() {
            return false;
        }
        if let Some(committer) = self.committer.take() {
            committer.close();
        }
        *streams = Streams::with_limits(streams.limits());
        match self.recover(streams) {
            Ok(()) => {
                self.diverged = false;
                tracing::warn!(
                    "JetStream streams rebuilt from the write-ahead log after a failed write"
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "JetStream write-ahead log cannot be reopened; file streams refuse publishes");
            }
        }
        true
    }

    /// Replays the log into `streams` and starts a committer on it.
    fn recover(&mut self, streams: &mut Streams) -> io::Result<()> {
        let mut replay = Replay {
            streams,
            file_streams: HashSet::new(),
            consumers: BTreeMap::new(),
            places: Places::default(),
            token: self.next_token - 1,
            segment: 0,
            waiting: None,
            checkpoint: None,
            passed_over: 0,
            bad: None,
        };
        let (log, report) = Log::open(self.dir.clone(), Options::default(), |at, bytes| {
            replay.record(at, bytes)
        })
        .map_err(|e| io::Error::other(format!("JetStream write-ahead log: {e}")))?;
        if let Some((at, e)) = replay.bad {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "JetStream write-ahead log in {}: the record at {at:?} passed its checksum \
                     but is not a JetStream record ({e}); not starting on a log this server \
                     did not write",
                    self.dir.path().display()
                ),
            ));
        }
        if replay.waiting.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "JetStream write-ahead log in {}: its first segments were reclaimed, \
                     and no checkpoint in what is left can be used ({} passed over); \
                     not starting on a log that cannot be rebuilt",
                    self.dir.path().display(),
                    replay.passed_over
                ),
            ));
        }
        self.file_streams = replay.file_streams;
        self.recovered = replay.consumers;
        self.places = replay.places;
        self.places.next_id = self.places.next_id.max(1);
        // Tokens go on from the ones recovery gave the segments it read.
        self.next_token = replay.token + 1;
        self.reported = replay.token;
        self.batch = Batch::new(self.next_token);
        if replay.passed_over > 0 {
            tracing::info!(
                passed_over = replay.passed_over,
                "JetStream recovery passed over checkpoints whose messages were reclaimed"
            );
        }
        tracing::info!(
            dir = %self.dir.path().display(),
            records = report.records,
            bytes = report.bytes,
            streams = streams.names().count(),
            consumers = self.recovered.len(),
            "JetStream recovered"
        );
        if let Some(torn) = &report.torn {
            tracing::warn!(?torn, "JetStream write-ahead log: a torn tail was cut off");
        }
        if let Some(corrupt) = &report.corrupt {
            tracing::error!(
                ?corrupt,
                "JetStream write-ahead log: a record failed its checksum; it and everything \
                 after it were dropped"
            );
        }
        let (notify, shared, owner) = (self.notify.clone(), Arc::clone(&self.shared), self.owner);
        let committer = Committer::spawn(log, self.policy, move |committed| {
            if notify.send(committed).is_ok() {
                // The owner may be parked in its poll: wake it to take the report.
                let _ = shared.wakers[owner].wake();
            }
        })?;
        self.committer = Some(committer);
        Ok(())
    }
}

/// The contents of one stream's appends recovery read before its checkpoint: by sequence,
/// with the token of the segment each was in.
type Contents = BTreeMap<u64, (Content, u64)>;

/// Recovery's pass over the log (see the module docs).
struct Replay<'s> {
    streams: &'s mut Streams,
    file_streams: HashSet<String>,
    consumers: Recovered,
    places: Places,
    /// The token of the segment being read (one per segment, going on from the log's).
    token: u64,
    /// The segment being read (0 before the first record).
    segment: u64,
    /// While no checkpoint to start from was found (the log's first segments were
    /// reclaimed): the contents of the appends read so far, per stream and sequence, with
    /// the token of their segment.
    waiting: Option<HashMap<String, Contents>>,
    /// The checkpoint being read: its id, its body so far, its parts so far.
    checkpoint: Option<(u64, Vec<u8>, u64)>,
    /// Checkpoints that could not be started from.
    passed_over: u64,
    /// The first record that did not decode.
    bad: Option<(Location, record::RecordError)>,
}

impl Replay<'_> {
    fn record(&mut self, at: Location, bytes: &[u8]) {
        if self.bad.is_some() {
            return;
        }
        if at.segment != self.segment {
            if self.segment == 0 && at.segment != 1 {
                self.waiting = Some(HashMap::new());
            }
            self.segment = at.segment;
            self.token += 1;
            self.places.segments.push_back((self.token, at.segment));
        }
        if !matches!(bytes.first(), Some(&k) if record::is_checkpoint_kind(k)) {
            // Logged since the last checkpoint: the next one is due as it would have been
            // without the restart.
            self.places.since += bytes.len() as u64;
        }
        let result = match record::decode_entry(bytes) {
            Ok(Entry::Checkpoint(c)) => self.checkpoint(c),
            Ok(Entry::Streams(r)) => {
                self.stream_record(r);
                Ok(())
            }
            Ok(Entry::Consumer(r)) => {
                if self.waiting.is_none() {
                    self.consumer_record(r);
                }
                Ok(())
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            self.bad = Some((at, e));
        }
    }

    fn stream_record(&mut self, r: Record) {
        if let Some(waiting) = &mut self.waiting {
            // Only contents matter before the checkpoint: it says what is kept.
            match r {
                Record::Create { config, .. } => {
                    waiting.remove(&config.name);
                }
                Record::Delete { name } => {
                    waiting.remove(&name);
                }
                Record::Stream {
                    name,
                    change:
                        Change::Append {
                            seq,
                            subject,
                            headers,
                            payload,
                            time,
                            ..
                        },
                } => {
                    let content = Content {
                        subject,
                        headers,
                        payload,
                        time,
                    };
                    waiting
                        .entry(name)
                        .or_default()
                        .insert(seq, (content, self.token));
                }
                Record::Stream { .. } => {}
            }
            return;
        }
        match &r {
            Record::Create { config, .. } => {
                self.file_streams.insert(config.name.clone());
                self.places.appends.remove(&config.name);
            }
            Record::Delete { name } => {
                self.file_streams.remove(name);
                self.places.appends.remove(name);
                // A stream deleted (and maybe made again) takes its consumers.
                self.consumers.retain(|(stream, _), _| stream != name);
            }
            Record::Stream {
                name,
                change: Change::Append { seq, .. },
            } => self.places.appended(name, *seq, self.token),
            Record::Stream { .. } => {}
        }
        self.streams.apply_owned(r);
    }

    fn consumer_record(&mut self, r: ConsumerRecord) {
        match r {
            ConsumerRecord::Upsert {
                stream,
                name,
                config,
                created,
                state,
            } => {
                self.consumers
                    .insert((stream, name), (*config, created, *state));
            }
            ConsumerRecord::Delete { stream, name } => {
                self.consumers.remove(&(stream, name));
            }
            ConsumerRecord::Change {
                stream,
                name,
                change,
            } => {
                if let Some((_, _, state)) = self.consumers.get_mut(&(stream, name)) {
                    state.apply(&change);
                }
            }
        }
    }

    fn checkpoint(&mut self, c: CheckpointRecord) -> Result<(), record::RecordError> {
        match c {
            CheckpointRecord::Begin { id } => {
                self.places.next_id = self.places.next_id.max(id + 1);
                self.checkpoint = Some((id, Vec::new(), 0));
            }
            CheckpointRecord::Part(part) => {
                if let Some((_, body, parts)) = &mut self.checkpoint {
                    body.extend_from_slice(&part);
                    *parts += 1;
                }
            }
            CheckpointRecord::End { id, parts } => {
                let Some((begun, body, seen)) = self.checkpoint.take() else {
                    return Ok(());
                };
                if begun == id && seen == parts {
                    self.places.since = 0;
                    self.places.last_size = body.len() as u64;
                }
                // Replaying from the start, the state is already exact here.
                if begun == id && seen == parts && self.waiting.is_some() {
                    self.start_from(&body)?;
                }
            }
        }
        Ok(())
    }

    /// Rebuilds the streams and consumers from a checkpoint's body, if every message it
    /// keeps was read; otherwise passes it over.
    fn start_from(&mut self, body: &[u8]) -> Result<(), record::RecordError> {
        let items = record::decode_checkpoint(body)?;
        let Some(mut waiting) = self.waiting.take() else {
            return Ok(());
        };
        let complete = items.iter().all(|item| match item {
            Item::Stream(base) => {
                let seen = waiting.get(base.name());
                base.kept()
                    .all(|seq| seen.is_some_and(|m| m.contains_key(&seq)))
            }
            Item::Consumer(_) => true,
        });
        if !complete {
            self.passed_over += 1;
            self.waiting = Some(waiting);
            return Ok(());
        }
        let mut streams = Streams::with_limits(self.streams.limits());
        self.file_streams.clear();
        self.consumers.clear();
        self.places.appends.clear();
        for item in items {
            match item {
                Item::Stream(base) => {
                    let name = base.name().to_owned();
                    let mut contents = waiting.remove(&name).unwrap_or_default();
                    let mut appends = VecDeque::new();
                    let restored = base.restore(|seq| {
                        let (content, token) = contents.remove(&seq)?;
                        if appends.back().is_none_or(|&(_, t)| t != token) {
                            appends.push_back((seq, token));
                        }
                        Some(content)
                    });
                    // Every kept message was checked above.
                    let Ok(stream) = restored else {
                        return Err(record::RecordError::Field);
                    };
                    streams.restore(stream);
                    self.file_streams.insert(name.clone());
                    self.places.appends.insert(name, appends);
                }
                Item::Consumer(upsert) => self.consumer_record(upsert),
            }
        }
        *self.streams = streams;
        Ok(())
    }
}
