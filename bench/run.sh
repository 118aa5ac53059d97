#!/usr/bin/env bash
# Compare Plimsoll's load generator with wrk and oha against the same local nginx.
#
#   bench/run.sh          closed model: plimsoll vs wrk, ROUNDS rounds, medians + ratios
#   bench/run.sh open     open model at fixed arrival rates: plimsoll --rate vs oha -q at
#                         each of RATES, with plimsoll --concurrency and wrk as the closed-model
#                         reference; CPU per request, pacing, send lag, RSS
#
# Environment (all optional):
#   ROUNDS=5 DURATION=10s CONNECTIONS=50 THREADS=2   closed-model settings (open mode: 3 rounds)
#   RATES="1000 5000 20000 50000"                   open-model arrival rates
#   BASELINE=/path/to/plimsoll   open mode: also run this build (e.g. an older one) at each rate
#   SAVE=1        also write bench/results-<UTC timestamp>.csv
#   SKIP_BUILD=1  use the existing target/release/plimsoll as is
#   PLIMSOLL=/path/to/plimsoll   the binary to measure (default: this checkout's release build)
#
# Everything stays on 127.0.0.1, every run is bounded by DURATION, and a trap
# stops nginx and deletes the scratch directory however the script ends.
set -euo pipefail

MODE="${1:-closed}"
case "$MODE" in
  closed | open) ;;
  *) echo "usage: $0 [open]" >&2; exit 3 ;;
esac

if [[ "$MODE" == open ]]; then ROUNDS="${ROUNDS:-3}"; else ROUNDS="${ROUNDS:-5}"; fi
CONNECTIONS="${CONNECTIONS:-50}"
THREADS="${THREADS:-2}"
RATES="${RATES:-1000 5000 20000 50000}"
DURATION="${DURATION:-10s}"
BASELINE="${BASELINE:-}"

# The repository root is the parent of this script's directory, wherever the
# script is called from.
BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$BENCH_DIR")"
# Cargo puts the build where CARGO_TARGET_DIR says, if it is set.
PLIMSOLL="${PLIMSOLL:-${CARGO_TARGET_DIR:-$REPO/target}/release/plimsoll}"

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
# oha is the open-model reference (its -q paces requests). It is a Rust program, so cargo
# installs it; it takes a few minutes to compile, once. Only the open mode needs it.
if [[ "$MODE" == open ]] && ! command -v oha >/dev/null; then
  log "installing oha (cargo install oha --locked)"
  cargo install oha --locked
fi

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
# 4. The runs, tools in alternation.
#
# This machine is shared and noisy: a background job during one block of runs
# would bias whichever tool ran then. Interleaving the tools (and swapping
# which goes first each round) spreads the noise over all of them, and the
# medians below ignore the odd outlier round.
# ---------------------------------------------------------------------------
CSV="$WORK/results.csv"
echo "round,tool,rate,requests,errors,wall_s,user_s,sys_s,rss_kb,planned,lag_p50_ms,lag_p99_ms,lat_p50_ms,lat_p99_ms,load1" >"$CSV"

# Reads requests, errors, planned arrivals, send lag and latency percentiles from
# a plimsoll result document ("-" where a field does not apply).
plimsoll_fields() {
  python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))["stats"]
lag = s.get("send_lag_ms") or {}
lat = s.get("latency_ms") or {}
planned = (s.get("iterations") or {}).get("planned")
print(s["requests"], s["errors"], planned if planned is not None else "-",
      lag.get("p50", "-"), lag.get("p99", "-"), lat.get("p50", "-"), lat.get("p99", "-"))' "$1"
}

