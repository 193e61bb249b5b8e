"""Fixtures for the fresh-install test of dist/ (scripts/test-dist).

Everything is installed the way a user of a release installs it, from the files
in dist/ by path, into places that know nothing of this checkout, with a PATH
that has no Rust toolchain on it:

  artifacts     (session) dist/'s files by kind; the version from Cargo.toml
  no_rust_env   (session) os.environ minus cargo/rustup directories and variables;
                proven: `command -v cargo` and `command -v rustc` find nothing
  release_dir   (session) the broker tarball, checksum verified, unpacked
  sluiced       (session) bootstrap of the unpacked tarball's sluiced, started on
                a free 127.0.0.1 port with a temporary data dir, stopped at the end
  fresh_venv    (session) a new virtualenv with only dist/'s wheel installed
  npm_project   (session) a new npm project with dist/'s two .tgz installed
  broker        (function, parametrized sluiced / kafka) the bootstrap to run
                the examples against; kafka is SLUICE_TEST_KAFKA_BOOTSTRAP
                (skipped when unset)
Install times are printed (pytest -s); nothing asserts timings.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DIST = Path(os.environ.get("SLUICE_DIST_DIR") or REPO_ROOT / "dist")
KAFKA_BOOTSTRAP = os.environ.get("SLUICE_TEST_KAFKA_BOOTSTRAP", "").strip()
HOST_TRIPLE = {"x86_64": "x86_64-unknown-linux-gnu", "aarch64": "aarch64-unknown-linux-gnu"}[os.uname().machine]
NPM_PLATFORM = {"x86_64": "linux-x64-gnu", "aarch64": "linux-arm64-gnu"}[os.uname().machine]
RUST_VARS = ("CARGO", "CARGO_HOME", "CARGO_TARGET_DIR", "CARGO_BUILD_TARGET", "RUSTUP_HOME", "RUSTUP_TOOLCHAIN",
             "RUSTC", "RUSTC_WRAPPER", "RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "VIRTUAL_ENV", "PYTHONPATH",
             "NODE_PATH", "PYO3_PYTHON", "MATURIN_PEP517_ARGS")


def say(msg: str) -> None:
    print(f"[test-dist] {msg}", flush=True)


@dataclass(frozen=True)
class Artifacts:
    version: str
    wheel: Path
    sdist: Path
    npm_main: Path
    npm_platform: Path
    tarball: Path
    checksum: Path


def only(pattern: str) -> Path:
    found = sorted(DIST.glob(pattern))
    assert len(found) == 1, f"expected exactly one dist/{pattern}, found {[p.name for p in found]} (run scripts/dist)"
    return found[0]


@pytest.fixture(scope="session")
def artifacts() -> Artifacts:
    version = subprocess.run([sys.executable, str(REPO_ROOT / "scripts/lib/check-versions"), "--print"],
                             capture_output=True, text=True, check=True).stdout.strip()
    tarball = only(f"sluice-{version}-{HOST_TRIPLE}.tar.gz")
    return Artifacts(
        version=version,
        wheel=only(f"sluice_client-{version}-*.whl"),
        sdist=only(f"sluice_client-{version}.tar.gz"),
        npm_main=only(f"sluice-client-{version}.tgz"),
        npm_platform=only(f"sluice-client-{NPM_PLATFORM}-{version}.tgz"),
        tarball=tarball,
        checksum=only(tarball.name + ".sha256"),
    )


def has_rust(directory: str) -> bool:
    return any(os.access(os.path.join(directory, tool), os.X_OK) for tool in ("cargo", "rustc", "rustup"))


@pytest.fixture(scope="session")
def no_rust_env(tmp_path_factory) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in RUST_VARS and not k.startswith(("CARGO_", "RUSTUP_"))}
    dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and not has_rust(d)]
    # The shared venv (this test's own interpreter) stays off PATH too: the fresh venv stands alone.
    dirs = [d for d in dirs if Path(d).resolve() != Path(sys.prefix, "bin").resolve()]
    env["PATH"] = os.pathsep.join(dirs)
    env["HOME"] = str(tmp_path_factory.mktemp("home"))  # no ~/.cargo, no ~/.npmrc, no pip config
    for tool in ("cargo", "rustc", "rustup", "maturin"):
        probe = subprocess.run(["bash", "-c", f"command -v {tool}"], env=env, capture_output=True, text=True)
        assert probe.returncode != 0, f"{tool} is still on the test's PATH: {probe.stdout.strip()}"
    for tool in ("node", "npm"):
        probe = subprocess.run(["bash", "-c", f"command -v {tool}"], env=env, capture_output=True, text=True)
        assert probe.returncode == 0, f"{tool} is not on PATH once the Rust directories are left out"
    say(f"PATH without a Rust toolchain: {env['PATH']} (cargo, rustc, rustup: not found)")
    return env


def run(cmd: list, env: dict[str, str] | None, cwd: Path | None = None, timeout: float = 180) -> str:
    proc = subprocess.run([str(c) for c in cmd], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="session")
def release_dir(artifacts: Artifacts, tmp_path_factory) -> Path:
    recorded, name = artifacts.checksum.read_text().split()
    assert name == artifacts.tarball.name, f"{artifacts.checksum.name} names {name}"
    actual = hashlib.sha256(artifacts.tarball.read_bytes()).hexdigest()
    assert actual == recorded, f"{artifacts.tarball.name}: sha256 {actual}, {artifacts.checksum.name} says {recorded}"
    dest = tmp_path_factory.mktemp("release")
    with tarfile.open(artifacts.tarball) as tar:
        tar.extractall(dest, filter="data")
    return dest / f"sluice-{artifacts.version}-{HOST_TRIPLE}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def sluiced(release_dir: Path, no_rust_env: dict[str, str]) -> Iterator[str]:
    work = Path(tempfile.mkdtemp(prefix="sluice-dist-broker-"))
    port = free_port()
    conf = work / "sluiced.toml"
    conf.write_text('"num.partitions" = 3\n"auto.create.topics.enable" = true\n'
                    '"group.initial.rebalance.delay.ms" = 0\n')
    log = open(work / "sluiced.log", "wb")
    proc = subprocess.Popen(
        [str(release_dir / "sluiced"), "--listen", f"127.0.0.1:{port}", "--data-dir", str(work / "data"),
         "--config", str(conf)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, env=no_rust_env,
    )
    deadline = time.monotonic() + 30
    while not port_accepts(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the tarball's sluiced did not start:\n" + (work / "sluiced.log").read_text()[-3000:])
        time.sleep(0.1)
    say(f"the tarball's sluiced listens on 127.0.0.1:{port}")
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


@pytest.fixture(params=["sluiced", "kafka"])
def broker(request) -> str:
    if request.param == "kafka":
        if not KAFKA_BOOTSTRAP:
            pytest.skip("SLUICE_TEST_KAFKA_BOOTSTRAP is not set (scripts/test starts an Apache Kafka and sets it)")
        return KAFKA_BOOTSTRAP
    return request.getfixturevalue("sluiced")


def serves_transactions(bootstrap: str) -> bool:
    """Whether the broker lists EndTxn (api key 26) in ApiVersions v0."""
    host, port = bootstrap.rsplit(":", 1)
    client_id = b"sluice-dist-probe"
    body = struct.pack(">hhih", 18, 0, 1, len(client_id)) + client_id
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(struct.pack(">i", len(body)) + body)
        data = b""
        while len(data) < 4 or len(data) < 4 + struct.unpack(">i", data[:4])[0]:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    (n,) = struct.unpack(">i", data[10:14])
    return 26 in {struct.unpack(">h", data[14 + 6 * i:16 + 6 * i])[0] for i in range(n)}


@dataclass(frozen=True)
class Venv:
    python: Path
    env: dict[str, str]
    install_output: str


@pytest.fixture(scope="session")
def fresh_venv(artifacts: Artifacts, no_rust_env: dict[str, str], tmp_path_factory) -> Venv:
    # The interpreter this venv's base is, not the shared venv itself.
    base_python = Path(os.path.realpath(sys.executable))
    root = tmp_path_factory.mktemp("venv")
    t = time.monotonic()
    run([base_python, "-m", "venv", root / "venv"], no_rust_env)
    created = time.monotonic() - t
    env = {**no_rust_env, "PATH": f"{root / 'venv' / 'bin'}{os.pathsep}{no_rust_env['PATH']}",
           "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_CACHE_DIR": "1"}
    python = root / "venv" / "bin" / "python"
    t = time.monotonic()
    # --no-index: from the file alone; --only-binary: pip may not build anything.
    out = run([python, "-m", "pip", "install", "--no-index", "--only-binary=:all:", artifacts.wheel], env)
    say(f"fresh venv: created in {created:.1f} s; pip install {artifacts.wheel.name} took "
        f"{time.monotonic() - t:.1f} s")
    return Venv(python=python, env=env, install_output=out)


@dataclass(frozen=True)
class NpmProject:
    root: Path
    env: dict[str, str]
    install_output: str


@pytest.fixture(scope="session")
def npm_project(artifacts: Artifacts, no_rust_env: dict[str, str], tmp_path_factory) -> NpmProject:
    root = tmp_path_factory.mktemp("npm-project")
    # A cache of its own and --offline: nothing can come from a registry or
    # from this machine's npm cache, so only the two files can satisfy the install.
    env = {**no_rust_env, "npm_config_cache": str(root / ".npm-cache"), "npm_config_update_notifier": "false",
           "npm_config_fund": "false", "npm_config_audit": "false"}
    run(["npm", "init", "-y"], env, cwd=root)
    t = time.monotonic()
    out = run(["npm", "install", "--offline", artifacts.npm_platform, artifacts.npm_main], env, cwd=root)
    say(f"fresh npm project: npm install {artifacts.npm_platform.name} {artifacts.npm_main.name} took "
        f"{time.monotonic() - t:.1f} s")
    return NpmProject(root=root, env=env, install_output=out)
