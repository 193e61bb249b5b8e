"""Fixtures for the sluice Python package's tests.

Each test session starts its own sluiced (``$SLUICED_BIN``, default
``<repo>/target/release/sluiced``) on a free 127.0.0.1 port with a temporary
data dir, and stops it at the end (same approach as tests/interop). When
``SLUICE_TEST_KAFKA_BOOTSTRAP`` names a running Apache Kafka, tests marked
``core`` also run against it (parametrized ``broker`` fixture); otherwise
those runs are skipped.

Fixtures:
  sluiced      (session) bootstrap of the session's sluiced
  broker       (function, parametrized: sluiced / kafka) bootstrap to test against
  topic        (function) a fresh topic name, created with 3 partitions
Every wait has a deadline; nothing asserts timings.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
SLUICED_BIN = Path(os.environ.get("SLUICED_BIN") or REPO_ROOT / "target" / "release" / "sluiced")
KAFKA_BOOTSTRAP = os.environ.get("SLUICE_TEST_KAFKA_BOOTSTRAP", "").strip()
START_TIMEOUT = 30.0

BROKER_CONFIG = {
    "num.partitions": 3,
    "auto.create.topics.enable": True,
    "group.initial.rebalance.delay.ms": 0,
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def _toml(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    return '"' + str(v) + '"'


@pytest.fixture(scope="session")
def sluiced() -> Iterator[str]:
    if not SLUICED_BIN.exists():
        pytest.fail(f"{SLUICED_BIN} does not exist: cargo build --release -p sluice-broker (or set SLUICED_BIN)")
    work = Path(tempfile.mkdtemp(prefix="sluice-py-"))
    port, metrics = free_port(), free_port()
    conf = work / "sluiced.toml"
    conf.write_text("".join(f'"{k}" = {_toml(v)}\n' for k, v in BROKER_CONFIG.items()))
    (work / "data").mkdir()
    log = open(work / "sluiced.log", "wb")
    proc = subprocess.Popen(
        [str(SLUICED_BIN), "--listen", f"127.0.0.1:{port}", "--data-dir", str(work / "data"),
         "--metrics", f"127.0.0.1:{metrics}", "--config", str(conf)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
    )
    deadline = time.monotonic() + START_TIMEOUT
    while not port_accepts(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("sluiced did not start:\n" + (work / "sluiced.log").read_text()[-3000:])
        time.sleep(0.1)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        log.close()
        shutil.rmtree(work, ignore_errors=True)


def pytest_generate_tests(metafunc):
    if "broker" in metafunc.fixturenames:
        kinds = ["sluiced"]
        if metafunc.definition.get_closest_marker("core") is not None:
            kinds.append("kafka")
        metafunc.parametrize("broker", kinds, indirect=True)


@pytest.fixture
def broker(request) -> str:
    if request.param == "kafka":
        if not KAFKA_BOOTSTRAP:
            pytest.skip("SLUICE_TEST_KAFKA_BOOTSTRAP is not set")
        return KAFKA_BOOTSTRAP
    return request.getfixturevalue("sluiced")


@pytest.fixture
def topic(broker: str) -> str:
    from sluice import KafkaAdminClient, NewTopic

    name = "py-" + uuid.uuid4().hex[:12]
    admin = KafkaAdminClient(bootstrap_servers=broker)
    admin.create_topics([NewTopic(name, 3, 1)])
    admin.close()
    return name


@pytest.fixture
def sigint_raises() -> Iterator[None]:
    """Python's own SIGINT handler (KeyboardInterrupt) for the test. A process
    started from a non-interactive shell's background job inherits SIGINT
    ignored, and Python then installs no handler, so Ctrl-C tests would
    wait out their whole timeout there."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)

