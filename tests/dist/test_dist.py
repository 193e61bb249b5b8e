"""dist/ as a user of a release meets it (issue 16): the wheel, the npm
packages and the broker tarball installed by path with no Rust toolchain on
PATH, the examples run against the tarball's sluiced and against Apache Kafka,
and the checks a PyPI or npm upload would face (auditwheel, twine, what npm
packs). scripts/dist builds dist/; scripts/test-dist runs this file."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tarfile
import uuid
import zipfile
from pathlib import Path

from conftest import (
    HOST_TRIPLE,
    NPM_PLATFORM,
    REPO_ROOT,
    Artifacts,
    NpmProject,
    Venv,
    run,
    serves_transactions,
)

ARCH = HOST_TRIPLE.split("-")[0]
NODE_PKG = REPO_ROOT / "bindings" / "node"
LIFECYCLE_SCRIPTS = {"preinstall", "install", "postinstall", "prepare", "preprepare", "postprepare"}
# What the main npm package may ship, and what it must ship.
NPM_MAIN_ALLOWED = re.compile(r"(package\.json|README\.md|LICENSE|index\.js|index\.d\.ts|native\.js|native\.d\.ts"
                              r"|lib/[A-Za-z0-9_-]+\.js)")
NPM_MAIN_REQUIRED = {"package.json", "index.js", "index.d.ts", "native.js", "native.d.ts", "lib/kafka.js"}


def tgz_files(path: Path) -> dict[str, bytes | None]:
    """Files in an npm tarball (without the `package/` prefix) -> package.json's bytes, else None."""
    out: dict[str, bytes | None] = {}
    with tarfile.open(path) as tar:
        for m in tar.getmembers():
            if m.isfile():
                name = m.name.removeprefix("package/")
                f = tar.extractfile(m) if name == "package.json" else None
                out[name] = f.read() if f else None
    return out


# --- the wheel and the sdist ---------------------------------------------------

def test_wheel_is_abi3_manylinux2014_and_auditwheel_agrees(artifacts: Artifacts):
    name = artifacts.wheel.name
    m = re.fullmatch(rf"sluice_client-{re.escape(artifacts.version)}-cp39-abi3-(?P<platforms>[a-z0-9_.]+)\.whl", name)
    assert m, name
    assert set(m["platforms"].split(".")) == {f"manylinux2014_{ARCH}", f"manylinux_2_17_{ARCH}"}, name
    shown = run([sys.executable, "-m", "auditwheel", "show", artifacts.wheel], env=None)
    assert re.search(rf'consistent with the following platform tag:\s*"?manylinux_2_17_{ARCH}', shown), shown
    with zipfile.ZipFile(artifacts.wheel) as whl:
        names = whl.namelist()
    dist_info = f"sluice_client-{artifacts.version}.dist-info/"
    strays = [n for n in names if not n.startswith(("sluice/", dist_info))]
    assert not strays, f"the wheel carries files outside the package: {strays}"
    assert {"sluice/__init__.py", "sluice/_sluice.abi3.so", "sluice/_sluice.pyi", "sluice/py.typed"} <= set(names)
    assert not [n for n in names if n.endswith((".rs", ".toml")) or "/tests/" in n], names


def test_twine_check_passes(artifacts: Artifacts):
    out = run([sys.executable, "-m", "twine", "check", "--strict", artifacts.wheel, artifacts.sdist], env=None)
    assert out.count("PASSED") == 2, out


def test_sdist_holds_the_sources_cargo_builds_from(artifacts: Artifacts, tmp_path: Path):
    top = f"sluice_client-{artifacts.version}/"
    with tarfile.open(artifacts.sdist) as tar:
        names = [n.removeprefix(top) for n in tar.getnames()]
        tar.extractall(tmp_path, filter="data")
    # Its own workspace (maturin trims the members to the crates it packs)
    # resolves with the lock file it carries, as `pip install` of the sdist
    # hands it to cargo (cargo drops the lock's entries for the crates left
    # out, hence no --locked). Building it would take minutes.
    run(["cargo", "metadata", "--offline", "--format-version", "1", "--manifest-path",
         tmp_path / top / "bindings/python/Cargo.toml"], env=None)
    for needed in ("pyproject.toml", "PKG-INFO", "README.md", "python/sluice/__init__.py", "Cargo.lock"):
        assert needed in names, f"the sdist lacks {needed}"
    for crate in ("client", "protocol"):
        assert any(n.startswith(f"{crate}/src/") or f"/{crate}/src/" in n for n in names), \
            f"the sdist lacks the {crate} crate the extension depends on"
    unwanted = [n for n in names if n.startswith(("target/", "dist/")) or "node_modules" in n or n.endswith(".so")]
    assert not unwanted, unwanted


