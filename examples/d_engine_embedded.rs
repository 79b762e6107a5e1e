//! Start an embedded single-node d-engine whose Raft log lives in chunkwal, write keys
//! through Raft and read them back.
//!
//! `cargo run --release --features d-engine --example d_engine_embedded [DIR]`
//! (DIR defaults to a temporary directory).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chunkwal::integrations::d_engine::ChunkwalStorageEngine;
use chunkwal::LogId;
use d_engine::{EmbeddedEngine, FileStateMachine, StorageEngine};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn err(e: impl std::fmt::Debug) -> BoxError {
    format!("{e:?}").into()
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let tmp = tempfile::tempdir()?;
    let dir = std::env::args()
        .nth(1)
        .map_or_else(|| tmp.path().to_path_buf(), Into::into);
    let keys = 200u32;

    let storage = Arc::new(ChunkwalStorageEngine::new(dir.join("raft-log"))?);
    let log = storage.log_store();
    let sm = Arc::new(FileStateMachine::new(dir.join("state-machine")).await?);
    let engine = EmbeddedEngine::start_custom(storage, sm, None).await?;
    let leader = engine.wait_ready(Duration::from_secs(30)).await?;
    println!(
        "leader {} elected in term {}",
        leader.leader_id, leader.term
    );

    let client = engine.client();
    let t = Instant::now();
    for i in 0..keys {
        client
            .put(format!("key-{i}"), format!("value-{i}"))
            .await
            .map_err(err)?;
    }
    let put = t.elapsed();
    for i in 0..keys {
        let got = client
            .get_linearizable(format!("key-{i}"))
            .await
            .map_err(err)?;
        if got.as_deref() != Some(format!("value-{i}").as_bytes()) {
            return Err(format!("key-{i}: read back {got:?}").into());
        }
    }
    let a = log.adapter();
    println!(
        "{keys} puts in {put:?}, all read back; raft log last index {}, durable {:?}",
        a.last_index(),
        a.durable_index()
    );
    let st = a.log_state();
    if st.last.map_or(0, |l: LogId| l.index) < u64::from(keys) {
        return Err("raft log holds fewer entries than puts".into());
    }
    engine.stop().await?;
    println!("ok");
    Ok(())
}
