//! Group commit off the event loop: one committer thread per log takes every batch queued
//! since its last round, writes them with one `write`, syncs once (under
//! [`FsyncPolicy::Always`]) and reports them all through the owner's notifier.
//!
//! # The owner's side
//! [`Committer::try_submit`] never blocks: it hands a [`Batch`] to a bounded queue
//! (flume), or gives it back as [`SubmitError::Full`] once
//! [`limits::COMMIT_QUEUE_BATCHES`] batches or [`limits::COMMIT_QUEUE_BYTES`] record bytes
//! are waiting. The notifier given to [`Committer::spawn`] runs on the committer thread,
//! once per round, with a [`Committed`] holding each batch's token and its records'
//! locations, or the error that failed it; the worker's notifier pushes it into its own
//! inbox and wakes its loop. The worker never waits for a sync: the committer thread does.
//!
//! NB: flume's send takes a short internal lock, shared only with the committer thread's
//! receive (never held across I/O), and wakes the thread (a futex call) only when it is
//! idle; under load the thread is busy syncing and a submit is a push. The engine's SPSC
//! ring with a doorbell is the alternative if a measurement ever shows the lock.
//!
//! # Reading while the thread appends
//! The owner reads committed records through a [`Reader`](super::log::Reader) taken from
//! the log before it is handed over ([`Log::reader`](super::log::Log::reader)): its own
//! read-only file handles and positioned reads, so reads and appends share no lock and no
//! cursor. Rejected: a `Mutex<Log>` shared by both threads, which would make the owner's
//! read wait for an fsync in progress, the very stall the thread exists to avoid. A
//! location may be read once the notifier has reported it (it was written by then; the
//! report travels through the owner's inbox, which orders the two).
//!
//! # What each policy risks
//! | policy | reported when | process crash (`kill -9`) | power loss |
//! |---|---|---|---|
//! | `always` | after the round's sync | nothing reported is lost | nothing reported is lost |
//! | `interval=<ms>` | after the round's write; a sync follows within the interval | nothing reported is lost | what was reported since the last sync (at most one interval) |
//! | `never` | after the round's write | nothing reported is lost | everything since the last sync: segments are synced only when sealed and at close |
//!
//! Under every policy recovery yields a prefix of what was submitted, in order, each record
//! intact; it may include records whose batch was never reported (written, then the crash
//! came before the report), so the layer above is at-least-once. A clean close syncs under
//! every policy.
//!
//! A reclaim ([`Committer::reclaim_before`]) first syncs whatever was reported unsynced,
//! so the records that made the old segments unneeded are durable before those go, under
//! every policy.
//!
//! # Failures
//! A round that fails (a full disk, an I/O error) is rolled back to where it began, and
//! every batch in it gets the error; nothing reported earlier is touched, and the next
//! round starts clean, so appends succeed again once space is back. A failed sync breaks
//! the log (see [`LogError::Broken`]): every later batch fails with
//! [`CommitError::Broken`] until the log is opened again. Under `interval` and `never`, a
//! failed sync comes after the batches were reported; it is logged.

use std::fmt;
use std::io;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::file::Dir;
use super::log::{Location, Log, LogError};
use crate::limits;

/// When the committer syncs, and so when it reports a batch durable (`--fsync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// Sync after every round, then report (group commit).
    #[default]
    Always,
    /// Report after the write; sync at most once per interval, within an interval of the
    /// first unsynced write.
    Interval(Duration),
    /// Report after the write; sync only when a segment is sealed and at close.
    Never,
}

/// A `--fsync` value that is not `always`, `interval=<ms>` or `never`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fsync policy `{0}`: expected always, interval=<ms> (at least 1) or never")]
pub struct ParsePolicyError(String);

/// Records to commit together, under a token the caller chooses (to match the report).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    token: u64,
    /// The records, one after another.
    data: Vec<u8>,
    /// Where each record ends in `data`.
    ends: Vec<usize>,
}

/// One round's report: every batch of the round, in submission order.
#[derive(Debug)]
pub struct Committed {
    /// The batches' outcomes.
    pub batches: Vec<Outcome>,
    /// The round's batches, emptied with their buffers kept, for the owner to fill again
    /// ([`Batch::reuse`]): buffers then stay with the thread that allocated them, and a
    /// steady load allocates none per round.
    pub spent: Vec<Batch>,
}

/// What became of one batch.
#[derive(Debug)]
pub struct Outcome {
    /// The batch's token.
    pub token: u64,
    /// Its records' locations, in order, or why none of them is kept.
    pub result: Result<Vec<Location>, CommitError>,
}