def test_fresh_venv_imports_the_installed_wheel(fresh_venv: Venv, artifacts: Artifacts):
    out = run([fresh_venv.python, "-c",
               "import sluice, sluice._sluice as m, importlib.metadata as md;"
               "print(sluice.__file__); print(m.__file__); print(md.version('sluice-client'))"],
              fresh_venv.env, cwd=fresh_venv.python.parents[2])
    package_file, module_file, version = out.split()[:3]
    venv = str(fresh_venv.python.parents[1])
    assert package_file.startswith(venv) and module_file.startswith(venv), out
    assert version == artifacts.version


def copy_examples(kind: str, dest: Path) -> None:
    for f in (REPO_ROOT / "examples" / kind).iterdir():
        shutil.copy(f, dest / f.name)


def test_python_examples_from_the_fresh_venv(broker: str, fresh_venv: Venv, tmp_path: Path):
    copy_examples("python", tmp_path)
    py, env = fresh_venv.python, fresh_venv.env
    topic = "dist-events-" + uuid.uuid4().hex[:8]
    out = run([py, "producer.py", broker, "1000", topic], env, cwd=tmp_path)
    assert "sent 1000 events" in out, out
    out = run([py, "consumer.py", broker, "1000", topic, "dist-" + uuid.uuid4().hex[:6]], env, cwd=tmp_path)
    assert "consumed 1000 events" in out and "for 50 users" in out, out
    if not serves_transactions(broker):
        print(f"[test-dist] {broker} serves no transactions: transactional.py not run there")
        return
    sink = topic + "-upper"
    out = run([py, "transactional.py", broker, "1000", topic, sink, "dist-txn-" + uuid.uuid4().hex[:6]],
              env, cwd=tmp_path)
    assert "transformed 1000 events" in out, out
    out = run([py, "consumer.py", broker, "1000", sink, "dist-check-" + uuid.uuid4().hex[:6]], env, cwd=tmp_path)
    assert "consumed 1000 events" in out, out


# --- the npm packages ----------------------------------------------------------

def test_npm_pack_lists_only_what_ships(artifacts: Artifacts):
    dry = subprocess.run(["npm", "pack", "--dry-run", "--json"], cwd=NODE_PKG, capture_output=True, text=True,
                         check=True)
    listed = {f["path"] for f in json.loads(dry.stdout)[0]["files"]}
    wrong = sorted(p for p in listed if not NPM_MAIN_ALLOWED.fullmatch(p))
    assert not wrong, f"npm pack would ship files that do not belong in the package: {wrong}"
    assert NPM_MAIN_REQUIRED <= listed, f"npm pack would leave out {sorted(NPM_MAIN_REQUIRED - listed)}"
    # dist/'s main package is exactly that list, plus the licence scripts/dist adds.
    shipped, expected = set(tgz_files(artifacts.npm_main)), listed | {"LICENSE"}
    assert shipped == expected, f"dist/{artifacts.npm_main.name} differs in: {sorted(shipped ^ expected)}"
    platform = set(tgz_files(artifacts.npm_platform))
    assert platform == {"package.json", "README.md", "LICENSE", f"sluice.{NPM_PLATFORM}.node"}, sorted(platform)


