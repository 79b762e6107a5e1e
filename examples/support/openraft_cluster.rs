//! An in-process openraft cluster over chunkwal logs: a router network (direct calls into
//! the target's `Raft` handle) and the scenario run by the `openraft_cluster` example and
//! its test. Expects a sibling module `kv` (examples/support/openraft_kv.rs).

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chunkwal::integrations::openraft::{ChunkwalLogStore, StoreError};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{
    AnyError, BasicNode, Config, Raft, RaftNetwork, RaftNetworkFactory, SnapshotPolicy,
};

use super::kv::{KvData, KvStateMachine, Request, TypeConfig};

type NodeId = u64;
type BoxError = Box<dyn Error + Send + Sync>;

/// Maps node ids to live `Raft` handles. Cloning shares the map.
#[derive(Clone, Default)]
pub struct Router {
    nodes: Arc<Mutex<BTreeMap<NodeId, Raft<TypeConfig>>>>,
}

impl Router {
    fn add(&self, id: NodeId, raft: Raft<TypeConfig>) {
        self.nodes.lock().expect("router poisoned").insert(id, raft);
    }

    fn remove(&self, id: NodeId) -> Option<Raft<TypeConfig>> {
        self.nodes.lock().expect("router poisoned").remove(&id)
    }

    fn get(&self, id: NodeId) -> Result<Raft<TypeConfig>, NetworkError> {
        let nodes = self.nodes.lock().expect("router poisoned");
        nodes
            .get(&id)
            .cloned()
            .ok_or_else(|| NetworkError::new(&AnyError::error(format!("node {id} is not running"))))
    }
}

/// One node's connection to `target`.
pub struct Connection {
    target: NodeId,
    router: Router,
}

impl RaftNetworkFactory<TypeConfig> for Router {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> Connection {
        Connection {
            target,
            router: self.clone(),
        }
    }
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        let raft = self.router.get(self.target)?;
        raft.append_entries(rpc)
            .await
            .map_err(|e| RemoteError::new(self.target, e).into())
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        let raft = self.router.get(self.target)?;
        raft.install_snapshot(rpc)
            .await
            .map_err(|e| RemoteError::new(self.target, e).into())
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        let raft = self.router.get(self.target)?;
        raft.vote(rpc)
            .await
            .map_err(|e| RemoteError::new(self.target, e).into())
    }
}

/// What one run of [`run_cluster`] measured.
#[derive(Debug, Clone)]
pub struct ClusterReport {
    /// The elected leader.
    pub leader: NodeId,
    /// Entries written through `client_write` in the timed phase.
    pub entries: u64,
    /// Concurrent client tasks used.
    pub writers: usize,
    /// Wall time of the timed phase.
    pub write_secs: f64,
    /// Entries committed and applied per second in the timed phase.
    pub entries_per_sec: f64,
    /// Entries written while the follower was down.
    pub entries_while_down: u64,
    /// The follower that was stopped and restarted.
    pub restarted: NodeId,
    /// Last log index the restarted follower recovered from its own directory.
    pub recovered_last_log_index: Option<u64>,
    /// Leader's applied index the follower had to reach.
    pub leader_applied: u64,
    /// Follower's applied index once caught up.
    pub restarted_applied: u64,
    /// Time from restart to caught up.
    pub catch_up_secs: f64,
    /// Log purge point on the leader at the end (snapshots let it purge).
    pub leader_purged: Option<u64>,
    /// Keys in the state machine of the leader and of the restarted follower.
    pub leader_keys: usize,
    /// Whether both state machines hold the same data.
    pub same_state: bool,
    /// The leader's log counters: `append` calls, entries appended, flush requests.
    pub leader_log: chunkwal::AccessStat,
}

impl std::fmt::Display for ClusterReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "leader: node {}", self.leader)?;
        writeln!(
            f,
            "wrote {} entries with {} writers in {:.3} s: {:.0} entries/s",
            self.entries, self.writers, self.write_secs, self.entries_per_sec
        )?;
        writeln!(
            f,
            "node {} stopped; {} more entries written while it was down",
            self.restarted, self.entries_while_down
        )?;
        writeln!(
            f,
            "node {} restarted from its directory with last log index {:?}",
            self.restarted, self.recovered_last_log_index
        )?;
        writeln!(
            f,
            "node {} caught up to applied index {} (leader {}) in {:.3} s",
            self.restarted, self.restarted_applied, self.leader_applied, self.catch_up_secs
        )?;
        writeln!(
            f,
            "leader log: {} appends of {} entries, {} flush requests",
            self.leader_log.appends, self.leader_log.appended_entries, self.leader_log.flushes
        )?;
        write!(
            f,
            "leader purged up to {:?}; {} keys; state machines equal: {}",
            self.leader_purged, self.leader_keys, self.same_state
        )
    }
}

