//! d-engine storage on chunkwal: `LogStore`, `MetaStore` and `StorageEngine` (feature `d-engine`).

mod codec;
mod engine;
mod entry;
mod stores;

pub use codec::{decode_hard_state, encode_hard_state, D_HARD_STATE_LEN};
pub use engine::ChunkwalStorageEngine;
pub use stores::{ChunkwalLogStore, ChunkwalMetaStore};