# run_tool TOOL ROUND [RATE]: run one generator under GNU time, append a CSV row.
#   plimsoll, wrk                closed model, CONNECTIONS connections, THREADS threads
#   plimsoll-open, baseline-open --rate RATE, workers of plimsoll's choosing
#   oha                          -q RATE on CONNECTIONS connections
run_tool() {
  local tool=$1 round=$2 rate=${3:-0}
  local tag="$tool-$rate-$round"
  local out="$WORK/$tag.out" err="$WORK/$tag.err" tf="$WORK/$tag.time"
  local rc=0 requests errors planned="-" lag50="-" lag99="-" lat50="-" lat99="-" load1
  read -r load1 _ </proc/loadavg
  # time -o keeps its line out of the tool's own stderr; %U %S are the CPU
  # seconds of the generator process alone (nginx runs in another process),
  # %M its peak resident set in KiB.
  case "$tool" in
    plimsoll | plimsoll-open | baseline-open)
      # The open model picks its own worker count (like oha its threads); the closed
      # model gets THREADS, like wrk.
      local bin="$PLIMSOLL" model=(--concurrency "$CONNECTIONS" --workers "$THREADS")
      [[ "$tool" == baseline-open ]] && bin="$BASELINE"
      [[ "$tool" != plimsoll ]] && model=(--rate "$rate")
      /usr/bin/time -o "$tf" -f '%U %S %e %M' \
        "$bin" load "$URL" "${model[@]}" --duration "$DURATION" \
        --json >"$out" 2>"$err" || rc=$?
      # 1 and 2 are grades (warning/critical), not failures of the run.
      if ((rc > 2)); then echo "$tool exited $rc:" >&2; cat "$err" >&2; exit 1; fi
      read -r requests errors planned lag50 lag99 lat50 lat99 < <(plimsoll_fields "$out")
      ;;
    wrk)
      /usr/bin/time -o "$tf" -f '%U %S %e %M' \
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
    oha)
      # --latency-correction measures from the planned send time, as plimsoll
      # does in the open model.
      /usr/bin/time -o "$tf" -f '%U %S %e %M' \
        oha --no-tui --output-format json --latency-correction -z "$DURATION" \
        -q "$rate" -c "$CONNECTIONS" "$URL" >"$out" 2>"$err" || rc=$?
      if ((rc != 0)); then echo "oha exited $rc:" >&2; cat "$out" "$err" >&2; exit 1; fi
      read -r requests errors lat50 lat99 < <(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
codes = d.get("statusCodeDistribution") or {}
ok = sum(n for c, n in codes.items() if c.startswith(("2", "3")))
bad = sum(codes.values()) - ok + sum((d.get("errorDistribution") or {}).values())
p = d.get("latencyPercentiles") or {}
ms = lambda v: v * 1000 if isinstance(v, (int, float)) else "-"
print(sum(codes.values()), bad, ms(p.get("p50")), ms(p.get("p99")))' "$out")
      ;;
  esac
  if [[ "$tool" == oha || "$tool" == *-open ]]; then
    [[ "$planned" == "-" ]] && planned=$(awk -v r="$rate" -v d="${DURATION%s}" 'BEGIN { printf "%d", r * d }')
  fi
  # If the command failed, GNU time writes a "Command exited…" line first;
  # the numbers are always the last line.
  local user sys wall rss
  read -r user sys wall rss < <(tail -n 1 "$tf")
  echo "$round,$tool,$rate,$requests,$errors,$wall,$user,$sys,$rss,$planned,$lag50,$lag99,$lat50,$lat99,$load1" >>"$CSV"
}

# Prints the rows of one round as an aligned table.
print_round() {
  python3 - "$CSV" "$1" <<'PY'
import csv, sys
for r in csv.DictReader(open(sys.argv[1])):
    if r["round"] != sys.argv[2]:
        continue
    n, cpu = int(r["requests"]), float(r["user_s"]) + float(r["sys_s"])
    us = f"{cpu / n * 1e6:8.1f}" if n else "     n/a"
    print(f"  {r['tool']:<14} {r['rate']:>6} {n:>9} {r['errors']:>6} {float(r['wall_s']):7.2f} "
          f"{float(r['user_s']):6.2f} {float(r['sys_s']):6.2f} {us} {int(r['rss_kb']) / 1024:7.1f} "
          f"{r['lag_p99_ms']:>8} {r['load1']:>6}")
PY
}

if [[ "$MODE" == open ]]; then
  [[ -n "$BASELINE" && ! -x "$BASELINE" ]] && { echo "BASELINE=$BASELINE is not executable" >&2; exit 3; }
  log "open model: $ROUNDS rounds x rates ($RATES) x (plimsoll, oha${BASELINE:+, baseline}) + closed reference, $DURATION each"
else
  log "closed model: $ROUNDS rounds x (plimsoll, wrk), $CONNECTIONS connections, $THREADS threads, $DURATION each"
fi
for round in $(seq "$ROUNDS"); do
  # Swap the order every round so neither tool always runs on a "fresh" or a
  # "tired" machine.
  if ((round % 2)); then order=(plimsoll wrk); else order=(wrk plimsoll); fi
  for tool in "${order[@]}"; do
    log "round $round/$ROUNDS: $tool"
    run_tool "$tool" "$round"
  done
  if [[ "$MODE" == open ]]; then
    if ((round % 2)); then order=(plimsoll-open oha); else order=(oha plimsoll-open); fi
    [[ -n "$BASELINE" ]] && order+=(baseline-open)
    for rate in $RATES; do
      for tool in "${order[@]}"; do
        log "round $round/$ROUNDS: $tool at $rate/s"
        run_tool "$tool" "$round" "$rate"
      done
    done
  fi
  echo
  echo "round $round"
  printf '  %-14s %6s %9s %6s %7s %6s %6s %8s %7s %8s %6s\n' \
    tool rate requests errors wall_s user_s sys_s cpu_us/r rss_MB lag_p99 load1
  print_round "$round"
