//! chunkwal tuning sweep: chunk size and cache bounds, raw numbers plus SVG charts.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use plotters::prelude::*;
use serde_json::{json, Value};

use crate::engines::{Chunkwal, Log, Opts};
use crate::workloads::{payload, Plan};
use crate::Args;

/// Entries per second for `count` entries appended in batches, timing the engine only.
fn appends(
    log: &mut Chunkwal,
    first: u64,
    count: usize,
    batch: usize,
    durable: bool,
) -> io::Result<f64> {
    let p = payload(256);
    let mut t = Duration::ZERO;
    let mut i = first;
    while i < first + count as u64 {
        let b = log.prepare(i, batch, &p);
        let s = Instant::now();
        log.append(b, durable)?;
        t += s.elapsed();
        i += batch as u64;
    }
    Ok(count as f64 / t.as_secs_f64())
}

fn chunk_point(root: &Path, plan: &Plan, mib: u64) -> io::Result<Value> {
    let opts = Opts {
        chunk_size: Some(mib << 20),
        ..Opts::default()
    };
    let dir = tempfile::tempdir_in(root)?;
    let mut log = Chunkwal::open(dir.path(), &opts)?;
    // Durable batches first, on the fresh log: right after a buffered burst they would first
    // pay, for a few MiB, for the large page-cache folios the burst left ahead of the cursor
    // (docs/durability.md, "Page cache"); this measures the steady state.
    let n_durable = plan.batches * plan.batch;
    let durable = appends(&mut log, 1, n_durable, plan.batch, true)?;
    let first = 1 + n_durable as u64;
    let buffered = appends(&mut log, first, plan.buffered, plan.batch, false)?;
    let total = plan.buffered + n_durable;
    // Buffered appends leave the disk work (rotations' syncs included) to the next flush.
    let s = Instant::now();
    log.sync()?;
    let sync_after = s.elapsed().as_secs_f64();
    drop(log);
    let s = Instant::now();
    let log = Chunkwal::open(dir.path(), &opts)?;
    let reopen = s.elapsed().as_secs_f64();
    if log.last_index() != Some(total as u64) {
        return Err(io::Error::other("tuning: reopened log is short"));
    }
    Ok(json!({
        "chunk_mib": mib,
        "buffered_entries_per_s": buffered,
        "durable_entries_per_s": durable,
        "sync_after_buffered_secs": sync_after,
        "reopen_entries": total,
        "reopen_secs": reopen,
        "reopen_entries_per_s": total as f64 / reopen,
    }))
}

fn cache_point(root: &Path, plan: &Plan, items: usize) -> io::Result<Value> {
    let opts = Opts {
        cache_items: Some(items),
        cache_bytes: Some((items * 512).max(1 << 20)),
        ..Opts::default()
    };
    let dir = tempfile::tempdir_in(root)?;
    let mut log = Chunkwal::open(dir.path(), &opts)?;
    let n = plan.reads;
    // Appends with a non-blocking flush request per batch, as a Raft leader would: the cache
    // can only evict what is durable, so this keeps it at its bound while it fills.
    let p = payload(256);
    let mut t = Duration::ZERO;
    let mut i = 1u64;
    while i <= n as u64 {
        let b = log.prepare(i, plan.batch, &p);
        let s = Instant::now();
        log.append(b, false)?;
        log.0
            .flush(|r| r.expect("flush"))
            .map_err(|e| io::Error::other(e.to_string()))?;
        t += s.elapsed();
        i += plan.batch as u64;
    }
    let append = (i - 1) as f64 / t.as_secs_f64();
    log.sync()?;
    // Eviction runs on insert: one more durable batch brings the cache down to its bound.
    let b = log.prepare(i, plan.batch, &p);
    log.append(b, true)?;
    log.0.wait_worker_idle();
    let n = (i - 1) as usize + plan.batch;
    // Read the newest entries first (a follower one window behind), then everything.
    let window = plan.batch as u64;
    let read_range = |log: &mut Chunkwal, from: u64, to: u64| -> io::Result<f64> {
        let s = Instant::now();
        let mut i = from;
        while i < to {
            let j = (i + window).min(to);
            log.read(i, j)?;
            i = j;
        }
        Ok((to - from) as f64 / s.elapsed().as_secs_f64())
    };
    let tail_from = (n as u64).saturating_sub(16_384).max(1);
    let tail = read_range(&mut log, tail_from, n as u64 + 1)?;
    let all = read_range(&mut log, 1, n as u64 + 1)?;
    let st = log.0.access_stat().cache;
    Ok(json!({
        "cache_items": items,
        "append_with_async_flush_entries_per_s": append,
        "read_newest_16k_entries_per_s": tail,
        "read_all_entries_per_s": all,
        "cache_items_held": st.items,
        "cache_hits": st.hits,
        "cache_misses": st.misses,
    }))
}

