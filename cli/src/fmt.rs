//! Human-readable sizes, rates and durations, hex previews, and aligned text tables.

use std::io::{self, Write};
use std::time::Duration;

/// `1536` -> `1.5 KiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

/// Parse a size such as `65536`, `64K`, `64KiB`, `64MiB`, `1G` (binary units).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size (try 65536, 64KiB, 64MiB, 1GiB)"))?;
    let mul: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown size unit `{other}` (use K, M or G)")),
    };
    n.checked_mul(mul)
        .ok_or_else(|| format!("`{s}` is too large"))
}

/// A count with a k/M/G suffix: `1234567` -> `1.23 M`.
pub fn count(v: f64) -> String {
    if v >= 1e9 {
        format!("{:.2} G", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// Entries per second, e.g. `1.23 M entries/s`.
pub fn per_sec(n: u64, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s > 0.0 {
        n as f64 / s
    } else {
        0.0
    }
}

/// Bytes per second in MiB/s (the unit the tables use).
pub fn mib_per_sec(bytes: u64, d: Duration) -> f64 {
    per_sec(bytes, d) / (1024.0 * 1024.0)
}

/// `1.5 ms`, `230 µs`, `2.10 s`.
pub fn duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns < 1_000 {
        format!("{ns} ns")
    } else if ns < 1_000_000 {
        format!("{:.1} µs", ns as f64 / 1e3)
    } else if ns < 1_000_000_000 {
        format!("{:.2} ms", ns as f64 / 1e6)
    } else {
        format!("{:.2} s", ns as f64 / 1e9)
    }
}

/// Microseconds as a float, for JSON.
pub fn micros(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1e3
}

/// Lower-case hex of all of `b`.
pub fn hex(b: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

/// Hex of at most `max` bytes, with `…` when cut.
pub fn hex_preview(b: &[u8], max: usize) -> String {
    if b.len() <= max {
        hex(b)
    } else {
        format!("{}…", hex(&b[..max]))
    }
}

/// The `p`-th percentile (0..=100) of sorted samples; zero for none.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// A text table: a header row, then rows, columns padded to their widest cell. The first
/// column is left-aligned, the others right-aligned (they hold numbers).
pub struct Table {
    rows: Vec<Vec<String>>,
    all_left: bool,
}

impl Table {
    /// A table with these column headers.
    pub fn new(header: &[&str]) -> Self {
        Table {
            rows: vec![header.iter().map(|s| s.to_string()).collect()],
            all_left: false,
        }
    }

    /// Left-align every column (for field/value tables).
    pub fn all_left(mut self) -> Self {
        self.all_left = true;
        self
    }

    /// Add a row; missing cells print empty.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Print with a rule under the header.
    pub fn print(&self, out: &mut dyn Write) -> io::Result<()> {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0usize; cols];
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
        for (n, r) in self.rows.iter().enumerate() {
            let mut line = String::new();
            for (i, w) in widths.iter().enumerate() {
                let c = r.get(i).map_or("", String::as_str);
                let pad = w - c.chars().count();
                if i > 0 {
                    line.push_str("  ");
                }
                if i == 0 || self.all_left {
                    line.push_str(c);
                    line.push_str(&" ".repeat(pad));
                } else {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(c);
                }
            }
            writeln!(out, "{}", line.trim_end())?;
            if n == 0 {
                let total = widths.iter().sum::<usize>() + 2 * cols.saturating_sub(1);
                writeln!(out, "{}", "-".repeat(total))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_read_well() {
        assert_eq!(bytes(12), "12 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(64 << 20), "64.0 MiB");
        assert_eq!(count(1_234_567.0), "1.23 M");
        assert_eq!(duration(Duration::from_micros(1500)), "1.50 ms");
        assert_eq!(hex_preview(&[1, 2, 3], 2), "0102…");
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("12 parsecs").is_err());
    }

    #[test]
    fn percentile_picks_ranks() {
        let v: Vec<_> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 50.0), Duration::from_millis(51));
        assert_eq!(percentile(&v, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }
}
