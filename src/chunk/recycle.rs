//! Chunk recycling: purged chunk files kept as spares (`{seq:020}.free`) and reused as new
//! chunks, so that appends land in blocks that are already written and a sync converts no
//! extent (see `docs/durability.md` §14).
//!
//! A spare is reused only when it is safe to overwrite:
//! - no mapping of it is alive in this process (readers' zero-copy slices keep a purged
//!   chunk's mapping alive, and published bytes must never change under them);
//! - its header is intact, of the configured size, and carries the epoch tag that its
//!   sequence number gives ([`tag_for_seq`]). Every record it still holds then carries the
//!   tag of a sequence number below the new one, and tags of distinct sequence numbers
//!   differ, so none of its old records can ever be taken for a record of the new chunk.

use std::collections::VecDeque;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Weak;

use parking_lot::Mutex;

use super::handle::read_prefix;
use super::mmap::Region;
use crate::error::{Error, Result};
use crate::format::{ChunkHeader, FORMAT_VERSION, HEADER_LEN};

/// File name suffix of a spare (a purged chunk kept for reuse).
pub const FREE_SUFFIX: &str = ".free";

/// Path of the spare made from chunk `seq`.
pub fn free_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}{FREE_SUFFIX}"))
}

/// The sequence number in a spare's file name.
pub fn parse_free_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(FREE_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The epoch tag of chunk `seq`: distinct for distinct sequence numbers (multiplication by
/// an odd constant is a bijection on `u32`, and sequence numbers fit in 32 bits), and zero
/// only for the last possible one.
pub fn tag_for_seq(seq: u64) -> u32 {
    (seq as u32).wrapping_add(1).wrapping_mul(0x9E37_79B1)
}

/// One spare.
#[derive(Debug)]
struct Spare {
    /// The sequence number it had as a chunk (its file name).
    seq: u64,
    /// Its mapping as a chunk, if it was purged in this process: reusable only once dead.
    region: Option<Weak<Region>>,
}

/// The spares of a log directory, oldest first, at most `keep`.
#[derive(Debug, Default)]
pub struct Pool {
    keep: usize,
    spares: Mutex<VecDeque<Spare>>,
}

impl Pool {
    /// A pool keeping at most `keep` spares, starting with the spares `found` at open.
    pub fn new(keep: usize, found: &[u64]) -> Pool {
        let spares = found
            .iter()
            .take(keep)
            .map(|&seq| Spare { seq, region: None })
            .collect();
        Pool {
            keep,
            spares: Mutex::new(spares),
        }
    }

    /// How many spares it holds.
    pub fn count(&self) -> usize {
        self.spares.lock().len()
    }

    /// Whether another spare fits.
    pub fn has_room(&self) -> bool {
        self.count() < self.keep
    }

    /// Add chunk `seq` (just renamed to its spare name), whose mapping was `region`.
    pub fn push(&self, seq: u64, region: Weak<Region>) {
        self.spares.lock().push_back(Spare {
            seq,
            region: Some(region),
        });
    }

    /// Take the oldest spare that no live mapping refers to.
    ///
    /// A purged chunk leaves the read path's skip list at once, but the list frees the
    /// removed node (which holds the chunk, and so its mapping) only once crossbeam-epoch
    /// collects it, after every reader that could still see the node is done. When every
    /// spare looks mapped, that collection is pushed along (a few pin-and-flush rounds,
    /// which never free anything still reachable) before the answer is taken as final.
    pub fn take(&self) -> Option<u64> {
        for round in 0..4 {
            let mut s = self.spares.lock();
            if s.is_empty() {
                return None;
            }
            let free = s
                .iter()
                .position(|sp| sp.region.as_ref().is_none_or(|r| r.strong_count() == 0));
            if let Some(i) = free {
                return s.remove(i).map(|sp| sp.seq);
            }
            drop(s);
            if round < 3 {
                crossbeam_epoch::pin().flush();
            }
        }
        None
    }
}

/// Turn the spare made from chunk `old`, already renamed to `tmp`, into chunk `seq`: check
/// it (see the module docs), write and sync the new header. `Ok(None)`: not reusable (the
/// caller removes it).
pub fn reuse_as(
    tmp: &Path,
    old: u64,
    seq: u64,
    size: u64,
    header: ChunkHeader,
) -> Result<Option<File>> {
    use std::os::unix::fs::FileExt;
    let f = super::file::open_regular(tmp, true)?;
    let len = f
        .metadata()
        .map_err(|e| Error::io("stat spare chunk", tmp, e))?
        .len();
    let mut head = [0u8; HEADER_LEN];
    let n = read_prefix(&f, &mut head).map_err(|e| Error::io("read spare chunk", tmp, e))?;
    let Ok(was) = ChunkHeader::decode(&head[..n]) else {
        return Ok(None);
    };
    let fits = len == size
        && was.chunk_size == size
        && was.chunk_seq == old
        && old < seq
        && was.version <= FORMAT_VERSION
        && was.epoch_tag() == tag_for_seq(old);
    if !fits {
        return Ok(None);
    }
    f.write_all_at(&header.encode(), 0)
        .map_err(|e| Error::io("write chunk header", tmp, e))?;
    f.sync_data()
        .map_err(|e| Error::io("sync chunk header", tmp, e))?;
    Ok(Some(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_of_distinct_seqs_differ_and_only_the_last_is_zero() {
        let mut seen = std::collections::HashSet::new();
        for seq in (0..200_000u64).chain(crate::types::MAX_CHUNK_SEQ - 1000..) {
            if seq > crate::types::MAX_CHUNK_SEQ {
                break;
            }
            assert!(seen.insert(tag_for_seq(seq)), "seq {seq}");
            assert_eq!(tag_for_seq(seq) == 0, seq == crate::types::MAX_CHUNK_SEQ);
        }
    }

    #[test]
    fn spare_names_round_trip() {
        let p = free_path(Path::new("/x"), 42);
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        assert_eq!(parse_free_name(name), Some(42));
        assert_eq!(parse_free_name("42.free"), None);
        assert_eq!(parse_free_name("00000000000000000042.chunk"), None);
    }
}
