//! Device-level write accounting: bytes the block device holding the bench directory was
//! asked to write, from `/proc/diskstats`, so write amplification (file system metadata,
//! journal, preallocation, rewrites) shows next to the payload written.
//!
//! The device is found from the directory's `st_dev` (major:minor), which matches a line of
//! `/proc/diskstats` for whole disks, partitions, loop and device-mapper devices alike.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// Counters of one device at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub sectors_written: u64,
    pub writes: u64,
    /// Flush requests completed (kernel 5.5+; 0 where the line has no such field).
    pub flushes: u64,
}

/// The block device behind a directory.
#[derive(Debug, Clone)]
pub struct Device {
    pub major: u32,
    pub minor: u32,
    pub name: String,
    /// The directory: `syncfs` is called on its file system around each sample.
    dir: PathBuf,
}

fn major_minor(dev: u64) -> (u32, u32) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major as u32, minor as u32)
}

fn line_for(major: u32, minor: u32) -> io::Result<Option<Vec<String>>> {
    let text = std::fs::read_to_string("/proc/diskstats")?;
    Ok(text
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .find(|f| f.len() > 9 && f[0] == major.to_string() && f[1] == minor.to_string()))
}

impl Device {
    /// The device holding `dir`, or an error naming `major:minor` when no diskstats line
    /// matches (for example a file system on an anonymous device, such as btrfs or tmpfs).
    pub fn of(dir: &Path) -> io::Result<Device> {
        let (major, minor) = major_minor(std::fs::metadata(dir)?.dev());
        let f = line_for(major, minor)?.ok_or_else(|| {
            io::Error::other(format!(
                "{}: device {major}:{minor} has no line in /proc/diskstats",
                dir.display()
            ))
        })?;
        Ok(Device {
            major,
            minor,
            name: f[2].clone(),
            dir: dir.to_path_buf(),
        })
    }

    /// `syncfs` on the directory's file system (so writeback that earlier work left
    /// pending, or that the measured work queued, lands on the right side), then the
    /// counters.
    pub fn sample(&self) -> io::Result<Sample> {
        syncfs(&self.dir)?;
        let f = line_for(self.major, self.minor)?
            .ok_or_else(|| io::Error::other(format!("device {} vanished", self.name)))?;
        let num = |i: usize| f.get(i).and_then(|x| x.parse().ok()).unwrap_or(0);
        Ok(Sample {
            writes: num(7),
            sectors_written: num(9),
            flushes: num(18),
        })
    }
}

/// `syncfs(2)` on the file system holding `dir`.
pub fn syncfs(dir: &Path) -> io::Result<()> {
    let f = File::open(dir)?;
    // SAFETY: `f` is an open descriptor for the duration of the call.
    let r = unsafe { libc::syncfs(f.as_raw_fd()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Device writes between two samples, against `payload_bytes` of payload written.
pub fn delta_json(before: Sample, after: Sample, payload_bytes: u64) -> Value {
    let bytes = (after.sectors_written - before.sectors_written) * 512;
    json!({
        "device_bytes": bytes,
        "device_writes": after.writes - before.writes,
        "device_flushes": after.flushes - before.flushes,
        "payload_bytes": payload_bytes,
        "per_payload_byte": bytes as f64 / payload_bytes.max(1) as f64,
    })
}

/// Measures device writes around a piece of work, if the device is known.
pub struct Meter(Option<(Device, Sample)>);

impl Meter {
    /// Start counting (None device: the result is `null`).
    pub fn start(dev: Option<&Device>) -> io::Result<Meter> {
        Ok(Meter(match dev {
            Some(d) => Some((d.clone(), d.sample()?)),
            None => None,
        }))
    }

    /// Stop counting: the JSON of [`delta_json`], or null.
    pub fn stop(self, payload_bytes: u64) -> io::Result<Value> {
        match self.0 {
            Some((d, before)) => Ok(delta_json(before, d.sample()?, payload_bytes)),
            None => Ok(Value::Null),
        }
    }
}

/// The mount holding `dir`: `{source, fstype, options, mount_point}` from
/// `/proc/self/mountinfo` (the entry with the same major:minor and the longest mount
/// point that prefixes the directory).
pub fn mount_of(dir: &Path) -> Value {
    let Ok(meta) = std::fs::metadata(dir) else {
        return Value::Null;
    };
    let (major, minor) = major_minor(meta.dev());
    let want = format!("{major}:{minor}");
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut best: Option<(usize, Value)> = None;
    for l in text.lines() {
        let (left, right) = l.split_once(" - ").unwrap_or((l, ""));
        let f: Vec<&str> = left.split_whitespace().collect();
        let r: Vec<&str> = right.split_whitespace().collect();
        if f.len() < 6 || f[2] != want || !dir.starts_with(f[4]) {
            continue;
        }
        let len = f[4].len();
        if best.as_ref().is_some_and(|(b, _)| *b >= len) {
            continue;
        }
        let v = json!({
            "mount_point": f[4],
            "options": f[5],
            "fstype": r.first().copied().unwrap_or("?"),
            "source": r.get(1).copied().unwrap_or("?"),
            "super_options": r.get(2).copied().unwrap_or(""),
        });
        best = Some((len, v));
    }
    best.map(|b| b.1).unwrap_or(Value::Null)
}
