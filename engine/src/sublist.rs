//! The subscription index: which subscribers a published subject reaches.
//!
//! # Shape
//! Every subscribed [`Pattern`] owns one immutable [`SubSet`]: its plain subscribers, its
//! queue groups, and a bit mask of the workers they live on. The sets are kept in a hash
//! table split into a fixed number of buckets (`BUCKETS`, 65,536); each bucket is an immutable
//! sorted array behind its own [`ArcSwap`]. Literal and wildcard patterns share that table,
//! keyed by a seeded hash of the pattern's tokens.
//!
//! Wildcard patterns are also counted by *shape*: how many tokens they have, which of them
//! are `*` and whether the last one is `>` (`_INBOX.x7Gq.*` and `_INBOX.Kb2m.*` have the same
//! shape). To match a subject against a shape, the one pattern of that shape that could match
//! it is spelled out from the subject's tokens (`_INBOX.x7Gq.42` with the shape above gives
//! `_INBOX.x7Gq.*`) and looked up in the table. This is tuple-space search, as packet
//! classifiers do it; the shape table is tiny in practice (an async-nats client brings one
//! shape however many clients there are) and lives behind one more [`ArcSwap`].
//!
//! Two alternatives were rejected. A trie (what nats-server does) prunes on the first
//! mismatching token, but a path-copying update rewrites every node on the path, and the wide
//! levels (`_INBOX` with 10k children) need their own bucketing. Keying wildcard patterns by
//! their literal prefix is simpler, but every pattern sharing a prefix (`orders.*.<id>`, or
//! all of `*.…`) lands in one group that each match scans and each update copies. The flat
//! table gives small, constant-size updates for the common cases and one lookup per literal
//! publish.
//!
//! # Cost model
//! Let `n` be the number of patterns, `m` the subscribers of the touched pattern, `k` the
//! subject's tokens, `b` its bytes, and `s` the number of wildcard shapes that fit a `k`-token
//! subject (exact length, or at most `k` tokens when ending in `>`).
//! - **Match** ([`Sublist::matches`], [`Sublist::has_interest`]): one pass over the subject
//!   (`O(b)`) hashing its tokens, one bucket lookup (binary search over about
//!   `n / BUCKETS` entries), one load of the shape table; then per fitting shape one more
//!   hash pass and lookup: `O((1 + s) · (b + log(n / BUCKETS)))`. With no wildcard pattern at
//!   all, that is one hash lookup plus the (empty) shape-table load. No lock, no allocation
//!   (pushing into `out` allocates only if it has no spare capacity).
//! - **Update** ([`Sublist::insert`], [`Sublist::remove`]): copies the touched bucket
//!   (`O(n / BUCKETS)` pointer copies) and the touched pattern's [`SubSet`] (`O(m)`, since a
//!   `SubSet` is flat and immutable), then one compare-and-swap; a wildcard pattern that is
//!   created or dropped also copies the shape table (`O(shapes)`). Updates of different
//!   buckets never contend; updates of the same bucket retry their compare-and-swap.
//!   [`Sublist::apply`] does one compare-and-swap per touched bucket, plus at most two on the
//!   shape table, for the whole batch.
//! - The worst case is adversarial: many distinct wildcard shapes (say `a.*.b`, `*.c.*`, …
//!   of the same length) make every match probe each of them. Real clients use a handful.
//!
//! # Consistency
//! Every change is linearizable: once `insert`/`remove`/`apply` returns, every match that
//! starts afterwards sees it. A wildcard pattern's shape is counted before the pattern is
//! published and uncounted after it is gone, so a shape is never missing while a pattern of
//! it exists (an extra shape only costs a wasted lookup). [`Sublist::generation`] is bumped
//! after each effective change has been published, so a per-worker match cache tagged with
//! the generation it read *before* matching is never newer than its tag.
//!
//! Subjects are matched as nats-server does: every published token is literal (a PUB to
//! `a.*` reaches `SUB a.*`, `SUB a.>`, `SUB *.*` but not `SUB a.b`), and a subject with an
//! empty token reaches nobody.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::limits::MAX_WORKERS;
use crate::subject::{Pattern, Token, ONE, SEPARATOR, TAIL};

/// A subscriber handle that knows which worker holds its connection.
pub trait Placed {
    /// The worker, in `0..MAX_WORKERS`, that holds this subscriber's connection.
    fn worker(&self) -> usize;
}

/// Everything subscribed to one pattern. Immutable once published: a change builds a new set.
#[derive(Debug, Clone)]
pub struct SubSet<S> {
    /// The pattern these subscribers used.
    pub pattern: Pattern,
    /// Subscribers outside any queue group, in subscription order. Each gets every message.
    pub plain: Box<[S]>,
    /// Bit `w` is set iff some member of `plain` lives on worker `w`.
    pub plain_workers: u64,
    /// Queue groups: each message goes to one member of each group.
    pub queues: Box<[QueueGroup<S>]>,
}

/// The members of one queue group on one pattern.
#[derive(Debug, Clone)]
pub struct QueueGroup<S> {
    /// The queue group's name.
    pub name: Arc<[u8]>,
    /// Members in subscription order; never empty.
    pub members: Box<[S]>,
    /// Bit `w` is set iff some member lives on worker `w`.
    pub workers: u64,
}

