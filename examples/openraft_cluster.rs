//! A 3-node openraft cluster in one process, each node logging to its own chunkwal
//! directory: elect, write a few thousand entries, restart a follower, watch it catch up.
//!
//! `cargo run --release --example openraft_cluster --features openraft [-- ENTRIES WRITERS]`

#[path = "support/openraft_cluster.rs"]
mod cluster;
#[path = "support/openraft_kv.rs"]
mod kv;

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut args = std::env::args().skip(1);
    let entries: u64 = args.next().map_or(Ok(5000), |a| a.parse())?;
    let writers: usize = args.next().map_or(Ok(32), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(cluster::run_cluster(dir.path(), entries, writers))?;
    println!("{report}");
    Ok(())
}
