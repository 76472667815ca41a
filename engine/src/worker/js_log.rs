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

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::Shared;
use crate::js::api::{ApiError, Storage};
use crate::js::record::{ConsumerRecord, Entry};
use crate::js::{record, Record, Streams};
use crate::jsc::api::ConsumerConfig;
use crate::jsc::State;
use crate::limits;
use crate::store::{Batch, Committed, Committer, FsyncPolicy, Log, Options, OsDir, SubmitError};

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
                    if config.storage == Storage::File {
                        self.file_streams.insert(config.name.clone());
                    }
                    config.storage == Storage::File
                }
                Record::Delete { name } => self.file_streams.remove(name),
                Record::Stream { name, .. } => self.file_streams.contains(name),
            };
            if !durable {
                continue;
            }
            self.scratch.clear();
            record::encode(r, &mut self.scratch);
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
        if self.batch.push(&self.scratch).is_err() {
            self.diverged = true;
            return None;
        }
        Some(self.next_token)
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
        // The next batch gets this one's size (capped): one allocation per iteration, not a
        // regrowth per doubling.
        let next = Batch::with_capacity(
            self.next_token + 1,
            self.batch.bytes().min(limits::COMMIT_QUEUE_BYTES as usize),
            self.batch.len(),
        );
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
            for outcome in committed.batches {
                self.in_flight = self.in_flight.saturating_sub(1);
                self.reported = self.reported.max(outcome.token);
                if let Err(e) = outcome.result {
                    tracing::error!(error = %e, "JetStream write-ahead log refused a batch");
                    self.failed.insert(outcome.token);
                    self.diverged = true;
                    self.retry_at = Some(Instant::now() + limits::JS_LOG_RETRY);
                }
            }
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
        self.file_streams.clear();
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
        let mut bad = None;
        let file_streams = &mut self.file_streams;
        let consumers = &mut self.recovered;
        consumers.clear();
        let (log, report) = Log::open(self.dir.clone(), Options::default(), |at, bytes| {
            if bad.is_some() {
                return;
            }
            match record::decode_entry(bytes) {
                Ok(Entry::Streams(r)) => {
                    match &r {
                        Record::Create { config, .. } => {
                            file_streams.insert(config.name.clone());
                        }
                        Record::Delete { name } => {
                            file_streams.remove(name);
                            // A stream deleted (and maybe made again) takes its consumers.
                            consumers.retain(|(stream, _), _| stream != name);
                        }
                        Record::Stream { .. } => {}
                    }
                    streams.apply(&r);
                }
                Ok(Entry::Consumer(r)) => match r {
                    ConsumerRecord::Upsert {
                        stream,
                        name,
                        config,
                        created,
                        state,
                    } => {
                        consumers.insert((stream, name), (*config, created, *state));
                    }
                    ConsumerRecord::Delete { stream, name } => {
                        consumers.remove(&(stream, name));
                    }
                    ConsumerRecord::Change {
                        stream,
                        name,
                        change,
                    } => {
                        if let Some((_, _, state)) = consumers.get_mut(&(stream, name)) {
                            state.apply(&change);
                        }
                    }
                },
                Err(e) => bad = Some((at, e)),
            }
        })
        .map_err(|e| io::Error::other(format!("JetStream write-ahead log: {e}")))?;
        if let Some((at, e)) = bad {
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
