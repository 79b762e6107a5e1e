//! Reopen time of a large log (replay of every chunk, index rebuild).

#[path = "support/common.rs"]
mod common;

use std::time::{Duration, Instant};

use chunkwal::{Config, Wal};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn reopen(c: &mut Criterion) {
    let mut g = c.benchmark_group("reopen");
    g.sample_size(10);
    for n in [100_000u64, 500_000] {
        let dir = tempfile::tempdir().expect("tempdir");
        let wal = Wal::open(Config::new(dir.path())).expect("open");
        common::fill(&wal, n, 256);
        wal.close().expect("close");
        g.throughput(Throughput::Elements(n));
        g.bench_function(format!("{n}x256B"), |b| {
            b.iter_custom(|iters| {
                let mut t = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let wal = Wal::open(Config::new(dir.path())).expect("reopen");
                    t += start.elapsed();
                    assert_eq!(wal.log_state().last.map(|l| l.index), Some(n));
                    // Close (a checkpoint and a sync) is not measured.
                    drop(wal);
                }
                t
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::quick();
    targets = reopen
}
criterion_main!(benches);
