"""A real 3-master, 3-replica Redis Cluster on free ports, for tests that need one.

Use it with `pytest_plugins = ["tests.rediscluster"]` (in a test module or the top conftest):

- `cluster_url`: the shared session cluster, emptied, for tests that only read and write;
- `own_cluster`: a private cluster for one test, for tests that kill, restart or reshard.

The admin methods are synchronous (they poll for seconds); from an async test that has
tasks of its own running, call them with `await asyncio.to_thread(cluster.kill, port)`.
A test module that names `LocalCluster` in annotations imports it under `TYPE_CHECKING`:
imported before `pytest_plugins` loads it, pytest warns that it cannot rewrite its asserts.
"""

from __future__ import annotations

import itertools
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

HOST = "127.0.0.1"
SLOTS = 16384

# Why each setting (the rest are redis-server defaults, as in production):
# - cluster-replica-validity-factor 0: a replica may always fail over, however long it was
#   cut off from its master. With the default (10) and a 1 s node timeout, a replica whose
#   link has been down for ~20 s (a test that kills two nodes in turn, or a slow restart)
#   refuses to be promoted and the cluster stays down for good. Tests want availability;
#   production may prefer refusing a stale replica.
# - cluster-allow-replica-migration no: the engine stays what the test made it; no
#   replica wanders to another master after a failover.
# - repl-diskless-sync-delay 0: the default waits 5 s for more replicas before the first
#   full sync, which would be 5 s of every cluster creation and every restart.
# - cluster-port: the bus port is chosen free like the client port, not port + 10000
#   (which may be taken, or past 65535).
# - shutdown-timeout 1: SIGTERM lets a master wait (default 10 s) for lagging replicas;
#   an outage in a test should not take that long.
BASE_ARGS = (
    "--bind", HOST,
    "--cluster-enabled", "yes",
    "--cluster-config-file", "nodes.conf",
    "--cluster-replica-validity-factor", "0",
    "--cluster-allow-replica-migration", "no",
    "--repl-diskless-sync-delay", "0",
    "--shutdown-timeout", "1",
    "--appendonly", "no",
    "--save", "",
)  # fmt: skip


# Ports below the ephemeral range (32768+ on Linux): outgoing connections (of other test
# processes too) take their local ports from that range, and one of them on a bus port
# makes redis-server abort with "Address already in use". The spare clusters, started in
# a thread while a test runs, take theirs apart: a port is only probed, not held, so the
# test's own processes might otherwise be handed the same one in the same second. And
# two halves, in turn: the next spare never takes the port of a node the test killed.
PORTS = range(20000, 30000)
SPARE_PORTS = (range(30000, 31000), range(31000, 32000))


def free_port(avoid: Collection[int] = (), ports: range = PORTS) -> int:
    """A port of `ports` free now."""
    while True:
        port = random.choice(ports)
        if port in avoid:
            continue
        with socket.socket() as sock:
            try:
                sock.bind((HOST, port))
            except OSError:
                continue
        return port


@dataclass
class Node:
    """One redis-server of the cluster: its ports and directory outlive its process."""

    port: int
    bus_port: int
    dir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def log_path(self) -> Path:
        return self.dir / "redis.log"

    def log_tail(self, lines: int = 25) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class NodeView:
    """One line of CLUSTER NODES, as one node sees another."""

    id: str
    port: int
    flags: set[str]
    master_id: str | None
    slots: list[tuple[int, int]] = field(default_factory=list)

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def failing(self) -> bool:
        return bool(self.flags & {"fail", "fail?", "noaddr", "handshake"})


def parse_cluster_nodes(text: str) -> list[NodeView]:
    views = []
    for line in text.splitlines():
        if not line.strip():
            continue
        node_id, addr, flags, master, _ping, _pong, _epoch, _link, *slots = line.split()
        port = int(addr.split("@")[0].rsplit(":", 1)[1] or 0)
        ranges = []
        for spec in slots:
            if spec.startswith("["):  # a migrating/importing mark, not ownership
                continue
            first, _, last = spec.partition("-")
            ranges.append((int(first), int(last or first)))
        views.append(
            NodeView(
                node_id, port, set(flags.split(",")), None if master == "-" else master, ranges
            )
        )
    return views


def _info(reply: object) -> dict[str, str]:
    # redis-py parses INFO into a dict (with ints) but hands CLUSTER INFO over as text.
    if isinstance(reply, dict):
        return {k: str(v) for k, v in reply.items()}
    pairs = (line.split(":", 1) for line in str(reply).splitlines() if ":" in line)
    return {k.strip(): v.strip() for k, v in pairs}