/// Why a batch was not committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    /// The device is full: the batch is not kept; later batches succeed once space is back
    /// (JetStream's insufficient-resources error, to the client).
    #[error("no space left on the device")]
    DiskFull,
    /// An I/O error failed the round (logged with its detail by the committer).
    #[error("I/O error: {0}")]
    Io(io::ErrorKind),
    /// An earlier sync failed: nothing more is committed until the log is reopened.
    #[error("the log is unusable after a failed sync; reopen it to recover")]
    Broken,
}

/// A batch the committer did not take, handed back.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The queue is full (in batches or bytes): try again after the next report.
    #[error("the commit queue is full")]
    Full(Batch),
    /// The committer thread is gone.
    #[error("the committer has stopped")]
    Closed(Batch),
}

/// The owner's handle on a log's committer thread. Dropping it (or [`Committer::close`])
/// commits what is queued, syncs, and joins the thread.
#[derive(Debug)]
pub struct Committer {
    tx: Option<flume::Sender<Request>>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl FromStr for FsyncPolicy {
    type Err = ParsePolicyError;

    fn from_str(s: &str) -> Result<FsyncPolicy, ParsePolicyError> {
        match s {
            "always" => Ok(FsyncPolicy::Always),
            "never" => Ok(FsyncPolicy::Never),
            _ => s
                .strip_prefix("interval=")
                .and_then(|ms| ms.parse::<u64>().ok())
                .filter(|&ms| ms > 0)
                .map(|ms| FsyncPolicy::Interval(Duration::from_millis(ms)))
                .ok_or_else(|| ParsePolicyError(s.to_owned())),
        }
    }
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsyncPolicy::Always => f.write_str("always"),
            FsyncPolicy::Interval(every) => write!(f, "interval={}", every.as_millis()),
            FsyncPolicy::Never => f.write_str("never"),
        }
    }
}

impl Batch {
    /// An empty batch reported under `token`.
    pub fn new(token: u64) -> Batch {
        Batch {
            token,
            ..Batch::default()
        }
    }

    /// An empty batch reported under `token`, with room for `records` records of `bytes`
    /// bytes in all (a producer that fills one batch per loop iteration passes the last
    /// one's size, so a steady load does not regrow the buffers every iteration).
    pub fn with_capacity(token: u64, bytes: usize, records: usize) -> Batch {
        Batch {
            token,
            data: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(records),
        }
    }

    /// This batch emptied, under `token`, its buffers kept.
    pub fn reuse(mut self, token: u64) -> Batch {
        self.clear();
        self.token = token;
        self
    }

    fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
    }

    /// Adds a record: 1 to [`limits::MAX_RECORD_BYTES`] bytes, else
    /// [`LogError::RecordSize`] and the batch is unchanged.
    pub fn push(&mut self, record: &[u8]) -> Result<(), LogError> {
        if record.is_empty() || record.len() > limits::MAX_RECORD_BYTES {
            return Err(LogError::RecordSize {
                bytes: record.len(),
            });
        }
        self.data.extend_from_slice(record);
        self.ends.push(self.data.len());
        Ok(())
    }

    /// The token it is reported under.
    pub fn token(&self) -> u64 {
        self.token
    }

    /// Records in it.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether it holds no record.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Record bytes it holds room for without growing.
    pub fn capacity(&self) -> usize {
        self.data.capacity()
    }

    /// Record bytes in it.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }

    /// Its records, in order.
    pub fn records(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(&self.ends)
            .map(|(start, &end)| &self.data[start..end])
    }
}

impl SubmitError {
    /// The batch that was not taken.
    pub fn into_batch(self) -> Batch {
        match self {
            SubmitError::Full(batch) | SubmitError::Closed(batch) => batch,
        }
    }
}

impl From<&LogError> for CommitError {
    fn from(e: &LogError) -> CommitError {
        match e {
            LogError::DiskFull { .. } => CommitError::DiskFull,
            LogError::Io { source, .. } => CommitError::Io(source.kind()),
            LogError::Broken => CommitError::Broken,
            // Batch::push refuses bad sizes and the committer reads nothing back, so these
            // do not happen; should one, it is the batch's data that is wrong.
            LogError::RecordSize { .. } | LogError::Corrupt { .. } | LogError::Missing { .. } => {
                CommitError::Io(io::ErrorKind::InvalidData)
            }
        }
    }
}