/// One change for [`Sublist::apply`].
#[derive(Debug, Clone)]
pub enum Change<S> {
    /// Add `sub` to `pattern` (in queue group `queue`, if any).
    Insert {
        /// The subscribed pattern.
        pattern: Pattern,
        /// The queue group, if any.
        queue: Option<Arc<[u8]>>,
        /// The subscriber.
        sub: S,
    },
    /// Remove one occurrence of `sub` from `pattern` (in queue group `queue`, if any).
    Remove {
        /// The subscribed pattern.
        pattern: Pattern,
        /// The queue group, if any.
        queue: Option<Arc<[u8]>>,
        /// The subscriber, compared with `==`.
        sub: S,
    },
}

/// The shared subscription index: lock-free to match, linearizable to change.
///
/// Subscribers are a multiset per pattern and queue group: inserting the same `S` twice
/// needs two removals. The same `S` may be inserted under different patterns.
pub struct Sublist<S> {
    /// Pattern hash → subscriber set, split so that an update copies only one bucket.
    /// `None` is an empty bucket: a new index is one zeroed allocation, with no reference
    /// counts to set up or tear down.
    buckets: Box<[ArcSwapOption<Bucket<S>>]>,
    /// The wildcard shapes in use, with how many patterns have each.
    shapes: ArcSwap<ShapeTable>,
    /// Per-index hash keys, so that subjects chosen by clients cannot pile into one bucket
    /// on every run.
    keys: HashKeys,
    /// Bumped after every effective change is published.
    generation: AtomicU64,
    /// Subscriptions in the index. Signed: a remove may account before the insert it undid
    /// when both race, so the count can dip below zero for a moment.
    subs: AtomicI64,
    /// Patterns with at least one subscriber (signed for the same reason).
    patterns: AtomicI64,
}

impl<S> SubSet<S> {
    /// Number of subscribers: plain ones plus every queue group member.
    pub fn len(&self) -> usize {
        self.plain.len() + self.queues.iter().map(|q| q.members.len()).sum::<usize>()
    }

    /// True if the set has no subscriber; a published set never is.
    pub fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.queues.is_empty()
    }

    /// Workers holding at least one subscriber of this set, plain or queued.
    pub fn workers(&self) -> u64 {
        self.queues
            .iter()
            .fold(self.plain_workers, |mask, q| mask | q.workers)
    }
}

impl<S> Change<S> {
    /// The pattern this change is about.
    pub fn pattern(&self) -> &Pattern {
        match self {
            Change::Insert { pattern, .. } | Change::Remove { pattern, .. } => pattern,
        }
    }
}

impl<S> Sublist<S> {
    /// An empty index.
    pub fn new() -> Self {
        let state = RandomState::new();
        let token = state.hash_one(0u8);
        Self {
            buckets: (0..BUCKETS).map(|_| ArcSwapOption::empty()).collect(),
            shapes: ArcSwap::from_pointee(ShapeTable { shapes: Vec::new() }),
            keys: HashKeys {
                pattern: state.hash_one(1u8),
                token,
                one: token_hash(token, &[ONE]),
                tail: token_hash(token, &[TAIL]),
            },
            generation: AtomicU64::new(0),
            subs: AtomicI64::new(0),
            patterns: AtomicI64::new(0),
        }
    }

    /// A counter bumped by every effective change (a remove that found nothing is none).
    ///
    /// Read it *before* matching and tag cached results with it; a later value means the
    /// cache may be stale.
    pub fn generation(&self) -> u64 {
        // Acquire pairs with the Release `fetch_add` in `apply`: seeing a generation means
        // seeing the snapshots published before it was bumped.
        self.generation.load(Ordering::Acquire)
    }

    /// Number of subscriptions. May lag a concurrent change by a moment.
    pub fn len(&self) -> usize {
        // Relaxed: a statistic; nothing is ordered by it.
        usize::try_from(self.subs.load(Ordering::Relaxed)).unwrap_or(0)
    }

    /// True when there is no subscription.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of distinct patterns with at least one subscriber. May lag a concurrent change
    /// by a moment.
    pub fn pattern_count(&self) -> usize {
        // Relaxed: a statistic; nothing is ordered by it.
        usize::try_from(self.patterns.load(Ordering::Relaxed)).unwrap_or(0)
    }

    /// Number of distinct wildcard shapes in use (see the module docs).
    pub fn shape_count(&self) -> usize {
        self.shapes.load().shapes.len()
    }

    /// Pushes onto `out` the set of every pattern that matches `subject`: the literal one and
    /// each matching wildcard pattern's, each once. `out` is not cleared, and is not
    /// reallocated when it has enough spare capacity.
    pub fn matches(&self, subject: &[u8], out: &mut Vec<Arc<SubSet<S>>>) {
        let _ = self.visit(subject, |set| {
            out.push(Arc::clone(set));
            ControlFlow::Continue(())
        });
    }

    /// True if at least one subscription matches `subject`.
    pub fn has_interest(&self, subject: &[u8]) -> bool {
        self.visit(subject, |_| ControlFlow::Break(())).is_break()
    }