class ClusterNotReady(RuntimeError):
    pass


class LocalCluster:
    """redis-server processes (3 masters and a replica each, by default) joined into one
    cluster."""

    def __init__(
        self,
        *,
        node_timeout_ms: int = 1000,
        extra_args: tuple[str, ...] = (),
        masters: int = 3,
        ports: range = PORTS,
    ) -> None:
        if not (shutil.which("redis-server") and shutil.which("redis-cli")):
            raise ClusterNotReady("redis-server and redis-cli must be on PATH")
        self.masters_wanted = masters
        self.ports = ports
        self.node_timeout_ms = node_timeout_ms
        self.extra_args = extra_args
        self.root = Path(tempfile.mkdtemp(prefix="sw-cluster-"))
        self.nodes: dict[int, Node] = {}
        self._ids: dict[int, str] = {}
        self._master_of: dict[int, str] = {}  # replica port -> master id, when last ready

    # --- life cycle -------------------------------------------------------------------

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.stop()

    def start(self, timeout: float = 30) -> LocalCluster:
        """Start the processes, join them with `redis-cli --cluster create`, wait until ok."""
        try:
            self._create(timeout)
        except BaseException:
            self.stop()  # a failed start must not leave six servers behind
            raise
        return self

    def _create(self, timeout: float) -> None:
        for _ in range(2 * self.masters_wanted):
            self._add_node()
        addrs = [f"{HOST}:{port}" for port in self.nodes]
        done = subprocess.run(
            ["redis-cli", "--cluster", "create", *addrs, "--cluster-replicas", "1",
             "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise ClusterNotReady(f"redis-cli --cluster create failed:\n{done.stdout}{done.stderr}")
        for port in self.nodes:
            self._ids[port] = str(self._cmd(port, "CLUSTER", "MYID"))
        self.wait_ready(timeout)

    def stop(self) -> None:
        """Terminate the processes this cluster started, and remove its directories."""
        for node in self.nodes.values():
            if node.alive and node.proc is not None:
                node.proc.terminate()
        for node in self.nodes.values():
            self._reap(node)
        shutil.rmtree(self.root, ignore_errors=True)

    def kill(self, port: int) -> None:
        """SIGKILL one node, as `kill -9` (no goodbye to its clients or the cluster)."""
        node = self.nodes[port]
        if node.proc is not None:
            node.proc.kill()
        self._reap(node)

    def restart(self, port: int, timeout: float = 30) -> None:
        """Start a stopped node again on its port and directory; it rejoins (as a replica
        if it was failed over) and this returns once the whole cluster is ok again."""
        node = self.nodes[port]
        if not node.alive:
            self._spawn(node)
            self._wait_pingable(node)
        self.wait_ready(timeout)

    def stop_all(self, sig: int = signal.SIGTERM) -> None:
        """A cluster-wide outage. Without persistence the data is gone; nodes.conf stays,
        so `start_all` brings back the same cluster (same ids, slots and roles)."""
        for node in self.nodes.values():
            if node.proc is not None and node.alive:
                node.proc.send_signal(sig)
        for node in self.nodes.values():
            self._reap(node)

    def start_all(self, timeout: float = 30) -> None:
        """Start every stopped node and wait until the cluster is ok."""
        stopped = [node for node in self.nodes.values() if not node.alive]
        for node in stopped:
            self._spawn(node)
        for node in stopped:
            self._wait_pingable(node)
        self.wait_ready(timeout)

    def flush(self) -> None:
        """Empty every master (the replicas follow), for a test that starts from nothing."""
        for port in self.masters():
            self._cmd(port, "FLUSHALL")

    def emptied_url(self) -> str:
        """A URL of the cluster, once it is ready and emptied."""
        self.wait_ready(timeout=10)  # a few ms when healthy; names the culprit if not
        self.flush()
        return self.url

    # --- what the cluster looks like now ----------------------------------------------

    @property
    def urls(self) -> list[str]:
        return [f"redis://{HOST}:{port}/0" for port in self.nodes if self.nodes[port].alive]

    @property
    def url(self) -> str:
        """A URL of a live master (only db 0 exists in a cluster)."""
        return f"redis://{HOST}:{self.masters()[0]}/0"

    @property
    def live_ports(self) -> list[int]:
        return [port for port, node in self.nodes.items() if node.alive]

    def view(self, port: int | None = None) -> list[NodeView]:
        """CLUSTER NODES as one live node (any, by default) sees the cluster."""
        if port is None:
            if not self.live_ports:
                raise ClusterNotReady("no node is running")
            port = self.live_ports[0]
        return parse_cluster_nodes(self._cmd(port, "CLUSTER", "NODES"))

    def masters(self) -> list[int]:
        """Ports of the live masters that serve slots, in slot order."""
        owners = [v for v in self.view() if v.is_master and v.slots and not v.failing]
        owners.sort(key=lambda v: min(v.slots))
        return [v.port for v in owners if self.nodes[v.port].alive]

    def replicas(self) -> list[int]:
        """Ports of the live replicas."""
        return [
            v.port
            for v in self.view()
            if "slave" in v.flags and not v.failing and self.nodes[v.port].alive
        ]

    def replicas_of(self, master_port: int) -> list[int]:
        master_id = self._ids[master_port]
        return [v.port for v in self.view() if v.master_id == master_id and not v.failing]

    def node_for_key(self, key: str | bytes) -> int:
        """The port of the master that owns the key's slot."""
        return self.owner_of_slot(key_slot(key.encode() if isinstance(key, str) else key))

    def owner_of_slot(self, slot: int) -> int:
        for v in self.view():
            if v.is_master and any(a <= slot <= b for a, b in v.slots):
                return v.port
        raise ClusterNotReady(f"slot {slot} has no owner")

    # --- changes a test makes -----------------------------------------------------------

    def wait_for_failover(self, dead_port: int, timeout: float = 30) -> int | None:
        """Wait until a replica of the dead node serves its slots and every live node says
        cluster_state:ok; return the promoted replica's port (None if it was a replica)."""
        dead_id = self._ids[dead_port]
        # Roles as of the last time the cluster was ready, i.e. before the kill.
        its_replicas = [port for port, master in self._master_of.items() if master == dead_id]
        self.wait_ready(timeout)
        return next((port for port in its_replicas if port in self.masters()), None)

    def reshard(self, slot: int, to_port: int, timeout: float = 30) -> None:
        """Move one slot, keys and all, to another master (the steps redis-cli takes)."""
        src = self.owner_of_slot(slot)
        if src == to_port:
            return
        src_id, dst_id = self._ids[src], self._ids[to_port]
        self._cmd(to_port, "CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        self._cmd(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        while keys := self._cmd(src, "CLUSTER", "GETKEYSINSLOT", slot, 100):
            self._cmd(src, "MIGRATE", HOST, to_port, "", 0, 5000, "REPLACE", "KEYS", *keys)
        # The new owner first, so it never refuses a client the old owner sent there.
        for port in (to_port, src, *(m for m in self.masters() if m not in (src, to_port))):
            self._cmd(port, "CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 30) -> None:
        """Wait until every live node agrees on who serves every slot, says
        cluster_state:ok, and every live replica's link to its master is up."""
        deadline = time.monotonic() + timeout
        while True:
            problem = self._not_ready_because()
            if problem is None:
                self._master_of = {v.port: v.master_id for v in self.view() if v.master_id}
                return
            if time.monotonic() > deadline:
                logs = "\n".join(
                    f"--- node {port} ({'up' if node.alive else 'down'}) ---\n{node.log_tail()}"
                    for port, node in self.nodes.items()
                )
                raise ClusterNotReady(f"cluster not ready after {timeout}s: {problem}\n{logs}")
            time.sleep(0.05)

    # --- internals --------------------------------------------------------------------

    def _not_ready_because(self) -> str | None:
        live = self.live_ports
        if not live:
            return "no node is running"
        live_ids = {self._ids.get(port) for port in live}
        maps = {}
        for port in live:
            try:
                info = _info(self._cmd(port, "CLUSTER", "INFO"))
                views = parse_cluster_nodes(self._cmd(port, "CLUSTER", "NODES"))
            except redis.RedisError as exc:
                return f"node {port}: {exc!r}"
            if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != str(SLOTS):
                return f"node {port}: state {info.get('cluster_state')}, " \
                       f"slots ok {info.get('cluster_slots_ok')}"  # fmt: skip
            if any(v.slots and v.id not in live_ids for v in views):
                return f"node {port} still sees slots on a stopped node"
            # Roles too, not only slots: right after `--cluster create` a node may still
            # see the future replicas as empty masters.
            maps[port] = sorted(
                (v.id, v.is_master, v.master_id or "", tuple(v.slots))
                for v in views
                if v.id in live_ids
            )
            for v in views:
                if v.id in live_ids and v.failing:
                    return f"node {port} sees live node {v.port} as {','.join(sorted(v.flags))}"
            me = next(v for v in views if "myself" in v.flags)
            if "slave" in me.flags:
                repl = _info(self._cmd(port, "INFO", "replication"))
                if repl.get("master_link_status") != "up":
                    return f"replica {port}: master link {repl.get('master_link_status')}"
        if len({tuple(m) for m in maps.values()}) > 1:
            return "the nodes do not agree yet on roles and slots"
        return None

    def _add_node(self, attempts: int = 5) -> None:
        # Ports are only probed, not held, so another process may take one before
        # redis-server binds it: then try other ports.
        for attempt in range(attempts):
            taken = {p for node in self.nodes.values() for p in (node.port, node.bus_port)}
            port = free_port(taken, self.ports)
            node = Node(port, free_port({*taken, port}, self.ports), self.root / str(port))
            node.dir.mkdir()
            self._spawn(node)
            try:
                self._wait_pingable(node)
            except BaseException:
                # Not in self.nodes yet, so stop() would not see it: end it here.
                if node.proc is not None:
                    node.proc.kill()
                self._reap(node)
                if attempt == attempts - 1 or "already in use" not in node.log_tail():
                    raise
                shutil.rmtree(node.dir)
                continue
            self.nodes[port] = node
            return

    def _spawn(self, node: Node) -> None:
        args = [
            "redis-server",
            "--port", str(node.port),
            "--cluster-port", str(node.bus_port),
            "--cluster-node-timeout", str(self.node_timeout_ms),
            "--dir", str(node.dir),
            *BASE_ARGS,
            *self.extra_args,
        ]  # fmt: skip
        with node.log_path.open("ab") as log:
            node.proc = subprocess.Popen(args, cwd=node.dir, stdout=log, stderr=subprocess.STDOUT)

    def _wait_pingable(self, node: Node, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not node.alive:
                raise ClusterNotReady(f"redis-server {node.port} exited:\n{node.log_tail()}")
            try:
                self._cmd(node.port, "PING")
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _reap(self, node: Node) -> None:
        if node.proc is None:
            return
        try:
            node.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            node.proc.kill()
            node.proc.wait()
        node.proc = None

    def _cmd(self, port: int, *args: str | int) -> Any:
        # A fresh short-lived connection per call: admin calls are rare, and a cached
        # connection to a node that was just killed would only add a stale-socket case.
        with redis.Redis(
            host=HOST, port=port, decode_responses=True, socket_timeout=5,
            socket_connect_timeout=1, retry=Retry(NoBackoff(), 0),
        ) as client:  # fmt: skip
            return client.execute_command(*args)


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalCluster]:
    """The cluster shared by the whole run. Do not kill or reshard it: use `own_cluster`."""
    cluster = LocalCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture
def cluster_url(redis_cluster: LocalCluster) -> str:
    """A URL of the shared cluster, emptied for this test."""
    return redis_cluster.emptied_url()


class SpareClusters:
    """Clusters started a test ahead. A start is mostly waiting (a new master reports
    cluster_state:ok only 2 s after it started), so the next test's cluster waits in a
    thread while this test runs; each cluster still serves one test only."""

    def __init__(self) -> None:
        self._starter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spare-cluster")
        self._next: Future[LocalCluster] | None = None
        self._ports = itertools.cycle(SPARE_PORTS)

    def take(self) -> LocalCluster:
        """A new cluster, ready; the one after it starts now."""
        taken = self._next or self._start()
        self._next = self._start()
        cluster = taken.result()
        cluster.wait_ready(timeout=10)  # a few ms: it was ready, and nobody touched it since
        return cluster

    def close(self) -> None:
        if self._next is not None:
            with suppress(Exception):  # a spare that failed to start failed no test
                self._next.result().stop()
        self._starter.shutdown()

    def _start(self) -> Future[LocalCluster]:
        ports = next(self._ports)
        return self._starter.submit(lambda: LocalCluster(ports=ports).start())


@pytest.fixture(scope="session")
def spare_clusters() -> Iterator[SpareClusters]:
    spares = SpareClusters()
    yield spares
    spares.close()


@pytest.fixture
def own_cluster(spare_clusters: SpareClusters) -> Iterator[LocalCluster]:
    """A cluster for this test alone, to kill, restart, reshard (started while the test
    before ran: creating one takes 2 s)."""
    cluster = spare_clusters.take()
    yield cluster
    cluster.stop()


@pytest.fixture
def make_cluster() -> Iterator[Callable[..., LocalCluster]]:
    """Private clusters with other settings, e.g. `make_cluster(node_timeout_ms=500)`."""
    made: list[LocalCluster] = []

    def make(**kwargs: object) -> LocalCluster:
        cluster = LocalCluster(**kwargs)  # type: ignore[arg-type]
        made.append(cluster)
        return cluster.start()

    yield make
    for cluster in made:
        cluster.stop()
