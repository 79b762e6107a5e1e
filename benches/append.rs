//! Append throughput by payload size, batch size and durability.
//!
//! `durable`: every batch is followed by `flush_blocking` (msync, wait for the callback).
//! `buffered`: append only; the data is in the page cache and readable, never synced
//! during the measurement.

#[path = "support/common.rs"]
mod common;

use std::cell::Cell;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn append(c: &mut Criterion) {
    for durable in [false, true] {
        let name = if durable {
            "append/durable"
        } else {
            "append/buffered"
        };
        let mut g = c.benchmark_group(name);
        for len in [64usize, 256, 4096] {
            for n in [1u64, 64, 256] {
                g.throughput(Throughput::Elements(n));
                let p = common::payload(1, len);
                let (_dir, wal) = common::fresh(|c| c);
                let next = Cell::new(1u64);
                g.bench_function(BenchmarkId::new(format!("{len}B"), format!("x{n}")), |b| {
                    b.iter(|| {
                        let i = next.get();
                        wal.append(common::batch(i, n, &p)).expect("append");
                        if durable {
                            wal.flush_blocking().expect("flush");
                        }
                        next.set(i + n);
                    })
                });
            }
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = common::quick();
    targets = append
}
criterion_main!(benches);
