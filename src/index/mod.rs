//! The entry index (a lock-free `SkipMap`) and the bounded payload cache.

mod cache;
mod entries;
mod run;

pub use cache::{CacheCursor, CacheStat, PayloadCache};
pub use entries::{EntryIndex, Loc};
