//! Many openraft groups per node over one shared chunkwal log: a router network keyed by
//! (group, node), and the scenario run by the `openraft_multigroup` example and its test.
//! Each node opens ONE `Wal` and runs one `Raft` per group on it, each with a
//! `ChunkwalGroupStore` on its own `GroupId`, so all of a node's groups share every sync.
//! Expects a sibling module `kv` (examples/support/openraft_kv.rs).

use std::collections::BTreeMap;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chunkwal::integrations::openraft::ChunkwalGroupStore;
use chunkwal::{GroupId, Wal};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{
    AnyError, BasicNode, Config, LogId, Raft, RaftNetwork, RaftNetworkFactory, SnapshotPolicy,
};

use super::kv::{KvData, KvStateMachine, Request, TypeConfig};

type NodeId = u64;
type BoxError = Box<dyn Error + Send + Sync>;

/// Live `Raft` handles by (group, node).
type RaftMap = BTreeMap<(u64, NodeId), Raft<TypeConfig>>;

/// Maps (group, node) to live `Raft` handles. Cloning shares the map.
#[derive(Clone, Default)]
pub struct Router {
    rafts: Arc<Mutex<RaftMap>>,
}

impl Router {
    fn add(&self, group: u64, id: NodeId, raft: Raft<TypeConfig>) {
        self.rafts
            .lock()
            .expect("router poisoned")
            .insert((group, id), raft);
    }

    fn remove_node(&self, id: NodeId) {
        self.rafts
            .lock()
            .expect("router poisoned")
            .retain(|(_, node), _| *node != id);
    }

    fn get(&self, group: u64, id: NodeId) -> Result<Raft<TypeConfig>, NetworkError> {
        let rafts = self.rafts.lock().expect("router poisoned");
        rafts.get(&(group, id)).cloned().ok_or_else(|| {
            NetworkError::new(&AnyError::error(format!(
                "group {group} on node {id} is not running"
            )))
        })
    }
}

/// The network of one group: connections reach the same group on other nodes.
pub struct GroupNetwork {
    group: u64,
    router: Router,
}

/// One group's connection to `target`.
pub struct Connection {
    group: u64,
    target: NodeId,
    router: Router,
}

