//! The write-ahead log's committer on the real file system (a fresh directory under the
//! system's temporary directory, removed afterwards): 128-byte records in batches of 1, 64
//! and 1024, one batch in flight at a time (submit, wait for its report), under each fsync
//! policy. The figure is records per second; under `always` every report waits for an
//! `fdatasync`, so records per batch is records per sync (group commit).
//!
//! `store/commit/<policy>/<records per batch>`. Quote the median (`estimates.json`).

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use engine::store::{Batch, Committed, Committer, FsyncPolicy, Log, Options, OsDir};

const RECORD_BYTES: usize = 128;

fn scratch(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!("bench-store-{tag}-{}-{nanos}", std::process::id()))
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("store/commit");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    let record = benches::payload(RECORD_BYTES);
    let policies = [
        FsyncPolicy::Always,
        FsyncPolicy::Interval(Duration::from_millis(5)),
        FsyncPolicy::Never,
    ];
    for policy in policies {
        for per_batch in [1usize, 64, 1024] {
            let path = scratch(&format!("{policy}-{per_batch}"));
            let dir = OsDir::open(&path).expect("a scratch directory");
            let (log, _) = Log::open(dir, Options::default(), |_, _| {}).expect("a new log");
            let (tx, rx) = mpsc::channel::<Committed>();
            let committer = Committer::spawn(log, policy, move |committed| {
                let _ = tx.send(committed);
            })
            .expect("the committer thread");
            let mut batch = Batch::new(0);
            for _ in 0..per_batch {
                batch.push(&record).expect("a 128-byte record fits");
            }
            group.throughput(Throughput::Elements(per_batch as u64));
            let id = BenchmarkId::new(policy.to_string(), per_batch);
            group.bench_function(id, |b| {
                b.iter_batched(
                    || batch.clone(),
                    |batch| {
                        committer
                            .try_submit(batch)
                            .expect("one batch in flight fits");
                        let committed = rx.recv().expect("a report");
                        assert!(committed.batches.iter().all(|o| o.result.is_ok()));
                    },
                    BatchSize::SmallInput,
                )
            });
            committer.close();
            let _ = std::fs::remove_dir_all(&path);
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
