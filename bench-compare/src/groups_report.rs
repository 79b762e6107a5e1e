//! Markdown tables of the `groups` bench (issue #15), with chunkwal / raft-engine ratios
//! and the issue's targets next to them.

use serde_json::Value;

use crate::groups::BASELINE;
use crate::report::{fmt, get};

/// (json path under an engine, label, scale, target on chunkwal / baseline: (op, bound)).
type Metric = (&'static str, &'static str, f64, Option<(&'static str, f64)>);

const METRICS: &[Metric] = &[
    (
        "entries_per_s",
        "durable all-group batches, entries/s",
        1.0,
        Some((">=", 1.5)),
    ),
    (
        "mb_per_s",
        "durable all-group batches, payload MB/s",
        1.0,
        None,
    ),
    ("batch_latency.p50_us", "batch latency p50, us", 1.0, None),
    ("batch_latency.p99_us", "batch latency p99, us", 1.0, None),
    ("batch_latency.max_us", "batch latency max, us", 1.0, None),
    (
        "device.per_payload_byte",
        "device bytes / payload byte",
        1.0,
        None,
    ),
    (
        "reopen.open_secs",
        "reopen (fresh process), ms",
        1e3,
        Some(("<=", 0.5)),
    ),
    (
        "reopen.heap_per_entry",
        "heap left by the open, bytes/entry",
        1.0,
        Some(("<=", 1.0)),
    ),
    (
        "reopen.heap_peak_bytes",
        "heap peak during the open, MB",
        1e-6,
        None,
    ),
];

fn verdict(ratio: Option<f64>, target: Option<(&str, f64)>) -> String {
    match (ratio, target) {
        (Some(r), Some((op, b))) if r.is_finite() => {
            let met = if op == ">=" { r >= b } else { r <= b };
            format!("{op} {b}x: {}", if met { "**met**" } else { "**missed**" })
        }
        (_, Some((op, b))) => format!("{op} {b}x"),
        _ => String::new(),
    }
}

fn names(engines: &Value) -> Vec<String> {
    engines
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// Sorted so chunkwal comes first and the baseline second.
fn ordered(mut v: Vec<String>) -> Vec<String> {
    let rank = |n: &str| match n {
        "chunkwal" => 0,
        BASELINE => 1,
        _ => 2,
    };
    v.sort_by_key(|n| (rank(n), n.clone()));
    v
}

fn ratio(engines: &Value, path: &str, peer: &str) -> Option<f64> {
    Some(get(&engines["chunkwal"], path)? / get(&engines[peer], path)?)
}

/// One table row per (group count, metric).
fn throughput_table(doc: &Value) -> String {
    let Some(first) = doc["throughput"].as_array().and_then(|a| a.first()) else {
        return String::new();
    };
    let eng = ordered(names(&first["engines"]));
    let peers: Vec<&String> = eng.iter().filter(|e| *e != "chunkwal").collect();
    let mut s = String::from("| groups | metric |");
    for e in &eng {
        s += &format!(" {e} |");
    }
    for p in &peers {
        s += &format!(" chunkwal / {p} |");
    }
    s += " target (chunkwal / raft-engine) |\n|---:|---|";
    s += &"---:|".repeat(eng.len() + peers.len());
    s += "---|\n";
    for g in doc["throughput"].as_array().into_iter().flatten() {
        let e = &g["engines"];
        for (path, label, scale, target) in METRICS {
            s += &format!("| {} | {label} |", g["groups"]);
            for n in &eng {
                s += &format!(" {} |", fmt(get(&e[n.as_str()], path).map(|x| x * scale)));
            }
            for p in &peers {
                s += &format!(" {} |", fmt(ratio(e, path, p)));
            }
            s += &format!(" {} |\n", verdict(ratio(e, path, BASELINE), *target));
        }
    }
    s
}

fn mib(x: Option<f64>) -> String {
    fmt(x.map(|b| b / (1u64 << 20) as f64))
}

fn count(v: &Value) -> String {
    v.as_f64().map_or("n/a".into(), |x| format!("{x:.0}"))
}

fn lag_table(doc: &Value) -> String {
    let Some(runs) = doc["lagging"].as_array().filter(|a| !a.is_empty()) else {
        return String::new();
    };
    let mut s = String::from(
        "| groups | engine | threshold T, MiB | segment, MiB | payload written, MiB | \
         peak disk / T | final disk / T | peak allocated / T | maintenance named the laggard \
         (of calls) | laggard still readable | device bytes / payload byte | target |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|\n",
    );
    for g in runs {
        let t = g["threshold"].as_f64().unwrap_or(f64::NAN);
        for e in ordered(names(&g["engines"])) {
            let v = &g["engines"][e.as_str()];
            let peak = get(v, "peak_over_threshold");
            s += &format!(
                "| {} | {e} | {} | {} | {} | {} | {} | {} | {} of {} | {} | {} | {} |\n",
                g["groups"],
                mib(Some(t)),
                mib(g["chunk"].as_f64()),
                mib(get(v, "payload_bytes")),
                fmt(peak),
                fmt(get(v, "final_over_threshold")),
                fmt(get(v, "peak_alloc_bytes").map(|b| b / t)),
                count(&v["laggard_named"]),
                count(&v["maintenance_calls"]),
                v["laggard_readable"],
                fmt(get(v, "device.per_payload_byte")),
                verdict(peak, Some(("<=", 2.0))).replace("x:", " T:"),
            );
        }
    }
    s
}

fn memory_table(doc: &Value) -> String {
    let m = &doc["memory"];
    if m.is_null() {
        return String::new();
    }
    let mut s = format!(
        "{} groups x {} entries of {} B, written in one batch with one sync, opened in a \
         fresh process (median of the rounds):\n\n\
         | engine | open, ms | heap left by the open, MB | bytes / group | bytes / entry |\n\
         |---|---:|---:|---:|---:|\n",
        m["groups"],
        m["entries_per_group"],
        crate::groups::PAYLOAD,
    );
    for e in ordered(names(&m["engines"])) {
        let v = &m["engines"][e.as_str()];
        s += &format!(
            "| {e} | {} | {} | {} | {} |\n",
            fmt(get(v, "open_secs").map(|x| x * 1e3)),
            fmt(get(v, "heap_live_bytes").map(|x| x / 1e6)),
            fmt(get(v, "heap_per_group")),
            fmt(get(v, "heap_per_entry")),
        );
    }
    s
}

/// The generated section: header, throughput / reopen / memory, lagging group, many groups.
pub fn section(doc: &Value, title: Option<&str>) -> String {
    let title = title.unwrap_or("Multi-group run");
    let mut s = format!(
        "### {title}\n\nStarted {}, {} interleaved rounds of {} all-group batches per engine \
         and group count; every figure is the median of the rounds. Directory `{}` ({} on \
         `{}`), {} vCPU `{}`, load average at start `{}`, at end `{}`; the run took {:.0} s.\n\n\
         ```sh\nflock /tmp/chunkwal-build.lock {}\n```\n\n",
        doc["started"].as_str().unwrap_or("?"),
        doc["rounds"],
        doc["batches"],
        doc["dir"].as_str().unwrap_or("?"),
        doc["mount"]["fstype"].as_str().unwrap_or("?"),
        doc["mount"]["source"].as_str().unwrap_or("?"),
        doc["machine"]["nproc"],
        doc["machine"]["cpu"].as_str().unwrap_or("?"),
        doc["machine"]["loadavg_at_start"].as_str().unwrap_or("?"),
        doc["loadavg_at_end"].as_str().unwrap_or("?"),
        doc["run_secs"].as_f64().unwrap_or(f64::NAN),
        crate::tables::command(doc),
    );
    s += "#### 16 x 256 B per group per batch, one sync per batch\n\n";
    s += &throughput_table(doc);
    let lag = lag_table(doc);
    if !lag.is_empty() {
        s += "\n#### Disk use with one lagging group\n\n";
        s += &lag;
    }
    let mem = memory_table(doc);
    if !mem.is_empty() {
        s += "\n#### Memory per group, many short logs\n\n";
        s += &mem;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn verdicts_follow_the_target_direction() {
        assert!(verdict(Some(1.6), Some((">=", 1.5))).contains("met"));
        assert!(verdict(Some(1.4), Some((">=", 1.5))).contains("missed"));
        assert!(verdict(Some(0.4), Some(("<=", 0.5))).contains("met"));
        assert!(verdict(Some(0.6), Some(("<=", 0.5))).contains("missed"));
        assert_eq!(verdict(None, Some(("<=", 0.5))), "<= 0.5x");
        assert_eq!(verdict(Some(1.0), None), "");
    }

    #[test]
    fn table_has_chunkwal_first_and_ratios_to_the_baseline() {
        let doc = json!({ "throughput": [{ "groups": 100, "engines": {
            "raft-engine": { "entries_per_s": 100.0, "reopen": { "open_secs": 0.2 } },
            "chunkwal": { "entries_per_s": 200.0, "reopen": { "open_secs": 0.05 } },
        }}]});
        let t = throughput_table(&doc);
        let head = t.lines().next().unwrap();
        assert!(
            head.find("chunkwal").unwrap() < head.find("raft-engine").unwrap(),
            "{head}"
        );
        let row = t.lines().find(|l| l.contains("entries/s")).unwrap();
        assert!(row.contains("| 2.00 |") && row.contains("**met**"), "{row}");
        let row = t.lines().find(|l| l.contains("reopen")).unwrap();
        assert!(
            row.contains("| 0.250 |") && row.contains("**met**"),
            "{row}"
        );
    }
}