    /// Calls `found` with each matching set until it breaks.
    fn visit(
        &self,
        subject: &[u8],
        mut found: impl FnMut(&Arc<SubSet<S>>) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        // One pass: reject empty tokens (nats-server delivers those to nobody), count the
        // tokens, and hash the subject as a literal pattern.
        let mut hash = self.keys.pattern;
        let mut tokens = 0usize;
        for token in subject.split(|&b| b == SEPARATOR) {
            if token.is_empty() {
                return ControlFlow::Continue(());
            }
            hash = fold_token(hash, token_hash(self.keys.token, token));
            tokens += 1;
        }
        self.probe(
            hash,
            |p| p.is_literal() && p.as_bytes() == subject,
            &mut found,
        )?;
        let shapes = self.shapes.load();
        for counted in &shapes.shapes {
            let shape = &counted.shape;
            let fits = if shape.tail {
                tokens >= shape.len
            } else {
                tokens == shape.len
            };
            if fits {
                let hash = self.candidate_hash(subject, shape);
                self.probe(
                    hash,
                    |p| is_candidate(p.as_bytes(), subject, shape),
                    &mut found,
                )?;
            }
        }
        ControlFlow::Continue(())
    }

    /// Looks `hash` up and hands the entry satisfying `is_it` (at most one) to `found`.
    fn probe(
        &self,
        hash: u64,
        is_it: impl Fn(&Pattern) -> bool,
        found: &mut impl FnMut(&Arc<SubSet<S>>) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let bucket = self.buckets[bucket_index(hash)].load();
        let Some(bucket) = bucket.as_deref() else {
            return ControlFlow::Continue(());
        };
        let entries = &bucket.entries;
        let start = entries.partition_point(|e| e.hash < hash);
        for entry in entries.get(start..).unwrap_or_default() {
            if entry.hash != hash {
                break;
            }
            if is_it(&entry.set.pattern) {
                return found(&entry.set);
            }
        }
        ControlFlow::Continue(())
    }

    /// Hash of the one pattern of `shape` that matches `subject`, which has enough tokens.
    fn candidate_hash(&self, subject: &[u8], shape: &Shape) -> u64 {
        let mut hash = self.keys.pattern;
        for (i, token) in subject.split(|&b| b == SEPARATOR).enumerate() {
            if shape.tail && i + 1 == shape.len {
                return fold_token(hash, self.keys.tail);
            }
            let token_hash = if shape.is_star(i) {
                self.keys.one
            } else {
                token_hash(self.keys.token, token)
            };
            hash = fold_token(hash, token_hash);
        }
        hash
    }

    /// The table key of a pattern: the same function `visit` applies to subjects.
    fn pattern_hash(&self, pattern: &Pattern) -> u64 {
        pattern
            .as_bytes()
            .split(|&b| b == SEPARATOR)
            .fold(self.keys.pattern, |hash, token| {
                fold_token(hash, token_hash(self.keys.token, token))
            })
    }

    /// Adds `deltas` to the shape counts in one compare-and-swap; drops shapes at zero.
    fn adjust_shapes(&self, deltas: &[(&Shape, isize)]) {
        if deltas.is_empty() {
            return;
        }
        self.shapes.rcu(|current| {
            let mut shapes = current.shapes.clone();
            for &(shape, delta) in deltas {
                match shapes.iter_mut().find(|c| c.shape == *shape) {
                    Some(counted) => {
                        debug_assert!(counted.patterns.checked_add_signed(delta).is_some());
                        counted.patterns = counted.patterns.saturating_add_signed(delta);
                    }
                    None => {
                        debug_assert!(delta > 0, "uncounting an unknown shape");
                        shapes.push(ShapeCount {
                            shape: shape.clone(),
                            patterns: delta.max(0).unsigned_abs(),
                        });
                    }
                }
            }
            shapes.retain(|c| c.patterns > 0);
            // Longest shapes last is as good an order as any; keep it deterministic.
            shapes.sort_by(|a, b| a.shape.cmp(&b.shape));
            ShapeTable { shapes }
        });
    }
}

impl<S: Placed + Clone + PartialEq> Sublist<S> {
    /// Adds `sub` to `pattern`, in queue group `queue` if given. Visible to every match that
    /// starts after this returns.
    pub fn insert(&self, pattern: &Pattern, queue: Option<&[u8]>, sub: S) {
        self.apply([Change::Insert {
            pattern: pattern.clone(),
            queue: queue.map(Arc::from),
            sub,
        }]);
    }

    /// Removes one occurrence of `sub` from `pattern` (in queue group `queue`). Returns false
    /// if it was not there. Removing a pattern's last subscriber removes the pattern.
    pub fn remove(&self, pattern: &Pattern, queue: Option<&[u8]>, sub: &S) -> bool {
        self.apply([Change::Remove {
            pattern: pattern.clone(),
            queue: queue.map(Arc::from),
            sub: sub.clone(),
        }]) == 1
    }

