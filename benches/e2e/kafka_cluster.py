#!/usr/bin/env python3
"""A multi-node Apache Kafka (KRaft, combined mode) on 127.0.0.1, started and
stopped from Python: the peer of a sluiced cluster in the cluster benchmark
(benches/e2e/cluster_bench.py), usable by anything else that needs one.

This module owns `KafkaCluster`: N nodes with `process.roles=broker,controller`,
node ids 1..N, client ports base.. and controller ports base+100.. (the
numbering of scripts/cluster, from cluster_harness.free_port_range), one
static voter set, one cluster id formatted into every node's log dir
(`kafka-storage format --cluster-id=<id>`, an id never starting with '-'),
racks a, b, c, ... Each node is one JVM (Kafka's jars from scripts/setup,
`kafka.Kafka server.properties`, the JVM options of kafka-server-start:
-Xmx1g -Xms1g unless told otherwise) in its own process group, so a
terminal's Ctrl-C reaches only the caller, which stops them (`stop`, also
from a `with` block). `kill` is SIGKILL of one node, `start_node` brings it
back on its data.

Run by hand: `python3 benches/e2e/kafka_cluster.py [N]` starts N (3) nodes
under a temporary folder, prints the bootstrap list and stops them on Ctrl-C.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tests" / "interop"))
from bench import api_versions_answered  # noqa: E402
from cluster_harness import free_port_range  # noqa: E402

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sluice"
RACKS = "abcdefghi"


def kafka_version(root: Path = REPO_ROOT) -> str:
    """The Kafka version scripts/setup installs (tests/interop/kafka-server/pom.xml)."""
    pom = (root / "tests/interop/kafka-server/pom.xml").read_text()
    return pom.split("<kafka.version>")[1].split("<")[0]


def kafka_libs(root: Path = REPO_ROOT) -> Path:
    return Path(os.environ.get("KAFKA_LIBS", CACHE / f"kafka-{kafka_version(root)}" / "libs"))


def new_cluster_id() -> str:
    """A random base64 cluster id that does not start with '-' (which
    kafka-storage would read as an option; Kafka's own Uuid.randomUuid skips
    those ids too)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


LOG4J2 = """# Written by benches/e2e/kafka_cluster.py (as scripts/kafka-kraft's)
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = OUT
logger.kafka.name = kafka
logger.kafka.level = info
logger.state.name = state.change.logger
logger.state.level = warn
logger.request.name = kafka.request.logger
logger.request.level = warn
"""


