//! Benchmarks of vip; see `benches/`.
