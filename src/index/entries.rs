//! `SkipMap` from log index to where the entry's record lives.

use crossbeam_skiplist::SkipMap;

/// Where an entry lives: 24 bytes per entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    /// The entry's term.
    pub term: u64,
    /// Chunk sequence number.
    pub chunk: u64,
    /// Offset of the record in the chunk.
    pub offset: u32,
    /// Payload length in bytes.
    pub len: u32,
}

impl Loc {
    /// A total order over write positions; later writes compare greater.
    pub fn pos(&self) -> u64 {
        (self.chunk << 32) | u64::from(self.offset)
    }
}

/// Index over live entries. Readers on any thread; one writer.
#[derive(Debug, Default)]
pub struct EntryIndex {
    map: SkipMap<u64, Loc>,
}

impl EntryIndex {
    /// Insert or replace.
    pub fn insert(&self, index: u64, loc: Loc) {
        self.map.insert(index, loc);
    }

    /// Look one up.
    pub fn get(&self, index: u64) -> Option<Loc> {
        self.map.get(&index).map(|e| *e.value())
    }

    /// Entries in `[from, to)`, in order.
    pub fn range(&self, from: u64, to: u64) -> impl Iterator<Item = (u64, Loc)> + '_ {
        self.map.range(from..to).map(|e| (*e.key(), *e.value()))
    }

    /// Remove every entry with index >= `since`.
    pub fn remove_from(&self, since: u64) {
        while let Some(e) = self.map.back() {
            if *e.key() < since {
                break;
            }
            e.remove();
        }
    }

    /// Remove every entry with index <= `upto`.
    pub fn remove_upto(&self, upto: u64) {
        while let Some(e) = self.map.front() {
            if *e.key() > upto {
                break;
            }
            e.remove();
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

}