done

# ---------------------------------------------------------------------------
# 5. Summary: medians per tool (and rate), and ratios. In the closed summary
#    plimsoll/wrk > 1 means plimsoll is faster / cheaper; in the open summary
#    the ratios are of CPU per request, so < 1 means plimsoll is cheaper.
# ---------------------------------------------------------------------------
echo
python3 - "$CSV" "$DURATION" <<'PY'
import csv, statistics, sys
from collections import defaultdict
rows = list(csv.DictReader(open(sys.argv[1])))
duration = float(sys.argv[2].rstrip("s"))
groups = defaultdict(list)
for r in rows:
    groups[(r["tool"], int(r["rate"]))].append(r)

def med(rs, f):
    vals = [v for v in (f(r) for r in rs) if v is not None]
    return statistics.median(vals) if vals else None

def num(v):
    try:
        return float(v)
    except ValueError:
        return None

def cpu(r):
    return float(r["user_s"]) + float(r["sys_s"])

def summary(rs):
    return {
        "rps": med(rs, lambda r: int(r["requests"]) / duration),
        "rpc": med(rs, lambda r: int(r["requests"]) / cpu(r) if cpu(r) > 0 else None),
        "us": med(rs, lambda r: cpu(r) / int(r["requests"]) * 1e6 if int(r["requests"]) else None),
        "rss": med(rs, lambda r: int(r["rss_kb"]) / 1024),
        "pace": med(rs, lambda r: int(r["requests"]) / num(r["planned"]) * 100 if num(r["planned"]) else None),
        "lag50": med(rs, lambda r: num(r["lag_p50_ms"])),
        "lag99": med(rs, lambda r: num(r["lag_p99_ms"])),
        "lat50": med(rs, lambda r: num(r["lat_p50_ms"])),
        "lat99": med(rs, lambda r: num(r["lat_p99_ms"])),
        "load1": med(rs, lambda r: num(r["load1"])),
    }

def f(v, spec):
    return format(v, spec) if v is not None else "-"

stats = {k: summary(rs) for k, rs in groups.items()}
rounds = max(int(r["round"]) for r in rows)
print(f"summary (medians over {rounds} rounds; req/s = requests / {duration:g} s)")
print(f"  {'tool':<14} {'rate':>6} {'req/s':>10} {'req/cpu-s':>10} {'cpu_us/req':>10} {'rss_MB':>7} "
      f"{'sent/plan%':>10} {'lag_p50':>8} {'lag_p99':>8} {'lat_p50':>8} {'lat_p99':>8} {'load1':>6}")
for (tool, rate), s in sorted(stats.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    print(f"  {tool:<14} {rate:>6} {f(s['rps'], '10.1f')} {f(s['rpc'], '10.1f')} {f(s['us'], '10.2f')} "
          f"{f(s['rss'], '7.1f')} {f(s['pace'], '10.2f')} {f(s['lag50'], '8.3f')} {f(s['lag99'], '8.3f')} "
          f"{f(s['lat50'], '8.3f')} {f(s['lat99'], '8.3f')} {f(s['load1'], '6.2f')}")

def ratio(a, b):
    return f"{a / b:.3f}" if a is not None and b else "n/a"

closed, wrk = stats.get(("plimsoll", 0)), stats.get(("wrk", 0))
if closed and wrk:
    print()
    print(f"  closed plimsoll/wrk: req/s {ratio(closed['rps'], wrk['rps'])}, "
          f"req/cpu-s {ratio(closed['rpc'], wrk['rpc'])}, rss {ratio(closed['rss'], wrk['rss'])}")
opens = sorted({rate for (tool, rate) in stats if tool == "plimsoll-open"})
if opens:
    print()
    print("  open model, CPU per request as a ratio (< 1: plimsoll-open is cheaper):")
    for rate in opens:
        o = stats[("plimsoll-open", rate)]
        parts = [f"vs closed {ratio(o['us'], closed['us']) if closed else 'n/a'}"]
        if ("oha", rate) in stats:
            parts.append(f"vs oha {ratio(o['us'], stats[('oha', rate)]['us'])}")
        if ("baseline-open", rate) in stats:
            parts.append(f"vs baseline {ratio(o['us'], stats[('baseline-open', rate)]['us'])}")
        if wrk:
            parts.append(f"rss vs wrk {ratio(o['rss'], wrk['rss'])}")
        print(f"    {rate:>6}/s  " + ", ".join(parts))
PY

if [[ "${SAVE:-0}" == 1 ]]; then
  dest="$BENCH_DIR/results-$(date -u +%Y%m%dT%H%M%SZ).csv"
  cp "$CSV" "$dest"
  log "raw numbers saved to $dest"
fi
