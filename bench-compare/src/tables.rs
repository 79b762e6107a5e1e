//! The generated section of docs/benchmarks.md: one run's command line, the device floor,
//! the basic table (report.rs), the pipelined table, device bytes per payload byte and the
//! steady state, each with chunkwal's ratio to the best peer configuration.

use std::io;
use std::path::Path;

use serde_json::Value;

use crate::report::{fmt, get};

/// Pipelined / steady configurations of one engine, by depth: (depth, label, figures).
fn configs(v: &Value) -> Vec<(u64, String, &Value)> {
    let mut out: Vec<(u64, String, &Value)> = v
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, x)| {
            let (kind, n) = k.split_at(1);
            let n: u64 = n.parse().ok()?;
            let label = match (kind, n) {
                ("w", _) => format!("window {n}"),
                (_, 1) => "1 thread".to_string(),
                _ => format!("{n} threads"),
            };
            Some((n, label, x))
        })
        .collect();
    out.sort_by_key(|c| c.0);
    out
}

fn engines(doc: &Value) -> Vec<(&String, &Value)> {
    doc["results"]
        .as_object()
        .map(|m| m.iter().collect())
        .unwrap_or_default()
}

fn floor_mb(doc: &Value) -> Option<f64> {
    get(&doc["floor"], "seq_1mib_sync.mb_per_s")
}

fn pct_of_floor(doc: &Value, mb: Option<f64>) -> String {
    match (mb, floor_mb(doc)) {
        (Some(m), Some(f)) if f > 0.0 => format!("{:.0}%", 100.0 * m / f),
        _ => "n/a".into(),
    }
}

const ROW_HEAD: &str = "| entries/s | MB/s | % of floor MB/s | ack p50 µs | p99 µs | p99.9 µs \
    | device B / payload B | syncs/s (chunkwal) | bytes/sync (chunkwal) |";

/// The shared figures of one pipelined or steady row.
fn row(doc: &Value, v: &Value) -> String {
    let g = |p: &str| fmt(get(v, p));
    format!(
        " {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        g("entries_per_s"),
        g("mb_per_s"),
        pct_of_floor(doc, get(v, "mb_per_s")),
        g("ack_latency.p50_us"),
        g("ack_latency.p99_us"),
        g("ack_latency.p999_us"),
        g("device.per_payload_byte"),
        g("chunkwal.syncs_per_s"),
        g("chunkwal.mean_bytes_per_sync"),
    )
}

/// (metric path, label, higher is better) for the ratio tables.
const RATIO_METRICS: &[(&str, &str, bool)] = &[
    ("entries_per_s", "entries/s", true),
    ("ack_latency.p50_us", "ack p50", false),
    ("ack_latency.p99_us", "ack p99", false),
    ("ack_latency.p999_us", "ack p99.9", false),
    ("device.per_payload_byte", "device B / payload B", false),
];

/// chunkwal's value over the best peer's, among `peers` (name, figures).
fn ratio_cell(c: &Value, peers: &[(String, &Value)], path: &str, higher: bool) -> String {
    let Some(cv) = get(c, path) else {
        return "n/a".into();
    };
    let best = peers
        .iter()
        .filter_map(|(n, v)| get(v, path).filter(|x| x.is_finite()).map(|x| (n, x)))
        .reduce(|a, b| if (b.1 > a.1) == higher { b } else { a });
    match best {
        Some((n, b)) => format!("{} ({n})", fmt(Some(cv / b))),
        None => "n/a".into(),
    }
}

fn pipelined_table(doc: &Value) -> String {
    let mut s = format!(
        "#### Pipelined durable batches\n\nMedians. chunkwal and raft-log: one writer, up to \
         *window* flushes outstanding; raft-engine and okaywal: *threads* writers, each \
         waiting for its own writes. Ack latency: append call to durable acknowledgement. \
         % of floor: MB/s over the device floor's sequential write-and-sync bandwidth.\n\n\
         | engine | config {ROW_HEAD}\n|---|---|{}\n",
        "---:|".repeat(9)
    );
    let mut peers: Vec<(u64, String, &Value)> = Vec::new();
    for (e, v) in engines(doc) {
        for (n, label, x) in configs(&v["pipelined"]) {
            s += &format!("| {e} | {label} |{}\n", row(doc, x));
            if e != "chunkwal" {
                peers.push((n, format!("{e}, {label}"), x));
            }
        }
    }
    let cw = doc["results"]["chunkwal"]["pipelined"].clone();
    if cw.is_null() || peers.is_empty() {
        return s;
    }
    s += "\nchunkwal / best peer configuration (higher-is-better: >1 means chunkwal wins; \
          lower-is-better: <1 means chunkwal wins). *any*: best over every peer \
          configuration; *same depth*: best peer whose window or thread count equals \
          chunkwal's window.\n\n| chunkwal | metric | vs any | vs same depth |\n|---|---|---:|---:|\n";
    let all: Vec<(String, &Value)> = peers.iter().map(|p| (p.1.clone(), p.2)).collect();
    for (n, label, c) in configs(&cw) {
        let same: Vec<(String, &Value)> = peers
            .iter()
            .filter(|p| p.0 == n)
            .map(|p| (p.1.clone(), p.2))
            .collect();
        for (path, m, higher) in RATIO_METRICS {
            s += &format!(
                "| {label} | {m} | {} | {} |\n",
                ratio_cell(c, &all, path, *higher),
                ratio_cell(c, &same, path, *higher)
            );
        }
    }
    s
}