impl RaftNetworkFactory<TypeConfig> for GroupNetwork {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> Connection {
        Connection {
            group: self.group,
            target,
            router: self.router.clone(),
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
        let raft = self.router.get(self.group, self.target)?;
        raft.append_entries(rpc)
            .await
            .map_err(|e| RemoteError::new(self.target, e).into())
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        let raft = self.router.get(self.group, self.target)?;
        raft.install_snapshot(rpc)
            .await
            .map_err(|e| RemoteError::new(self.target, e).into())
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        let raft = self.router.get(self.group, self.target)?;
        raft.vote(rpc)
            .await
            .map_err(|e| RemoteError::new(self.target, e).into())
    }
}

/// How one group ended on the restarted node.
#[derive(Debug, Clone)]
pub struct GroupRow {
    /// The group.
    pub group: u64,
    /// Its leader at the end.
    pub leader: NodeId,
    /// Last log index the restarted node found for the group in its shared log on reopen.
    pub recovered_last_index: Option<u64>,
    /// The leader's last applied log id.
    pub leader_applied: Option<LogId<NodeId>>,
    /// The restarted node's last applied log id once caught up.
    pub restarted_applied: Option<LogId<NodeId>>,
    /// Whether both state machines of the group hold the same data.
    pub same_state: bool,
}

/// One node's shared log at the end of the run.
#[derive(Debug, Clone)]
pub struct LogRow {
    /// The node.
    pub node: NodeId,
    /// Groups in its log.
    pub groups: usize,
    /// Entries its groups hold (after their snapshot purges).
    pub held_entries: u64,
    /// Flush requests from its group stores since the log's (last) open.
    pub flushes: u64,
    /// Syncs that served them: one sync covers the pending writes of every group.
    pub syncs: u64,
}

/// What one run of [`run_multigroup`] did and saw.
#[derive(Debug, Clone)]
pub struct MultiGroupReport {
    /// Groups per node.
    pub groups: u64,
    /// Entries written per group before, while and after the node was down.
    pub entries_per_group: [u64; 3],
    /// Wall time of the first write phase.
    pub write_secs: f64,
    /// Entries committed per second, over all groups, in the first write phase.
    pub entries_per_sec: f64,
    /// The node that was stopped and restarted.
    pub restarted: NodeId,
    /// Time from reopening the node's log to every group caught up (includes the last
    /// write phase).
    pub catch_up_secs: f64,
    /// Per node, its one log at the end.
    pub logs: Vec<LogRow>,
    /// One row per group.
    pub rows: Vec<GroupRow>,
}

impl MultiGroupReport {
    /// Whether every group on the restarted node reached its leader's last applied log id
    /// with the same state.
    pub fn all_caught_up(&self) -> bool {
        self.rows.iter().all(|r| {
            r.leader_applied.is_some() && r.restarted_applied == r.leader_applied && r.same_state
        })
    }
}

impl std::fmt::Display for MultiGroupReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [before, down, after] = self.entries_per_group;
        writeln!(
            f,
            "3 nodes x {} groups, one chunkwal log per node; per group {before} entries, \
             node {} stopped, {down} more, node {} reopened, {after} more",
            self.groups, self.restarted, self.restarted
        )?;
        writeln!(
            f,
            "first phase: {} entries in {:.3} s: {:.0} entries/s over all groups",
            before * self.groups,
            self.write_secs,
            self.entries_per_sec
        )?;
        for l in &self.logs {
            writeln!(
                f,
                "node {}: {} groups on one log holding {} entries; {} flush requests served by {} syncs",
                l.node, l.groups, l.held_entries, l.flushes, l.syncs
            )?;
        }
        writeln!(
            f,
            "node {} reopened; every group caught up in {:.3} s:",
            self.restarted, self.catch_up_secs
        )?;
        writeln!(
            f,
            "group  leader  recovered  leader applied  restarted applied  same state"
        )?;
        for r in &self.rows {
            let show = |l: &Option<LogId<NodeId>>| l.map_or("-".into(), |l| l.to_string());
            let recovered = r.recovered_last_index.map_or("-".into(), |i| i.to_string());
            writeln!(
                f,
                "{:>5}  {:>6}  {:>9}  {:>14}  {:>17}  {}",
                r.group,
                r.leader,
                recovered,
                show(&r.leader_applied),
                show(&r.restarted_applied),
                r.same_state
            )?;
        }
        write!(f, "all groups caught up: {}", self.all_caught_up())
    }
}

/// One running node: one shared log, one `Raft` per group.
struct Node {
    wal: Arc<Wal>,
    rafts: BTreeMap<u64, Raft<TypeConfig>>,
    data: BTreeMap<u64, Arc<Mutex<KvData>>>,
    /// Per group, the last log index found in the log when the node started.
    recovered: BTreeMap<u64, Option<u64>>,
}

fn raft_config() -> Result<Arc<Config>, BoxError> {
    let config = Config {
        cluster_name: "chunkwal-multigroup".into(),
        heartbeat_interval: 100,
        election_timeout_min: 400,
        election_timeout_max: 800,
        // Snapshot (and so purge the group's log) every 100 entries, keeping 20 behind.
        snapshot_policy: SnapshotPolicy::LogsSinceLast(100),
        max_in_snapshot_log_to_keep: 20,
        purge_batch_size: 16,
        ..Config::default()
    };
    Ok(Arc::new(config.validate()?))
}

fn node_dir(base: &Path, id: NodeId) -> PathBuf {
    base.join(format!("node-{id}"))
}