fn chart(
    path: &Path,
    title: &str,
    xs: &[String],
    series: &[(&str, Vec<f64>)],
    x_desc: &str,
) -> io::Result<()> {
    let err = |e: &dyn std::fmt::Display| io::Error::other(e.to_string());
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let max = series
        .iter()
        .flat_map(|s| s.1.iter().copied())
        .fold(1.0f64, f64::max);
    let min = series
        .iter()
        .flat_map(|s| s.1.iter().copied())
        .fold(f64::MAX, f64::min)
        .max(1.0);
    let mut c = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(
            -0.3f64..(xs.len() as f64 - 0.7),
            (min / 2.0..max * 2.0).log_scale(),
        )
        .map_err(|e| err(&e))?;
    c.configure_mesh()
        .x_labels(xs.len())
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                xs.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .x_desc(x_desc)
        .y_desc("entries/s (log scale)")
        .y_label_formatter(&|y| {
            if *y >= 1e7 {
                format!("{:.0}M", y / 1e6)
            } else if *y >= 1e6 {
                format!("{:.1}M", y / 1e6)
            } else {
                format!("{:.0}k", y / 1e3)
            }
        })
        .draw()
        .map_err(|e| err(&e))?;
    let colors = [BLUE, RED, GREEN, MAGENTA, BLACK];
    for (k, (name, ys)) in series.iter().enumerate() {
        let color = colors[k % colors.len()];
        let pts: Vec<(f64, f64)> = ys.iter().enumerate().map(|(i, y)| (i as f64, *y)).collect();
        c.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        c.draw_series(pts.iter().map(|p| Circle::new(*p, 4, color.filled())))
            .map_err(|e| err(&e))?;
    }
    c.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

pub fn run(a: &Args) -> io::Result<()> {
    std::fs::create_dir_all(&a.dir)?;
    std::fs::create_dir_all(&a.docs)?;
    let plan = &a.plan;
    // Each point is the median of `--rounds` runs (default 3): the machine is shared.
    let rounds: usize = a
        .get("--rounds")
        .and_then(|r| r.parse().ok())
        .unwrap_or(3)
        .max(1);
    let sizes = [8u64, 64, 256];
    let mut chunk = Vec::new();
    for mib in sizes {
        eprintln!("== chunk size {mib} MiB");
        let runs = (0..rounds)
            .map(|_| chunk_point(&a.dir, plan, mib))
            .collect::<io::Result<Vec<_>>>()?;
        let v = crate::report::median_of(&runs);
        eprintln!("{v}");
        chunk.push(v);
    }
    let items = [0usize, 1024, 16_384, 65_536, 262_144];
    let mut cache = Vec::new();
    for n in items {
        eprintln!("== cache {n} items");
        let runs = (0..rounds)
            .map(|_| cache_point(&a.dir, plan, n))
            .collect::<io::Result<Vec<_>>>()?;
        let v = crate::report::median_of(&runs);
        eprintln!("{v}");
        cache.push(v);
    }
    let doc = json!({
        "plan": format!("{plan:?}"),
        "rounds": rounds,
        "loadavg": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        "chunk_size": chunk,
        "cache": cache,
    });
    let out = a.out.with_file_name("tuning.json");
    std::fs::write(&out, serde_json::to_string_pretty(&doc)?)?;
    charts(&doc, &a.docs)?;
    eprintln!(
        "wrote {} and the SVGs in {}",
        out.display(),
        a.docs.display()
    );
    Ok(())
}

/// Draw the SVGs from a tuning.json document.
pub fn charts(doc: &Value, docs: &Path) -> io::Result<()> {
    let empty = Vec::new();
    let chunk = doc["chunk_size"].as_array().unwrap_or(&empty);
    let cache = doc["cache"].as_array().unwrap_or(&empty);
    let label = |v: &[Value], k: &str| -> Vec<String> {
        v.iter()
            .map(|x| x[k].as_f64().unwrap_or(0.0).to_string())
            .collect()
    };
    let sizes: Vec<String> = label(chunk, "chunk_mib")
        .iter()
        .map(|m| format!("{m} MiB"))
        .collect();
    let items = label(cache, "cache_items");
    let col = |v: &[Value], k: &str| -> Vec<f64> {
        v.iter().map(|x| x[k].as_f64().unwrap_or(0.0)).collect()
    };
    chart(
        &docs.join("tuning-throughput.svg"),
        "chunkwal: chunk size vs throughput (256 B entries)",
        &sizes,
        &[
            (
                "buffered appends (64/batch)",
                col(chunk, "buffered_entries_per_s"),
            ),
            (
                "durable 64-entry batches",
                col(chunk, "durable_entries_per_s"),
            ),
            (
                "reopen (entries replayed/s)",
                col(chunk, "reopen_entries_per_s"),
            ),
        ],
        "chunk size",
    )?;
    chart(
        &docs.join("tuning-cache.svg"),
        "chunkwal: cache_max_items vs reads and appends (256 B entries)",
        &items,
        &[
            (
                "read newest 16k (ranges of 64)",
                col(cache, "read_newest_16k_entries_per_s"),
            ),
            (
                "read all (ranges of 64)",
                col(cache, "read_all_entries_per_s"),
            ),
            (
                "appends + async flush per batch",
                col(cache, "append_with_async_flush_entries_per_s"),
            ),
        ],
        "cache_max_items",
    )?;
    Ok(())
}