impl Committer {
    /// Starts the committer thread of `log` (recovered already). `notify` runs on that
    /// thread after every round; it must not block for long (every later batch waits).
    pub fn spawn<D: Dir>(
        log: Log<D>,
        policy: FsyncPolicy,
        notify: impl FnMut(Committed) + Send + 'static,
    ) -> io::Result<Committer> {
        let (tx, rx) = flume::bounded(limits::COMMIT_QUEUE_BATCHES);
        let shared = Arc::new(Shared {
            queued_bytes: AtomicU64::new(0),
            reclaim_before: AtomicU64::new(0),
        });
        let state = Thread {
            log,
            policy,
            rx,
            shared: Arc::clone(&shared),
            notify: Box::new(notify),
            round: Vec::new(),
            reclaimed: 0,
            last_sync: Instant::now(),
            unsynced: false,
            failing: false,
        };
        let thread = thread::Builder::new()
            .name("wal-commit".into())
            .spawn(move || state.run())?;
        Ok(Committer {
            tx: Some(tx),
            shared,
            thread: Some(thread),
        })
    }

    /// Queues `batch` for the next round, or hands it back when the queue is full or the
    /// thread is gone. Never blocks.
    pub fn try_submit(&self, batch: Batch) -> Result<(), SubmitError> {
        let Some(tx) = &self.tx else {
            return Err(SubmitError::Closed(batch));
        };
        let bytes = batch.bytes() as u64;
        // Relaxed: the counter is a budget, not a publication; the batch itself travels
        // through the channel, which orders it. A batch is taken while the budget is not
        // used up, so the queue holds at most the cap plus one batch.
        if self.shared.queued_bytes.load(Ordering::Relaxed) >= limits::COMMIT_QUEUE_BYTES {
            return Err(SubmitError::Full(batch));
        }
        self.shared.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
        let refused = match tx.try_send(Request::Append(batch)) {
            Ok(()) => return Ok(()),
            Err(flume::TrySendError::Full(Request::Append(batch))) => SubmitError::Full(batch),
            Err(flume::TrySendError::Disconnected(Request::Append(batch))) => {
                SubmitError::Closed(batch)
            }
            // What was sent is the batch; a wake-up never comes back here.
            Err(_) => return Ok(()),
        };
        // Relaxed: as above.
        self.shared.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
        Err(refused)
    }

    /// Asks the thread to remove every segment before `first_kept`'s (the caller needs no
    /// record before it); it does so before its next round. Never blocks.
    pub fn reclaim_before(&self, first_kept: Location) {
        // Relaxed: the watermark is the whole message; the wake-up below, or the next
        // batch, goes through the channel and makes the thread look.
        self.shared
            .reclaim_before
            .fetch_max(first_kept.segment, Ordering::Relaxed);
        if let Some(tx) = &self.tx {
            // A full queue means a round is coming anyway, and it applies the watermark.
            let _ = tx.try_send(Request::Wake);
        }
    }

    /// Commits what is queued (its reports still go to the notifier), syncs, and joins the
    /// thread. A panic on the thread (in the notifier) is raised here.
    pub fn close(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        // Dropping the only sender ends the thread's loop once the queue is empty.
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            if let Err(panic) = thread.join() {
                if !thread::panicking() {
                    std::panic::resume_unwind(panic);
                }
            }
        }
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.shut();
    }
}

/// What the queue carries.
#[derive(Debug)]
enum Request {
    Append(Batch),
    /// Look at the reclaim watermark.
    Wake,
}

/// What the owner's handle and the thread share besides the queue.
#[derive(Debug)]
struct Shared {
    /// Record bytes submitted and not yet taken by the thread.
    queued_bytes: AtomicU64,
    /// Segments below this id are no longer needed.
    reclaim_before: AtomicU64,
}

/// The committer thread's state.
struct Thread<D: Dir> {
    log: Log<D>,
    policy: FsyncPolicy,
    rx: flume::Receiver<Request>,
    shared: Arc<Shared>,
    notify: Box<dyn FnMut(Committed) + Send>,
    /// The batches of the round being made.
    round: Vec<Batch>,
    /// The reclaim watermark last applied.
    reclaimed: u64,
    last_sync: Instant,
    /// Something reported has not been synced (interval and never).
    unsynced: bool,
    /// The last round failed (to log state changes only).
    failing: bool,
}

/// What waiting for the next request gave.
enum Wait {
    Request(Request),
    /// An interval sync is due.
    SyncDue,
    /// The handle is gone and the queue empty.
    Closed,
}

impl<D: Dir> Thread<D> {
    fn run(mut self) {
        loop {
            match self.wait() {
                Wait::Request(first) => {
                    self.take(first);
                    while self.round.len() < limits::COMMIT_QUEUE_BATCHES {
                        match self.rx.try_recv() {
                            Ok(request) => self.take(request),
                            Err(_) => break,
                        }
                    }
                    self.reclaim();
                    self.commit_round();
                }
                Wait::SyncDue => {
                    self.sync();
                }
                Wait::Closed => break,
            }
        }
        if self.unsynced {
            self.sync();
        }
    }