/// One running node.
struct Node {
    raft: Raft<TypeConfig>,
    data: Arc<Mutex<KvData>>,
    /// Last log index found in its directory when it started.
    recovered: Option<u64>,
    /// Read handle on its log, for counters.
    log: chunkwal::Reader,
}

fn raft_config() -> Result<Arc<Config>, BoxError> {
    let config = Config {
        cluster_name: "chunkwal-example".into(),
        heartbeat_interval: 100,
        election_timeout_min: 400,
        election_timeout_max: 800,
        // Snapshot (and so purge the log) every 1000 entries, keeping 200 behind.
        snapshot_policy: SnapshotPolicy::LogsSinceLast(1000),
        max_in_snapshot_log_to_keep: 200,
        purge_batch_size: 64,
        ..Config::default()
    };
    Ok(Arc::new(config.validate()?))
}

fn node_dir(base: &Path, id: NodeId) -> PathBuf {
    base.join(format!("node-{id}"))
}

/// Open a node's log, waiting a little if the previous incarnation still holds the lock.
async fn open_store(dir: &Path) -> Result<ChunkwalLogStore<TypeConfig>, BoxError> {
    let mut config = chunkwal::Config::new(dir);
    config.chunk_size = 256 << 10;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match ChunkwalLogStore::open(config.clone()) {
            Err(StoreError::Wal(chunkwal::Error::Locked { .. })) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            r => return Ok(r?),
        }
    }
}

async fn start_node(base: &Path, id: NodeId, router: &Router) -> Result<Node, BoxError> {
    let dir = node_dir(base, id);
    let store = open_store(&dir.join("log")).await?;
    let recovered = store.wal().log_state().last.map(|l| l.index);
    let log = store.wal().reader();
    let sm = KvStateMachine::open(&dir.join("sm"))?;
    let data = sm.data();
    let raft = Raft::new(id, raft_config()?, router.clone(), store, sm).await?;
    router.add(id, raft.clone());
    Ok(Node {
        raft,
        data,
        recovered,
        log,
    })
}

fn applied(raft: &Raft<TypeConfig>) -> u64 {
    raft.metrics().borrow().last_applied.map_or(0, |l| l.index)
}