    /// Applies `changes` in order, with one compare-and-swap per touched bucket. Returns how
    /// many took effect (every insert, and each remove that found its subscriber).
    ///
    /// The batch is not atomic as a whole: a concurrent match may see some buckets updated
    /// and others not yet. Each change is, and all are visible once this returns.
    pub fn apply(&self, changes: impl IntoIterator<Item = Change<S>>) -> usize {
        let mut planned: Vec<Planned<S>> = changes
            .into_iter()
            .map(|change| {
                let hash = self.pattern_hash(change.pattern());
                Planned {
                    bucket: bucket_index(hash),
                    hash,
                    shape: Shape::of(change.pattern()),
                    change,
                }
            })
            .collect();
        // Stable: changes to one bucket keep their order.
        planned.sort_by_key(|p| p.bucket);

        // Count the shape of every wildcard insert before its pattern can become visible;
        // inserts that turn out not to create their pattern are uncounted below.
        let speculative: Vec<(&Shape, isize)> = planned
            .iter()
            .filter(|p| matches!(p.change, Change::Insert { .. }))
            .filter_map(|p| p.shape.as_ref().map(|s| (s, 1)))
            .collect();
        self.adjust_shapes(&speculative);

        let mut effect = Effect::default();
        let mut patterns = 0i64;
        let mut uncount: Vec<(&Shape, isize)> = Vec::new();
        for group in planned.chunk_by(|a, b| a.bucket == b.bucket) {
            let group_effect = self.apply_bucket(group);
            for (planned, outcome) in group.iter().zip(&group_effect.outcomes) {
                let Some(shape) = &planned.shape else {
                    continue;
                };
                let insert = matches!(planned.change, Change::Insert { .. });
                if (insert && !outcome.created) || outcome.destroyed {
                    uncount.push((shape, -1));
                }
            }
            effect.inserted += group_effect.inserted;
            effect.removed += group_effect.removed;
            for outcome in &group_effect.outcomes {
                patterns += i64::from(outcome.created) - i64::from(outcome.destroyed);
            }
        }
        self.adjust_shapes(&uncount);

        let total = effect.inserted + effect.removed;
        let net = effect.inserted as i64 - effect.removed as i64;
        // Relaxed (both): `len` and `pattern_count` are statistics.
        self.subs.fetch_add(net, Ordering::Relaxed);
        self.patterns.fetch_add(patterns, Ordering::Relaxed);
        if total > 0 {
            // Release pairs with the Acquire load in `generation`: whoever sees the new
            // generation also sees the snapshots swapped in above.
            self.generation.fetch_add(1, Ordering::Release);
        }
        total
    }

    /// Applies one bucket's changes with a compare-and-swap loop.
    fn apply_bucket(&self, group: &[Planned<S>]) -> BucketEffect {
        let Some(first) = group.first() else {
            return BucketEffect::default();
        };
        let slot = &self.buckets[first.bucket];
        loop {
            let current = slot.load_full();
            let mut entries = current
                .as_deref()
                .map_or_else(Vec::new, |b| b.entries.clone());
            let mut effect = BucketEffect {
                outcomes: vec![Outcome::default(); group.len()],
                ..BucketEffect::default()
            };
            // Changes to different patterns commute; each pattern's own changes keep their
            // order. Every touched set is rebuilt once per batch, so a batch of k changes to
            // a set of n subscribers costs O(n + k) copies, not O(n * k).
            let mut patterns: Vec<(u64, &Pattern, Vec<usize>)> = Vec::new();
            for (k, planned) in group.iter().enumerate() {
                let pattern = planned.change.pattern();
                match patterns
                    .iter_mut()
                    .find(|(h, p, _)| *h == planned.hash && *p == pattern)
                {
                    Some((_, _, ks)) => ks.push(k),
                    None => patterns.push((planned.hash, pattern, vec![k])),
                }
            }
            for (hash, pattern, ks) in patterns {
                let found = entries.binary_search_by(|e| {
                    e.hash.cmp(&hash).then_with(|| e.set.pattern.cmp(pattern))
                });
                let mut draft = match found {
                    Ok(at) => Draft::of(&entries[at].set),
                    Err(_) => Draft::empty(pattern),
                };
                let mut first_insert = None;
                let mut last_remove = None;
                for &k in &ks {
                    match &group[k].change {
                        Change::Insert { queue, sub, .. } => {
                            draft.insert(queue.as_ref(), sub.clone());
                            effect.inserted += 1;
                            first_insert.get_or_insert(k);
                        }
                        Change::Remove { queue, sub, .. } => {
                            if draft.remove(queue.as_deref(), sub) {
                                effect.removed += 1;
                                last_remove = Some(k);
                            }
                        }
                    }
                }
                let live = !draft.is_empty();
                match (found, live) {
                    (Ok(at), true) => entries[at].set = Arc::new(draft.freeze()),
                    (Ok(at), false) => {
                        entries.remove(at);
                        if let Some(k) = last_remove {
                            effect.outcomes[k].destroyed = true;
                        }
                    }
                    (Err(at), true) => {
                        entries.insert(
                            at,
                            Entry {
                                hash,
                                set: Arc::new(draft.freeze()),
                            },
                        );
                        if let Some(k) = first_insert {
                            effect.outcomes[k].created = true;
                        }
                    }
                    (Err(_), false) => {}
                }
            }
            if effect.inserted + effect.removed == 0 {
                return effect;
            }
            let next = (!entries.is_empty()).then(|| Arc::new(Bucket { entries }));
            let previous = slot.compare_and_swap(&current, next);
            let same = match (&*previous, &current) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            };
            if same {
                return effect;
            }
            // Another writer swapped this bucket in between: rebuild on its version.
        }
    }
}

