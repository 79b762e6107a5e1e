//! Open, step by step: lock the directory, list and replay the chunks, then (only once
//! everything checked out) change files, resume the tail and start the worker.

use std::sync::Arc;

use parking_lot::RwLock;

use super::replay::{replay, Listing, Replayed};
use super::resume::{resume, Tail0};
use crate::chunk::{sync_dir, Chunk};
use crate::config::Config;
use crate::core::groups::GroupStates;
use crate::core::prefault::Prefaulter;
use crate::core::shared::{Counters, Shared};
use crate::core::writer::Writer;
use crate::error::{Error, Result};
use crate::flush::{spawn, DurableState, Poison, SyncOwner};
use crate::format::HEADER_LEN;
use crate::index::PayloadCache;
use crate::observe::Metrics;

/// Everything open produces.
pub(crate) struct Recovered {
    pub writer: Writer,
    /// The directory lock; every mapping of the log holds it too.
    pub lock: Arc<std::fs::File>,
    /// What recovery found, for the open span: `"new"` (no chunk yet), `"clean"`,
    /// `"torn tail cut"` or `"adopted"` (a chunk whose install was cut short).
    pub recovery: &'static str,
    /// Sealed chunks open replayed without checking their records' CRCs
    /// ([`crate::VerifyOnOpen::Lazy`]), oldest first, for the background verifier.
    pub unverified: Vec<Arc<Chunk>>,
}

/// Open (or create) the log described by `config`.
pub(crate) fn open(config: Config) -> Result<Recovered> {
    config.validate()?;
    prepare_dir(&config)?;
    let lock = Arc::new(crate::chunk::lock_dir(&config.dir)?);
    let mut listing = Listing::read(&config)?;
    let replayed = replay(&config, &mut listing)?;
    // Only now that the log replayed and every check passed does open change files: a
    // failed open leaves every file as it was.
    let metrics = Arc::new(Metrics::register());
    let owner = sync_owner(&config, &listing, &metrics)?;
    let Replayed {
        index,
        chunks,
        state,
        groups,
        mut metas,
        tail,
        adopted,
        unverified,
    } = replayed;
    let last_index = state.last.map(|l| l.index);
    let (tail, recovery) = resume(
        &config, &owner, &chunks, &mut metas, tail, &adopted, last_index,
    )?;
    let shared = Arc::new(Shared {
        dir: config.dir.clone(),
        index,
        cache: PayloadCache::new(config.cache_max_items, config.cache_max_bytes)
            .with_metrics(Arc::clone(&metrics)),
        chunks,
        state: RwLock::new(state.clone()),
        groups: groups.published(),
        poison: Arc::clone(owner.poison()),
        durable: Arc::clone(owner.durable()),
        counters: Counters::default(),
        io: Arc::clone(owner.files().io()),
        metrics,
        _lock: Arc::clone(&lock),
    });
    shared.metrics.chunks_added(shared.chunks.len());
    let writer = start_writer(config, shared, owner, tail, metas, (state, groups))?;
    Ok(Recovered {
        writer,
        lock,
        recovery,
        unverified,
    })
}

fn prepare_dir(config: &Config) -> Result<()> {
    let dir = &config.dir;
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::NotADirectory { path: dir.clone() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !config.create_if_missing {
                return Err(Error::NoSuchDirectory { path: dir.clone() });
            }
            std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
            Ok(())
        }
        Err(e) => Err(Error::io("stat directory", dir, e)),
    }
}

/// The sync owner of the opened log, once the leftovers it found are removed.
fn sync_owner(
    config: &Config,
    listing: &Listing,
    metrics: &Arc<Metrics>,
) -> Result<Arc<SyncOwner>> {
    let poison = Arc::new(Poison::with_metrics(Arc::clone(metrics)));
    let durable = Arc::new(DurableState::new(0, None));
    let files = config
        .files()
        .with_pool(config.recycle_chunks, &listing.spares);
    let owner = Arc::new(
        SyncOwner::new(files.with_metrics(Arc::clone(metrics)), durable, poison)
            .warn_slower_than(config.slow_sync_warn),
    );
    // Leftovers (unused spares, a blank newest chunk) go first: a new first chunk may take
    // a blank one's name.
    owner.files().remove_leftovers(&listing.leftovers)?;
    // The names listed above may not be durable yet: a process that died between a
    // retirement's rename and its directory fsync leaves a spare whose rename a power loss
    // can still undo. Reusing it before the fsync would put a new chunk's header and records
    // under the old chunk's name (found by `power_loss_recycle`). So sync the directory
    // before any spare can be taken (removing leftovers synced it already).
    if !listing.spares.is_empty() && listing.leftovers.is_empty() {
        owner.files().sync_dir()?;
    }
    Ok(owner)
}

/// The writer, with its worker and prefault threads running; a sealed tail is rotated
/// away and a fresh one gets its state image.
fn start_writer(
    config: Config,
    shared: Arc<Shared>,
    owner: Arc<SyncOwner>,
    tail: Tail0,
    metas: std::collections::VecDeque<crate::core::writer::ChunkMeta>,
    (state, groups): (crate::types::LogState, GroupStates),
) -> Result<Writer> {
    let Tail0 {
        chunk: active,
        w,
        end,
        sealed,
        footer,
        ..
    } = tail;
    let worker = spawn(Arc::clone(&owner), config.flush_batch_max)?;
    let prefault = Prefaulter::start(Arc::clone(&shared.poison));
    let mut writer = Writer {
        shared,
        config,
        active,
        w,
        metas,
        state,
        groups,
        gen: 0,
        owner,
        worker,
        spare: None,
        prefault,
        stage: Vec::new(),
        staged: 0,
        footer,
    };
    if sealed {
        writer.rotate(false)?;
    } else if end == HEADER_LEN {
        writer.put_images()?;
    }
    Ok(writer)
}