/// Write `count` entries from `writers` concurrent tasks, starting at `leader`; keys cycle
/// through 128 per writer, values are sequence numbers. A writer told to forward follows
/// the new leader (a retried write is an idempotent set, so state stays comparable).
async fn write_entries(
    router: &Router,
    leader: NodeId,
    round: u64,
    count: u64,
    writers: usize,
) -> Result<(), BoxError> {
    let mut tasks = Vec::new();
    for w in 0..writers as u64 {
        let router = router.clone();
        let n = count / writers as u64 + u64::from(w < count % writers as u64);
        tasks.push(tokio::spawn(async move {
            let mut target = leader;
            for i in 0..n {
                let req = Request {
                    key: format!("w{w}-k{}", i % 128),
                    value: round * 1_000_000 + i,
                };
                let mut attempts = 0;
                loop {
                    let raft = router.get(target).map_err(|e| e.to_string())?;
                    match raft.client_write(req.clone()).await {
                        Ok(_) => break,
                        Err(e) if attempts < 100 => {
                            attempts += 1;
                            let fwd = e.forward_to_leader::<BasicNode>().and_then(|f| f.leader_id);
                            tracing::warn!(w, error = %e, ?fwd, "client_write retried");
                            match fwd {
                                Some(l) => target = l,
                                None => tokio::time::sleep(Duration::from_millis(100)).await,
                            }
                        }
                        Err(e) => return Err(format!("client_write from writer {w} failed: {e}")),
                    }
                }
            }
            Ok::<(), String>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

async fn wait_applied(raft: &Raft<TypeConfig>, index: u64, what: &str) -> Result<(), BoxError> {
    raft.wait(Some(Duration::from_secs(30)))
        .applied_index_at_least(Some(index), what)
        .await
        .map_err(|e| format!("timed out waiting for {what}: {e}"))?;
    Ok(())
}

/// Run the scenario in `base`: elect a leader among 3 nodes, write `entries` entries, stop a
/// follower, write more, restart it from its directory and wait until it caught up.
pub async fn run_cluster(
    base: &Path,
    entries: u64,
    writers: usize,
) -> Result<ClusterReport, BoxError> {
    let router = Router::default();
    let ids: [NodeId; 3] = [1, 2, 3];
    let mut nodes = BTreeMap::new();
    for id in ids {
        nodes.insert(id, start_node(base, id, &router).await?);
    }

    // 1) Initialize and elect.
    let members: BTreeMap<NodeId, BasicNode> = ids
        .iter()
        .map(|id| (*id, BasicNode::new(format!("in-process-{id}"))))
        .collect();
    nodes[&1].raft.initialize(members).await?;
    let m = nodes[&1]
        .raft
        .wait(Some(Duration::from_secs(20)))
        .metrics(|m| m.current_leader.is_some(), "a leader is elected")
        .await
        .map_err(|e| format!("no leader elected: {e}"))?;
    let first_leader = m.current_leader.ok_or("no leader in metrics")?;
    tracing::info!(first_leader, "leader elected");

    // 2) The timed write phase.
    let started = Instant::now();
    write_entries(&router, first_leader, 1, entries, writers).await?;
    let write_secs = started.elapsed().as_secs_f64();
    let target = nodes.values().map(|n| applied(&n.raft)).max().unwrap_or(0);
    for node in nodes.values() {
        wait_applied(&node.raft, target, "every node applied the first batch").await?;
    }
    // Normally still the first leader; re-read in case a slow machine forced an election.
    let leader_id = nodes[&1]
        .raft
        .metrics()
        .borrow()
        .current_leader
        .ok_or("no leader after the first batch")?;
    let leader = nodes.get(&leader_id).ok_or("unknown leader")?.raft.clone();

    // 3) Stop a follower, write while it is down, restart it from its directory.
    let restarted = *ids
        .iter()
        .find(|id| **id != leader_id)
        .ok_or("no follower")?;
    let down = nodes.remove(&restarted).ok_or("follower missing")?;
    router.remove(restarted);
    down.raft.shutdown().await?;
    drop(down);
    let entries_while_down = (entries / 4).max(1);
    write_entries(&router, leader_id, 2, entries_while_down, writers).await?;

    let restart_at = Instant::now();
    let node = start_node(base, restarted, &router).await?;
    let recovered_last_log_index = node.recovered;
    let leader_applied = applied(&leader);
    wait_applied(
        &node.raft,
        leader_applied,
        "the restarted follower caught up",
    )
    .await?;
    let catch_up_secs = restart_at.elapsed().as_secs_f64();
    let restarted_applied = applied(&node.raft);
    nodes.insert(restarted, node);

    // 4) Compare and stop.
    let leader_data = nodes[&leader_id].data.lock().expect("poisoned").clone();
    let follower_data = nodes[&restarted].data.lock().expect("poisoned").clone();
    let same_state = leader_data.kv == follower_data.kv
        && follower_data.last_applied.map(|l| l.index) >= Some(leader_applied);
    let leader_purged = leader.metrics().borrow().purged.map(|l| l.index);
    let leader_log = nodes[&leader_id].log.access_stat();
    let voters: BTreeSet<NodeId> = leader
        .metrics()
        .borrow()
        .membership_config
        .voter_ids()
        .collect();
    if voters.len() != ids.len() {
        return Err(format!("unexpected voters {voters:?}").into());
    }
    for node in nodes.values() {
        node.raft.shutdown().await?;
    }
    Ok(ClusterReport {
        leader: leader_id,
        entries,
        writers,
        write_secs,
        entries_per_sec: entries as f64 / write_secs.max(1e-9),
        entries_while_down,
        restarted,
        recovered_last_log_index,
        leader_applied,
        restarted_applied,
        catch_up_secs,
        leader_purged,
        leader_keys: leader_data.kv.len(),
        same_state,
        leader_log,
    })
}
