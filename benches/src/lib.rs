//! Criterion benchmarks live in `benches/` (in progress).
