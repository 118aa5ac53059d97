#!/usr/bin/env bash
# The fault proxy's overhead with no toxic: redis-benchmark straight to a private
# redis-server, and through `plimsoll proxy` in front of the same server.
#
#   bench/proxy.sh
#
# Environment (all optional):
#   ROUNDS=5             rounds; each runs direct and proxy in turn (the order alternates)
#   LAT_REQUESTS=20000   requests of the latency run (one client, one request at a time)
#   REQUESTS=200000      requests of each throughput run
#   CLIENTS=50           connections of the throughput runs
#   PIPELINE=1           requests in flight per connection in the throughput runs
#   SKIP_BUILD=1         use the existing release binary as is
#   PLIMSOLL=PATH        the binary to run (default: the release build)
#   SAVE=1               also write bench/proxy-results-<UTC time>.csv
#
# Everything stays on 127.0.0.1, every run is bounded by its request count, and a trap
# stops redis-server and the proxy and deletes the scratch directory however the script ends.
set -euo pipefail

ROUNDS="${ROUNDS:-5}"
LAT_REQUESTS="${LAT_REQUESTS:-20000}"
REQUESTS="${REQUESTS:-200000}"
CLIENTS="${CLIENTS:-50}"
PIPELINE="${PIPELINE:-1}"

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$BENCH_DIR")"
PLIMSOLL="${PLIMSOLL:-${CARGO_TARGET_DIR:-$REPO/target}/release/plimsoll}"

log() { printf '==> %s\n' "$*" >&2; }

missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-benchmark >/dev/null || missing+=(redis-tools)
command -v python3 >/dev/null || missing+=(python3)
if ((${#missing[@]})); then
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
fi

if [[ -z "${SKIP_BUILD:-}" ]]; then
  log "building $PLIMSOLL"
  (cd "$REPO" && cargo build --release --bin plimsoll)
fi

SCRATCH="$(mktemp -d)"
REDIS_PID=""
PROXY_PID=""
cleanup() {
  [[ -n "$PROXY_PID" ]] && kill "$PROXY_PID" 2>/dev/null && wait "$PROXY_PID" 2>/dev/null
  [[ -n "$REDIS_PID" ]] && kill "$REDIS_PID" 2>/dev/null && wait "$REDIS_PID" 2>/dev/null
  rm -rf "$SCRATCH"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

REDIS_PORT="$(free_port)"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$SCRATCH" --daemonize no >"$SCRATCH/redis.log" 2>&1 &
REDIS_PID=$!

PROXY_PORT="$(free_port)"
cat >"$SCRATCH/proxy.toml" <<EOF
grace_period = "1s"
[[listener]]
name = "redis"
listen = "127.0.0.1:$PROXY_PORT"
upstream = "127.0.0.1:$REDIS_PORT"
EOF
"$PLIMSOLL" proxy --config "$SCRATCH/proxy.toml" 2>"$SCRATCH/proxy.log" &
PROXY_PID=$!

for _ in $(seq 100); do
  if redis-cli -p "$PROXY_PORT" ping 2>/dev/null | grep -q PONG; then break; fi
  sleep 0.05
done
redis-cli -p "$PROXY_PORT" ping | grep -q PONG || { cat "$SCRATCH/proxy.log" >&2; exit 1; }
redis-cli -p "$REDIS_PORT" set key:__rand_int__ x >/dev/null

RESULTS="$SCRATCH/results.csv"
echo "round,path,test,rps,avg_ms,p50_ms,p99_ms" >"$RESULTS"

# One redis-benchmark run; appends its CSV rows tagged with round, path and test name.
run() {
  local round=$1 path=$2 port=$3 name=$4
  shift 4
  redis-benchmark -h 127.0.0.1 -p "$port" --csv "$@" |
    python3 -c '
import csv, sys
round_, path, name = sys.argv[1:4]
for row in csv.DictReader(sys.stdin):
    print(",".join([round_, path, name + ":" + row["test"], row["rps"], row["avg_latency_ms"],
                    row["p50_latency_ms"], row["p99_latency_ms"]]))
' "$round" "$path" "$name" >>"$RESULTS"
}

for round in $(seq "$ROUNDS"); do
  if ((round % 2)); then order="direct proxy"; else order="proxy direct"; fi
  log "round $round/$ROUNDS ($order)"
  for path in $order; do
    port=$REDIS_PORT
    [[ $path == proxy ]] && port=$PROXY_PORT
    run "$round" "$path" "$port" latency -c 1 -n "$LAT_REQUESTS" -t get
    run "$round" "$path" "$port" throughput -c "$CLIENTS" -n "$REQUESTS" -P "$PIPELINE" -t get,set
  done
done

python3 - "$RESULTS" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
tests = sorted({r["test"] for r in rows})
def med(test, path, field):
    return statistics.median(float(r[field]) for r in rows if r["test"] == test and r["path"] == path)
print("summary (medians over %d rounds)" % len({r["round"] for r in rows}))
print("  %-22s %-7s %12s %9s %9s %9s" % ("test", "path", "req/s", "avg_ms", "p50_ms", "p99_ms"))
for t in tests:
    for p in ("direct", "proxy"):
        print("  %-22s %-7s %12.1f %9.3f %9.3f %9.3f" % (t, p, med(t, p, "rps"), med(t, p, "avg_ms"),
                                                          med(t, p, "p50_ms"), med(t, p, "p99_ms")))
print()
lat = [t for t in tests if t.startswith("latency:")]
for t in lat:
    added = med(t, "proxy", "p99_ms") - med(t, "direct", "p99_ms")
    added50 = med(t, "proxy", "p50_ms") - med(t, "direct", "p50_ms")
    print("  %-22s added p50 %.3f ms, added p99 %.3f ms (aim < 0.1 ms)" % (t, added50, added))
for t in tests:
    if t.startswith("throughput:"):
        ratio = med(t, "proxy", "rps") / med(t, "direct", "rps")
        print("  %-22s proxy/direct req/s %.3f (aim >= 0.90)" % (t, ratio))
EOF

if [[ -n "${SAVE:-}" ]]; then
  out="$BENCH_DIR/proxy-results-$(date -u +%Y%m%dT%H%M%SZ).csv"
  cp "$RESULTS" "$out"
  log "wrote $out"
fi
