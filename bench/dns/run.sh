#!/usr/bin/env bash
# DNS benchmark: Tandem's traffic manager against Knot DNS, NSD and PowerDNS (with LUA
# `ifurlup` health-checked records), same machine, same zone, same query file, one run.
#
#   bench/dns/run.sh [SECONDS_PER_RUN]      (default 10; ROUNDS=3 rounds, median reported)
#
# Every server gets one worker and is pinned to CPU 1; dnsperf is pinned to CPU 0, so the
# figure is queries per second per core. Also reports the server's CPU time per answered query
# (user + system, from /proc), which is steadier than throughput on a shared machine. Then
# failover time (an endpoint's health-check target dies -> first answer without it) for Tandem
# and PowerDNS, over several trials.
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
workers = 1
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
    udp-workers: 1
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
    server-count: 1
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
receiver-threads=1
distributor-threads=1
socket-dir=$WORK
daemon=no
guardian=no
disable-syslog=yes
loglevel=3
setuid=
setgid=
CFG

taskset -c 1 "$TANDEM" dns -c "$WORK/tandem.toml" --log warn > "$WORK/tandem.log" 2>&1 & PID_tandem=$!; PIDS+=($!)
taskset -c 1 knotd -c "$WORK/knot.conf" > "$WORK/knot.log" 2>&1 & PID_knot=$!; PIDS+=($!)
taskset -c 1 nsd -d -c "$WORK/nsd.conf" > "$WORK/nsd.out" 2>&1 & PID_nsd=$!; PIDS+=($!)
taskset -c 1 pdns_server --config-dir="$WORK" > "$WORK/pdns.log" 2>&1 & PID_pdns=$!; PIDS+=($!)

wait_answer() { # port name expected
  for _ in $(seq 1 150); do
    if [ "$(dig +short +time=1 +tries=1 @127.0.0.1 -p "$1" "$2" 2>/dev/null | head -1)" = "$3" ]; then return 0; fi
    sleep 0.1
  done
  echo "server on port $1 never answered $2 with $3" >&2; return 1
}
for p in $P_TANDEM $P_KNOT $P_NSD $P_PDNS; do wait_answer "$p" "app.$ZONE" 127.0.1.10; done

ROUNDS=${ROUNDS:-3}
# CPU ticks (user + system) of a process and all its descendants.
# (NSD started in the foreground becomes xfrd; its main process and the server are below it.)
descendants() {
  local c
  for c in $(pgrep -P "$1" 2>/dev/null); do echo "$c"; descendants "$c"; done
}
ticks() {
  local total=0 p
  for p in $1 $(descendants "$1"); do
    if [ -r "/proc/$p/stat" ]; then
      # utime + stime: fields 14 and 15, counted after the ")" that ends the command name.
      total=$(( total + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}') ))
    fi
  done
  echo "$total"
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
HZ=$(getconf CLK_TCK)
echo "== queries per second per core (dnsperf on CPU 0, each server with one worker on CPU 1; ${ROUNDS} rounds of ${DUR}s, median)"
declare -A QPS CPU
for name in tandem knot nsd pdns-lua; do : > "$WORK/$name.qps"; : > "$WORK/$name.cpu"; done
for round in $(seq 1 "$ROUNDS"); do
  for s in tandem:$P_TANDEM:$PID_tandem knot:$P_KNOT:$PID_knot nsd:$P_NSD:$PID_nsd pdns-lua:$P_PDNS:$PID_pdns; do
    IFS=: read -r name port pid <<< "$s"
    before=$(ticks "$pid")
    out=$(taskset -c 0 dnsperf -s 127.0.0.1 -p "$port" -d "$WORK/queries.txt" -l "$DUR" -c 8 -q 500 -T 1 2>&1)
    after=$(ticks "$pid")
    qps=$(echo "$out" | awk '/Queries per second/ {print $4}')
    done_q=$(echo "$out" | awk '/Queries completed/ {print $3}')
    echo "$qps" >> "$WORK/$name.qps"
    awk -v t=$(( after - before )) -v hz="$HZ" -v q="$done_q" 'BEGIN { if (q > 0) printf "%.2f\n", t / hz * 1e6 / q }' >> "$WORK/$name.cpu"
  done
done
printf "  %-10s %12s %18s\n" server "qps" "CPU us/query"
for name in tandem knot nsd pdns-lua; do
  QPS[$name]=$(median < "$WORK/$name.qps")
  CPU[$name]=$(median < "$WORK/$name.cpu")
  printf "  %-10s %12.0f %18s\n" "$name" "${QPS[$name]}" "${CPU[$name]}"
done
echo
echo "== ratios (above 1.00 means Tandem is better)"
for name in knot nsd pdns-lua; do
  awk -v t="${QPS[tandem]}" -v p="${QPS[$name]}" -v tc="${CPU[tandem]}" -v pc="${CPU[$name]}" -v n="$name" \
    'BEGIN { printf "  vs %-9s qps %.2f   CPU per query %.2f\n", n, t / p, pc / tc }'
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
TRIALS=${TRIALS:-9}
: > "$WORK/tandem.fail"; : > "$WORK/pdns.fail"
for t in $(seq 1 "$TRIALS"); do
  for s in tandem:$P_TANDEM pdns:$P_PDNS; do
    name=${s%%:*}; port=${s##*:}
    wait_answer "$port" "app.$ZONE" 127.0.1.10
    sleep 0.$(( RANDOM % 10 ))   # a random phase against the health-check clock
    failover "$port" >> "$WORK/$name.fail"
    EAST_PID=$(start_origin 127.0.1.10); PIDS+=("$EAST_PID")
  done
done
T_FAIL=$(median < "$WORK/tandem.fail")
P_FAIL=$(median < "$WORK/pdns.fail")
stats() { sort -g "$1" | awk '{a[NR]=$1; s+=$1} END {printf "mean %4.0f  max %4.0f", s/NR, a[NR]}'; }
echo "  trials (ms): tandem $(tr '\n' ' ' < "$WORK/tandem.fail")| pdns $(tr '\n' ' ' < "$WORK/pdns.fail")"
printf "  %-10s %6s ms median  %s   (probe every 200ms, down after 2 failures: bound 600ms)\n" tandem "$T_FAIL" "$(stats "$WORK/tandem.fail")"
printf "  %-10s %6s ms median  %s   (ifurlup, lua-health-checks-interval=1s, its minimum)\n" pdns-lua "$P_FAIL" "$(stats "$WORK/pdns.fail")"
if [ "$T_FAIL" != timeout ] && [ "$P_FAIL" != timeout ]; then
  mean() { awk '{s+=$1} END {print s/NR}' "$1"; }
  awk -v t="$T_FAIL" -v p="$P_FAIL" -v tm="$(mean "$WORK/tandem.fail")" -v pm="$(mean "$WORK/pdns.fail")" \
    'BEGIN { printf "  pdns / tandem failover time: %.1fx by median, %.1fx by mean\n", p / t, pm / tm }'
fi