/// Open a node's log, waiting a little if the previous incarnation still holds the lock.
async fn open_wal(dir: &Path) -> Result<Wal, BoxError> {
    let mut config = chunkwal::Config::new(dir);
    config.chunk_size = 256 << 10;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Wal::open(config.clone()) {
            Err(chunkwal::Error::Locked { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            r => return Ok(r?),
        }
    }
}

async fn start_node(
    base: &Path,
    id: NodeId,
    groups: u64,
    router: &Router,
) -> Result<Node, BoxError> {
    let dir = node_dir(base, id);
    let wal = Arc::new(open_wal(&dir.join("log")).await?);
    let mut node = Node {
        wal: Arc::clone(&wal),
        rafts: BTreeMap::new(),
        data: BTreeMap::new(),
        recovered: BTreeMap::new(),
    };
    for g in 1..=groups {
        let store = ChunkwalGroupStore::<TypeConfig>::open_group(Arc::clone(&wal), GroupId(g))?;
        node.recovered
            .insert(g, store.wal().group(GroupId(g)).last_index());
        let sm = KvStateMachine::open(&dir.join(format!("sm-{g}")))?;
        node.data.insert(g, sm.data());
        let network = GroupNetwork {
            group: g,
            router: router.clone(),
        };
        let raft = Raft::new(id, raft_config()?, network, store, sm).await?;
        router.add(g, id, raft.clone());
        node.rafts.insert(g, raft);
    }
    Ok(node)
}

/// Shut down every group of `node`, then close its log once the last store let go of it.
async fn stop_node(node: Node, id: NodeId, router: &Router) -> Result<(), BoxError> {
    router.remove_node(id);
    for raft in node.rafts.values() {
        raft.shutdown().await?;
    }
    drop(node.rafts);
    let mut wal = node.wal;
    let deadline = Instant::now() + Duration::from_secs(10);
    let wal = loop {
        match Arc::try_unwrap(wal) {
            Ok(wal) => break wal,
            Err(shared) if Instant::now() < deadline => {
                wal = shared;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(_) => return Err(format!("node {id}'s stores never released its log").into()),
        }
    };
    wal.close()?;
    Ok(())
}

fn log_row(node: NodeId, wal: &Wal) -> LogRow {
    let groups = wal.groups();
    let held_entries = groups
        .iter()
        .map(|g| {
            let g = wal.group(*g);
            g.first_index()
                .zip(g.last_index())
                .map_or(0, |(first, last)| last + 1 - first)
        })
        .sum();
    let stat = wal.reader().access_stat();
    LogRow {
        node,
        groups: groups.len(),
        held_entries,
        flushes: stat.flushes,
        syncs: stat.syncs,
    }
}

fn applied(raft: &Raft<TypeConfig>) -> Option<LogId<NodeId>> {
    raft.metrics().borrow().last_applied
}

/// Write `count` entries to every group (`writers` tasks per group), starting at node
/// `leader`; a writer told to forward follows the group's new leader.
async fn write_all(
    router: &Router,
    groups: u64,
    leader: NodeId,
    round: u64,
    count: u64,
    writers: u64,
) -> Result<(), BoxError> {
    let mut tasks = Vec::new();
    for g in 1..=groups {
        for w in 0..writers {
            let router = router.clone();
            let n = count / writers + u64::from(w < count % writers);
            tasks.push(tokio::spawn(async move {
                let mut target = leader;
                for i in 0..n {
                    let req = Request {
                        key: format!("g{g}-w{w}-k{}", i % 32),
                        value: round * 1_000_000 + i,
                    };
                    let mut attempts = 0;
                    loop {
                        let raft = router.get(g, target).map_err(|e| e.to_string())?;
                        match raft.client_write(req.clone()).await {
                            Ok(_) => break,
                            Err(e) if attempts < 100 => {
                                attempts += 1;
                                let fwd =
                                    e.forward_to_leader::<BasicNode>().and_then(|f| f.leader_id);
                                match fwd {
                                    Some(l) => target = l,
                                    None => tokio::time::sleep(Duration::from_millis(100)).await,
                                }
                            }
                            Err(e) => return Err(format!("group {g} writer {w}: {e}")),
                        }
                    }
                }
                Ok::<(), String>(())
            }));
        }
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// The current leader of `group`, as a running node sees it.
fn leader_of(nodes: &BTreeMap<NodeId, Node>, group: u64) -> Result<NodeId, BoxError> {
    nodes
        .values()
        .find_map(|n| n.rafts[&group].metrics().borrow().current_leader)
        .ok_or_else(|| format!("group {group} has no leader").into())
}

/// Initialize every group on node 1 with `ids` as voters; wait until each has a leader.
async fn initialize(nodes: &BTreeMap<NodeId, Node>, ids: &[NodeId]) -> Result<(), BoxError> {
    let members: BTreeMap<NodeId, BasicNode> = ids
        .iter()
        .map(|id| (*id, BasicNode::new(format!("in-process-{id}"))))
        .collect();
    for raft in nodes[&1].rafts.values() {
        raft.initialize(members.clone()).await?;
    }
    for (g, raft) in &nodes[&1].rafts {
        raft.wait(Some(Duration::from_secs(20)))
            .metrics(|m| m.current_leader.is_some(), "a leader is elected")
            .await
            .map_err(|e| format!("group {g} elected no leader: {e}"))?;
    }
    Ok(())
}

/// Wait until every node applied what the most advanced node of each group applied.
async fn wait_replicated(nodes: &BTreeMap<NodeId, Node>, groups: u64) -> Result<(), BoxError> {
    for g in 1..=groups {
        let rafts = nodes.values().map(|n| &n.rafts[&g]);
        let target = rafts.clone().filter_map(applied).map(|l| l.index).max();
        for raft in rafts {
            raft.wait(Some(Duration::from_secs(30)))
                .applied_index_at_least(target, "every node applied the first phase")
                .await
                .map_err(|e| format!("group {g} did not replicate: {e}"))?;
        }
    }
    Ok(())
}

/// Wait until group `g` on node `restarted` applied its leader's last applied log id, and
/// compare the two.
async fn catch_up(
    nodes: &BTreeMap<NodeId, Node>,
    g: u64,
    restarted: NodeId,
) -> Result<GroupRow, BoxError> {
    let leader = leader_of(nodes, g)?;
    let leader_applied = applied(&nodes[&leader].rafts[&g]);
    let index = leader_applied.map(|l| l.index);
    let raft = &nodes[&restarted].rafts[&g];
    raft.wait(Some(Duration::from_secs(30)))
        .applied_index_at_least(index, "the restarted node caught up")
        .await
        .map_err(|e| format!("group {g} did not catch up: {e}"))?;
    let kv = |node: NodeId| nodes[&node].data[&g].lock().expect("poisoned").kv.clone();
    Ok(GroupRow {
        group: g,
        leader,
        recovered_last_index: nodes[&restarted].recovered[&g],
        leader_applied,
        restarted_applied: applied(raft),
        same_state: kv(leader) == kv(restarted),
    })
}

/// Run the scenario in `base`: 3 nodes with `groups` groups each; write `entries[0]` entries
/// to every group, stop the node that leads the fewest groups (closing its log), write
/// `entries[1]` more, reopen it, write `entries[2]` more and wait until every group on it
/// applied its leader's last applied log id.
pub async fn run_multigroup(
    base: &Path,
    groups: u64,
    entries: [u64; 3],
    writers: u64,
) -> Result<MultiGroupReport, BoxError> {
    let router = Router::default();
    let ids: [NodeId; 3] = [1, 2, 3];
    let mut nodes = BTreeMap::new();
    for id in ids {
        nodes.insert(id, start_node(base, id, groups, &router).await?);
    }

    // 1) Initialize every group on node 1 and wait for its leaders.
    initialize(&nodes, &ids).await?;

    // 2) Write to every group.
    let started = Instant::now();
    write_all(&router, groups, 1, 1, entries[0], writers).await?;
    let write_secs = started.elapsed().as_secs_f64();
    wait_replicated(&nodes, groups).await?;

    // 3) Stop the node leading the fewest groups: its Rafts go, its log is closed.
    let mut led = BTreeMap::from(ids.map(|id| (id, 0)));
    for g in 1..=groups {
        *led.entry(leader_of(&nodes, g)?).or_default() += 1;
    }
    let restarted = *ids.iter().rev().min_by_key(|id| led[id]).ok_or("no node")?;
    let down = nodes.remove(&restarted).ok_or("node missing")?;
    stop_node(down, restarted, &router).await?;
    let leader = *nodes.keys().next().ok_or("no live node")?;
    write_all(&router, groups, leader, 2, entries[1], writers).await?;

    // 4) Reopen it on the same directory, write more, wait for every group to catch up.
    let restart_at = Instant::now();
    let node = start_node(base, restarted, groups, &router).await?;
    nodes.insert(restarted, node);
    write_all(&router, groups, leader, 3, entries[2], writers).await?;
    let mut rows = Vec::new();
    for g in 1..=groups {
        rows.push(catch_up(&nodes, g, restarted).await?);
    }
    let catch_up_secs = restart_at.elapsed().as_secs_f64();

    // 5) Stop everything.
    let logs = nodes.iter().map(|(id, n)| log_row(*id, &n.wal)).collect();
    for (id, node) in std::mem::take(&mut nodes) {
        stop_node(node, id, &router).await?;
    }
    Ok(MultiGroupReport {
        groups,
        entries_per_group: entries,
        write_secs,
        entries_per_sec: (entries[0] * groups) as f64 / write_secs.max(1e-9),
        restarted,
        catch_up_secs,
        logs,
        rows,
    })
}
