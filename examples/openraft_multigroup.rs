//! 3 nodes x 16 openraft groups in one process, each node keeping all its groups in ONE
//! chunkwal log (one `ChunkwalGroupStore` per group on a shared `Arc<Wal>`, so a node's
//! groups share every sync): write to every group, stop a node and close its log, write
//! more, reopen it, write more, and check that every group on it catches up to the same
//! last applied log id as the group's leader.
//!
//! `cargo run --release --example openraft_multigroup --features openraft [-- GROUPS ENTRIES]`
//! (ENTRIES per group before the restart; half as many while the node is down and after).

#[path = "support/openraft_kv.rs"]
mod kv;
#[path = "support/openraft_multigroup.rs"]
mod multigroup;

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut args = std::env::args().skip(1);
    let groups: u64 = args.next().map_or(Ok(16), |a| a.parse())?;
    let entries: u64 = args.next().map_or(Ok(200), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let phases = [entries, (entries / 2).max(1), (entries / 2).max(1)];
    let report = rt.block_on(multigroup::run_multigroup(dir.path(), groups, phases, 4))?;
    println!("{report}");
    for row in &report.rows {
        assert!(
            row.recovered_last_index.is_some(),
            "group {} recovered nothing from the reopened log",
            row.group
        );
        assert_eq!(
            row.restarted_applied, row.leader_applied,
            "group {} did not catch up",
            row.group
        );
        assert!(row.same_state, "group {}: state machines differ", row.group);
    }
    assert!(report.all_caught_up());
    Ok(())
}
