# install_sluice_wheel VENV ROOT: force-installs the `sluice` Python package
# into VENV from dist/'s wheel, the one scripts/dist builds for release (abi3,
# manylinux2014, linked by zig against the workspace's release build). Runs
# `scripts/dist --python` first unless SLUICE_DIST_BUILT=1 says this run
# already built dist/ (scripts/test sets it after scripts/dist). Used by
# scripts/test-python and scripts/bench.
# shellcheck shell=bash
install_sluice_wheel() {
  local venv="$1" root="$2" wheels=()
  if [[ "${SLUICE_DIST_BUILT:-}" != 1 ]]; then
    "$root/scripts/dist" --python || return 1
  fi
  shopt -s nullglob
  wheels=("$root"/dist/sluice_client-*.whl)
  shopt -u nullglob
  if ((${#wheels[@]} != 1)); then
    printf 'install_sluice_wheel: expected one wheel in %s/dist, found %d\n' "$root" "${#wheels[@]}" >&2
    return 1
  fi
  # A `maturin develop` leaves the extension next to the sources; it must
  # not shadow the installed wheel.
  rm -f "$root"/bindings/python/python/sluice/_sluice*.so
  "$venv/bin/python" -m pip install --disable-pip-version-check -q --force-reinstall --no-deps "${wheels[0]}"
}
