#!/usr/bin/env bash
# Probe start delay under a scrape flood (issue 10, item 6): 60 scheduled probes on one daemon,
# then 50 concurrent scrapers of /metrics, /api/v1/probes and / for FLOOD_S seconds, all on
# 127.0.0.1. Prints the median and p99 of the scheduler's start delay (the `start_delay_ms` of
# every "run started" log line) without and with the flood, the scrape rate, and /healthz
# latency during the flood.
#
# Usage: bench/scrape-flood.sh [PLIMSOLL_BIN] [BACKEND_BIN]
# (defaults: $CARGO_TARGET_DIR or target, release build). Needs python3.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
bin=${1:-$target/release/plimsoll}
backend_bin=${2:-$target/release/plimsoll-sample-backend}
quiet_s=${QUIET_S:-10}
flood_s=${FLOOD_S:-20}
scrapers=${SCRAPERS:-50}
probes=${PROBES:-60}
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

"$backend_bin" --listen 127.0.0.1:0 >"$work/backend.out" &
pids+=($!)
for _ in $(seq 50); do grep -q "listening on" "$work/backend.out" 2>/dev/null && break; sleep 0.1; done
backend=$(sed -n 's/^listening on //p' "$work/backend.out" | head -1)

{
    printf '[report]\ndir = ""\n\n[[target]]\nname = "sample"\nurl = "%s"\n' "$backend"
    for i in $(seq "$probes"); do
        printf '\n[[probe]]\nname = "p%02d"\nkind = "load"\ntarget = "sample"\nshare_target = true\n' "$i"
        printf 'schedule = { every = "2s" }\n[probe.load]\nphases = [{ duration = "200ms", rate = 10 }]\n'
        printf '[probe.load.request]\nname = "step-%02d"\nurl = "/health"\n' "$i"
    done
} >"$work/p.toml"

PLIMSOLL_LOG=info "$bin" run --config "$work/p.toml" --listen 127.0.0.1:0 2>"$work/daemon.log" &
pids+=($!)
for _ in $(seq 100); do grep -q "listening on http://" "$work/daemon.log" 2>/dev/null && break; sleep 0.1; done
addr=$(sed -n 's/.*listening on http:\/\/\([0-9.:]*\).*/\1/p' "$work/daemon.log" | head -1)
echo "daemon on $addr, $probes probes every 2 s, backend $backend"

sleep "$quiet_s"
mark=$(wc -l <"$work/daemon.log")
python3 - "$addr" "$scrapers" "$flood_s" <<'PY'
import http.client, sys, threading, time
addr, n, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
host, port = addr.rsplit(":", 1)
end = time.time() + secs
counts, health = [0] * n, []
paths = ["/metrics", "/metrics", "/api/v1/probes", "/"]
def scraper(i):
    c = http.client.HTTPConnection(host, int(port), timeout=10)
    k = 0
    while time.time() < end:
        try:
            c.request("GET", paths[k % len(paths)]); c.getresponse().read(); counts[i] += 1
        except Exception:
            c.close(); c = http.client.HTTPConnection(host, int(port), timeout=10)
        k += 1
def healthz():
    while time.time() < end:
        c = http.client.HTTPConnection(host, int(port), timeout=10)
        t = time.perf_counter(); c.request("GET", "/healthz"); c.getresponse().read()
        health.append((time.perf_counter() - t) * 1000); c.close(); time.sleep(0.1)
ts = [threading.Thread(target=scraper, args=(i,)) for i in range(n)] + [threading.Thread(target=healthz)]
for t in ts: t.start()
for t in ts: t.join()
health.sort()
q = lambda v, p: v[min(len(v) - 1, int(p * len(v)))] if v else float("nan")
print(f"flood: {sum(counts) / secs:.0f} scrapes/s from {n} scrapers; "
      f"/healthz median {q(health, .5):.1f} ms, p99 {q(health, .99):.1f} ms")
PY
python3 - "$work/daemon.log" "$mark" <<'PY'
import re, statistics, sys
lines = open(sys.argv[1], errors="replace").read().splitlines()
mark = int(sys.argv[2])
def delays(ls):
    return sorted(float(m.group(1)) for l in ls if "run started" in l
                  for m in [re.search(r"start_delay_ms=([0-9.]+)", l)] if m)
q = lambda v, p: v[min(len(v) - 1, int(p * len(v)))] if v else float("nan")
for name, v in (("quiet", delays(lines[:mark])), ("flood", delays(lines[mark:]))):
    print(f"start delay {name}: {len(v)} runs, median {statistics.median(v) if v else float('nan'):.2f} ms, p99 {q(v, .99):.2f} ms")
PY
