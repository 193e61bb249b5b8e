"""Driving a local sluiced cluster (scripts/cluster) from Python: shared by the
CI cluster tests (test_cluster.py) and the randomised fault suite
(tests/faults/fault_suite.py, scripts/faults).

This module owns: a `Cluster` over scripts/cluster (its own folder, a free
port range, kill/stop/start/pause of one node, a teardown that leaves no
process behind), `wait_for` (every wait has a deadline), `leader_port` (a
partition's leader and ISR from Metadata), `LoadProducer` (a producer
thread sending at a steady rate and recording every send and outcome into a
history.History; idempotent acks=all unless told otherwise), `TopicCreator`
(topic creations one after another, checked afterwards) and
`active_controller` (DescribeQuorum's leader).
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

REPO_ROOT = Path(__file__).resolve().parents[2]
CLUSTER_SCRIPT = REPO_ROOT / "scripts" / "cluster"

T = TypeVar("T")


def free_port_range(count: int) -> int:
    """A base port with `count` free ports at base.. and base+100.. (client
    and controller listeners, as scripts/cluster numbers them)."""
    for _ in range(200):
        base = random.randrange(20000, 50000)
        ports = [base + i for i in range(count)] + [base + 100 + i for i in range(count)]
        socks: list[socket.socket] = []
        try:
            for p in ports:
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return base
    raise RuntimeError("no free port range")


class Cluster:
    """A cluster of `nodes` combined broker+controller nodes under `root`,
    driven through scripts/cluster; `extra` is TOML added to every node's
    configuration."""

    def __init__(self, root: Path, sluiced: Path, extra: str = "", nodes: int = 3, log_level: str = "info"):
        self.root = Path(root)
        self.nodes = nodes
        self.base = free_port_range(nodes)
        self.env = dict(os.environ, SLUICE_CLUSTER_DIR=str(self.root), SLUICE_CLUSTER_PORT=str(self.base),
                        SLUICED=str(sluiced), SLUICE_CLUSTER_EXTRA=extra, SLUICE_LOG=log_level)
        self.bootstrap = ",".join(f"127.0.0.1:{self.base + i}" for i in range(nodes))

    def run(self, *args: str, timeout: float = 120) -> str:
        """scripts/cluster ARGS...; an AssertionError with the nodes' logs if it fails."""
        r = subprocess.run([str(CLUSTER_SCRIPT), *args], env=self.env, capture_output=True, text=True,
                           timeout=timeout)
        if r.returncode != 0:
            raise AssertionError(f"scripts/cluster {' '.join(args)} failed:\n{r.stderr}\n{self.logs()}")
        return r.stdout

    def logs(self, lines: int = 25) -> str:
        out = []
        for i in range(1, self.nodes + 1):
            log = self.root / f"n{i}" / "sluiced.log"
            text = log.read_text(errors="replace").splitlines()[-lines:] if log.exists() else []
            out.append(f"--- node {i} ---\n" + "\n".join(text))
        return "\n".join(out)

    def node_of_port(self, port: int) -> int:
        return port - self.base + 1

    def pid(self, node: int) -> int | None:
        """The process id of a running node, None when it is not running."""
        f = self.root / f"n{node}" / "pid"
        try:
            pid = int(f.read_text())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def signal(self, node: int, sig: signal.Signals) -> bool:
        """Sends `sig` to a node's process (no waiting); False if it does not run."""
        pid = self.pid(node)
        if pid is None:
            return False
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return False
        return True

    def teardown(self) -> None:
        """Stops every node (controlled), then SIGKILLs whatever is left,
        continuing paused ones first so they can exit."""
        for i in range(1, self.nodes + 1):
            self.signal(i, signal.SIGCONT)
        try:
            self.run("down", timeout=60)
        except Exception:  # noqa: BLE001 - kill whatever is left below
            pass
        for i in range(1, self.nodes + 1):
            self.signal(i, signal.SIGKILL)