    fn wait(&self) -> Wait {
        let deadline = match self.policy {
            FsyncPolicy::Interval(every) if self.unsynced => self.last_sync.checked_add(every),
            _ => None,
        };
        let received = match deadline {
            Some(deadline) => self.rx.recv_deadline(deadline).map_err(|e| match e {
                flume::RecvTimeoutError::Timeout => Wait::SyncDue,
                flume::RecvTimeoutError::Disconnected => Wait::Closed,
            }),
            None => self.rx.recv().map_err(|_| Wait::Closed),
        };
        match received {
            Ok(request) => Wait::Request(request),
            Err(wait) => wait,
        }
    }

    fn take(&mut self, request: Request) {
        if let Request::Append(batch) = request {
            // Relaxed: a budget only (see `try_submit`).
            self.shared
                .queued_bytes
                .fetch_sub(batch.bytes() as u64, Ordering::Relaxed);
            self.round.push(batch);
        }
    }

    fn reclaim(&mut self) {
        // Relaxed: see `reclaim_before`.
        let before = self.shared.reclaim_before.load(Ordering::Relaxed);
        if before <= self.reclaimed {
            return;
        }
        // What the owner no longer needs is superseded by records it was told are written;
        // under `interval` and `never` they may not be synced yet, and removing the old
        // segments first would let one power loss take both. Nothing goes until a sync has
        // covered what was reported.
        if self.unsynced && !self.sync() {
            return;
        }
        // Applied once whatever happens: a failure is logged, and the owner's next request
        // (a later segment) tries again.
        self.reclaimed = before;
        if let Err(e) = self.log.remove_segments_before(before) {
            tracing::warn!(error = %e, "write-ahead log: removing old segments failed");
        }
    }

