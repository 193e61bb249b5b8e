# Shared helpers for scripts/bench; source
# it after setting ROOT (the checkout) and BENCH_NAME (the script's name, for
# messages). Defines: die, say, ensure_debs, build_rdkafka_bench,
# ensure_node_peers. (benches/e2e/bench.py starts and stops the brokers.)
# shellcheck shell=bash

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/sluice"
BENCH_BIN_DIR="$CACHE/bench"

die() { printf '%s: %s\n' "${BENCH_NAME:-bench}" "$*" >&2; exit 1; }
say() { printf '==> %s\n' "$*" >&2; }

# Installs the Debian packages that are missing (apt-get, as root or via sudo).
ensure_debs() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  say "installing ${missing[*]} (apt-get)"
  local sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
}

# build_rdkafka_bench OUT [WRAPPER.c]: compiles benches/e2e/rdkafka_bench.c
# (needs gcc, pkg-config, librdkafka-dev for the header) to OUT unless OUT
# was built from the same sources (their checksum, kept in OUT.src: several
# checkouts share the cache, so modification times say nothing) and linked
# against the same library. With
# WRAPPER.c, that file is compiled instead; it may #include
# "rdkafka_bench.c" (the include path has benches/e2e). With RDKAFKA_SO set
# to a librdkafka shared object (e.g. the one inside the confluent-kafka
# wheel), it is linked against that file (rpath'ed) instead of Debian's
# librdkafka: the API is the same, the newer library is what users run.
build_rdkafka_bench() {
  local out="$1" wrapper="${2:-}" src="$ROOT/benches/e2e/rdkafka_bench.c"
  local main="${wrapper:-$src}" so="${RDKAFKA_SO:-}"
  mkdir -p "$(dirname "$out")"
  local sources
  sources="$(cat "$src" "$main" | sha256sum | cut -d' ' -f1)"
  if [[ -x "$out" && "$(cat "$out.src" 2>/dev/null)" == "$sources" && "$(cat "$out.lib" 2>/dev/null)" == "$so" ]]; then
    return 0
  fi
  say "compiling $main${so:+ against $so}"
  local libs
  if [[ -n "$so" ]]; then
    libs=("$so" "-Wl,-rpath,$(dirname "$so")")
  else
    read -r -a libs <<<"$(pkg-config --libs rdkafka)"
  fi
  # shellcheck disable=SC2046
  cc -O2 -Wall -I "$ROOT/benches/e2e" -o "$out.tmp" "$main" $(pkg-config --cflags rdkafka) "${libs[@]}" -lm -lpthread
  mv "$out.tmp" "$out"
  printf '%s' "$so" >"$out.lib"
  printf '%s' "$sources" >"$out.src"
}

# ensure_node_peers: installs KafkaJS 2.2.4 and @confluentinc/kafka-javascript
# 1.10.1 (built from source with CKJS_LINKING=dynamic against Debian's
# libraries, installed here if missing) under $CACHE/bench/node, unless
# already there; prints the node_modules path.
ensure_node_peers() {
  ensure_debs python3 g++ make pkg-config libssl-dev zlib1g-dev libzstd-dev libsasl2-dev libcurl4-openssl-dev liblz4-dev
  command -v node >/dev/null || die "node is not installed"
  local peers="$CACHE/bench/node"
  mkdir -p "$peers"
  cat >"$peers/package.json.new" <<'JSON'
{
  "name": "sluice-bench-node",
  "private": true,
  "dependencies": {
    "kafkajs": "2.2.4",
    "@confluentinc/kafka-javascript": "1.10.1"
  },
  "allowScripts": {
    "@confluentinc/kafka-javascript": true
  }
}
JSON
  if ! cmp -s "$peers/package.json.new" "$peers/package.json" \
     || [[ ! -d "$peers/node_modules/kafkajs" ]] \
     || ! ls "$peers"/node_modules/@confluentinc/kafka-javascript/build/Release/*.node >/dev/null 2>&1; then
    mv "$peers/package.json.new" "$peers/package.json"
    say "installing KafkaJS and confluent-kafka-javascript (from source, CKJS_LINKING=dynamic) in $peers"
    (cd "$peers" && CKJS_LINKING=dynamic npm_config_cache="$CACHE/npm-cache" npm install --no-progress \
      --no-fund --no-audit >&2)
  else
    rm -f "$peers/package.json.new"
  fi
  echo "$peers/node_modules"
}
