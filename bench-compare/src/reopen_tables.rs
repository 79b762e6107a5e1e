//! The reopen benchmark's section of docs/benchmarks.md: the comparison table per page-cache
//! state (warm, and cold when measured) and chunkwal's scaling table.

use serde_json::Value;

use crate::report::fmt;

const MIB: f64 = (1 << 20) as f64;

fn f(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn ms(v: &Value) -> String {
    fmt(f(v).map(|s| s * 1e3))
}

fn mib(v: &Value) -> String {
    fmt(f(v).map(|b| b / MIB))
}

/// A whole number (medians come back as floats), or `-`.
fn int(v: &Value) -> String {
    f(v).map_or("-".into(), |x| format!("{x:.0}"))
}

/// `1000000` as `1M`, `4000000` as `4M`, others as they are.
fn count(v: &Value) -> String {
    match v.as_u64() {
        Some(n) if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        Some(n) if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        Some(n) => n.to_string(),
        None => "?".into(),
    }
}

fn header(doc: &Value, title: Option<&str>) -> String {
    let m = &doc["mount"];
    let title = title.unwrap_or("Reopen in a fresh process");
    let cold = if doc["cold"].as_bool() == Some(true) {
        "warm, then cold (`sync; echo 3 > /proc/sys/vm/drop_caches` before each cold probe)"
    } else {
        "warm only (every file of the log read once before each probe)"
    };
    format!(
        "### {title}\n\nOne run, started {}, {} s in all: {} interleaved rounds (each engine \
         probed once per round, in order), every figure the median of the rounds. Page \
         cache: {cold}. Directory `{}` ({} on {}). Machine: {} vCPU `{}`, load average at \
         start `{}`, at end `{}`.\n\n```sh\n{}\n```\n\n\
         Raw numbers: the `--out` JSON (`warm_runs` / `cold_runs` hold every probe).\n\n",
        doc["started"].as_str().unwrap_or("?"),
        fmt(f(&doc["run_secs"])),
        doc["rounds"],
        doc["dir"].as_str().unwrap_or("?"),
        m["fstype"].as_str().unwrap_or("?"),
        m["source"].as_str().unwrap_or("?"),
        doc["machine"]["nproc"],
        doc["machine"]["cpu"].as_str().unwrap_or("?"),
        doc["loadavg_at_start"].as_str().unwrap_or("?"),
        doc["loadavg_at_end"].as_str().unwrap_or("?"),
        crate::tables::command(doc),
    )
}

const COMPARE_HEAD: &str = "| log | engine | open ms | + read last ms | ready vs raft-engine \
    | heap left by open, B/entry | vs raft-engine | heap peak in open, MiB \
    | RSS after open, MiB | files | on disk, MiB | chunks (chunkwal) | build s |\n\
    |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";

/// One comparison table: every size, every engine, page cache `cache` (warm or cold).
fn compare_table(doc: &Value, cache: &str) -> String {
    let mut s = format!(
        "#### Reopen, {cache} page cache\n\n\"ready\" = open + read of the last entry; \
         ratios are engine / {}, below 1 is faster or smaller.\n\n{COMPARE_HEAD}",
        doc["baseline"].as_str().unwrap_or("?")
    );
    for size in doc["sizes"].as_array().into_iter().flatten() {
        let log = format!("{} x {} B", count(&size["entries"]), size["payload"]);
        for (e, v) in size["engines"].as_object().into_iter().flatten() {
            let p = &v[cache];
            let r = &size["ratios"][e.as_str()];
            let b = &v["build"];
            s += &format!(
                "| {log} | {e} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                ms(&p["open_secs"]),
                ms(&p["read_last_secs"]),
                fmt(f(&r[format!("{cache}.ready_secs")])),
                fmt(f(&p["heap_per_entry"])),
                fmt(f(&r[format!("{cache}.heap_per_entry")])),
                mib(&p["heap_peak_bytes"]),
                mib(&p["rss_after"]),
                b["files"],
                mib(&b["disk_bytes"]),
                int(&p["chunks"]),
                fmt(f(&b["build_secs"])),
            );
        }
    }
    s
}

/// chunkwal's open time against the number of entries, one column pair per open mode.
fn scaling_table(doc: &Value, cache: &str) -> String {
    let rows = doc["scaling"].as_array().cloned().unwrap_or_default();
    let Some(first) = rows.first() else {
        return String::new();
    };
    let modes: Vec<String> = first["engines"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let mut s = format!(
        "#### chunkwal: open time by entries ({} B payloads, {cache} page cache)\n\n\
         | entries | chunks | on disk, MiB |",
        first["payload"]
    );
    for m in &modes {
        s += &format!(" {m} open ms | {m} ms / chunk | {m} heap B/entry |");
    }
    s += "\n|---:|---:|---:|";
    s += &"---:|---:|---:|".repeat(modes.len());
    s += "\n";
    for row in &rows {
        let first_mode = &row["engines"][modes[0].as_str()];
        let chunks = f(&first_mode[cache]["chunks"]);
        s += &format!(
            "| {} | {} | {} |",
            count(&row["entries"]),
            int(&first_mode[cache]["chunks"]),
            mib(&first_mode["build"]["disk_bytes"])
        );
        for m in &modes {
            let p = &row["engines"][m.as_str()][cache];
            let per_chunk = match (f(&p["open_secs"]), chunks) {
                (Some(t), Some(c)) if c > 0.0 => Some(t * 1e3 / c),
                _ => None,
            };
            s += &format!(
                " {} | {} | {} |",
                ms(&p["open_secs"]),
                fmt(per_chunk),
                fmt(f(&p["heap_per_entry"]))
            );
        }
        s += "\n";
    }
    s
}

/// The whole generated section.
pub fn section(doc: &Value, title: Option<&str>) -> String {
    let mut s = header(doc, title);
    let caches: &[&str] = if doc["cold"].as_bool() == Some(true) {
        &["warm", "cold"]
    } else {
        &["warm"]
    };
    for cache in caches {
        if doc["sizes"].as_array().is_some_and(|a| !a.is_empty()) {
            s += &compare_table(doc, cache);
            s += "\n";
        }
        let t = scaling_table(doc, cache);
        if !t.is_empty() {
            s += &t;
            s += "\n";
        }
    }
    s
}