impl<S> Drop for Sublist<S> {
    fn drop(&mut self) {
        // An `ArcSwap`'s own drop first waits out readers that may still use its pointer,
        // which costs a walk of arc-swap's debt lists per slot (17 ms for 65,536 slots in a
        // debug build) even for an empty one; an empty slot holds no reference, so
        // forgetting it leaks nothing. Nobody else can read the index now (`&mut self`).
        for slot in std::mem::take(&mut self.buckets).into_vec() {
            if slot.load().is_none() {
                std::mem::forget(slot);
            }
        }
    }
}

impl<S> Default for Sublist<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> fmt::Debug for Sublist<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sublist")
            .field("subs", &self.len())
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

/// One bucket: entries sorted by (hash, pattern), at most one per pattern.
struct Bucket<S> {
    entries: Vec<Entry<S>>,
}

/// A pattern's set with its table key.
struct Entry<S> {
    hash: u64,
    set: Arc<SubSet<S>>,
}

impl<S> Clone for Entry<S> {
    fn clone(&self) -> Self {
        Self {
            hash: self.hash,
            set: Arc::clone(&self.set),
        }
    }
}

/// Which tokens of a wildcard pattern are wildcards.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Shape {
    /// Number of tokens, including a final `>`.
    len: usize,
    /// True if the last token is `>`.
    tail: bool,
    /// Bit `i` set iff token `i` is `*`. No trailing zero words, so `==` compares shapes.
    stars: Box<[u64]>,
}

impl Shape {
    /// The shape of a wildcard pattern; `None` for a literal one.
    fn of(pattern: &Pattern) -> Option<Self> {
        if pattern.is_literal() {
            return None;
        }
        let mut shape = Shape {
            len: 0,
            tail: false,
            stars: Box::new([]),
        };
        let mut stars: Vec<u64> = Vec::new();
        for (i, token) in pattern.tokens().enumerate() {
            shape.len = i + 1;
            match token {
                Token::One => {
                    let word = i / 64;
                    if stars.len() <= word {
                        stars.resize(word + 1, 0);
                    }
                    stars[word] |= 1 << (i % 64);
                }
                Token::Tail => shape.tail = true,
                Token::Literal(_) => {}
            }
        }
        shape.stars = stars.into_boxed_slice();
        Some(shape)
    }

    /// True if token `i` is `*`.
    fn is_star(&self, i: usize) -> bool {
        self.stars
            .get(i / 64)
            .is_some_and(|word| word >> (i % 64) & 1 == 1)
    }
}

/// The wildcard shapes in use.
struct ShapeTable {
    shapes: Vec<ShapeCount>,
}

/// A shape and how many patterns (plus in-flight inserts) have it.
#[derive(Clone)]
struct ShapeCount {
    shape: Shape,
    patterns: usize,
}

/// The per-index keys of the table hash.
struct HashKeys {
    /// Start value of a pattern hash.
    pattern: u64,
    /// Key of the per-token hash.
    token: u64,
    /// `token_hash(token, b"*")`.
    one: u64,
    /// `token_hash(token, b">")`.
    tail: u64,
}

/// A change with its table key.
struct Planned<S> {
    bucket: usize,
    hash: u64,
    shape: Option<Shape>,
    change: Change<S>,
}

/// What one bucket's compare-and-swap did.
#[derive(Default)]
struct BucketEffect {
    outcomes: Vec<Outcome>,
    inserted: usize,
    removed: usize,
}

/// What one change did to its pattern.
#[derive(Default, Clone, Copy)]
struct Outcome {
    /// The insert created the pattern.
    created: bool,
    /// The remove dropped the pattern's last subscriber.
    destroyed: bool,
}

/// Totals of a batch.
#[derive(Default)]
struct Effect {
    inserted: usize,
    removed: usize,
}

/// Result of removing a subscriber from a set.
/// A set being changed by a batch: plain vectors, frozen into a [`SubSet`] once.
struct Draft<S> {
    pattern: Pattern,
    plain: Vec<S>,
    queues: Vec<(Arc<[u8]>, Vec<S>)>,
}

impl<S: Placed + Clone + PartialEq> Draft<S> {
    fn empty(pattern: &Pattern) -> Self {
        Self {
            pattern: pattern.clone(),
            plain: Vec::new(),
            queues: Vec::new(),
        }
    }

    fn of(set: &SubSet<S>) -> Self {
        Self {
            pattern: set.pattern.clone(),
            plain: set.plain.to_vec(),
            queues: set
                .queues
                .iter()
                .map(|g| (Arc::clone(&g.name), g.members.to_vec()))
                .collect(),
        }
    }

    fn insert(&mut self, queue: Option<&Arc<[u8]>>, sub: S) {
        let Some(name) = queue else {
            self.plain.push(sub);
            return;
        };
        match self.queues.iter_mut().find(|(n, _)| **n == **name) {
            Some((_, members)) => members.push(sub),
            None => self.queues.push((Arc::clone(name), vec![sub])),
        }
    }