    /// Writes the round's batches, syncs or flushes per the policy, and reports them.
    fn commit_round(&mut self) {
        if self.round.is_empty() {
            return;
        }
        let mark = self.log.mark();
        let mut failed = None;
        let mut written = Vec::with_capacity(self.round.len());
        let mut spent = Vec::with_capacity(self.round.len());
        for mut batch in self.round.drain(..) {
            let mut locations = Vec::with_capacity(batch.len());
            if failed.is_none() {
                for record in batch.records() {
                    match self.log.append(record) {
                        Ok(location) => locations.push(location),
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
            }
            written.push((batch.token, locations));
            batch.clear();
            spent.push(batch);
        }
        if failed.is_none() {
            let done = match self.policy {
                FsyncPolicy::Always => self.log.sync(),
                FsyncPolicy::Interval(_) | FsyncPolicy::Never => self.log.flush(),
            };
            match done {
                Ok(()) if self.policy == FsyncPolicy::Always => self.last_sync = Instant::now(),
                Ok(()) => self.unsynced = true,
                Err(e) => failed = Some(e),
            }
        }
        let error = failed.as_ref().map(CommitError::from);
        match &failed {
            Some(e) => {
                // A failed rollback breaks the log; the next round reports that.
                let _ = self.log.rollback(mark);
                if !self.failing {
                    tracing::warn!(error = %e, "write-ahead log: commits failing");
                }
            }
            None if self.failing => tracing::info!("write-ahead log: commits succeed again"),
            None => {}
        }
        self.failing = failed.is_some();
        let batches = written
            .into_iter()
            .map(|(token, locations)| Outcome {
                token,
                result: match error {
                    Some(e) => Err(e),
                    None => Ok(locations),
                },
            })
            .collect();
        (self.notify)(Committed { batches, spent });
        if let FsyncPolicy::Interval(every) = self.policy {
            if self.unsynced && self.last_sync.elapsed() >= every {
                self.sync();
            }
        }
    }

    /// A sync of what was reported unsynced (interval, never, close, a reclaim); whether
    /// it succeeded.
    fn sync(&mut self) -> bool {
        // Whatever the result, it is not retried: a failed sync breaks the log.
        self.unsynced = false;
        match self.log.sync() {
            Ok(()) => {
                self.last_sync = Instant::now();
                true
            }
            Err(e) => {
                tracing::error!(
                    error = %e,
                    "write-ahead log: sync failed; batches reported since the last sync may be lost on power loss"
                );
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;
    use crate::store::file::{OsDir, SimDir, SplitMix64, TempDir};
    use crate::store::log::{Options, Reader};

    const SMALL: Options = Options { segment_bytes: 256 };
    const WAIT: Duration = Duration::from_secs(20);

    fn record(token: u64, i: u64, rng: &mut SplitMix64) -> Vec<u8> {
        let mut bytes = [token.to_le_bytes(), i.to_le_bytes()].concat();
        bytes.extend((0..rng.upto(40)).map(|_| rng.next() as u8));
        bytes
    }

    fn batch(token: u64, n: u64, rng: &mut SplitMix64) -> Batch {
        let mut batch = Batch::new(token);
        for i in 0..n {
            batch.push(&record(token, i, rng)).unwrap();
        }
        batch
    }

    fn recover<D: Dir>(dir: D) -> (Log<D>, Vec<Vec<u8>>) {
        let mut seen = Vec::new();
        let (log, _) = Log::open(dir, SMALL, |_, payload| seen.push(payload.to_vec())).unwrap();
        (log, seen)
    }

    /// A committer whose reports arrive on a channel.
    fn spawn<D: Dir>(log: Log<D>, policy: FsyncPolicy) -> (Committer, mpsc::Receiver<Committed>) {
        let (tx, rx) = mpsc::channel();
        let committer = Committer::spawn(log, policy, move |committed| {
            let _ = tx.send(committed);
        })
        .unwrap();
        (committer, rx)
    }

    /// A committer on an empty simulated directory.
    fn started(policy: FsyncPolicy) -> (SimDir, Committer, mpsc::Receiver<Committed>) {
        let dir = SimDir::new(0);
        let (log, _) = recover(dir.clone());
        let (committer, rx) = spawn(log, policy);
        (dir, committer, rx)
    }

    /// Waits for the outcomes of `n` batches.
    fn outcomes(rx: &mpsc::Receiver<Committed>, n: usize) -> Vec<Outcome> {
        let mut all = Vec::new();
        while all.len() < n {
            all.extend(rx.recv_timeout(WAIT).expect("a report").batches);
        }
        all
    }

    fn one(committer: &Committer, rx: &mpsc::Receiver<Committed>, batch: Batch) -> Outcome {
        committer.try_submit(batch).unwrap();
        outcomes(rx, 1).remove(0)
    }

    #[test]
    fn policies_parse_and_print() {
        for (text, policy) in [
            ("always", FsyncPolicy::Always),
            ("never", FsyncPolicy::Never),
            (
                "interval=5",
                FsyncPolicy::Interval(Duration::from_millis(5)),
            ),
        ] {
            assert_eq!(text.parse::<FsyncPolicy>(), Ok(policy));
            assert_eq!(policy.to_string(), text);
        }
        for bad in [
            "",
            "Always",
            "interval=",
            "interval=0",
            "interval=-1",
            "interval=5ms",
        ] {
            assert_eq!(
                bad.parse::<FsyncPolicy>(),
                Err(ParsePolicyError(bad.to_owned()))
            );
        }
        assert_eq!(FsyncPolicy::default(), FsyncPolicy::Always);
    }

    #[test]
    fn batches_iterate_their_records() {
        let mut batch = Batch::new(7);
        batch.push(b"a").unwrap();
        batch.push(b"bc").unwrap();
        assert!(batch.push(b"").is_err());
        let records: Vec<&[u8]> = batch.records().collect();
        assert_eq!(records, vec![&b"a"[..], &b"bc"[..]]);
        assert_eq!((batch.token(), batch.len(), batch.bytes()), (7, 2, 3));
        assert!(Batch::new(1).records().next().is_none());
    }

    /// A committer on `log` that has committed batch 0 (1 record) and waits in its notifier
    /// until the returned gate gets a message (one per round) or is dropped: what is
    /// submitted meanwhile stays queued.
    fn held<D: Dir>(log: Log<D>) -> (Committer, mpsc::Receiver<Committed>, mpsc::Sender<()>) {
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        let (tx, rx) = mpsc::channel();
        let committer = Committer::spawn(log, FsyncPolicy::Never, move |committed| {
            let _ = tx.send(committed);
            let _ = gate_rx.recv_timeout(WAIT);
        })
        .unwrap();
        committer
            .try_submit(batch(0, 1, &mut SplitMix64::new(0)))
            .unwrap();
        // Reported: the thread is in the notifier now.
        assert_eq!(outcomes(&rx, 1).len(), 1);
        (committer, rx, gate_tx)
    }

    /// Everything queued while a round runs goes into the next round: one write and one
    /// sync for all of them.
    #[test]
    fn batches_queued_during_a_round_share_one_write() {
        let dir = SimDir::new(0);
        // Segments large enough that the round does not rotate.
        let (log, _) = Log::open(dir.clone(), Options::default(), |_, _| {}).unwrap();
        let (committer, rx, gate) = held(log);
        let mut rng = SplitMix64::new(1);
        for token in 1..=50 {
            committer.try_submit(batch(token, 2, &mut rng)).unwrap();
        }
        let before = dir.ops();
        gate.send(()).unwrap();
        let second = rx.recv_timeout(WAIT).unwrap();
        let tokens: Vec<u64> = second.batches.iter().map(|o| o.token).collect();
        assert_eq!(tokens, (1..=50).collect::<Vec<_>>());
        assert!(second.batches.iter().all(|o| o.result.is_ok()));
        // One append for all fifty (`never`: no sync; under `always` the same round ends
        // with one sync, which the power-loss tests cover).
        assert_eq!(dir.ops() - before, 1);
        drop(gate);
        committer.close();
    }

    /// With the thread held, `cap` batches from `make` are taken and the next is handed
    /// back.
    fn fill_until_full(cap: u64, make: impl Fn(u64) -> Batch) {
        let (log, _) = recover(SimDir::new(0));
        let (committer, _rx, gate) = held(log);
        for token in 1..=cap {
            committer.try_submit(make(token)).unwrap();
        }
        let refused = committer.try_submit(make(cap + 1)).unwrap_err();
        assert!(matches!(&refused, SubmitError::Full(_)));
        assert_eq!(refused.into_batch().token(), cap + 1);
        drop(gate);
        committer.close();
    }

    #[test]
    fn a_full_queue_hands_the_batch_back() {
        let cap = limits::COMMIT_QUEUE_BATCHES as u64;
        fill_until_full(cap, |token| batch(token, 1, &mut SplitMix64::new(token)));
        // Taken while the queue holds less than the cap: exactly the cap in 1 MiB batches.
        let mib = vec![1u8; 1024 * 1024];
        let cap = limits::COMMIT_QUEUE_BYTES / (1024 * 1024);
        fill_until_full(cap, |token| {
            let mut batch = Batch::new(token);
            batch.push(&mib).unwrap();
            batch
        });
    }

    /// Reads of reported records from the owner's thread while the committer appends, on
    /// the real file system; reclaiming removes whole segments.
    #[test]
    fn the_owner_reads_what_was_reported_while_the_thread_appends() {
        let temp = TempDir::new("commit");
        let dir = temp.dir();
        let (log, _) = recover(dir.clone());
        let mut reader: Reader<OsDir> = log.reader();
        let (committer, rx) = spawn(log, FsyncPolicy::Always);
        let mut rng = SplitMix64::new(3);
        let batches: Vec<Batch> = (0..40).map(|t| batch(t, 1 + t % 3, &mut rng)).collect();
        let mut first = Vec::new();
        let mut buf = Vec::new();
        for pair in batches.chunks(2) {
            for batch in pair {
                committer.try_submit(batch.clone()).unwrap();
            }
            for outcome in outcomes(&rx, pair.len()) {
                let batch = &batches[outcome.token as usize];
                let locations = outcome.result.unwrap();
                for (location, record) in locations.iter().zip(batch.records()) {
                    assert_eq!(reader.read(*location, &mut buf).unwrap(), record);
                }
                first.push(locations[0]);
            }
        }
        let keep = first[30];
        committer.reclaim_before(keep);
        // The next round begins by reclaiming, so its report comes after it.
        one(&committer, &rx, batch(99, 1, &mut rng)).result.unwrap();
        let mut segments = dir.list().unwrap();
        segments.sort();
        assert_eq!(segments[0], format!("{:020}.log", keep.segment));
        assert!(reader.read(keep, &mut buf).is_ok());
        committer.close();
        // Whole segments go: the first kept one may begin before `keep`, never after it.
        let (_, seen) = recover(dir);
        let kept = batches[30].records().next().unwrap();
        assert!(seen.iter().any(|r| r == kept));
        assert!(seen
            .iter()
            .all(|r| r[..] != *batches[0].records().next().unwrap()));
    }

    /// Under `never`, a reclaim syncs before it removes anything: what superseded the
    /// removed records survives the power loss that follows.
    #[test]
    fn a_reclaim_under_never_syncs_what_replaces_the_segments_first() {
        for seed in 0..40 {
            let dir = SimDir::new(seed);
            let (log, _) = recover(dir.clone());
            let (committer, rx) = spawn(log, FsyncPolicy::Never);
            let mut rng = SplitMix64::new(seed);
            for token in 0..20 {
                one(&committer, &rx, batch(token, 3, &mut rng))
                    .result
                    .unwrap();
            }
            let newest = batch(20, 2, &mut rng);
            let records: Vec<Vec<u8>> = newest.records().map(<[u8]>::to_vec).collect();
            let locations = one(&committer, &rx, newest).result.unwrap();
            committer.reclaim_before(locations[0]);
            // The next round begins by reclaiming.
            one(&committer, &rx, batch(21, 1, &mut rng)).result.unwrap();
            assert!(locations[0].segment > 2, "{locations:?}");
            let after = dir.crash();
            let mut names = after.list().unwrap();
            names.sort();
            assert_eq!(names[0], format!("{:020}.log", locations[0].segment));
            let (_, seen) = recover(after);
            for record in &records {
                assert!(
                    seen.contains(record),
                    "seed {seed}: a record the reclaim kept was lost"
                );
            }
        }
    }

    /// One run: batches submitted (sometimes waiting for their reports, so rounds vary)
    /// while the power goes at a random operation; returns every record submitted in order,
    /// how many of them had been reported committed (they always form a prefix: once the
    /// power is gone, everything fails), and what recovery found after the power came back.
    fn power_loss_run(seed: u64, policy: FsyncPolicy, kill: bool) -> Run {
        let dir = SimDir::new(seed);
        let (log, _) = recover(dir.clone());
        let mut rng = SplitMix64::new(seed);
        if !kill {
            dir.cut_power_at(dir.ops() + 1 + rng.upto(150));
        }
        let (committer, rx) = spawn(log, policy);
        let mut submitted = Vec::new();
        let mut reported = Vec::new();
        let mut records = Vec::new();
        for token in 0..30 {
            let batch = batch(token, 1 + rng.upto(3), &mut rng);
            records.extend(batch.records().map(<[u8]>::to_vec));
            submitted.push(batch.len());
            committer.try_submit(batch).unwrap();
            if rng.coin() {
                let waiting = submitted.len() - reported.len();
                reported.extend(outcomes(&rx, waiting));
            }
        }
        if kill {
            // A process crash: everything reported so far, without the close's sync.
            reported.extend(outcomes(&rx, submitted.len() - reported.len()));
            let (_, recovered) = recover(dir.kill());
            committer.close();
            return Run::new(records, &submitted, reported, recovered);
        }
        committer.close();
        reported.extend(rx.try_iter().flat_map(|c| c.batches));
        let (_, recovered) = recover(dir.crash());
        Run::new(records, &submitted, reported, recovered)
    }

    struct Run {
        records: Vec<Vec<u8>>,
        /// Records of the batches reported committed (a prefix of the batches).
        committed: usize,
        recovered: Vec<Vec<u8>>,
    }

    impl Run {
        fn new(
            records: Vec<Vec<u8>>,
            sizes: &[usize],
            reported: Vec<Outcome>,
            recovered: Vec<Vec<u8>>,
        ) -> Run {
            let tokens: Vec<u64> = reported.iter().map(|o| o.token).collect();
            assert_eq!(tokens, (0..sizes.len() as u64).collect::<Vec<_>>());
            let ok = reported.iter().take_while(|o| o.result.is_ok()).count();
            assert!(reported[ok..].iter().all(|o| o.result.is_err()));
            let committed = sizes[..ok].iter().sum();
            Run {
                records,
                committed,
                recovered,
            }
        }

        /// Recovery found a prefix of the submitted records, each intact.
        fn assert_prefix(&self) {
            assert!(self.recovered.len() <= self.records.len());
            assert_eq!(self.recovered[..], self.records[..self.recovered.len()]);
        }
    }

    #[test]
    fn power_loss_never_loses_a_batch_reported_under_always() {
        let mut lost_unreported = 0;
        for seed in 0..300 {
            let run = power_loss_run(seed, FsyncPolicy::Always, false);
            run.assert_prefix();
            assert!(
                run.recovered.len() >= run.committed,
                "seed {seed}: {} committed, {} recovered",
                run.committed,
                run.recovered.len()
            );
            lost_unreported += usize::from(run.recovered.len() < run.records.len());
        }
        // The crash points do land inside the runs.
        assert!(lost_unreported > 100, "{lost_unreported}");
    }

    #[test]
    fn never_and_interval_keep_everything_reported_through_a_process_crash() {
        for seed in 0..50 {
            for policy in [
                FsyncPolicy::Never,
                FsyncPolicy::Interval(Duration::from_secs(3600)),
            ] {
                let run = power_loss_run(seed, policy, true);
                assert_eq!(run.committed, run.records.len());
                assert_eq!(run.recovered, run.records, "seed {seed}, {policy}");
            }
        }
    }

    /// What `never` and `interval` risk: a power loss takes reported batches back to the
    /// last sync, but what survives is still a prefix, each record intact.
    #[test]
    fn never_and_interval_lose_reported_batches_to_power_loss_but_only_a_suffix() {
        for policy in [
            FsyncPolicy::Never,
            FsyncPolicy::Interval(Duration::from_secs(3600)),
        ] {
            let mut lost_reported = 0;
            for seed in 0..200 {
                let run = power_loss_run(seed, policy, false);
                run.assert_prefix();
                lost_reported += usize::from(run.recovered.len() < run.committed);
            }
            assert!(lost_reported > 0, "{policy}: the risk never showed");
        }
    }

    #[test]
    fn an_interval_sync_follows_the_write_within_the_interval() {
        let (dir, committer, rx) = started(FsyncPolicy::Interval(Duration::from_millis(1)));
        let mut rng = SplitMix64::new(4);
        let before = dir.ops();
        one(&committer, &rx, batch(0, 2, &mut rng)).result.unwrap();
        // The write is reported first; the sync is the next operation, due within 1 ms.
        let deadline = Instant::now() + WAIT;
        while dir.ops() < before + 2 {
            assert!(Instant::now() < deadline, "no interval sync");
            thread::yield_now();
        }
        let (_, recovered) = recover(dir.crash());
        assert_eq!(recovered.len(), 2);
        drop(committer);
    }

    #[test]
    fn a_full_disk_fails_the_round_keeps_what_was_committed_and_recovers() {
        let (dir, committer, rx) = started(FsyncPolicy::Always);
        let mut rng = SplitMix64::new(5);
        dir.set_space_bytes(Some(600));
        let mut kept = Vec::new();
        let mut full = 0;
        for token in 0..40 {
            let batch = batch(token, 2, &mut rng);
            let records: Vec<Vec<u8>> = batch.records().map(<[u8]>::to_vec).collect();
            if token == 30 {
                dir.set_space_bytes(None);
            }
            match one(&committer, &rx, batch).result {
                Ok(_) => kept.extend(records),
                Err(CommitError::DiskFull) => full += 1,
                Err(e) => panic!("batch {token}: {e}"),
            }
        }
        assert!(full > 0 && full < 30, "{full} batches refused");
        committer.close();
        let (_, recovered) = recover(dir.crash());
        assert_eq!(recovered, kept);
    }

    #[test]
    fn a_failed_write_fails_its_round_only() {
        let (dir, committer, rx) = started(FsyncPolicy::Always);
        let mut rng = SplitMix64::new(6);
        one(&committer, &rx, batch(0, 1, &mut rng)).result.unwrap();
        dir.fail_op(dir.ops() + 1);
        let failed = one(&committer, &rx, batch(1, 1, &mut rng));
        assert!(matches!(failed.result, Err(CommitError::Io(_))));
        let ok = batch(2, 1, &mut rng);
        let record = ok.records().next().unwrap().to_vec();
        one(&committer, &rx, ok).result.unwrap();
        committer.close();
        let (_, recovered) = recover(dir.crash());
        assert_eq!(recovered.len(), 2);
        assert_eq!(recovered[1], record);
    }

    #[test]
    fn a_failed_sync_fails_every_later_batch_until_reopened() {
        let (dir, committer, rx) = started(FsyncPolicy::Always);
        let mut rng = SplitMix64::new(7);
        one(&committer, &rx, batch(0, 1, &mut rng)).result.unwrap();
        dir.fail_op(dir.ops() + 2);
        assert!(one(&committer, &rx, batch(1, 1, &mut rng)).result.is_err());
        let later = one(&committer, &rx, batch(2, 1, &mut rng));
        assert_eq!(later.result, Err(CommitError::Broken));
        committer.close();
        let (mut log, recovered) = recover(dir);
        assert!(!recovered.is_empty());
        log.append(b"works again").unwrap();
        log.sync().unwrap();
    }

    #[test]
    fn closing_commits_what_is_queued() {
        let (dir, committer, rx) = started(FsyncPolicy::Never);
        let mut rng = SplitMix64::new(8);
        for token in 0..100 {
            committer.try_submit(batch(token, 1, &mut rng)).unwrap();
        }
        committer.close();
        let reported: Vec<Outcome> = rx.try_iter().flat_map(|c| c.batches).collect();
        assert_eq!(reported.len(), 100);
        assert!(reported.iter().all(|o| o.result.is_ok()));
        // Closing synced, so the power may go.
        let (_, recovered) = recover(dir.crash());
        assert_eq!(recovered.len(), 100);
    }
}
