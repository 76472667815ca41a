//! Property and concurrency tests of the subscription index and subject validation.
//!
//! The index is compared with a naive reference: a list of (pattern, queue, subscriber)
//! triples matched one by one by a matcher written from the nats-server rules, independent of
//! `Pattern::matches`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;

use engine::subject::{check_publish, owner, Pattern, SubjectError};
use engine::sublist::{Change, Placed, SubSet, Sublist};
use proptest::prelude::*;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Sub {
    id: u32,
    worker: usize,
}

impl Placed for Sub {
    fn worker(&self) -> usize {
        self.worker
    }
}

fn sub(id: u32) -> Sub {
    Sub {
        id,
        worker: (id % 5) as usize,
    }
}

/// (pattern, queue, subscriber id), the unit both sides are compared in.
type Row = (Vec<u8>, Option<Vec<u8>>, u32);

/// Naive matcher: `pattern` and `subject` token by token.
fn reference_matches(pattern: &[u8], subject: &[u8]) -> bool {
    let subject: Vec<&[u8]> = subject.split(|&b| b == b'.').collect();
    if subject.iter().any(|t| t.is_empty()) {
        return false;
    }
    let pattern: Vec<&[u8]> = pattern.split(|&b| b == b'.').collect();
    for (i, p) in pattern.iter().enumerate() {
        if *p == b">" {
            return subject.len() > i;
        }
        match subject.get(i) {
            None => return false,
            Some(s) if *p == b"*" || p == s => {}
            Some(_) => return false,
        }
    }
    pattern.len() == subject.len()
}

/// Reference validity of a subscription subject.
fn reference_valid(raw: &[u8]) -> bool {
    let tokens: Vec<&[u8]> = raw.split(|&b| b == b'.').collect();
    !raw.is_empty()
        && tokens.iter().all(|t| !t.is_empty())
        && tokens[..tokens.len() - 1].iter().all(|t| *t != b">")
}

fn rows_of(sets: &[Arc<SubSet<Sub>>]) -> Vec<Row> {
    let mut rows = Vec::new();
    for set in sets {
        let p = set.pattern.as_bytes().to_vec();
        let mut mask = 0u64;
        for s in set.plain.iter() {
            rows.push((p.clone(), None, s.id));
            mask |= 1 << s.worker;
        }
        assert_eq!(
            mask, set.plain_workers,
            "plain_workers of {:?}",
            set.pattern
        );
        for q in set.queues.iter() {
            assert!(!q.members.is_empty());
            let mut mask = 0u64;
            for s in q.members.iter() {
                rows.push((p.clone(), Some(q.name.to_vec()), s.id));
                mask |= 1 << s.worker;
            }
            assert_eq!(mask, q.workers, "workers of queue {:?}", q.name);
        }
        assert!(!set.is_empty());
    }
    rows.sort();
    rows
}

/// Checks `list` against `model` for `subject`.
fn check_subject(list: &Sublist<Sub>, model: &[Row], subject: &[u8]) {
    let mut out = Vec::new();
    list.matches(subject, &mut out);
    // Each pattern's set at most once.
    let mut patterns: Vec<&[u8]> = out.iter().map(|s| s.pattern.as_bytes()).collect();
    patterns.sort();
    let before = patterns.len();
    patterns.dedup();
    assert_eq!(before, patterns.len(), "a set was reported twice");
    let got = rows_of(&out);
    let mut want: Vec<Row> = model
        .iter()
        .filter(|(p, _, _)| reference_matches(p, subject))
        .cloned()
        .collect();
    want.sort();
    assert_eq!(got, want, "subject {:?}", String::from_utf8_lossy(subject));
    assert_eq!(list.has_interest(subject), !want.is_empty());
}

fn token() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["a", "b", "c", "*", ">"])
}

fn pattern_strategy() -> impl Strategy<Value = Pattern> {
    prop::collection::vec(token(), 1..5).prop_filter_map("invalid pattern", |tokens| {
        Pattern::parse(tokens.join(".").as_bytes()).ok()
    })
}

fn subject_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop::sample::select(vec!["a", "b", "c", "a", "b", "c", "*", ">", ""]),
        1..6,
    )
    .prop_map(|tokens| tokens.join(".").into_bytes())
}

