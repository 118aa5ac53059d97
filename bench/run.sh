#!/usr/bin/env bash
# Compare Plimsoll's load generator with wrk against the same local nginx.
#
#   bench/run.sh          closed model: plimsoll vs wrk, ROUNDS rounds, medians + ratios
#   bench/run.sh open     open model: does plimsoll hold a fixed arrival rate?
#
# Environment (all optional):
#   ROUNDS=5 DURATION=10s CONNECTIONS=50 THREADS=2   closed-model settings
#   RATE=5000 DURATION=30s                           open-model settings
#   SAVE=1        also write bench/results-<UTC timestamp>.csv
#   SKIP_BUILD=1  use the existing target/release/plimsoll as is
#
# Everything stays on 127.0.0.1, every run is bounded by DURATION, and a trap
# stops nginx and deletes the scratch directory however the script ends.
set -euo pipefail

MODE="${1:-closed}"
case "$MODE" in
  closed | open) ;;
  *) echo "usage: $0 [open]" >&2; exit 3 ;;
esac

ROUNDS="${ROUNDS:-5}"
CONNECTIONS="${CONNECTIONS:-50}"
THREADS="${THREADS:-2}"
RATE="${RATE:-5000}"
if [[ "$MODE" == open ]]; then DURATION="${DURATION:-30s}"; else DURATION="${DURATION:-10s}"; fi

# The repository root is the parent of this script's directory, wherever the
# script is called from.
BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$BENCH_DIR")"
PLIMSOLL="$REPO/target/release/plimsoll"

log() { printf '==> %s\n' "$*" >&2; }

# ---------------------------------------------------------------------------
# 1. Tools. Install only what is missing, so a second run touches nothing and
#    does not even run `apt-get update`.
# ---------------------------------------------------------------------------
missing=()
command -v nginx >/dev/null || missing+=(nginx)
command -v wrk >/dev/null || missing+=(wrk)
command -v python3 >/dev/null || missing+=(python3)
# GNU time, not the shell keyword: only it reports the child's user/sys CPU.
[[ -x /usr/bin/time ]] || missing+=(time)

