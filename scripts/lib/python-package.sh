# install_sluice_wheel VENV ROOT: builds the `sluice` Python package
# (bindings/python, maturin build --release into the workspace target/) and
# force-installs the wheel into VENV. Used by scripts/test-python and
# scripts/bench. Needs maturin in VENV.
# shellcheck shell=bash
install_sluice_wheel() {
  local venv="$1" root="$2" pkg="$2/bindings/python" wheels
  wheels="$(mktemp -d)"
  # A `maturin develop` leaves the extension next to the sources; it must
  # not shadow the installed wheel.
  rm -f "$pkg"/python/sluice/_sluice*.so
  CARGO_TARGET_DIR="$root/target" "$venv/bin/maturin" build --release --quiet -m "$pkg/Cargo.toml" -o "$wheels" \
    && "$venv/bin/python" -m pip install --disable-pip-version-check -q --force-reinstall --no-deps \
      "$wheels"/sluice_client-*.whl
  local rc=$?
  rm -rf "$wheels"
  return $rc
}