    /// Removes one occurrence; false if it was not there.
    fn remove(&mut self, queue: Option<&[u8]>, sub: &S) -> bool {
        let members = match queue {
            None => &mut self.plain,
            Some(name) => match self.queues.iter_mut().find(|(n, _)| **n == *name) {
                Some((_, members)) => members,
                None => return false,
            },
        };
        match members.iter().position(|m| m == sub) {
            Some(at) => {
                members.remove(at);
                true
            }
            None => false,
        }
    }

    fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.queues.iter().all(|(_, m)| m.is_empty())
    }

    fn freeze(self) -> SubSet<S> {
        SubSet {
            pattern: self.pattern,
            plain_workers: workers_of(&self.plain),
            plain: self.plain.into_boxed_slice(),
            queues: self
                .queues
                .into_iter()
                .filter(|(_, m)| !m.is_empty())
                .map(|(name, members)| QueueGroup {
                    name,
                    workers: workers_of(&members),
                    members: members.into_boxed_slice(),
                })
                .collect(),
        }
    }
}

/// True if `pattern`, of shape `shape`, is the one pattern of that shape matching `subject`
/// (which has no empty token and enough tokens for the shape).
fn is_candidate(pattern: &[u8], subject: &[u8], shape: &Shape) -> bool {
    let mut subject_tokens = subject.split(|&b| b == SEPARATOR);
    let mut count = 0;
    for (i, token) in pattern.split(|&b| b == SEPARATOR).enumerate() {
        if i >= shape.len {
            return false;
        }
        count = i + 1;
        let subject_token = subject_tokens.next();
        if shape.tail && i + 1 == shape.len {
            if token != [TAIL] {
                return false;
            }
        } else if shape.is_star(i) {
            if token != [ONE] {
                return false;
            }
        } else if token == [ONE] || token == [TAIL] || subject_token != Some(token) {
            return false;
        }
    }
    count == shape.len
}

/// The worker mask of `members`.
fn workers_of<S: Placed>(members: &[S]) -> u64 {
    members.iter().fold(0, |mask, m| mask | worker_bit(m))
}

/// The mask bit of `sub`'s worker.
fn worker_bit<S: Placed>(sub: &S) -> u64 {
    let worker = sub.worker();
    debug_assert!(worker < MAX_WORKERS, "worker {worker} out of range");
    1 << (worker % 64)
}

/// Bucket of a table key: its top bits after one more multiply.
fn bucket_index(hash: u64) -> usize {
    (hash.wrapping_mul(MIX_BUCKET) >> (64 - BUCKETS_LOG2)) as usize
}

/// Keyed hash of one token, eight bytes at a time with folded multiplies (foldhash-style).
fn token_hash(key: u64, token: &[u8]) -> u64 {
    let mut hash = key ^ (token.len() as u64).wrapping_mul(MIX_LEN);
    let mut chunks = token.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        hash = folded_multiply(hash ^ u64::from_le_bytes(word), MIX_WORD);
    }
    let rest = chunks.remainder();
    let mut word = [0u8; 8];
    word[..rest.len()].copy_from_slice(rest);
    folded_multiply(hash ^ u64::from_le_bytes(word), MIX_REST)
}

/// Appends one token's hash to a pattern hash.
fn fold_token(hash: u64, token_hash: u64) -> u64 {
    folded_multiply(hash ^ token_hash, MIX_FOLD)
}

/// The full 128-bit product of `a` and `b`, halves xor-ed together.
fn folded_multiply(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ ((product >> 64) as u64)
}

/// log2 of [`BUCKETS`].
const BUCKETS_LOG2: u32 = 16;

/// Buckets of the pattern table. 65,536 keep a bucket at ~15 entries with a million
/// patterns (an update copies, and so touches the reference count of, that many sets) and
/// cost 512 KiB of slots per index. With 4096, a million-SUB flood copied ~250 pointers per
/// SUB and held its worker for hundreds of milliseconds per read batch. 262,144 (~4 entries)
/// halved the flood's remaining cost but made every index 2 MiB and the test suite's
/// thousands of indexes ten times slower to build; the per-turn budgets in `limits` bound
/// what one connection's index work may cost its worker either way.
const BUCKETS: usize = 1 << BUCKETS_LOG2;