#[derive(Debug, Clone)]
enum Op {
    Insert(Pattern, Option<&'static str>, u32),
    Remove(Pattern, Option<&'static str>, u32),
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let queue = prop::option::weighted(0.3, prop::sample::select(vec!["q1", "q2"]));
    (any::<bool>(), pattern_strategy(), queue, 0u32..6).prop_map(|(insert, p, q, id)| {
        if insert {
            Op::Insert(p, q, id)
        } else {
            Op::Remove(p, q, id)
        }
    })
}

/// A batch of operations, and whether it goes through `apply` or one call per op.
fn batch_strategy() -> impl Strategy<Value = (Vec<Op>, bool)> {
    (prop::collection::vec(op_strategy(), 1..12), any::<bool>())
}

fn change_of(op: &Op) -> Change<Sub> {
    match op {
        Op::Insert(p, q, id) => Change::Insert {
            pattern: p.clone(),
            queue: q.map(|q| Arc::from(q.as_bytes())),
            sub: sub(*id),
        },
        Op::Remove(p, q, id) => Change::Remove {
            pattern: p.clone(),
            queue: q.map(|q| Arc::from(q.as_bytes())),
            sub: sub(*id),
        },
    }
}

/// Applies `op` to the model; returns whether it takes effect.
fn model_apply(model: &mut Vec<Row>, op: &Op) -> bool {
    match op {
        Op::Insert(p, q, id) => {
            model.push((p.as_bytes().to_vec(), q.map(|q| q.as_bytes().to_vec()), *id));
            true
        }
        Op::Remove(p, q, id) => {
            let row: Row = (p.as_bytes().to_vec(), q.map(|q| q.as_bytes().to_vec()), *id);
            match model.iter().position(|r| *r == row) {
                Some(at) => {
                    model.remove(at);
                    true
                }
                None => false,
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn agrees_with_reference(
        batches in prop::collection::vec(batch_strategy(), 1..12),
        subjects in prop::collection::vec(subject_strategy(), 1..16),
    ) {
        let list = Sublist::new();
        let mut model: Vec<Row> = Vec::new();
        let mut generation = list.generation();
        for (ops, batched) in &batches {
            let expected: usize = ops
                .iter()
                .map(|op| usize::from(model_apply(&mut model, op)))
                .sum();
            if *batched {
                prop_assert_eq!(list.apply(ops.iter().map(change_of)), expected);
            } else {
                for op in ops {
                    match op {
                        Op::Insert(p, q, id) => list.insert(p, q.map(str::as_bytes), sub(*id)),
                        Op::Remove(p, q, id) => {
                            list.remove(p, q.map(str::as_bytes), &sub(*id));
                        }
                    }
                }
            }
            if expected > 0 {
                prop_assert!(list.generation() > generation);
            } else {
                prop_assert_eq!(list.generation(), generation);
            }
            generation = list.generation();
            prop_assert_eq!(list.len(), model.len());
            let mut distinct: Vec<&[u8]> = model.iter().map(|r| r.0.as_slice()).collect();
            distinct.sort();
            distinct.dedup();
            prop_assert_eq!(list.pattern_count(), distinct.len());
            for subject in &subjects {
                check_subject(&list, &model, subject);
            }
        }
        // Removing everything leaves nothing behind.
        let all: Vec<Change<Sub>> = model
            .iter()
            .map(|(p, q, id)| Change::Remove {
                pattern: Pattern::parse(p).unwrap(),
                queue: q.as_deref().map(Arc::from),
                sub: sub(*id),
            })
            .collect();
        prop_assert_eq!(list.apply(all), model.len());
        prop_assert_eq!(list.pattern_count(), 0);
        prop_assert_eq!(list.shape_count(), 0);
        prop_assert!(list.is_empty());
    }

    #[test]
    fn pattern_matches_agrees_with_reference(
        p in pattern_strategy(),
        subject in subject_strategy(),
    ) {
        prop_assert_eq!(p.matches(&subject), reference_matches(p.as_bytes(), &subject));
    }

    #[test]
    fn subject_validation_never_panics(
        raw in prop::collection::vec(any::<u8>(), 0..64),
        n in 1usize..65,
    ) {
        let parsed = Pattern::parse(&raw);
        let _ = check_publish(&raw, false);
        let _ = check_publish(&raw, true);
        prop_assert!(owner(&raw, n) < n);
        prop_assert_eq!(parsed.is_ok(), reference_valid(&raw));
    }

    #[test]
    fn validation_agrees_with_reference(
        raw in prop::collection::vec(
            prop::sample::select(vec![b'a', b'.', b'*', b'>', b' ', 0u8, 0xff]),
            0..12,
        ),
    ) {
        let parsed = Pattern::parse(&raw);
        prop_assert_eq!(parsed.is_ok(), reference_valid(&raw));
        let wild = raw.split(|&b| b == b'.').any(|t| t == b"*" || t == b">");
        if let Ok(p) = &parsed {
            prop_assert_eq!(p.as_bytes(), raw.as_slice());
            prop_assert_eq!(p.is_literal(), !wild);
        }
        let pedantic = check_publish(&raw, true);
        prop_assert_eq!(pedantic.is_ok(), reference_valid(&raw) && !wild);
        if raw.is_empty() {
            prop_assert_eq!(pedantic, Err(SubjectError::Empty));
        }
        prop_assert_eq!(check_publish(&raw, false), Ok(()));
    }
}

/// Writers on several threads hit the same buckets and shapes while a reader matches; after
/// the joins the index holds exactly what the writers left, and each writer always sees its
/// own completed inserts.
#[test]
fn concurrent_insert_remove_match() {
    const THREADS: u32 = 4;
    const PER_THREAD: u32 = 600;
    let list: Arc<Sublist<Sub>> = Arc::new(Sublist::new());
    let stop = Arc::new(AtomicBool::new(false));
    // Patterns shared by all threads (one pattern, one shape, many contended updates) and
    // per-subscriber inbox patterns (one shape for all of them).
    let shared = [
        Pattern::parse(b"orders.*").unwrap(),
        Pattern::parse(b"orders.>").unwrap(),
        Pattern::parse(b"orders.new").unwrap(),
    ];
    let reader = {
        let list = Arc::clone(&list);
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut out = Vec::with_capacity(64);
            let mut rounds = 0u64;
            // At least one round, however the threads are scheduled.
            loop {
                out.clear();
                list.matches(b"orders.new", &mut out);
                for set in &out {
                    assert!(set.pattern.matches(b"orders.new"));
                    assert!(!set.is_empty());
                }
                rounds += 1;
                // Relaxed: only ends the loop; the joins order everything else.
                if stop.load(Ordering::Relaxed) {
                    break;
                }
            }
            rounds
        })
    };
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let list = Arc::clone(&list);
            let shared = shared.clone();
            thread::spawn(move || {
                let mut out = Vec::new();
                for i in 0..PER_THREAD {
                    let id = t * PER_THREAD + i;
                    let p = &shared[(i % 3) as usize];
                    let queue = (i % 4 == 0).then_some(&b"workers"[..]);
                    list.insert(p, queue, sub(id));
                    let inbox = Pattern::parse(format!("_INBOX.{id}.*").as_bytes()).unwrap();
                    list.insert(&inbox, None, sub(id));
                    // Linearizable: our own completed insert is visible at once.
                    out.clear();
                    list.matches(format!("_INBOX.{id}.x").as_bytes(), &mut out);
                    assert_eq!(out.len(), 1);
                    assert_eq!(out[0].plain.as_ref(), [sub(id)]);
                    if i % 2 == 1 {
                        assert!(list.remove(p, queue, &sub(id)));
                        assert!(list.remove(&inbox, None, &sub(id)));
                        assert!(!list.has_interest(format!("_INBOX.{id}.x").as_bytes()));
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);

    let survivors: Vec<u32> = (0..THREADS * PER_THREAD)
        .filter(|id| (id % PER_THREAD) % 2 == 0)
        .collect();
    assert_eq!(list.len(), 2 * survivors.len());
    assert_eq!(list.pattern_count(), 3 + survivors.len());
    assert_eq!(list.shape_count(), 3);
    let mut per_pattern: BTreeMap<Vec<u8>, Vec<u32>> = BTreeMap::new();
    let mut out = Vec::new();
    list.matches(b"orders.new", &mut out);
    for set in &out {
        let ids = per_pattern
            .entry(set.pattern.as_bytes().to_vec())
            .or_default();
        ids.extend(set.plain.iter().map(|s| s.id));
        ids.extend(
            set.queues
                .iter()
                .flat_map(|q| q.members.iter().map(|s| s.id)),
        );
        ids.sort_unstable();
    }
    for (k, p) in shared.iter().enumerate() {
        let want: Vec<u32> = survivors
            .iter()
            .copied()
            .filter(|id| (id % PER_THREAD) % 3 == k as u32)
            .collect();
        assert_eq!(per_pattern.get(p.as_bytes()), Some(&want), "{p:?}");
    }
    for id in 0..THREADS * PER_THREAD {
        let subject = format!("_INBOX.{id}.reply");
        assert_eq!(
            list.has_interest(subject.as_bytes()),
            survivors.contains(&id)
        );
    }
}

/// An insert completed on one thread is seen by a match on another thread that starts after
/// it (ordered here by a channel), with the generation already bumped.
#[test]
fn insert_visible_across_threads() {
    let list: Arc<Sublist<Sub>> = Arc::new(Sublist::new());
    let (tx, rx) = mpsc::channel::<(u32, u64)>();
    let checker = {
        let list = Arc::clone(&list);
        thread::spawn(move || {
            let mut out = Vec::new();
            for (id, generation) in rx {
                assert!(list.generation() >= generation);
                out.clear();
                list.matches(format!("svc.{id}.ping").as_bytes(), &mut out);
                assert_eq!(out.len(), 1, "insert {id} not visible");
                assert!(out[0].plain.contains(&sub(id)));
            }
        })
    };
    for id in 0..500u32 {
        let p = Pattern::parse(format!("svc.{id}.>").as_bytes()).unwrap();
        list.insert(&p, None, sub(id));
        tx.send((id, list.generation())).unwrap();
    }
    drop(tx);
    checker.join().unwrap();
}