def test_npm_packages_need_no_install_script(artifacts: Artifacts):
    main = json.loads(tgz_files(artifacts.npm_main)["package.json"] or b"")
    platform = json.loads(tgz_files(artifacts.npm_platform)["package.json"] or b"")
    for meta in (main, platform):
        assert not LIFECYCLE_SCRIPTS & set(meta.get("scripts", {})), \
            f"{meta['name']} has an install-time script npm 11 would hold for approval: {meta['scripts']}"
        assert not meta.get("gypfile"), meta["name"]
    assert main["version"] == platform["version"] == artifacts.version
    assert not main.get("dependencies"), f"the package needs nothing at run time: {main.get('dependencies')}"
    expected = {json.loads(p.read_text())["name"]: artifacts.version
                for p in sorted((NODE_PKG / "npm").glob("*/package.json"))}
    assert main.get("optionalDependencies") == expected
    assert platform["name"] == f"sluice-client-{NPM_PLATFORM}"
    assert platform["os"] == ["linux"] and platform["libc"] == ["glibc"]
    assert platform["cpu"] == [{"x86_64": "x64", "aarch64": "arm64"}[ARCH]]
    assert platform["main"] == f"sluice.{NPM_PLATFORM}.node"


def test_npm_install_takes_the_platform_package_and_runs_nothing(npm_project: NpmProject):
    assert "script" not in npm_project.install_output.lower(), npm_project.install_output
    modules = npm_project.root / "node_modules"
    assert (modules / f"sluice-client-{NPM_PLATFORM}" / f"sluice.{NPM_PLATFORM}.node").is_file()
    others = [p.name for p in modules.glob("sluice-client-*") if p.name != f"sluice-client-{NPM_PLATFORM}"]
    assert not others, f"packages for other platforms were installed: {others}"
    out = run(["node", "-e", "require('sluice-client');"
               "console.log(Object.keys(require.cache).filter((k) => k.endsWith('.node')).join('\\n'))"],
              npm_project.env, cwd=npm_project.root)
    assert out.strip() == str(modules / f"sluice-client-{NPM_PLATFORM}" / f"sluice.{NPM_PLATFORM}.node"), out


def test_node_examples_from_the_fresh_project(broker: str, npm_project: NpmProject):
    root = npm_project.root
    copy_examples("node", root)
    topic = "dist-node-" + uuid.uuid4().hex[:8]
    env = {**npm_project.env, "KAFKA_BOOTSTRAP": broker, "TOPIC": topic, "MESSAGES": "25", "MAX_MESSAGES": "25",
           "GROUP_ID": "dist-" + uuid.uuid4().hex[:6]}
    out = run(["node", "producer.js"], env, cwd=root, timeout=120)
    assert "produced 25 messages" in out, out
    out = run(["node", "consumer.js"], env, cwd=root, timeout=120)
    assert "consumed 25 messages" in out and "Hello sluice-client user! #24" in out, out
    if not serves_transactions(broker):
        print(f"[test-dist] {broker} serves no transactions: transactional.js not run there")
        return
    output = topic + "-upper"
    out = run(["node", "transactional.js"], {**env, "INPUT": topic, "OUTPUT": output,
                                            "GROUP_ID": "dist-txn-" + uuid.uuid4().hex[:6]}, cwd=root, timeout=120)
    assert "transformed 25 messages" in out, out
    out = run(["node", "consumer.js"], {**env, "TOPIC": output, "GROUP_ID": "dist-check-" + uuid.uuid4().hex[:6]},
              cwd=root, timeout=120)
    assert "consumed 25 messages" in out and "HELLO SLUICE-CLIENT USER! #24" in out, out


# --- the broker tarball --------------------------------------------------------

def test_tarball_holds_stripped_binaries_that_report_the_version(release_dir: Path, artifacts: Artifacts,
                                                                  no_rust_env: dict[str, str]):
    assert release_dir.name == f"sluice-{artifacts.version}-{HOST_TRIPLE}"
    assert sorted(p.name for p in release_dir.iterdir()) == ["LICENSE", "README.md", "sluice", "sluiced"]
    for binary in ("sluiced", "sluice"):
        out = run([release_dir / binary, "--version"], no_rust_env)
        assert out.strip() == f"{binary} {artifacts.version}", out
        sections = run(["readelf", "-S", "-W", release_dir / binary], no_rust_env)
        assert ".debug_info" not in sections and ".symtab" not in sections, f"{binary} is not stripped"
