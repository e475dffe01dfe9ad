#!/usr/bin/env bash
# DNS benchmark: Tandem's traffic manager against Knot DNS, NSD and PowerDNS (with LUA
# `ifurlup` health-checked records), same machine, same zone, same query file, one run.
#
#   bench/dns/run.sh [SECONDS_PER_SERVER]      (default 10)
#
# Prints queries per second side by side with ratios to Tandem, then failover time (an
# endpoint's health check target dies -> first answer without it) for Tandem and PowerDNS.
# Needs root to install peers from Debian if they are missing. Loopback only.
set -euo pipefail

DUR=${1:-10}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$(mktemp -d /tmp/tandem-bench-dns.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

need() { command -v "$1" >/dev/null 2>&1; }
if ! need dnsperf || ! need knotd || ! need nsd || ! need pdns_server || ! need dig; then
  echo "== installing dnsperf, knot, nsd, pdns-server, pdns-backend-bind, bind9-dnsutils from Debian"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    dnsperf knot nsd pdns-server pdns-backend-bind bind9-dnsutils python3 >/dev/null
fi

echo "== building tandem (release)"
(cd "$ROOT" && cargo build --release -q -p tandem)
TANDEM=$TARGET/release/tandem

P_TANDEM=15301 P_KNOT=15302 P_NSD=15303 P_PDNS=15304 ORIGIN_PORT=18080
ZONE=bench.test

# Two health-check targets, one per region, that the test can kill: plain HTTP on /health.
mkdir -p "$WORK/www" && echo ok > "$WORK/www/health"
start_origin() {
  python3 -m http.server "$ORIGIN_PORT" --bind "$1" --directory "$WORK/www" >/dev/null 2>&1 &
  echo $!
}
EAST_PID=$(start_origin 127.0.1.10); PIDS+=("$EAST_PID")
WEST_PID=$(start_origin 127.0.2.10); PIDS+=("$WEST_PID")

# The same zone for every server: static records; `app` is the routed name. Knot and NSD
# serve app statically (what a health-checked answer looks like when all is well).
cat > "$WORK/$ZONE.zone" <<ZONE
\$ORIGIN $ZONE.
\$TTL 300
@     IN SOA ns1.$ZONE. hostmaster.$ZONE. 1 3600 600 1209600 30
@     IN NS  ns1.$ZONE.
ns1   IN A   127.0.0.1
www   IN A   192.0.2.1
app   5 IN A 127.0.1.10
ZONE
sed 's/^app .*$/app   5 IN LUA A "ifurlup('"'"'http:\/\/app.'"$ZONE"':'"$ORIGIN_PORT"'\/health'"'"', {{'"'"'127.0.1.10'"'"'}, {'"'"'127.0.2.10'"'"'}})"/' \
  "$WORK/$ZONE.zone" > "$WORK/$ZONE.lua.zone"

# Queries: mostly the routed name, plus a static name, NODATA and NXDOMAIN.
: > "$WORK/queries.txt"
for i in $(seq 1 700); do echo "app.$ZONE A" >> "$WORK/queries.txt"; done
for i in $(seq 1 100); do echo "www.$ZONE A" >> "$WORK/queries.txt"; done
for i in $(seq 1 100); do echo "app.$ZONE AAAA" >> "$WORK/queries.txt"; done
for i in $(seq 1 100); do echo "nope$i.$ZONE A" >> "$WORK/queries.txt"; done

# --- Tandem: answers app from live health (HTTP probe every 200ms).
cat > "$WORK/tandem.toml" <<CFG
[regions.eastus]
pair = "westus"
[regions.westus]
pair = "eastus"
[admin]
listen = "127.0.0.1:19301"
[monitors.web]
protocol = "http"
port = $ORIGIN_PORT
path = "/health"
host = "app.$ZONE"
interval = "200ms"
timeout = "150ms"
tolerated_failures = 1
recover_after = 2
[dns]
listen = ["127.0.0.1:$P_TANDEM"]
workers = 2
[dns.zones."$ZONE"]
ns = ["ns1.$ZONE"]
ttl = "300s"
soa = { rname = "hostmaster.$ZONE", serial = 1, minimum = "30s" }
[dns.zones."$ZONE".records]
ns1 = { a = ["127.0.0.1"] }
www = { a = ["192.0.2.1"] }
[dns.profiles.app]
domain = "app.$ZONE"
method = "priority"
ttl = "5s"
monitor = "web"
[[dns.profiles.app.endpoints]]
name = "eastus"
region = "eastus"
address = "127.0.1.10"
[[dns.profiles.app.endpoints]]
name = "westus"
region = "westus"
address = "127.0.2.10"
CFG

# --- Knot DNS
mkdir -p "$WORK/knot"
cat > "$WORK/knot.conf" <<CFG
server:
    listen: 127.0.0.1@$P_KNOT
    udp-workers: 2
    tcp-workers: 1
    background-workers: 1
    rundir: "$WORK/knot"
database:
    storage: "$WORK/knot"
log:
  - target: stderr
    any: error
zone:
  - domain: $ZONE
    storage: "$WORK"
    file: "$ZONE.zone"
CFG

# --- NSD
cat > "$WORK/nsd.conf" <<CFG
server:
    ip-address: 127.0.0.1@$P_NSD
    server-count: 2
    username: ""
    zonesdir: "$WORK"
    database: ""
    pidfile: "$WORK/nsd.pid"
    xfrdfile: "$WORK/xfrd.state"
    zonelistfile: "$WORK/zone.list"
    logfile: "$WORK/nsd.log"
    verbosity: 0
    rrl-ratelimit: 0
remote-control:
    control-enable: no
zone:
    name: $ZONE
    zonefile: "$ZONE.zone"
CFG

# --- PowerDNS with LUA records (ifurlup checks every second, its minimum)
cat > "$WORK/named.conf" <<CFG
zone "$ZONE" { type master; file "$WORK/$ZONE.lua.zone"; };
CFG
cat > "$WORK/pdns.conf" <<CFG
launch=bind
bind-config=$WORK/named.conf
local-address=127.0.0.1
local-port=$P_PDNS
enable-lua-records=yes
lua-health-checks-interval=1
receiver-threads=2
socket-dir=$WORK
daemon=no
guardian=no
disable-syslog=yes
loglevel=3
setuid=
setgid=
CFG

"$TANDEM" dns -c "$WORK/tandem.toml" --log warn > "$WORK/tandem.log" 2>&1 & PIDS+=($!)
knotd -c "$WORK/knot.conf" > "$WORK/knot.log" 2>&1 & PIDS+=($!)
nsd -d -c "$WORK/nsd.conf" > "$WORK/nsd.out" 2>&1 & PIDS+=($!)
pdns_server --config-dir="$WORK" > "$WORK/pdns.log" 2>&1 & PIDS+=($!)

wait_answer() { # port name expected
  for _ in $(seq 1 150); do
    if [ "$(dig +short +time=1 +tries=1 @127.0.0.1 -p "$1" "$2" 2>/dev/null | head -1)" = "$3" ]; then return 0; fi
    sleep 0.1
  done
  echo "server on port $1 never answered $2 with $3" >&2; return 1
}
for p in $P_TANDEM $P_KNOT $P_NSD $P_PDNS; do wait_answer "$p" "app.$ZONE" 127.0.1.10; done

echo "== queries per second (dnsperf, ${DUR}s each, 1 client thread, 8 sockets; every server has 2 worker threads; same 2 cores)"
declare -A QPS
for s in tandem:$P_TANDEM knot:$P_KNOT nsd:$P_NSD pdns-lua:$P_PDNS; do
  name=${s%%:*}; port=${s##*:}
  out=$(dnsperf -s 127.0.0.1 -p "$port" -d "$WORK/queries.txt" -l "$DUR" -c 8 -q 500 -T 1 2>&1)
  qps=$(echo "$out" | awk '/Queries per second/ {print $4}')
  lost=$(echo "$out" | awk '/Queries lost/ {print $3}')
  QPS[$name]=$qps
  printf "  %-10s %12s qps   lost %s\n" "$name" "$qps" "$lost"
done
echo
echo "== ratios (Tandem / peer; above 1.00 means Tandem is faster)"
for name in knot nsd pdns-lua; do
  awk -v t="${QPS[tandem]}" -v p="${QPS[$name]}" -v n="$name" 'BEGIN { printf "  tandem / %-9s %.2f\n", n, t / p }'
done

echo
echo "== failover: kill the eastus health target, time until app.$ZONE answers westus"
failover() { # port
  local start end
  kill "$EAST_PID" 2>/dev/null || true; wait "$EAST_PID" 2>/dev/null || true
  start=$(date +%s%N)
  while [ "$(dig +short +time=1 +tries=1 @127.0.0.1 -p "$1" "app.$ZONE" 2>/dev/null | head -1)" != "127.0.2.10" ]; do
    sleep 0.01
    if [ $(( ($(date +%s%N) - start) / 1000000 )) -gt 60000 ]; then echo "timeout"; return; fi
  done
  end=$(date +%s%N)
  echo $(( (end - start) / 1000000 ))
}
T_FAIL=$(failover $P_TANDEM)
EAST_PID=$(start_origin 127.0.1.10); PIDS+=("$EAST_PID")
wait_answer $P_TANDEM "app.$ZONE" 127.0.1.10
wait_answer $P_PDNS "app.$ZONE" 127.0.1.10
P_FAIL=$(failover $P_PDNS)
printf "  %-10s %6s ms   (probe every 200ms, down after 2 failures)\n" tandem "$T_FAIL"
printf "  %-10s %6s ms   (ifurlup, lua-health-checks-interval=1s, its minimum; default packet cache)\n" pdns-lua "$P_FAIL"
if [ "$T_FAIL" != timeout ] && [ "$P_FAIL" != timeout ]; then
  awk -v t="$T_FAIL" -v p="$P_FAIL" 'BEGIN { printf "  pdns / tandem failover time: %.1fx\n", p / t }'
fi