class KafkaCluster:
    """`nodes` combined broker+controller Kafka nodes under `root` (created;
    removed by `remove_data`). `sets` are server.properties lines
    ("key=value") applied after the built-in ones, so they override them;
    `heap` is the JVM heap option string of every node."""

    def __init__(self, root: Path, nodes: int = 3, sets: list[str] | None = None, heap: str = "-Xmx1g -Xms1g",
                 libs: Path | None = None) -> None:
        self.root = Path(root)
        self.nodes = nodes
        self.sets = list(sets or [])
        self.heap = heap.split()
        self.libs = libs or kafka_libs()
        self.base = free_port_range(nodes)
        self.cluster_id = new_cluster_id()
        self.procs: dict[int, subprocess.Popen] = {}
        self.version = "Apache Kafka " + kafka_version()

    # ---------------------------------------------------------- layout

    def port(self, node: int) -> int:
        return self.base + node - 1

    def controller_port(self, node: int) -> int:
        return self.base + 100 + node - 1

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{self.port(i)}" for i in range(1, self.nodes + 1))

    def node_dir(self, node: int) -> Path:
        return self.root / f"n{node}"

    def properties(self, node: int) -> str:
        voters = ",".join(f"{i}@127.0.0.1:{self.controller_port(i)}" for i in range(1, self.nodes + 1))
        rf = min(3, self.nodes)
        lines = [
            "# Written by benches/e2e/kafka_cluster.py",
            "process.roles=broker,controller",
            f"node.id={node}",
            f"controller.quorum.voters={voters}",
            f"listeners=PLAINTEXT://127.0.0.1:{self.port(node)},CONTROLLER://127.0.0.1:{self.controller_port(node)}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port(node)}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={self.node_dir(node) / 'logs'}",
            f"broker.rack={RACKS[(node - 1) % len(RACKS)]}",
            f"default.replication.factor={rf}",
            f"min.insync.replicas={1 if self.nodes < 3 else 2}",
            f"offsets.topic.replication.factor={rf}",
            f"transaction.state.log.replication.factor={rf}",
            f"transaction.state.log.min.isr={1 if self.nodes < 3 else 2}",
            f"share.coordinator.state.topic.replication.factor={rf}",
            f"share.coordinator.state.topic.min.isr={1 if self.nodes < 3 else 2}",
        ]
        props: dict[str, str] = {}
        for line in lines[1:] + self.sets:
            key, sep, value = line.partition("=")
            if not sep or not key:
                raise ValueError(f"a server property wants key=value, not {line!r}")
            props.pop(key, None)  # a later setting replaces an earlier one, at the end
            props[key] = value
        return "\n".join([lines[0], *(f"{k}={v}" for k, v in props.items())]) + "\n"

    def java(self, node: int, main: list[str]) -> list[str]:
        d = self.node_dir(node)
        return ["java", *self.heap, "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent",
                "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={d / 'log4j2.properties'}",
                f"-Dkafka.logs.dir={d}", "-cp", f"{self.libs}/*", *main]

    # ---------------------------------------------------------- lifecycle

    def prepare(self) -> None:
        """Writes every node's configuration and formats its log dir with the
        one cluster id (the formats run in parallel)."""
        if not self.libs.is_dir():
            raise RuntimeError(f"no Kafka jars in {self.libs}: run scripts/setup first")
        formats = []
        for i in range(1, self.nodes + 1):
            d = self.node_dir(i)
            (d / "logs").mkdir(parents=True, exist_ok=True)
            (d / "server.properties").write_text(self.properties(i))
            (d / "log4j2.properties").write_text(LOG4J2)
            if (d / "logs" / "meta.properties").exists():
                continue
            cmd = ["java", "-Xmx256m", f"-Dlog4j2.configurationFile={d / 'log4j2.properties'}",
                   "-Dlog4j2.level=warn", "-cp", f"{self.libs}/*", "kafka.tools.StorageTool", "format",
                   f"--cluster-id={self.cluster_id}", "-c", str(d / "server.properties"), "--ignore-formatted"]
            formats.append((i, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
        for i, p in formats:
            out, _ = p.communicate(timeout=120)
            if p.returncode != 0:
                raise RuntimeError(f"formatting Kafka node {i} failed:\n{out}")

    def launch(self, node: int) -> None:
        """Spawns one node's JVM (no waiting)."""
        if node in self.procs and self.procs[node].poll() is None:
            return
        d = self.node_dir(node)
        log = open(d / "kafka.log", "ab")
        try:
            self.procs[node] = subprocess.Popen(self.java(node, ["kafka.Kafka", str(d / "server.properties")]),
                                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                start_new_session=True)
        finally:
            log.close()

    def wait_serving(self, node: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            p = self.procs.get(node)
            if p is None or p.poll() is not None:
                raise RuntimeError(f"Kafka node {node} exited during start-up; its errors:\n{self.errors(node)}\n"
                                   f"its log ends:\n{self.log_tail(node, 8)}")
            if api_versions_answered(self.port(node)):
                return
            time.sleep(0.05)
        raise RuntimeError(f"Kafka node {node} did not serve on 127.0.0.1:{self.port(node)} in {timeout:.0f} s; "
                           f"its log ends:\n{self.log_tail(node)}")

    def start(self, timeout: float = 180) -> float:
        """Formats (first time), starts every node, waits until each serves;
        returns the seconds from the first spawn to the last node serving."""
        self.prepare()
        t = time.monotonic()
        for i in range(1, self.nodes + 1):
            self.launch(i)
        for i in range(1, self.nodes + 1):
            self.wait_serving(i, timeout)
        return time.monotonic() - t

    def start_node(self, node: int, timeout: float = 120) -> float:
        """Starts one (stopped or killed) node again on its data and waits
        until it serves; returns the seconds that took."""
        t = time.monotonic()
        self.launch(node)
        self.wait_serving(node, timeout)
        return time.monotonic() - t

    def pid(self, node: int) -> int | None:
        p = self.procs.get(node)
        return p.pid if p is not None and p.poll() is None else None

    def kill(self, node: int) -> float | None:
        """SIGKILL of one node, reaped; returns the time.monotonic() right
        after the signal went out, None if the node does not run."""
        p = self.procs.get(node)
        if p is None or p.poll() is not None:
            return None
        os.kill(p.pid, signal.SIGKILL)
        t = time.monotonic()
        p.wait()
        return t

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM to every node at once (a controlled shutdown each), SIGKILL
        for whatever still runs after `timeout` seconds."""
        live = [p for p in self.procs.values() if p.poll() is None]
        for p in live:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        try:
            for p in live:
                try:
                    p.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
        except KeyboardInterrupt:
            pass  # a second Ctrl-C: no more waiting, SIGKILL below
        for p in live:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        self.procs.clear()

    def remove_data(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def errors(self, node: int, most: int = 5) -> str:
        """The first ERROR/FATAL lines of a node's log (why it stopped)."""
        try:
            text = (self.node_dir(node) / "kafka.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join([x for x in text.splitlines() if "] ERROR " in x or "] FATAL " in x][:most])

    def log_tail(self, node: int, lines: int = 20) -> str:
        try:
            return "\n".join((self.node_dir(node) / "kafka.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> KafkaCluster:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def interrupted(signum, frame) -> None:
    """SIGTERM handled as Ctrl-C: the `finally` that stops the nodes runs."""
    raise KeyboardInterrupt


def main() -> int:
    nodes = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    root = Path(tempfile.mkdtemp(prefix="sluice-kafka-cluster."))
    kc = KafkaCluster(root, nodes)
    try:
        took = kc.start()
        print(f"{kc.version}, {nodes} nodes serving after {took:.1f} s; data under {root}", file=sys.stderr)
        print(kc.bootstrap, flush=True)
        signal.signal(signal.SIGTERM, interrupted)
        # Started in the background by a script, SIGINT may arrive ignored: Ctrl-C stops the nodes anyway.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        kc.stop()
        kc.remove_data()
    return 0


if __name__ == "__main__":
    sys.exit(main())
