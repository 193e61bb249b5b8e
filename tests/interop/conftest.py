"""Fixtures for Sluice's interop tests: a broker under test, and helpers.

The broker is chosen by SLUICE_INTEROP_BROKER:
  sluiced (default)  runs $SLUICED_BIN (default <repo>/target/release/sluiced)
                     as `sluiced --listen 127.0.0.1:PORT --data-dir DIR
                     --metrics 127.0.0.1:PORT2 --config FILE`
  kafka              runs real Apache Kafka (KRaft) through scripts/kafka-kraft,
                     to check the tests themselves against the reference.

Fixtures:
  broker_process  (module) a running Broker: .bootstrap, .restart(), .kill9(),
                  .stop(), .start(); a module may set BROKER_CONFIG = {...}
                  (Kafka property names) to override the defaults below.
  broker          (module) its bootstrap string, "127.0.0.1:PORT".
  admin           (module) an Admin helper: create_topic(name, partitions).
  topic_name      (function) a fresh topic name for the calling test.
Everything binds to 127.0.0.1; every wait has a deadline; teardown stops
whatever was started.
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
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
INTEROP_DIR = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sluice"
BROKER_KIND = os.environ.get("SLUICE_INTEROP_BROKER", "sluiced")
SLUICED_BIN = Path(os.environ.get("SLUICED_BIN") or REPO_ROOT / "target" / "release" / "sluiced")
KAFKA_KRAFT = REPO_ROOT / "scripts" / "kafka-kraft"

# Broker settings every module starts from (Kafka property names; sluiced
# reads the same names from its TOML config file).
DEFAULT_CONFIG: dict[str, object] = {
    "num.partitions": 3,
    "auto.create.topics.enable": True,
    "group.initial.rebalance.delay.ms": 0,
}

START_TIMEOUT = float(os.environ.get("SLUICE_INTEROP_START_TIMEOUT", "90" if BROKER_KIND == "kafka" else "30"))
STOP_TIMEOUT = 30.0

if BROKER_KIND not in ("sluiced", "kafka"):
    raise pytest.UsageError(f"SLUICE_INTEROP_BROKER must be 'sluiced' or 'kafka', not {BROKER_KIND!r}")


def pytest_report_header(config):
    target = SLUICED_BIN if BROKER_KIND == "sluiced" else KAFKA_KRAFT
    return f"interop broker: {BROKER_KIND} ({target})"


def pytest_collection_modifyitems(config, items):
    for item in items:
        mark = item.get_closest_marker("sluiced_only")
        if mark is not None and BROKER_KIND != "sluiced":
            reason = mark.args[0] if mark.args else "sluiced-only test"
            item.add_marker(pytest.mark.skip(reason=f"{reason} (broker under test: {BROKER_KIND})"))


# --- ports ----------------------------------------------------------------------

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


# --- the broker process ---------------------------------------------------------------

def _die_with_parent() -> None:
    """In the child before exec: ask Linux to SIGKILL it if pytest dies, so a
    killed test run leaves no broker behind (teardown handles normal exits)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort
        pass


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _props_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


