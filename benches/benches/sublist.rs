//! The subscription index (`Sublist`) against a naive scan of every pattern, with 10k and
//! 100k subscriptions.
//!
//! The population is chat-like: 90% literal subjects (`room.<i>.msgs`), 5% `*` patterns
//! (`inbox.<i>.*`) and 5% `>` patterns (`events.<i>.>`), one subscriber each.
//! Benchmarks, each at both sizes:
//!
//! - `sublist/match/<case>/{sublist,naive}/<n>`: one `matches` call (results cleared
//!   afterwards) for a literal hit, a literal miss, a subject only a `*` pattern matches,
//!   and one only a `>` pattern matches. The naive scan tests `Pattern::matches` on every
//!   pattern of a `Vec<(Pattern, u64)>`.
//! - `sublist/update/<n>`: inserting one new literal subscription and removing it again.
//!
//! The goal: the literal cases cost the same at 10k and 100k.

#![forbid(unsafe_code)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use benches::quick_mode;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use engine::subject::Pattern;
use engine::sublist::{Placed, SubSet, Sublist};

/// A subscriber id; the index needs to know its worker.
#[derive(Debug, Clone, PartialEq)]
struct Sub(u64);

impl Placed for Sub {
    fn worker(&self) -> usize {
        (self.0 % 2) as usize
    }
}

/// Both indexes over the same `n` subscriptions.
struct Population {
    sublist: Sublist<Sub>,
    naive: Vec<(Pattern, u64)>,
    literals: usize,
    wildcards: usize,
}

fn pattern(raw: &str) -> Pattern {
    // The benchmark's own patterns are well-formed by construction.
    Pattern::parse(raw.as_bytes()).expect("benchmark pattern is valid")
}

fn population(n: usize) -> Population {
    let literals = n * 9 / 10;
    let wildcards = (n - literals) / 2;
    let mut raws = Vec::with_capacity(n);
    raws.extend((0..literals).map(|i| format!("room.{i}.msgs")));
    raws.extend((0..wildcards).map(|i| format!("inbox.{i}.*")));
    raws.extend((0..wildcards).map(|i| format!("events.{i}.>")));
    let sublist = Sublist::new();
    let mut naive = Vec::with_capacity(n);
    for (id, raw) in raws.iter().enumerate() {
        let p = pattern(raw);
        sublist.insert(&p, None, Sub(id as u64));
        naive.push((p, id as u64));
    }
    Population {
        sublist,
        naive,
        literals,
        wildcards,
    }
}

fn naive_matches(naive: &[(Pattern, u64)], subject: &[u8], out: &mut Vec<u64>) {
    for (p, id) in naive {
        if p.matches(subject) {
            out.push(*id);
        }
    }
}

fn matching(c: &mut Criterion) {
    let sizes: &[usize] = if quick_mode() {
        &[1_000, 10_000]
    } else {
        &[10_000, 100_000]
    };
    let pops: Vec<(usize, Population)> = sizes.iter().map(|&n| (n, population(n))).collect();
    for case in ["literal_hit", "literal_miss", "star", "tail"] {
        let mut g = c.benchmark_group(format!("sublist/match/{case}"));
        g.sample_size(20)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(1));
        for (n, pop) in &pops {
            // Pick subjects from the middle of each range, so the naive scan cannot stop early
            // (it never does anyway: every pattern must be tested).
            let (subject, expect) = match case {
                "literal_hit" => (format!("room.{}.msgs", pop.literals / 2), 1),
                "literal_miss" => (format!("room.{}.msgs", pop.literals + 7), 0),
                "star" => (format!("inbox.{}.reply", pop.wildcards / 2), 1),
                _ => (format!("events.{}.order.created", pop.wildcards / 2), 1),
            };
            let subject = subject.into_bytes();
            let mut sets: Vec<Arc<SubSet<Sub>>> = Vec::with_capacity(16);
            g.bench_with_input(BenchmarkId::new("sublist", n), &subject, |b, subject| {
                b.iter(|| {
                    pop.sublist.matches(black_box(subject), &mut sets);
                    assert_eq!(sets.len(), expect);
                    sets.clear();
                })
            });
            let mut ids: Vec<u64> = Vec::with_capacity(16);
            g.bench_with_input(BenchmarkId::new("naive", n), &subject, |b, subject| {
                b.iter(|| {
                    naive_matches(&pop.naive, black_box(subject), &mut ids);
                    assert_eq!(ids.len(), expect);
                    ids.clear();
                })
            });
        }
        g.finish();
    }

    let mut g = c.benchmark_group("sublist/update");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    for (n, pop) in &pops {
        let p = pattern("room.new.msgs");
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                pop.sublist.insert(&p, None, Sub(u64::MAX));
                assert!(pop.sublist.remove(&p, None, &Sub(u64::MAX)));
            })
        });
    }
    g.finish();
}

criterion_group!(benches, matching);
criterion_main!(benches);
