//! The non-default groups: each one's index and state, as readers see them ([`GroupLog`])
//! and as the writer and replay own them ([`GroupStates`]).

use std::collections::HashMap as StdMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;

use super::shared::{apply, apply_run, check_all};
use super::writer_groups::{image_of, size_in};
use crate::error::CorruptionKind;
use crate::format::{FooterBuilder, Record};
use crate::index::EntryIndex;
use crate::types::LogState;

/// Hashes a group id with one multiply (ids are u64 keys chosen by the application, not by
/// an attacker; SipHash costs a tenth of a replayed record).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (n ^ (n >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A map keyed by group id.
pub(crate) type HashMap<K, V> = StdMap<K, V, BuildHasherDefault<IdHasher>>;

/// One group's index and published state. Readers look it up per call in
/// [`Shared::groups`](super::shared::Shared): a group that is rewritten forward or removed
/// gets a new `GroupLog`, swapped in whole, so no reader ever sees half of a change.
#[derive(Debug, Default)]
pub(crate) struct GroupLog {
    pub index: EntryIndex,
    pub state: RwLock<LogState>,
}

/// The published map readers use: group id to its log (never the default group).
pub(crate) type GroupMap = RwLock<HashMap<u64, Arc<GroupLog>>>;

/// A group as the writer (or replay) owns it: the authoritative state and the log it
/// publishes to.
#[derive(Debug, Default)]
pub(crate) struct GroupW {
    pub state: LogState,
    pub log: Arc<GroupLog>,
    /// Encoded bytes of the group's state image (kept current by `GroupStates::apply`).
    pub image_len: usize,
}

/// Every non-default group, owned by the writer (and by replay before it).
#[derive(Debug, Default)]
pub(crate) struct GroupStates {
    pub map: HashMap<u64, GroupW>,
    /// Encoded bytes of every group's state image: what each new chunk starts with.
    pub images: usize,
}

impl GroupStates {
    /// Apply record `rec` of group `group` (not 0) at `(chunk, offset)`: replay's and the
    /// writer's one rule. A RemoveGroup record drops the group; any other record creates it
    /// if needed. `published` (the readers' map) follows every creation and removal.
    pub fn apply(
        &mut self,
        group: u64,
        rec: &Record<'_>,
        chunk: u64,
        offset: usize,
        published: Option<&GroupMap>,
    ) -> Result<(), CorruptionKind> {
        debug_assert_ne!(group, 0);
        if matches!(rec, Record::RemoveGroup) {
            if let Some(g) = self.map.remove(&group) {
                self.images -= g.image_len;
                if let Some(p) = published {
                    p.write().remove(&group);
                }
            }
            return Ok(());
        }
        let g = get_or_create(&mut self.map, group, published);
        let had_last = g.state.last.is_some();
        let r = apply(
            &mut g.state,
            &g.log.index,
            rec,
            chunk,
            offset,
            &mut Bytes::copy_from_slice,
        );
        // An entry changes the image's size only when the group had no last id before.
        if !(matches!(rec, Record::Entry { .. }) && had_last) || r.is_err() {
            resize_image(&mut self.images, group, g);
        }
        r
    }

    /// Apply a run of group `group` (a footer's, or consecutive entry records): entries `first, first + 1, ...` of `term` at
    /// `offsets` in chunk `chunk`, with the contiguity check `apply` makes of each entry.
    pub fn push_run(
        &mut self,
        group: u64,
        (first, term): (u64, u64),
        chunk: u64,
        offsets: &[u32],
        published: Option<&GroupMap>,
    ) -> Result<(), CorruptionKind> {
        let g = get_or_create(&mut self.map, group, published);
        if apply_run(&mut g.state, &g.log.index, (first, term), chunk, offsets)?.is_some() {
            resize_image(&mut self.images, group, g);
        }
        Ok(())
    }

    /// Check that `recs`, all of group `group`, would be accepted in order (see
    /// [`check_all`]); a RemoveGroup among them starts the rest from an empty group.
    pub fn check(&self, group: u64, recs: &[Record<'_>]) -> Result<(), CorruptionKind> {
        let empty = GroupW::default();
        let mut from = 0;
        let mut g = self.map.get(&group).unwrap_or(&empty);
        for (i, r) in recs.iter().enumerate() {
            if matches!(r, Record::RemoveGroup) {
                check_all(&g.state, &g.log.index, &recs[from..i])?;
                g = &empty;
                from = i + 1;
            }
        }
        check_all(&g.state, &g.log.index, &recs[from..])
    }

    /// Publish every group's state to its log (after the writer applied records).
    pub fn publish(&self, groups: impl IntoIterator<Item = u64>) {
        for id in groups {
            if let Some(g) = self.map.get(&id) {
                *g.log.state.write() = g.state.clone();
            }
        }
    }

    /// The published map for readers, built once after replay.
    pub fn published(&self) -> GroupMap {
        let map = self
            .map
            .iter()
            .map(|(&id, g)| {
                *g.log.state.write() = g.state.clone();
                (id, Arc::clone(&g.log))
            })
            .collect();
        RwLock::new(map)
    }

    /// The chunk holding group `g`'s first live entry, if it holds entries.
    pub fn first_chunk(g: &GroupW) -> Option<u64> {
        let first = g.log.index.first()?;
        g.log.index.get(first).map(|loc| loc.chunk)
    }

    /// The oldest chunk any group's live entries are in (`None`: no group holds entries),
    /// with a group that holds it.
    pub fn pin_floor(&self) -> Option<(u64, u64)> {
        self.map
            .iter()
            .filter_map(|(&id, g)| Self::first_chunk(g).map(|c| (c, id)))
            .min()
    }

    /// Group ids, ascending.
    pub fn ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.map.keys().copied().collect();
        ids.sort_unstable();
        ids
    }
}

/// Group `group` of `map`, created (and published to readers, given `published`) if new.
fn get_or_create<'m>(
    map: &'m mut HashMap<u64, GroupW>,
    group: u64,
    published: Option<&GroupMap>,
) -> &'m mut GroupW {
    map.entry(group).or_insert_with(|| {
        let g = GroupW::default();
        if let Some(p) = published {
            p.write().insert(group, Arc::clone(&g.log));
        }
        g
    })
}

/// Bring `g`'s image size, and the total `images`, up to date with its state.
fn resize_image(images: &mut usize, group: u64, g: &mut GroupW) {
    let len = size_in(group, &image_of(&g.state));
    *images = *images + len - g.image_len;
    g.image_len = len;
}

/// Record `rec` of group `group` at `offset` in a chunk's footer: a group's entries go
/// into its runs, its other records are Record items.
pub(crate) fn footer_push(b: &mut FooterBuilder, group: u64, rec: &Record<'_>, offset: u32) {
    b.push_in(group, rec, offset);
}