/// Odd 64-bit constants (digits of pi, as foldhash uses) for the table hash.
const MIX_LEN: u64 = 0x243f_6a88_85a3_08d3;
const MIX_WORD: u64 = 0x1319_8a2e_0370_7344;
const MIX_REST: u64 = 0xa409_3822_299f_31d1;
const MIX_FOLD: u64 = 0x082e_fa98_ec4e_6c89;
const MIX_BUCKET: u64 = 0x4528_21e6_38d0_1377;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct Sub {
        id: u32,
        worker: usize,
    }

    impl Placed for Sub {
        fn worker(&self) -> usize {
            self.worker
        }
    }

    fn sub(id: u32, worker: usize) -> Sub {
        Sub { id, worker }
    }

    fn pat(raw: &str) -> Pattern {
        Pattern::parse(raw.as_bytes()).unwrap()
    }

    /// Sorted (pattern, plain ids, queue (name, ids)) of everything matching `subject`.
    fn matched(list: &Sublist<Sub>, subject: &str) -> Vec<(String, Vec<u32>)> {
        let mut out = Vec::new();
        list.matches(subject.as_bytes(), &mut out);
        let mut rows: Vec<(String, Vec<u32>)> = out
            .iter()
            .map(|set| {
                let mut ids: Vec<u32> = set.plain.iter().map(|s| s.id).collect();
                for q in set.queues.iter() {
                    ids.extend(q.members.iter().map(|s| s.id + 1000));
                }
                (set.pattern.to_string(), ids)
            })
            .collect();
        rows.sort();
        assert_eq!(list.has_interest(subject.as_bytes()), !rows.is_empty());
        rows
    }

    fn row(p: &str, ids: &[u32]) -> (String, Vec<u32>) {
        (p.to_string(), ids.to_vec())
    }

    #[test]
    fn literal() {
        let list = Sublist::new();
        list.insert(&pat("foo.bar"), None, sub(1, 0));
        list.insert(&pat("foo.bar"), None, sub(2, 3));
        list.insert(&pat("foo"), None, sub(3, 0));
        assert_eq!(matched(&list, "foo.bar"), [row("foo.bar", &[1, 2])]);
        assert_eq!(matched(&list, "foo"), [row("foo", &[3])]);
        assert!(matched(&list, "foo.baz").is_empty());
        assert!(matched(&list, "foo.bar.baz").is_empty());
        assert_eq!(list.len(), 3);
        assert_eq!(list.pattern_count(), 2);
        assert_eq!(list.shape_count(), 0);
        let mut out = Vec::new();
        list.matches(b"foo.bar", &mut out);
        assert_eq!(out[0].plain_workers, 0b1001);
        assert_eq!(out[0].workers(), 0b1001);
    }

    #[test]
    fn single_wildcard() {
        let list = Sublist::new();
        list.insert(&pat("foo.*"), None, sub(1, 0));
        list.insert(&pat("*.bar"), None, sub(2, 0));
        list.insert(&pat("*"), None, sub(3, 0));
        list.insert(&pat("foo.bar"), None, sub(4, 0));
        assert_eq!(
            matched(&list, "foo.bar"),
            [row("*.bar", &[2]), row("foo.*", &[1]), row("foo.bar", &[4])]
        );
        assert_eq!(matched(&list, "foo"), [row("*", &[3])]);
        assert_eq!(matched(&list, "x.bar"), [row("*.bar", &[2])]);
        assert!(matched(&list, "foo.bar.baz").is_empty());
        assert_eq!(list.shape_count(), 3);
    }

    #[test]
    fn full_wildcard() {
        let list = Sublist::new();
        list.insert(&pat(">"), None, sub(1, 0));
        list.insert(&pat("foo.>"), None, sub(2, 0));
        list.insert(&pat("foo.*.>"), None, sub(3, 0));
        assert_eq!(matched(&list, "foo"), [row(">", &[1])]);
        assert_eq!(
            matched(&list, "foo.bar"),
            [row(">", &[1]), row("foo.>", &[2])]
        );
        assert_eq!(
            matched(&list, "foo.bar.baz.qux"),
            [row(">", &[1]), row("foo.*.>", &[3]), row("foo.>", &[2])]
        );
        assert_eq!(matched(&list, "bar.foo"), [row(">", &[1])]);
    }

    #[test]
    fn published_wildcards_are_literal_and_empty_tokens_match_nothing() {
        let list = Sublist::new();
        for (i, p) in ["a.*", "a.>", "*.*", ">", "a.b", "f*o"].iter().enumerate() {
            list.insert(&pat(p), None, sub(i as u32, 0));
        }
        // As nats-server: `PUB a.*` reaches a.*, a.>, *.*, > but not a.b; once each.
        assert_eq!(
            matched(&list, "a.*"),
            [
                row("*.*", &[2]),
                row(">", &[3]),
                row("a.*", &[0]),
                row("a.>", &[1])
            ]
        );
        assert_eq!(
            matched(&list, "a.>"),
            [
                row("*.*", &[2]),
                row(">", &[3]),
                row("a.*", &[0]),
                row("a.>", &[1])
            ]
        );
        assert_eq!(matched(&list, "f*o"), [row(">", &[3]), row("f*o", &[5])]);
        for subject in ["", ".", "a.", ".a", "a..b", "a.b."] {
            assert!(matched(&list, subject).is_empty(), "{subject:?}");
        }
    }

    #[test]
    fn queues() {
        let list = Sublist::new();
        let p = pat("work.*");
        list.insert(&p, Some(b"q1"), sub(1, 1));
        list.insert(&p, Some(b"q1"), sub(2, 2));
        list.insert(&p, Some(b"q2"), sub(3, 2));
        list.insert(&p, None, sub(4, 5));
        let mut out = Vec::new();
        list.matches(b"work.x", &mut out);
        assert_eq!(out.len(), 1);
        let set = Arc::clone(&out[0]);
        assert_eq!(set.plain.as_ref(), [sub(4, 5)]);
        assert_eq!(set.plain_workers, 1 << 5);
        assert_eq!(set.queues.len(), 2);
        assert_eq!(&*set.queues[0].name, b"q1");
        assert_eq!(set.queues[0].members.as_ref(), [sub(1, 1), sub(2, 2)]);
        assert_eq!(set.queues[0].workers, 0b110);
        assert_eq!(set.queues[1].workers, 0b100);
        assert_eq!(set.len(), 4);
        assert_eq!(set.workers(), 0b10_0110);

        // Wrong group: nothing removed.
        assert!(!list.remove(&p, Some(b"q2"), &sub(1, 1)));
        assert!(!list.remove(&p, None, &sub(1, 1)));
        assert!(list.remove(&p, Some(b"q1"), &sub(1, 1)));
        assert!(list.remove(&p, Some(b"q2"), &sub(3, 2)));
        out.clear();
        list.matches(b"work.x", &mut out);
        assert_eq!(out[0].queues.len(), 1);
        assert_eq!(out[0].queues[0].workers, 0b100);
        // The published snapshot `set` is unchanged.
        assert_eq!(set.len(), 4);
    }

    #[test]
    fn removal_drops_patterns_and_shapes() {
        let list = Sublist::new();
        let inbox = pat("_INBOX.abc.*");
        list.insert(&inbox, None, sub(1, 0));
        list.insert(&inbox, None, sub(1, 0));
        list.insert(&pat("x"), None, sub(1, 0));
        assert_eq!(list.pattern_count(), 2);
        assert_eq!(list.shape_count(), 1);
        assert!(list.remove(&inbox, None, &sub(1, 0)));
        assert_eq!(matched(&list, "_INBOX.abc.1"), [row("_INBOX.abc.*", &[1])]);
        assert!(list.remove(&inbox, None, &sub(1, 0)));
        assert!(!list.remove(&inbox, None, &sub(1, 0)));
        assert!(matched(&list, "_INBOX.abc.1").is_empty());
        assert_eq!(list.shape_count(), 0);
        assert!(list.remove(&pat("x"), None, &sub(1, 0)));
        assert_eq!(list.pattern_count(), 0);
        assert!(list.is_empty());
    }

    #[test]
    fn generation_counts_effective_changes() {
        let list = Sublist::new();
        assert_eq!(list.generation(), 0);
        list.insert(&pat("a"), None, sub(1, 0));
        assert_eq!(list.generation(), 1);
        assert!(!list.remove(&pat("a"), None, &sub(2, 0)));
        assert!(!list.remove(&pat("b"), None, &sub(1, 0)));
        assert_eq!(list.generation(), 1);
        assert!(list.remove(&pat("a"), None, &sub(1, 0)));
        assert_eq!(list.generation(), 2);
        let applied = list.apply([
            Change::Insert {
                pattern: pat("a.*"),
                queue: None,
                sub: sub(1, 0),
            },
            Change::Insert {
                pattern: pat("b"),
                queue: None,
                sub: sub(2, 0),
            },
            Change::Remove {
                pattern: pat("c"),
                queue: None,
                sub: sub(2, 0),
            },
        ]);
        assert_eq!(applied, 2);
        assert_eq!(list.generation(), 3);
        assert_eq!(list.len(), 2);
    }

    #[test]
    fn batch_insert_then_remove_leaves_nothing() {
        let list = Sublist::new();
        let mut changes = Vec::new();
        for i in 0..200u32 {
            let p = pat(&format!("_INBOX.{i}.*"));
            changes.push(Change::Insert {
                pattern: p.clone(),
                queue: None,
                sub: sub(i, 0),
            });
            changes.push(Change::Remove {
                pattern: p,
                queue: None,
                sub: sub(i, 0),
            });
        }
        assert_eq!(list.apply(changes), 400);
        assert_eq!(list.pattern_count(), 0);
        assert_eq!(list.shape_count(), 0);
        assert!(list.is_empty());
    }

    #[test]
    fn many_inboxes_share_one_shape() {
        let list = Sublist::new();
        list.apply((0..5000u32).map(|i| Change::Insert {
            pattern: pat(&format!("_INBOX.{i:08x}.*")),
            queue: None,
            sub: sub(i, i as usize % 8),
        }));
        assert_eq!(list.shape_count(), 1);
        assert_eq!(list.pattern_count(), 5000);
        assert_eq!(
            matched(&list, "_INBOX.00000fff.7"),
            [row("_INBOX.00000fff.*", &[0xfff])]
        );
        assert!(matched(&list, "_INBOX.00000fff").is_empty());
        assert!(matched(&list, "_INBOX.zz.7").is_empty());
    }

    #[test]
    fn shapes_longer_than_64_tokens() {
        let list = Sublist::new();
        let mut tokens: Vec<String> = (0..70).map(|i| format!("t{i}")).collect();
        tokens[66] = "*".to_string();
        let p = pat(&tokens.join("."));
        list.insert(&p, None, sub(1, 0));
        tokens[66] = "x".to_string();
        assert_eq!(matched(&list, &tokens.join(".")).len(), 1);
        tokens[65] = "x".to_string();
        assert!(matched(&list, &tokens.join(".")).is_empty());
    }

    #[test]
    fn matches_does_not_allocate_with_spare_capacity() {
        let list = Sublist::new();
        list.insert(&pat("a.b"), None, sub(1, 0));
        list.insert(&pat("a.*"), None, sub(1, 0));
        let mut out = Vec::with_capacity(4);
        let before = out.as_ptr();
        list.matches(b"a.b", &mut out);
        list.matches(b"a.b", &mut out);
        assert_eq!(out.len(), 4);
        assert_eq!(out.as_ptr(), before);
    }
}