fn device_table(doc: &Value) -> String {
    let mut depths: Vec<u64> = engines(doc)
        .iter()
        .flat_map(|(_, v)| configs(&v["pipelined"]).into_iter().map(|c| c.0))
        .collect();
    depths.sort_unstable();
    depths.dedup();
    let mut s = String::from(
        "#### Device bytes written per payload byte\n\nSectors written to the bench \
         directory's block device (`/proc/diskstats`) x 512, from before the engine opens \
         until after it is dropped and `syncfs` returns, over the payload bytes written \
         (warm-up included). 1.0 would be the payload alone.\n\n\
         | engine | durable batches | durable singles |",
    );
    for d in &depths {
        s += &format!(" pipelined depth {d} |");
    }
    s += " steady state |\n|---|";
    s += &"---:|".repeat(depths.len() + 3);
    s += "\n";
    for (e, v) in engines(doc) {
        let g = |p: &str| fmt(get(v, p));
        s += &format!(
            "| {e} | {} | {} |",
            g("durable_batch.device.per_payload_byte"),
            g("durable_single.device.per_payload_byte")
        );
        let cs = configs(&v["pipelined"]);
        for d in &depths {
            let x = cs.iter().find(|c| c.0 == *d).map(|c| c.2);
            s += &format!(
                " {} |",
                fmt(x.and_then(|x| get(x, "device.per_payload_byte")))
            );
        }
        s += &format!(" {} |\n", g("steady.device.per_payload_byte"));
    }
    s
}

fn steady_table(doc: &Value) -> String {
    let any = engines(doc).iter().any(|(_, v)| !v["steady"].is_null());
    if !any {
        return String::new();
    }
    let mut s = String::from(
        "#### Steady state with purges\n\nDurable pipelined batches (window or threads as \
         in the command line), segments of `--chunk-size` for every engine, the log purged \
         behind the writer to keep about two chunks of entries. Space: bytes of the files \
         in the log directory at the end.\n\n",
    );
    s += &format!("| engine {ROW_HEAD} space held, MiB | purges | chunks created / recycled |\n");
    s += &format!("|---|{}\n", "---:|".repeat(12));
    let mut peers: Vec<(String, &Value)> = Vec::new();
    for (e, v) in engines(doc) {
        let st = &v["steady"];
        if st.is_null() {
            continue;
        }
        let g = |p: &str| get(st, p);
        let chunks = match (g("chunkwal.chunks_created"), g("chunkwal.chunks_recycled")) {
            (Some(c), Some(r)) => format!("{c:.0} / {r:.0}"),
            _ => "n/a".into(),
        };
        s += &format!(
            "| {e} |{} {} | {} | {chunks} |\n",
            row(doc, st),
            fmt(g("dir_bytes_at_end").map(|b| b / 1048576.0)),
            g("purges").map_or("n/a".into(), |p| format!("{p:.0}")),
        );
        if e != "chunkwal" {
            peers.push((e.clone(), st));
        }
    }
    let c = &doc["results"]["chunkwal"]["steady"];
    if !c.is_null() && !peers.is_empty() {
        s += "\n| chunkwal / best peer | ratio (peer) |\n|---|---:|\n";
        for (path, m, higher) in RATIO_METRICS {
            s += &format!("| {m} | {} |\n", ratio_cell(c, &peers, path, *higher));
        }
    }
    s
}