def wait_for(what: str, fn: Callable[[], T], timeout: float = 60.0, cluster: Cluster | None = None,
             interval: float = 0.5) -> T:
    """Polls `fn` until it returns something truthy (returned); an
    AssertionError naming `what` (and the cluster's log tails) after `timeout`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last})\n{cluster.logs() if cluster else ''}")


def leader_port(bootstrap: str, topic: str, partition: int) -> tuple[int, list[int]]:
    """The leader (node id; -1 if none) and ISR of one partition, from Metadata."""
    from confluent_kafka.admin import AdminClient

    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=20)
    t = md.topics[topic]
    p = t.partitions[partition]
    return p.leader, list(p.isrs)


class LoadProducer(threading.Thread):
    """A confluent-kafka producer sending at a steady rate, round robin over
    `partitions`, until stopped, recording every send and outcome into `h`.
    Idempotent acks=all unless `config` overrides it (librdkafka property names).
    A delivery reported without an offset fails the producer unless
    `offsetless_ok` (then it is recorded as an unknown outcome and its value
    kept in `acked_without_offset`)."""

    def __init__(self, bootstrap: str, topic: str, h: Any, name: str, partitions: int,
                 config: dict[str, Any] | None = None, pause_s: float = 0.002, offsetless_ok: bool = False):
        super().__init__(name=name, daemon=True)
        self.bootstrap, self.topic, self.h, self.partitions = bootstrap, topic, h, partitions
        self.config = dict(config or {})
        self.pause_s = pause_s
        self.stop = threading.Event()
        self.acked = 0
        self.last_ack = time.monotonic()
        self.errors: list[str] = []
        self.exc: BaseException | None = None
        self.unflushed = 0
        self.callback_exc: BaseException | None = None
        self.offsetless_ok = offsetless_ok
        self.acked_without_offset: list[str] = []

    def _delivered(self, op: int, err: Any, msg: Any) -> None:
        # An exception raised here would cross librdkafka's C callback and
        # surface as an unrelated SystemError: keep it, the send loop raises it.
        try:
            if err is None and msg.offset() < 0 and self.offsetless_ok:
                # librdkafka reports some sends as delivered with no offset
                # (persisted, by its idempotence bookkeeping): their offset is
                # unknown to the history; the caller checks they were read.
                self.acked_without_offset.append(msg.value().decode())
                self.h.unknown(op, "ACKED_WITHOUT_OFFSET")
            elif err is None:
                self.h.ok(op, msg.partition(), msg.offset())
                self.acked += 1
                self.last_ack = time.monotonic()
            else:
                self.errors.append(err.name())
                self.h.error(op, err.name())
        except BaseException as e:  # noqa: BLE001 - re-raised by run()
            detail = f"delivery report of op {op}: err {err!r}, partition {msg.partition()}, offset {msg.offset()}"
            self.callback_exc = AssertionError(f"{detail}: {e!r}")

    def run(self) -> None:
        from confluent_kafka import Producer

        try:
            p = Producer({"bootstrap.servers": self.bootstrap, "acks": "all", "enable.idempotence": True,
                          "linger.ms": 5, "message.timeout.ms": 120000, "retry.backoff.ms": 50,
                          "topic.metadata.refresh.interval.ms": 1000, **self.config})
            i = 0
            while not self.stop.is_set():
                part = i % self.partitions
                key, value = f"k{i % 16}", f"{self.name}-{i}"
                op = self.h.invoke(self.name, self.topic, key=key, value=value, partition=part)
                while True:
                    try:
                        p.produce(self.topic, key=key, value=value, partition=part,
                                  on_delivery=lambda err, msg, op=op: self._delivered(op, err, msg))
                        break
                    except BufferError:
                        p.poll(0.05)
                p.poll(0)
                if self.callback_exc is not None:
                    raise self.callback_exc
                i += 1
                time.sleep(self.pause_s)
            left = p.flush(180)
            self.unflushed = left
            if self.callback_exc is not None:
                raise self.callback_exc
            if left:
                raise AssertionError(f"{left} sends never completed")
        except BaseException as e:  # noqa: BLE001 - reported by the test thread
            self.exc = e


class TopicCreator(threading.Thread):
    """Creates topics `<prefix>-<i>` (3 partitions, RF 3) one after another
    until stopped, remembering which creates the admin client reported done
    and which failed (and with what)."""

    def __init__(self, bootstrap: str, prefix: str):
        super().__init__(name=f"creator-{prefix}", daemon=True)
        self.bootstrap, self.prefix = bootstrap, prefix
        self.stop = threading.Event()
        self.created: list[str] = []
        self.failed: dict[str, str] = {}
        self.exc: BaseException | None = None

    def run(self) -> None:
        from confluent_kafka.admin import AdminClient, NewTopic

        try:
            admin = AdminClient({"bootstrap.servers": self.bootstrap})
            i = 0
            while not self.stop.is_set():
                name = f"{self.prefix}-{i}"
                i += 1
                try:
                    admin.create_topics([NewTopic(name, 3, 3)], operation_timeout=30)[name].result(60)
                    self.created.append(name)
                except Exception as e:  # noqa: BLE001 - a failed create is retried by check()
                    self.failed[name] = repr(e)
                time.sleep(0.05)
        except BaseException as e:  # noqa: BLE001 - reported by the test thread
            self.exc = e

    def check(self, cluster: Cluster) -> None:
        """Every create reported done exists with all its partitions led by
        a live replica set of three; a failed one succeeds when retried (or
        turns out to exist: the controller may have committed it before it
        died)."""
        from confluent_kafka.admin import AdminClient, NewTopic

        assert self.exc is None, self.exc
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
        for name in self.failed:
            try:
                admin.create_topics([NewTopic(name, 3, 3)], operation_timeout=30)[name].result(60)
            except Exception as e:  # noqa: BLE001
                assert "TOPIC_ALREADY_EXISTS" in repr(e), f"retrying {name}: {e!r}"

        def all_led():
            md = admin.list_topics(timeout=20)
            for name in [*self.created, *self.failed]:
                t = md.topics.get(name)
                if t is None or t.error is not None or len(t.partitions) != 3:
                    return None
                if any(p.leader < 0 or len(p.replicas) != 3 for p in t.partitions.values()):
                    return None
            return True

        wait_for(f"{len(self.created) + len(self.failed)} created topics with leaders", all_led,
                 timeout=60, cluster=cluster)


def active_controller(cluster: Cluster) -> int:
    """The controller quorum's leader (-1 if no node knows one), asked with
    DescribeQuorum v0 over a raw connection (Metadata's controller_id names
    the broker asked in a sluiced cluster: every broker forwards admin
    requests, as KRaft brokers do)."""
    from kafka_wire import Conn, Reader, compact_string, i32, request_header_v2, uvarint

    body = (request_header_v2(55, 0, 1) + uvarint(2) + compact_string("__cluster_metadata")
            + uvarint(2) + i32(0) + uvarint(0) + uvarint(0) + uvarint(0))
    for address in cluster.bootstrap.split(","):
        try:
            conn = Conn(address, timeout=5)
            try:
                r = Reader(conn.request(body))
            finally:
                conn.sock.close()
            r.i32()  # correlation id
            r.take(1)  # the response header's (empty) tagged fields
            error = r.i16()
            r.take(1)  # one topic (compact array length 2)
            r.take(r.take(1)[0] - 1)  # its name
            r.take(1)  # one partition
            r.i32()  # partition index
            partition_error, leader = r.i16(), r.i32()
        except (OSError, ValueError):
            continue
        if error == 0 and partition_error == 0 and leader >= 0:
            return leader
    return -1