class Broker:
    """One broker under test, on a fixed port and data dir across restarts."""

    def __init__(self, kind: str, workdir: Path, config: dict[str, object]):
        self.kind = kind
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config = dict(config)
        self.port = free_port()
        self.aux_port = free_port()  # sluiced: metrics; kafka: controller listener
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / "broker.log"
        self.starts = 0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        if self.kind == "sluiced":
            if not SLUICED_BIN.exists():
                pytest.fail(f"{SLUICED_BIN} does not exist: build it (cargo build --release -p sluice-broker) "
                            f"or set SLUICED_BIN, or run against Kafka with SLUICE_INTEROP_BROKER=kafka")
            conf = self.workdir / "sluiced.toml"
            # Quoted keys: each Kafka property name stays one flat key (sluiced
            # also accepts the dotted, nested-table form).
            conf.write_text("".join(f'"{k}" = {_toml_value(v)}\n' for k, v in self.config.items()))
            return [str(SLUICED_BIN), "--listen", self.bootstrap, "--data-dir", str(self.data_dir),
                    "--metrics", f"127.0.0.1:{self.aux_port}", "--config", str(conf)]
        cmd = [str(KAFKA_KRAFT), "run", "--port", str(self.port), "--controller-port", str(self.aux_port),
               "--data-dir", str(self.data_dir)]
        for k, v in self.config.items():
            cmd += ["--set", f"{k}={_props_value(v)}"]
        return cmd

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "broker already running"
        # A port released by the previous incarnation may take a moment to be bindable.
        deadline = time.monotonic() + START_TIMEOUT
        while port_accepts(self.port):
            if time.monotonic() > deadline:
                pytest.fail(f"port {self.port} is still taken by something else")
            time.sleep(0.2)
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        env.setdefault("RUST_BACKTRACE", "1")
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts}: {' '.join(self.command())}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.workdir, env=env,
                                         start_new_session=True, preexec_fn=_die_with_parent)
        while not port_accepts(self.port):
            if self.proc.poll() is not None:
                pytest.fail(f"{self.kind} exited with {self.proc.returncode} during start-up:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self._signal(signal.SIGKILL)
                self.proc.wait(timeout=STOP_TIMEOUT)
                pytest.fail(f"{self.kind} did not accept connections on {self.bootstrap} "
                            f"within {START_TIMEOUT:.0f} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def _signal(self, sig: int) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)  # the process group: the broker and anything it spawned
        except ProcessLookupError:
            pass

    def stop(self) -> None:
        """Graceful stop (SIGTERM), SIGKILL after STOP_TIMEOUT."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait(timeout=STOP_TIMEOUT)
        self._signal(signal.SIGKILL)  # leftovers in the group, if any
        self.proc = None

    def kill9(self) -> None:
        """Crash the broker: SIGKILL, no chance to flush or clean up."""
        assert self.proc is not None and self.proc.poll() is None, "broker is not running"
        self._signal(signal.SIGKILL)
        self.proc.wait(timeout=STOP_TIMEOUT)
        self.proc = None

    def restart(self) -> None:
        """Start again on the same port and data dir (stopping it first if it runs)."""
        self.stop()
        self.start()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        kafka_log = self.data_dir / "kafka.log"
        if kafka_log.exists():
            text += kafka_log.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="module")
def broker_process(request):
    config = dict(DEFAULT_CONFIG)
    config.update(getattr(request.module, "BROKER_CONFIG", {}))
    workdir = Path(tempfile.mkdtemp(prefix=f"sluice-interop-{BROKER_KIND}-"))
    failed_before = request.session.testsfailed
    b = Broker(BROKER_KIND, workdir, config)
    try:
        b.start()
        yield b
    finally:
        b.stop()
        if request.session.testsfailed > failed_before or os.environ.get("SLUICE_INTEROP_KEEP"):
            print(f"\n[interop] broker work dir kept: {workdir} (log: {b.log_path})")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    b = getattr(item, "funcargs", {}).get("broker_process")
    if rep.failed and isinstance(b, Broker):
        rep.sections.append(("broker log (tail)", b.log_tail()))


@pytest.fixture(scope="module")
def broker(broker_process) -> str:
    return broker_process.bootstrap


# --- admin helper -------------------------------------------------------------------

class Admin:
    def __init__(self, bootstrap: str):
        from confluent_kafka.admin import AdminClient

        self.bootstrap = bootstrap
        # log_level 0: librdkafka would otherwise log every refused reconnect
        # while a test has the broker down; errors still surface as exceptions.
        self.client = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000,
                                   "log_level": 0, "log.connection.close": False})

    def create_topic(self, name: str, partitions: int, config: dict[str, str] | None = None,
                     timeout: float = 60.0) -> str:
        """Creates the topic and waits until every partition has a leader."""
        from confluent_kafka import KafkaError, KafkaException
        from confluent_kafka.admin import NewTopic

        deadline = time.monotonic() + timeout
        while True:
            fut = self.client.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1,
                                                      config=config or {})],
                                            request_timeout=20)[name]
            try:
                fut.result(timeout=30)
                break
            except KafkaException as e:
                err = e.args[0]
                if err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    break
                if err.retriable() and time.monotonic() < deadline:
                    time.sleep(0.5)
                    continue
                raise
        self.wait_for_leaders(name, partitions, deadline - time.monotonic())
        return name

    def wait_for_leaders(self, name: str, partitions: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + max(timeout, 1.0)
        last = None
        while time.monotonic() < deadline:
            try:
                md = self.client.list_topics(topic=name, timeout=10)
                t = md.topics.get(name)
                if t is not None and t.error is None and len(t.partitions) == partitions \
                        and all(p.leader >= 0 for p in t.partitions.values()):
                    return
                last = t
            except Exception as e:  # noqa: BLE001 - retried until the deadline
                last = e
            time.sleep(0.2)
        raise AssertionError(f"topic {name}: not all {partitions} partitions have a leader: {last!r}")


@pytest.fixture(scope="module")
def admin(broker) -> Admin:
    return Admin(broker)


@pytest.fixture
def topic_name(request) -> str:
    base = "".join(c if c.isalnum() else "-" for c in request.node.name)[:60].strip("-")
    return f"{base}-{uuid.uuid4().hex[:8]}"


# --- small shared helpers -----------------------------------------------------------

def venv_python() -> str:
    return str(CACHE / "venv" / "bin" / "python")


def run_tool(cmd: list[str], timeout: float, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Runs an external interop program with a hard timeout; output is captured
    and echoed so pytest shows it on failure."""
    try:
        proc = subprocess.run(cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=timeout, text=True, errors="replace")
    except subprocess.TimeoutExpired as e:
        out = e.stdout if isinstance(e.stdout, str) else (e.stdout or b"").decode(errors="replace")
        print(out)
        pytest.fail(f"{cmd[0]} did not finish within {timeout:.0f} s")
    print(proc.stdout)
    return proc