fn floor_table(doc: &Value) -> String {
    let f = &doc["floor"];
    if f.is_null() {
        return String::new();
    }
    let g = |p: &str| fmt(get(f, p));
    format!(
        "#### Device floor (plain pwrite + fdatasync, same run)\n\n\
         | figure | value |\n|---|---:|\n\
         | sequential 1 MiB pwrite + fdatasync over a {} MiB file written once first, MB/s | {} |\n\
         | 1 MiB write + sync latency p50 / p99 / p99.9, µs | {} / {} / {} |\n\
         | 16 KiB pwrite + fdatasync into written blocks, p50 / p99 / p99.9, µs | {} / {} / {} |\n\
         | device B / payload B: 1 MiB writes, 16 KiB writes | {}, {} |\n",
        g("file_mib"),
        g("seq_1mib_sync.mb_per_s"),
        g("seq_1mib_sync.per_mib_latency.p50_us"),
        g("seq_1mib_sync.per_mib_latency.p99_us"),
        g("seq_1mib_sync.per_mib_latency.p999_us"),
        g("sync_16k.p50_us"),
        g("sync_16k.p99_us"),
        g("sync_16k.p999_us"),
        g("seq_1mib_sync.device.per_payload_byte"),
        g("sync_16k.device.per_payload_byte"),
    )
}

/// Shell-quote the command line the run was started with.
pub fn command(doc: &Value) -> String {
    doc["command"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|w| {
                    if w.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_./,=:".contains(c))
                    {
                        w.to_string()
                    } else {
                        format!("'{}'", w.replace('\'', r"'\''"))
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| "(not recorded)".into())
}

fn header(doc: &Value, title: Option<&str>) -> String {
    let m = &doc["mount"];
    let fs = format!(
        "{} on {} (`{}`, `{}`), device `{}`",
        m["fstype"].as_str().unwrap_or("?"),
        m["source"].as_str().unwrap_or("?"),
        m["options"].as_str().unwrap_or("?"),
        m["super_options"].as_str().unwrap_or(""),
        doc["device"]["name"].as_str().unwrap_or("unknown"),
    );
    let title = title.map(str::to_string).unwrap_or_else(|| {
        format!(
            "Run on {} ({})",
            doc["dir"].as_str().unwrap_or("?"),
            m["fstype"].as_str().unwrap_or("?")
        )
    });
    format!(
        "### {title}\n\nOne run, started {}: {} interleaved rounds, every figure the median \
         of the rounds. Directory `{}`: {fs}. Machine: {} vCPU `{}`, load average at start \
         `{}`, at end `{}`.\n\n```sh\nflock /tmp/chunkwal-build.lock {}\n```\n\n\
         Raw numbers: the `--out` JSON (`per_round` holds every round).\n\n",
        doc["started"].as_str().unwrap_or("?"),
        doc["rounds"],
        doc["dir"].as_str().unwrap_or("?"),
        doc["machine"]["nproc"],
        doc["machine"]["cpu"].as_str().unwrap_or("?"),
        doc["machine"]["loadavg_at_start"].as_str().unwrap_or("?"),
        doc["loadavg_at_end"].as_str().unwrap_or("?"),
        command(doc),
    )
}

/// The whole generated section for one run.
pub fn section(doc: &Value, title: Option<&str>) -> String {
    let mut s = header(doc, title);
    s += &floor_table(doc);
    let basic = engines(doc)
        .iter()
        .any(|(_, v)| !v["durable_batch"].is_null());
    if basic {
        s += "\n#### Basic workloads\n\n";
        s += &crate::report::table(doc);
    }
    if engines(doc).iter().any(|(_, v)| !v["pipelined"].is_null()) {
        s += "\n";
        s += &pipelined_table(doc);
    }
    let measured = |k: &str| engines(doc).iter().any(|(_, v)| !v[k].is_null());
    if measured("durable_batch") || measured("pipelined") || measured("steady") {
        s += "\n";
        s += &device_table(doc);
    }
    let st = steady_table(doc);
    if !st.is_empty() {
        s += "\n";
        s += &st;
    }
    s
}

fn markers(name: &str) -> (String, String) {
    (
        format!("<!-- bench-compare section {name}: BEGIN (generated, do not edit) -->"),
        format!("<!-- bench-compare section {name}: END -->"),
    )
}

/// Replace section `name` of the Markdown file `f` (between its markers) with `md`, or
/// append it when the file has no such section yet.
pub fn write_section(f: &Path, name: &str, md: &str) -> io::Result<()> {
    let old = std::fs::read_to_string(f).unwrap_or_default();
    let (begin, end) = markers(name);
    let block = format!("{begin}\n{}\n{end}", md.trim_end());
    let new = match (old.find(&begin), old.find(&end)) {
        (Some(a), Some(b)) if b > a => format!("{}{block}{}", &old[..a], &old[b + end.len()..]),
        _ if old.is_empty() => format!("{block}\n"),
        _ => format!("{}\n\n{block}\n", old.trim_end()),
    };
    std::fs::write(f, new)
}