if ((${#missing[@]})); then
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Installing the nginx package normally starts a system nginx on port 80.
  # We only want the binary, so forbid service starts during the install
  # (unless the machine already has its own policy, which we leave alone).
  own_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    own_policy=1
  fi
  apt-get update
  pkgs=()
  for m in "${missing[@]}"; do
    case "$m" in
      nginx) ;; # handled below: prefer the small flavour
      *) pkgs+=("$m") ;;
    esac
  done
  ((${#pkgs[@]})) && apt-get install -y "${pkgs[@]}"
  if [[ " ${missing[*]} " == *" nginx "* ]]; then
    # nginx-light is enough for `return 200`; newer Debian releases dropped
    # the flavours, so fall back to plain nginx.
    apt-get install -y nginx-light || apt-get install -y nginx
  fi
  ((own_policy)) && rm -f /usr/sbin/policy-rc.d
fi
command -v cargo >/dev/null || { echo "cargo is required (install Rust via rustup)" >&2; exit 3; }

# ---------------------------------------------------------------------------
# 2. Build Plimsoll the way users run it: release mode.
# ---------------------------------------------------------------------------
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  log "building plimsoll (release)"
  (cd "$REPO" && cargo build --release --bin plimsoll)
fi
[[ -x "$PLIMSOLL" ]] || { echo "missing $PLIMSOLL (run without SKIP_BUILD=1)" >&2; exit 3; }

# ---------------------------------------------------------------------------
# 3. A private nginx. Everything it writes lives in a fresh scratch directory
#    so it never touches /var/log/nginx, /run/nginx.pid or another instance.
# ---------------------------------------------------------------------------
WORK="$(mktemp -d -t plimsoll-bench.XXXXXX)"
# When started as root the nginx worker drops to an unprivileged user; let it
# traverse the scratch directory (nothing secret lives here).
chmod 755 "$WORK"
NGINX_PID=""

cleanup() {
  local rc=$?
  if [[ -n "$NGINX_PID" ]] && kill -0 "$NGINX_PID" 2>/dev/null; then
    kill -TERM "$NGINX_PID" 2>/dev/null || true
    # Fast shutdown takes milliseconds; do not hang if it does not.
    for _ in $(seq 50); do kill -0 "$NGINX_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$NGINX_PID" 2>/dev/null || true
    wait "$NGINX_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Ask the kernel for a free port: bind to port 0 and read back what it chose.
# (Tiny race until nginx binds it; harmless on a test machine.)
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
URL="http://127.0.0.1:$PORT/"

cat >"$WORK/nginx.conf" <<NGINX
# One worker keeps the target the same size for both generators.
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/error.log warn;
# The shell keeps nginx as a child (no daemon) so the trap can stop it by pid.
daemon off;
events { worker_connections 4096; }
http {
    # Logging every request would make disk I/O part of the measurement.
    access_log off;
    client_body_temp_path $WORK/body;
    proxy_temp_path $WORK/proxy;
    fastcgi_temp_path $WORK/fastcgi;
    uwsgi_temp_path $WORK/uwsgi;
    scgi_temp_path $WORK/scgi;
    # Both generators reuse connections; nginx's default of 1000 requests per
    # connection would add reconnects that measure nginx, not the generator.
    keepalive_requests 100000000;
    keepalive_timeout 60s;
    server {
        listen 127.0.0.1:$PORT;
        location / { return 200 "ok"; }
    }
}
NGINX

# -e: the error log before the config is read; -p: the prefix for relative paths.
nginx -p "$WORK" -e "$WORK/error.log" -c "$WORK/nginx.conf" &
NGINX_PID=$!

# Wait (at most 5 s) until nginx accepts connections.
for i in $(seq 50); do
  if ! kill -0 "$NGINX_PID" 2>/dev/null; then
    echo "nginx failed to start:" >&2; cat "$WORK/error.log" >&2 || true; exit 1
  fi
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  ((i == 50)) && { echo "nginx did not open 127.0.0.1:$PORT" >&2; exit 1; }
  sleep 0.1
done
log "nginx pid $NGINX_PID on $URL (scratch dir $WORK)"

# ---------------------------------------------------------------------------
# Open mode: a pacing check rather than a race. At a fixed arrival rate the
# interesting numbers are whether plimsoll sent what it planned, and how late
# it sent (send lag) — a generator that falls behind hides latency.
# ---------------------------------------------------------------------------
if [[ "$MODE" == open ]]; then
  log "open model: --rate $RATE --duration $DURATION"
  rc=0
  "$PLIMSOLL" load "$URL" --rate "$RATE" --duration "$DURATION" --json \
    >"$WORK/open.json" 2>"$WORK/open.err" || rc=$?
  # Exit codes 1 and 2 are verdicts (warning, critical), still a result.
  if ((rc > 2)); then cat "$WORK/open.err" >&2; exit "$rc"; fi
  python3 - "$WORK/open.json" "$RATE" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
s = doc["stats"]
it = s.get("iterations", {})
lag = s.get("send_lag_ms", {})
lat = s.get("latency_ms", {})
def fmt(v, spec):
    return format(v, spec) if isinstance(v, (int, float)) else "n/a"
print(f"requested rate     {float(sys.argv[2]):10.1f} /s")
print(f"offered rate       {fmt(s.get('offered_rps'), '10.1f')} /s")
print(f"achieved rate      {fmt(s.get('rps'), '10.1f')} /s")
print(f"iterations         {it.get('started', 'n/a')} started of {it.get('planned', 'n/a')} planned")
print(f"requests / errors  {s.get('requests')} / {s.get('errors')}")
print(f"send lag p99       {fmt(lag.get('p99'), '10.3f')} ms")
print(f"latency p50 / p99  {fmt(lat.get('p50'), '.3f')} / {fmt(lat.get('p99'), '.3f')} ms")
print(f"grade              {doc.get('grade')}")
PY
  exit 0
fi

# ---------------------------------------------------------------------------
# 4. Closed model, plimsoll and wrk in alternation.
#
# This machine is shared and noisy: a background job during one block of runs
# would bias whichever tool ran then. Interleaving the two tools (and swapping
# which goes first each round) spreads the noise over both, and the medians
# below ignore the odd outlier round.
# ---------------------------------------------------------------------------
CSV="$WORK/results.csv"
echo "round,tool,requests,errors,wall_s,user_s,sys_s,rps,requests_per_cpu_s" >"$CSV"

# run_tool TOOL ROUND: run one generator under GNU time, append a CSV row.
run_tool() {
  local tool=$1 round=$2 out="$WORK/$1-$2.out" err="$WORK/$1-$2.err" tf="$WORK/$1-$2.time"
  local rc=0 requests errors
  # time -o keeps its line out of the tool's own stderr; %U %S are the CPU
  # seconds of the generator process alone (nginx runs in another process).
  case "$tool" in
    plimsoll)
      /usr/bin/time -o "$tf" -f '%U %S %e' \
        "$PLIMSOLL" load "$URL" --concurrency "$CONNECTIONS" --duration "$DURATION" \
        --workers "$THREADS" --json >"$out" 2>"$err" || rc=$?
      # 1 and 2 are grades (warning/critical), not failures of the run.
      if ((rc > 2)); then echo "plimsoll exited $rc:" >&2; cat "$err" >&2; exit 1; fi
      read -r requests errors < <(python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))["stats"]
print(s["requests"], s["errors"])' "$out")
      ;;
    wrk)
      /usr/bin/time -o "$tf" -f '%U %S %e' \
        wrk "-t$THREADS" "-c$CONNECTIONS" "-d$DURATION" "$URL" >"$out" 2>"$err" || rc=$?
      if ((rc != 0)); then echo "wrk exited $rc:" >&2; cat "$out" "$err" >&2; exit 1; fi
      # "  123456 requests in 10.00s, 15.00MB read"; errors are socket errors
      # plus non-2xx/3xx responses, which wrk reports only when there are any.
      read -r requests errors < <(python3 -c '
import re, sys
t = open(sys.argv[1]).read()
req = int(re.search(r"^\s*(\d+) requests in", t, re.M).group(1))
err = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", t))
m = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
print(req, err + (int(m.group(1)) if m else 0))' "$out")
      ;;
  esac
  # If the command failed, GNU time writes a "Command exited…" line first;
  # the numbers are always the last line.
  local user sys wall
  read -r user sys wall < <(tail -n 1 "$tf")
  awk -v r="$round" -v t="$tool" -v n="$requests" -v e="$errors" \
    -v u="$user" -v s="$sys" -v w="$wall" 'BEGIN {
      cpu = u + s
      printf "%s,%s,%d,%d,%.2f,%.2f,%.2f,%.1f,%.1f\n", r, t, n, e, w, u, s,
        (w > 0 ? n / w : 0), (cpu > 0 ? n / cpu : 0)
    }' >>"$CSV"
}

# Prints the rows of one round as an aligned table.
print_round() {
  awk -F, -v r="$1" '
    $1 == r { printf "  %-9s %10d %7d %7.2f %7.2f %7.2f %11.1f %12.1f\n", $2, $3, $4, $5, $6, $7, $8, $9 }' "$CSV"
}

log "closed model: $ROUNDS rounds x (plimsoll, wrk), $CONNECTIONS connections, $THREADS threads, $DURATION each"
for round in $(seq "$ROUNDS"); do
  # Swap the order every round so neither tool always runs on a "fresh" or a
  # "tired" machine.
  if ((round % 2)); then order=(plimsoll wrk); else order=(wrk plimsoll); fi
  for tool in "${order[@]}"; do
    log "round $round/$ROUNDS: $tool"
    run_tool "$tool" "$round"
  done
  echo
  echo "round $round"
  printf '  %-9s %10s %7s %7s %7s %7s %11s %12s\n' tool requests errors wall_s user_s sys_s req/s req/cpu-s
  print_round "$round"
done

# ---------------------------------------------------------------------------
# 5. Summary: medians per tool and plimsoll/wrk ratios (> 1 means plimsoll is
#    faster / cheaper).
# ---------------------------------------------------------------------------
echo
python3 - "$CSV" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
med = {}
for tool in ("plimsoll", "wrk"):
    rs = [r for r in rows if r["tool"] == tool]
    med[tool] = (statistics.median(float(r["rps"]) for r in rs),
                 statistics.median(float(r["requests_per_cpu_s"]) for r in rs))
print(f"summary (medians over {len(rows) // 2} rounds)")
print(f"  {'tool':<16} {'req/s':>11} {'req/cpu-s':>12}")
for tool, (rps, rpc) in med.items():
    print(f"  {tool:<16} {rps:11.1f} {rpc:12.1f}")
p, w = med["plimsoll"], med["wrk"]
def ratio(a, b):
    return f"{a / b:.3f}" if b else "n/a"
print(f"  {'plimsoll/wrk':<16} {ratio(p[0], w[0]):>11} {ratio(p[1], w[1]):>12}")
PY

if [[ "${SAVE:-0}" == 1 ]]; then
  dest="$BENCH_DIR/results-$(date -u +%Y%m%dT%H%M%SZ).csv"
  cp "$CSV" "$dest"
  log "raw numbers saved to $dest"
fi
