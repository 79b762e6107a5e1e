//! The report of `chunkwal bench`: a table, or JSON with `--json`.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::bench::{Appends, Args, Reads, SyncMode};
use crate::fmt::{self, Table};

/// Everything `bench` measured.
pub(crate) struct Results<'a> {
    pub a: &'a Args,
    pub dir: &'a Path,
    pub w: Appends,
    pub r: Reads,
    pub reopen: Duration,
    pub reopened_entries: u64,
    pub mem: Result<(f64, u64), String>,
    pub chunks: usize,
    pub written: u64,
    pub pb: u64,
}

fn rate(n: u64, d: Duration) -> String {
    format!("{} entries/s", fmt::count(fmt::per_sec(n, d)))
}

fn mibs(n: u64, d: Duration) -> String {
    format!("{:.1} MiB/s", fmt::mib_per_sec(n, d))
}

impl Results<'_> {
    fn durable_entries(&self) -> u64 {
        self.w.nb * self.a.batch as u64
    }

    pub fn json(mut self) -> Value {
        let a = self.a;
        let de = self.durable_entries();
        json!({
            "config": {
                "entries": a.entries, "payload": a.payload, "batch": a.batch,
                "sync": if a.sync == SyncMode::PerBatch { "per-batch" } else { "none" },
                "chunk_size": a.chunk_size, "cache_items": a.cache_items,
                "cache_bytes": a.cache_bytes, "dir": self.dir.display().to_string(),
            },
            "buffered_append": {
                "entries": a.entries, "secs": self.w.buffered.as_secs_f64(),
                "entries_per_sec": fmt::per_sec(a.entries, self.w.buffered),
                "mib_per_sec": fmt::mib_per_sec(a.entries * self.pb, self.w.buffered),
                "final_flush_us": fmt::micros(self.w.final_flush),
            },
            "durable_append": {
                "batches": self.w.nb, "entries": de,
                "entries_per_sec": fmt::per_sec(de, self.w.durable.total),
                "mib_per_sec": fmt::mib_per_sec(de * self.pb, self.w.durable.total),
                "p50_us": fmt::micros(self.w.durable.p(50.0)),
                "p99_us": fmt::micros(self.w.durable.p(99.0)),
            },
            "pipelined_append": {
                "batches": self.w.nb, "in_flight": 8, "entries": de,
                "entries_per_sec": fmt::per_sec(de, self.w.pipe.1),
                "p50_us": fmt::micros(self.w.pipe.0.p(50.0)),
                "p99_us": fmt::micros(self.w.pipe.0.p(99.0)),
                "syncs": self.w.pipe.2,
            },
            "single_append": {
                "count": self.w.ns,
                "entries_per_sec": fmt::per_sec(self.w.ns, self.w.single.total),
                "p50_us": fmt::micros(self.w.single.p(50.0)),
                "p99_us": fmt::micros(self.w.single.p(99.0)),
            },
            "warm_read": {
                "entries": self.r.warm.0, "cache_hits": self.r.warm.2,
                "entries_per_sec": fmt::per_sec(self.r.warm.0, self.r.warm.1),
            },
            "cold_read": {
                "entries": self.r.cold.0, "cache_misses": self.r.cold.2,
                "entries_per_sec": fmt::per_sec(self.r.cold.0, self.r.cold.1),
            },
            "range_read": {
                "entries": self.r.range, "reads": self.r.ranges.lat.len(),
                "p50_us": fmt::micros(self.r.ranges.p(50.0)),
                "p99_us": fmt::micros(self.r.ranges.p(99.0)),
            },
            "reopen": { "entries": self.reopened_entries, "ms": self.reopen.as_secs_f64() * 1e3 },
            "index_memory": match &self.mem {
                Ok((b, n)) => json!({"estimate": true, "bytes_per_entry": b, "entries": n,
                                     "method": "anonymous RSS delta around Wal::open in a fresh process"}),
                Err(e) => json!({"estimate": true, "bytes_per_entry": null, "error": e}),
            },
            "log": { "chunks": self.chunks, "written_bytes": self.written },
        })
    }

    pub fn table(mut self, out: &mut dyn Write) -> std::io::Result<()> {
        let a = self.a;
        let sync = if a.sync == SyncMode::PerBatch {
            "flush per batch"
        } else {
            "no flush"
        };
        writeln!(
            out,
            "chunkwal bench: {} entries × {} payload, batch {}, chunk {}, cache {} items / {}",
            a.entries,
            fmt::bytes(self.pb),
            a.batch,
            fmt::bytes(a.chunk_size),
            a.cache_items,
            fmt::bytes(a.cache_bytes)
        )?;
        writeln!(out, "directory: {}\n", self.dir.display())?;
        let mut t = Table::new(&["phase", "work", "rate", "throughput", "p50", "p99"]);
        self.append_rows(&mut t, sync);
        self.read_rows(&mut t);
        t.print(out)?;
        writeln!(
            out,
            "\nlog written: {} in {} chunks",
            fmt::bytes(self.written),
            self.chunks
        )?;
        match &self.mem {
            Ok((b, n)) => writeln!(
                out,
                "index memory: ~{b:.0} B/entry (estimate: anonymous RSS growth while opening \
                 {n} entries in a fresh process)"
            ),
            Err(e) => writeln!(out, "index memory: not measured ({e})"),
        }
    }

    /// The append phases' rows.
    fn append_rows(&mut self, t: &mut Table, sync: &str) {
        let a = self.a;
        t.row(vec![
            "buffered appends".into(),
            format!("{} entries", a.entries),
            rate(a.entries, self.w.buffered),
            mibs(a.entries * self.pb, self.w.buffered),
            String::new(),
            String::new(),
        ]);
        t.row(vec![
            "  then one flush".into(),
            fmt::duration(self.w.final_flush),
        ]);
        let de = self.durable_entries();
        let (dp50, dp99) = (self.w.durable.p(50.0), self.w.durable.p(99.0));
        t.row(vec![
            format!("durable batches ({sync})"),
            format!("{} × {}", self.w.nb, a.batch),
            rate(de, self.w.durable.total),
            mibs(de * self.pb, self.w.durable.total),
            fmt::duration(dp50),
            fmt::duration(dp99),
        ]);
        let (pp50, pp99) = (self.w.pipe.0.p(50.0), self.w.pipe.0.p(99.0));
        t.row(vec![
            format!("durable batches, 8 in flight ({} syncs)", self.w.pipe.2),
            format!("{} × {}", self.w.nb, a.batch),
            rate(de, self.w.pipe.1),
            mibs(de * self.pb, self.w.pipe.1),
            fmt::duration(pp50),
            fmt::duration(pp99),
        ]);
        let (sp50, sp99) = (self.w.single.p(50.0), self.w.single.p(99.0));
        t.row(vec![
            format!("single-entry appends ({sync})"),
            format!("{}", self.w.ns),
            rate(self.w.ns, self.w.single.total),
            String::new(),
            fmt::duration(sp50),
            fmt::duration(sp99),
        ]);
    }

    /// The read phases' rows, and reopen.
    fn read_rows(&mut self, t: &mut Table) {
        if self.r.warm.0 == 0 {
            t.row(vec!["warm reads (cache hits)".into(), "cache empty".into()]);
        } else {
            t.row(vec![
                "warm reads (cache hits)".into(),
                format!("{} entries", self.r.warm.0),
                rate(self.r.warm.0, self.r.warm.1),
                mibs(self.r.warm.0 * self.pb, self.r.warm.1),
            ]);
        }
        t.row(vec![
            "cold reads (map + CRC)".into(),
            format!("{} entries", self.r.cold.0),
            rate(self.r.cold.0, self.r.cold.1),
            mibs(self.r.cold.0 * self.pb, self.r.cold.1),
        ]);
        let (rp50, rp99) = (self.r.ranges.p(50.0), self.r.ranges.p(99.0));
        t.row(vec![
            format!("range read of {} entries", self.r.range),
            format!("{} reads", self.r.ranges.lat.len()),
            String::new(),
            String::new(),
            fmt::duration(rp50),
            fmt::duration(rp99),
        ]);
        t.row(vec![
            "reopen (replay + index)".into(),
            format!("{} entries", self.reopened_entries),
            fmt::duration(self.reopen),
        ]);
    }
}
