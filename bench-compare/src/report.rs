//! The comparison table and chunkwal-to-peer ratios.

use serde_json::{json, Value};

/// (json path under each engine, label, higher is better)
pub const METRICS: &[(&str, &str, bool)] = &[
    (
        "durable_batch.entries_per_s",
        "durable 64x256B batches, entries/s",
        true,
    ),
    (
        "durable_batch.mb_per_s",
        "durable 64x256B batches, MB/s",
        true,
    ),
    (
        "durable_batch.batch_latency.p50_us",
        "durable batch latency p50, us",
        false,
    ),
    (
        "durable_batch.batch_latency.p99_us",
        "durable batch latency p99, us",
        false,
    ),
    (
        "durable_batch.batch_latency.p999_us",
        "durable batch latency p99.9, us",
        false,
    ),
    (
        "durable_batch.device.per_payload_byte",
        "durable batches, device bytes / payload byte",
        false,
    ),
    (
        "durable_single.latency.p50_us",
        "durable single entry p50, us",
        false,
    ),
    (
        "durable_single.latency.p99_us",
        "durable single entry p99, us",
        false,
    ),
    (
        "durable_single.latency.p999_us",
        "durable single entry p99.9, us",
        false,
    ),
    (
        "durable_single.device.per_payload_byte",
        "durable singles, device bytes / payload byte",
        false,
    ),
    (
        "buffered.entries_per_s",
        "buffered appends, entries/s",
        true,
    ),
    ("buffered.mb_per_s", "buffered appends, MB/s", true),
    (
        "warm_read.entries_per_s",
        "warm reads (ranges of 64), entries/s",
        true,
    ),
    ("reopen.open_secs", "reopen, s", false),
    (
        "reopen.rss_per_entry",
        "RSS after reopen, bytes/entry",
        false,
    ),
    (
        "reopen.anon_per_entry",
        "anon RSS after reopen, bytes/entry",
        false,
    ),
];

pub fn get(v: &Value, path: &str) -> Option<f64> {
    path.split('.')
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_f64)
}

pub fn fmt(x: Option<f64>) -> String {
    match x {
        None => "n/a".into(),
        Some(x) if x.is_nan() => "n/a".into(),
        Some(x) if x.abs() >= 1e5 => format!("{:.0}k", x / 1e3),
        Some(x) if x.abs() >= 100.0 => format!("{x:.0}"),
        Some(x) if x.abs() >= 1.0 => format!("{x:.2}"),
        Some(x) => format!("{x:.3}"),
    }
}

/// Add `ratios`: for each metric, chunkwal / peer for every peer, and the best peer.
pub fn with_ratios(mut doc: Value) -> Value {
    let res = doc["results"].clone();
    let Some(cw) = res.get("chunkwal") else {
        return doc;
    };
    let mut out = serde_json::Map::new();
    for (path, label, higher) in METRICS {
        let Some(c) = get(cw, path) else { continue };
        let mut peers = serde_json::Map::new();
        let mut best: Option<(String, f64)> = None;
        for (name, v) in res.as_object().into_iter().flatten() {
            if name == "chunkwal" {
                continue;
            }
            let Some(p) = get(v, path) else { continue };
            peers.insert(name.clone(), json!(c / p));
            let better = match &best {
                None => true,
                Some((_, b)) => (p > *b) == *higher,
            };
            if better {
                best = Some((name.clone(), p));
            }
        }
        out.insert(
            (*path).into(),
            json!({
                "label": label,
                "higher_is_better": higher,
                "chunkwal": c,
                "chunkwal_over_peer": peers,
                "best_peer": best.as_ref().map(|b| &b.0),
                "chunkwal_over_best_peer": best.map(|b| c / b.1),
            }),
        );
    }
    doc["ratios"] = Value::Object(out);
    doc
}

/// A Markdown table: one row per metric, one column per engine, then ratios.
pub fn table(doc: &Value) -> String {
    let res = &doc["results"];
    let names: Vec<&String> = res
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    let mut s = String::from("| metric |");
    for n in &names {
        s += &format!(" {n} |");
    }
    s += "\n|---|";
    s += &"---:|".repeat(names.len());
    s += "\n";
    for (path, label, _) in METRICS {
        s += &format!("| {label} |");
        for n in &names {
            s += &format!(" {} |", fmt(get(&res[n.as_str()], path)));
        }
        s += "\n";
    }
    s += "\nchunkwal / peer (higher-is-better metrics: >1 means chunkwal wins; \
          lower-is-better: <1 means chunkwal wins)\n\n| metric |";
    let peers: Vec<&&String> = names.iter().filter(|n| n.as_str() != "chunkwal").collect();
    for n in &peers {
        s += &format!(" {n} |");
    }
    s += " best peer |\n|---|";
    s += &"---:|".repeat(peers.len() + 1);
    s += "\n";
    for (path, label, _) in METRICS {
        let r = &doc["ratios"][*path];
        if r.is_null() {
            continue;
        }
        s += &format!("| {label} |");
        for n in &peers {
            s += &format!(" {} |", fmt(r["chunkwal_over_peer"][n.as_str()].as_f64()));
        }
        s += &format!(
            " {} ({}) |\n",
            fmt(r["chunkwal_over_best_peer"].as_f64()),
            r["best_peer"].as_str().unwrap_or("-")
        );
    }
    s
}

/// Element-wise median of same-shaped JSON documents (numbers: median; objects: per key;
/// anything else: the first run's value).
pub fn median_of(runs: &[Value]) -> Value {
    let Some(first) = runs.first() else {
        return Value::Null;
    };
    match first {
        Value::Number(_) => {
            let mut v: Vec<f64> = runs.iter().filter_map(Value::as_f64).collect();
            v.sort_by(f64::total_cmp);
            json!(v[v.len() / 2])
        }
        Value::Object(m) => Value::Object(
            m.keys()
                .map(|k| {
                    let sub: Vec<Value> = runs.iter().map(|r| r[k.as_str()].clone()).collect();
                    (k.clone(), median_of(&sub))
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

fn set(v: &mut Value, path: &str, x: f64) {
    let mut cur = v;
    for k in path.split('.') {
        if !cur.is_object() {
            return;
        }
        cur = &mut cur[k];
    }
    *cur = json!(x);
}

/// Like [`median_of`], but every metric of [`METRICS`] takes its best round (max for
/// higher-is-better, min otherwise): each engine's capability when the shared disk was quiet.
pub fn best_of(runs: &[Value]) -> Value {
    let mut out = median_of(runs);
    for (path, _, higher) in METRICS {
        let vals: Vec<f64> = runs.iter().filter_map(|r| get(r, path)).collect();
        if vals.is_empty() {
            continue;
        }
        let b = if *higher {
            vals.iter().copied().fold(f64::MIN, f64::max)
        } else {
            vals.iter().copied().fold(f64::MAX, f64::min)
        };
        set(&mut out, path, b);
    }
    out
}
