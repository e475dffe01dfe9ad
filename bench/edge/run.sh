#!/usr/bin/env bash
# Edge proxy benchmark: Tandem, nginx, HAProxy (and the Pingora spike) side by side, each
# proxying to the same origin (an nginx answering a fixed 64-byte body) on loopback, over
# plain HTTP/1.1 and TLS HTTP/1.1 (wrk), TLS HTTP/2 (h2load) and plain HTTP/1.1 POSTs with a
# 200-byte body (wrk with bench/edge/post.lua), in one run. Prints the median
# over REPS repetitions of requests per second, p50/p99 latency and the proxy's CPU time per
# request, with ratios against Tandem.
#
#   bench/edge/run.sh                          # 3 repetitions × 5s per case
#   REPS=5 DURATION=10 bench/edge/run.sh
#   TANDEM_BIN=target/release/tandem bench/edge/run.sh     # skip the build
#   PINGORA=0 bench/edge/run.sh                # without the Pingora spike
#   H1SPIKE=0 bench/edge/run.sh                # without the tokio floor (h1-spike)
#   PAIRED=0 bench/edge/run.sh                 # without the paired runs (below)
#   PROBED=1 bench/edge/run.sh                 # Tandem's group with an active probe and a
#                                              # standby origin, as production groups are
#   PEER_FIELDS=minimal bench/edge/run.sh      # nginx and HAProxy add only X-Forwarded-For
#                                              # and -Proto (the configs before 5 Dec)
#   CLOSE=1 bench/edge/run.sh                  # a new connection per request (wrk sends
#                                              # `Connection: close`; over TLS each request
#                                              # pays a full handshake); modes plain, tls, post
#
# How it is made comparable on a small shared machine:
# - every proxy does the same work on a request (PEER_FIELDS=same, the default): besides
#   X-Forwarded-For and X-Forwarded-Proto, nginx and HAProxy are configured to add what
#   Tandem's edge always adds: X-Forwarded-Host, a `Forwarded` field (RFC 7239) and a fresh
#   X-Request-Id per request, sent to the origin and returned to the client; the script
#   checks this with one request through each before it measures (the two spikes add only
#   X-Forwarded-For: they are floors, not products);
# - every proxy gets one worker (THREADS=1: Tandem's `--threads 1`, nginx `worker_processes
#   1`, HAProxy `nbthread 1`, Pingora `threads: 1`) and is pinned to PROXY_CPU (default 1);
#   the load generator (wrk -t1, h2load -t1) and the origin are pinned to LOAD_CPU (default 0);
# - each measurement is preceded by a WARMUP-second run on the same proxy;
# - the proxies take turns within each repetition (the order rotates), and the table shows
#   the median of REPS repetitions, with the CPU µs/request range across repetitions;
# - CPU time per request (the proxy's user+system time over the run divided by the requests
#   it served) is the figure to compare: it does not depend on how busy the other core is.
#   Requests per second and latency do, so they swing with the machine's load.
# - paired runs (PAIRED=1, the default): Tandem and one peer at the same time, both on
#   PROXY_CPU, each under its own load generator, so that whatever else the machine does hits
#   both alike; they share the core, and the ratios of their CPU time per request, of the
#   requests each served in the same seconds and of their p99 latencies under the same
#   conditions are the steadiest comparison this machine gives.
#
# Needs Debian's wrk, nghttp2-client (h2load), nginx-light (or nginx), haproxy, openssl, curl,
# util-linux (taskset); cmake and a Rust toolchain for the Pingora spike
# (bench/edge/pingora-spike, built on first use, skipped with a note if it cannot be built).
# bench/edge/h1-spike (a minimal tokio + httparse HTTP/1.1 proxy: the floor of the runtime,
# not a product) is built on first use too and runs in the plain mode only, with one worker.
set -euo pipefail

DURATION=${DURATION:-5}
WARMUP=${WARMUP:-2}
REPS=${REPS:-3}
CONNS=${CONNS:-50}
THREADS=${THREADS:-1}
H2_STREAMS=${H2_STREAMS:-10}
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
CLOSE=${CLOSE:-0}
if [[ "$CLOSE" == 1 ]]; then
  MODES=${MODES:-"plain tls post"}
  [[ " $MODES " == *" h2 "* ]] && { echo "CLOSE=1 measures wrk's modes only (plain, tls, post); drop h2 from MODES" >&2; exit 1; }
else
  MODES=${MODES:-"plain tls h2 post"}
fi
PAIRED=${PAIRED:-1}
PEER_FIELDS=${PEER_FIELDS:-same}
[[ "$PEER_FIELDS" == same || "$PEER_FIELDS" == minimal ]] ||
  { echo "PEER_FIELDS is same or minimal, not $PEER_FIELDS" >&2; exit 2; }
BASE=${BASE_PORT:-18000}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=bench/edge/lib.sh
. "$ROOT/bench/edge/lib.sh"
WORK=$(mktemp -d /tmp/tandem-edge-bench.XXXXXX)
PIDS=()
cleanup() {
  # Pingora waits for a grace period on SIGTERM; the benchmark does not need one.
  for p in "${PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

for t in wrk h2load nginx haproxy openssl taskset curl; do
  command -v "$t" >/dev/null || { echo "missing $t: apt-get install -y wrk nghttp2-client nginx-light haproxy openssl util-linux curl" >&2; exit 1; }
done
if (( $(nproc) < 2 )); then PROXY_CPU=0; LOAD_CPU=0; fi
on_load() { taskset -c "$LOAD_CPU" "$@"; }

ORIGIN=$((BASE + 0))
T_HTTP=$((BASE + 1)); T_HTTPS=$((BASE + 2)); T_ADMIN=$((BASE + 3))
N_HTTP=$((BASE + 11)); N_HTTPS=$((BASE + 12))
H_HTTP=$((BASE + 21)); H_HTTPS=$((BASE + 22))
P_HTTP=$((BASE + 31)); P_HTTPS=$((BASE + 32))
S_HTTP=$((BASE + 41))

if [[ -z "${TANDEM_BIN:-}" ]]; then
  (cd "$ROOT" && cargo build --release -p tandem >&2)
  TANDEM_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/tandem"
fi

PROXIES="tandem nginx haproxy"
# build_spike NAME: build bench/edge/NAME (a project of its own) and print its binary's path.
build_spike() {
  local target="${CARGO_TARGET_DIR:-$ROOT/target}/$1"
  (cd "$ROOT/bench/edge/$1" && CARGO_TARGET_DIR="$target" cargo build --release --locked >&2) &&
    echo "$target/release/$1"
}
PINGORA=${PINGORA:-1}
if [[ "$PINGORA" == 1 && -z "${PINGORA_BIN:-}" ]]; then
  PINGORA_BIN=$(build_spike pingora-spike) ||
    { echo "note: the Pingora spike did not build (needs cmake); running without it" >&2; PINGORA=0; }
fi
[[ "$PINGORA" == 1 ]] && PROXIES="$PROXIES pingora"
H1SPIKE=${H1SPIKE:-1}
[[ "$THREADS" != 1 || " $MODES " != *" plain "* || "$CLOSE" == 1 ]] && H1SPIKE=0
if [[ "$H1SPIKE" == 1 && -z "${H1SPIKE_BIN:-}" ]]; then
  H1SPIKE_BIN=$(build_spike h1-spike) ||
    { echo "note: the h1 spike did not build; running without it" >&2; H1SPIKE=0; }
fi
[[ "$H1SPIKE" == 1 ]] && PROXIES="$PROXIES h1spike"

bench_cert "$WORK"

# --- origin --------------------------------------------------------------------------------
origin_conf "$WORK" "$ORIGIN"
taskset -c "$LOAD_CPU" nginx -p "$WORK/origin" -c "$WORK/origin/nginx.conf" & PIDS+=($!)

# --- tandem ---------------------------------------------------------------------------------
tandem_toml "$WORK" "$T_HTTP" "$T_HTTPS" "$ORIGIN" > "$WORK/tandem.toml"
taskset -c "$PROXY_CPU" "$TANDEM_BIN" --log error edge -c "$WORK/tandem.toml" --region bench --threads "$THREADS" \
  --admin "127.0.0.1:$T_ADMIN" --access-log off & PID_tandem=$!; PIDS+=($PID_tandem)

# --- nginx proxy ----------------------------------------------------------------------------
mkdir -p "$WORK/nginx"
# What Tandem adds besides X-Forwarded-For/-Proto (see PEER_FIELDS above).
NGINX_SAME=""
if [[ "$PEER_FIELDS" == same ]]; then
  NGINX_SAME='proxy_set_header X-Forwarded-Host $host;
      proxy_set_header Forwarded "for=$remote_addr;host=$host;proto=$scheme";
      proxy_set_header X-Request-Id $request_id;
      add_header X-Request-Id $request_id always;'
fi
cat > "$WORK/nginx/nginx.conf" <<EOF
worker_processes $THREADS;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 1000000;
  upstream origin { server 127.0.0.1:$ORIGIN; keepalive 128; }
  server {
    listen 127.0.0.1:$N_HTTP backlog=4096;
    listen 127.0.0.1:$N_HTTPS ssl http2 backlog=4096;
    ssl_certificate $WORK/cert.pem;
    ssl_certificate_key $WORK/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      $NGINX_SAME
    }
  }
}
EOF
taskset -c "$PROXY_CPU" nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" & PID_nginx=$!; PIDS+=($PID_nginx)

# --- haproxy --------------------------------------------------------------------------------
# haproxy_same PROTO: the fields Tandem adds besides X-Forwarded-For/-Proto (PEER_FIELDS).
haproxy_same() {
  [[ "$PEER_FIELDS" == same ]] || return 0
  cat <<EOF
  unique-id-format %[uuid]
  unique-id-header X-Request-Id
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  http-request set-header Forwarded for=%[src];host=%[req.hdr(host)];proto=$1
  http-after-response set-header X-Request-Id %[unique-id]
EOF
}
cat > "$WORK/haproxy.cfg" <<EOF
global
  nbthread $THREADS
  maxconn 5000
  tune.ssl.default-dh-param 2048
defaults
  mode http
  timeout connect 3s
  timeout client 60s
  timeout server 60s
  option forwardfor
  http-reuse always
frontend plain
  bind 127.0.0.1:$H_HTTP
$(haproxy_same http)
  default_backend origin
frontend tls
  bind 127.0.0.1:$H_HTTPS ssl crt $WORK/haproxy.pem alpn h2,http/1.1
  http-request set-header X-Forwarded-Proto https
$(haproxy_same https)
  default_backend origin
backend origin
  server o1 127.0.0.1:$ORIGIN
EOF
taskset -c "$PROXY_CPU" haproxy -db -f "$WORK/haproxy.cfg" & PID_haproxy=$!; PIDS+=($PID_haproxy)

# --- pingora spike --------------------------------------------------------------------------
if [[ "$PINGORA" == 1 ]]; then
  taskset -c "$PROXY_CPU" "$PINGORA_BIN" "127.0.0.1:$ORIGIN" "127.0.0.1:$P_HTTP" "127.0.0.1:$P_HTTPS" \
    "$WORK/cert.pem" "$WORK/key.pem" "$THREADS" 2>"$WORK/pingora.log" & PID_pingora=$!; PIDS+=($PID_pingora)
fi

# --- h1 spike (the tokio floor, plain HTTP/1.1 only) -------------------------------------------
if [[ "$H1SPIKE" == 1 ]]; then
  taskset -c "$PROXY_CPU" "$H1SPIKE_BIN" "127.0.0.1:$S_HTTP" "127.0.0.1:$ORIGIN" & PID_h1spike=$!; PIDS+=($PID_h1spike)
fi

sleep 1.5
for p in $ORIGIN $T_HTTP $T_HTTPS $N_HTTP $N_HTTPS $H_HTTP $H_HTTPS $([[ "$PINGORA" == 1 ]] && echo "$P_HTTP $P_HTTPS") $([[ "$H1SPIKE" == 1 ]] && echo "$S_HTTP"); do
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && break; sleep 0.1; done
done

# Every proxy must add the same fields (PEER_FIELDS=same): one request each, checked.
for name in tandem nginx haproxy; do
  url="http://127.0.0.1:$(case $name in tandem) echo $T_HTTP ;; nginx) echo $N_HTTP ;; haproxy) echo $H_HTTP ;; esac)/fields"
  resp=$(curl -s -D - -H "Host: bench.tandem.test" "$url" | tr -d '\r')
  seen=$(tail -n1 <<<"$resp"); rid=$(awk -F': ' 'tolower($1)=="x-request-id" {print $2}' <<<"$resp")
  echo "  $name adds: $seen; answers x-request-id=$rid" >&2
  if [[ "$PEER_FIELDS" == same && ( "$seen" == *"xfh= "* || "$seen" == *"fwd= "* || "$seen" == *"rid=" || -z "$rid" ) ]]; then
    echo "$name does not add the fields Tandem adds; fix its config above" >&2; exit 1
  fi
done

# CPU ticks (utime+stime) of a process, its threads and its descendants (nginx workers).
descendants() { local c; for c in $(pgrep -P "$1" 2>/dev/null || true); do echo "$c"; descendants "$c"; done; }
cpu_ticks() {
  local total=0 pid
  for pid in "$1" $(descendants "$1"); do
    [[ -r /proc/$pid/stat ]] || continue
    total=$((total + $(sed 's/^.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}')))
  done
  echo $total
}
HZ=$(getconf CLK_TCK)

# to_ms "1.23ms" -> 1.23
to_ms() {
  awk -v v="$1" 'BEGIN{ if (v ~ /us$/) {sub(/us$/,"",v); print v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v); print v+0} else if (v ~ /s$/) {sub(/s$/,"",v); print v*1000} else print v }'
}

url_of() { # proxy mode
  local port
  case "$1:$2" in
    tandem:plain | tandem:post) port=$T_HTTP ;; tandem:*) port=$T_HTTPS ;;
    nginx:plain | nginx:post) port=$N_HTTP ;; nginx:*) port=$N_HTTPS ;;
    haproxy:plain | haproxy:post) port=$H_HTTP ;; haproxy:*) port=$H_HTTPS ;;
    pingora:plain | pingora:post) port=$P_HTTP ;; pingora:*) port=$P_HTTPS ;;
    h1spike:plain) port=$S_HTTP ;;
  esac
  if [[ "$2" == plain || "$2" == post ]]; then echo "http://127.0.0.1:$port/"; else echo "https://127.0.0.1:$port/"; fi
}

# wrk's extra arguments for a mode: the POST script for `post`.
wrk_args() { if [[ "$1" == post ]]; then echo "-s $ROOT/bench/edge/post.lua"; fi; }
# `Connection: close` on every request with CLOSE=1 (wrk wants the space after the colon).
CLOSE_ARGS=()
[[ "$CLOSE" == 1 ]] && CLOSE_ARGS=(-H "Connection: close")

RESULTS="$WORK/results"
: > "$RESULTS"
# measure rep mode proxy: one warm-up, one measured run; appends "mode proxy rps p50 p99 cpu".
measure() {
  local rep=$1 mode=$2 name=$3
  local url; url=$(url_of "$name" "$mode")
  local pidvar="PID_$name"; local pid=${!pidvar}
  local out reqs rps p50 p99 c0 c1 errs=""
  if [[ "$mode" == h2 ]]; then
    on_load h2load -D "$WARMUP" -c "$CONNS" -m "$H2_STREAMS" -t 1 "$url" >/dev/null 2>&1 || true
    c0=$(cpu_ticks "$pid")
    out=$(on_load h2load -D "$DURATION" -c "$CONNS" -m "$H2_STREAMS" -t 1 --log-file="$WORK/h2.log" "$url" 2>&1)
    c1=$(cpu_ticks "$pid")
    reqs=$(awk '/^requests:/ {print $8}' <<<"$out")
    rps=$(awk '/^finished in/ {print $4}' <<<"$out")
    read -r p50 p99 < <(awk -F'\t' '$2 < 400 {print $3}' "$WORK/h2.log" | sort -n |
      awk '{a[NR]=$1} END { if (NR==0) print "nan nan"; else printf "%.2f %.2f\n", a[int(NR*0.5)+1]/1000, a[int(NR*0.99)+1]/1000 }')
    local failed; failed=$(awk '/^requests:/ {print $10}' <<<"$out")
    [[ "${failed:-0}" != 0 ]] && errs="failed=$failed"
  else
    # shellcheck disable=SC2046 # wrk_args is empty or two words
    on_load wrk -t1 -c"$CONNS" -d"${WARMUP}s" $(wrk_args "$mode") "${CLOSE_ARGS[@]}" "$url" >/dev/null 2>&1 || true
    c0=$(cpu_ticks "$pid")
    # shellcheck disable=SC2046
    out=$(on_load wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency $(wrk_args "$mode") "${CLOSE_ARGS[@]}" -H "Host: bench.tandem.test" "$url" 2>&1)
    c1=$(cpu_ticks "$pid")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    reqs=$(awk '/requests in/ {print $1}' <<<"$out")
    p50=$(to_ms "$(awk '$1=="50%" {print $2}' <<<"$out")")
    p99=$(to_ms "$(awk '$1=="99%" {print $2}' <<<"$out")")
    errs=$(awk '/Non-2xx|Socket errors/ {printf "%s;", $0}' <<<"$out" | tr ' ' '_')
  fi
  local cpu_us; cpu_us=$(awk -v a="$c0" -v b="$c1" -v n="${reqs:-0}" -v hz="$HZ" 'BEGIN{ if (n>0) printf "%.2f", (b-a)/hz*1e6/n; else print "nan" }')
  echo "$mode $name $rps $p50 $p99 $cpu_us $errs" >> "$RESULTS"
  echo "  rep $rep $mode $name: $rps req/s, p50 $p50 ms, p99 $p99 ms, $cpu_us µs/req $errs" >&2
}

read -r -a plist <<<"$PROXIES"
n=${#plist[@]}
echo "== edge proxy benchmark: $REPS × ${DURATION}s per case (+${WARMUP}s warm-up), $CONNS connections, $THREADS proxy worker(s) on CPU $PROXY_CPU, load and origin on CPU $LOAD_CPU, $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), peers add the $PEER_FIELDS fields$([[ "$CLOSE" == 1 ]] && echo ", a new connection per request") ==" >&2
for rep in $(seq "$REPS"); do
  for mode in $MODES; do
    for i in $(seq 0 $((n - 1))); do
      name=${plist[$(( (i + rep - 1) % n ))]}
      [[ "$name" == h1spike && "$mode" != plain ]] && continue
      measure "$rep" "$mode" "$name"
    done
  done
done

# load_run mode url seconds outfile: one load generator run (wrk or h2load) into outfile.
load_run() {
  local mode=$1 url=$2 secs=$3 outf=$4
  if [[ "$mode" == h2 ]]; then
    local log=()
    [[ "$outf" != /dev/null ]] && log=(--log-file="$outf.log")
    on_load h2load -D "$secs" -c "$CONNS" -m "$H2_STREAMS" -t 1 "${log[@]}" "$url" >"$outf" 2>&1 || true
  else
    # shellcheck disable=SC2046
    on_load wrk -t1 -c"$CONNS" -d"${secs}s" --latency $(wrk_args "$mode") "${CLOSE_ARGS[@]}" -H "Host: bench.tandem.test" "$url" >"$outf" 2>&1 || true
  fi
}
reqs_of() { # mode outfile
  if [[ "$1" == h2 ]]; then awk '/^requests:/ {print $8}' "$2"; else awk '/requests in/ {print $1}' "$2"; fi
}
p99_of() { # mode outfile: p99 latency in ms (h2load's per-request log for h2)
  if [[ "$1" == h2 ]]; then
    awk -F'\t' '$2 < 400 {print $3}' "$2.log" | sort -n |
      awk '{a[NR]=$1} END { if (NR==0) print "nan"; else printf "%.2f\n", a[int(NR*0.99)+1]/1000 }'
  else
    to_ms "$(awk '$1=="99%" {print $2}' "$2")"
  fi
}
PAIRS="$WORK/pairs"
: > "$PAIRS"
# measure_pair rep mode peer: Tandem and peer under load at the same time; appends
# "mode peer tandem_reqs peer_reqs tandem_cpu_us peer_cpu_us tandem_p99_ms peer_p99_ms".
measure_pair() {
  local rep=$1 mode=$2 peer=$3
  local tu pu; tu=$(url_of tandem "$mode"); pu=$(url_of "$peer" "$mode")
  local pidvar="PID_$peer"; local ppid=${!pidvar}
  local lp
  load_run "$mode" "$tu" "$WARMUP" /dev/null & lp=$!
  load_run "$mode" "$pu" "$WARMUP" /dev/null; wait "$lp"
  local t0 p0 t1 p1
  t0=$(cpu_ticks "$PID_tandem"); p0=$(cpu_ticks "$ppid")
  load_run "$mode" "$tu" "$DURATION" "$WORK/pair-t" & lp=$!
  load_run "$mode" "$pu" "$DURATION" "$WORK/pair-p"; wait "$lp"
  t1=$(cpu_ticks "$PID_tandem"); p1=$(cpu_ticks "$ppid")
  local tn pn; tn=$(reqs_of "$mode" "$WORK/pair-t"); pn=$(reqs_of "$mode" "$WORK/pair-p")
  local tq pq; tq=$(p99_of "$mode" "$WORK/pair-t"); pq=$(p99_of "$mode" "$WORK/pair-p")
  awk -v m="$mode" -v p="$peer" -v tn="${tn:-0}" -v pn="${pn:-0}" -v t0="$t0" -v t1="$t1" -v p0="$p0" -v p1="$p1" -v hz="$HZ" -v rep="$rep" -v tq="${tq:-nan}" -v pq="${pq:-nan}" '
    BEGIN { if (tn>0 && pn>0) {
      tc=(t1-t0)/hz*1e6/tn; pc=(p1-p0)/hz*1e6/pn;
      printf "%s %s %d %d %.2f %.2f %s %s\n", m, p, tn, pn, tc, pc, tq, pq
      printf "  pair %s %s: tandem %d req %.2f µs/req p99 %s ms, %s %d req %.2f µs/req p99 %s ms\n", rep, m, tn, tc, tq, p, pn, pc, pq > "/dev/stderr" } }' >> "$PAIRS"
}
if [[ "$PAIRED" == 1 ]]; then
  for rep in $(seq "$REPS"); do
    for mode in $MODES; do
      for peer in nginx haproxy; do
        measure_pair "$rep" "$mode" "$peer"
      done
    done
  done
fi

# Medians per mode and proxy, then ratios against Tandem.
median() { sort -g | awk '{a[NR]=$1} END { if (NR==0) print "nan"; else print a[int((NR+1)/2)] }'; }
SUMMARY="$WORK/summary"
: > "$SUMMARY"
for mode in $MODES; do
  for name in "${plist[@]}"; do
    [[ "$name" == h1spike && "$mode" != plain ]] && continue
    sel() { awk -v m="$mode" -v p="$name" -v c="$1" '$1==m && $2==p {print $c}' "$RESULTS"; }
    cpu_range=$(sel 6 | sort -g | awk 'NR==1{lo=$1} {hi=$1} END{printf "%s-%s", lo, hi}')
    errs=$(sel 7 | sort -u | tr '\n' ' ')
    echo "$mode $name $(sel 3 | median) $(sel 4 | median) $(sel 5 | median) $(sel 6 | median) $cpu_range ${errs:-}" >> "$SUMMARY"
  done
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
awk '
  { mode[NR]=$1; name[NR]=$2; rps[NR]=$3; p50[NR]=$4; p99[NR]=$5; cpu[NR]=$6; range[NR]=$7; extra[NR]="";
    for (i=8;i<=NF;i++) extra[NR]=extra[NR] " " $i;
    if ($2=="tandem") { trps[$1]=$3; tp99[$1]=$5; tcpu[$1]=$6 } }
  END {
    printf "%-6s %-8s %9s %7s %7s %8s %11s %8s %8s %8s\n", "mode", "proxy", "req/s", "p50 ms", "p99 ms", "µs/req", "µs range", "rps/tdm", "p99/tdm", "cpu/tdm";
    for (i=1;i<=NR;i++) {
      r = (trps[mode[i]]>0) ? rps[i]/trps[mode[i]] : 0;
      q = (tp99[mode[i]]>0) ? p99[i]/tp99[mode[i]] : 0;
      c = (tcpu[mode[i]]>0) ? cpu[i]/tcpu[mode[i]] : 0;
      printf "%-6s %-8s %9.0f %7.2f %7.2f %8.2f %11s %8.2f %8.2f %8.2f%s\n", mode[i], name[i], rps[i], p50[i], p99[i], cpu[i], range[i], r, q, c, extra[i];
    }
    print "(medians of the repetitions; h2 is HTTP/2 over TLS with h2load, p50/p99 from its per-request log; ratios are the proxy over Tandem, CPU is the proxy process only)"
  }' "$SUMMARY"
if [[ "$PAIRED" == 1 && -s "$PAIRS" ]]; then
  echo
  printf "%-6s %-8s %12s %12s %12s %12s %12s %12s %12s\n" "mode" "peer" "tandem µs" "peer µs" "cpu/tdm" "req/tdm" "tandem p99" "peer p99" "p99/tdm"
  for mode in $MODES; do
    for peer in nginx haproxy; do
      sel() { awk -v m="$mode" -v p="$peer" -v c="$1" '$1==m && $2==p {print $c}' "$PAIRS"; }
      ratio_cpu=$(awk -v m="$mode" -v p="$peer" '$1==m && $2==p && $5>0 {print $6/$5}' "$PAIRS" | median)
      ratio_req=$(awk -v m="$mode" -v p="$peer" '$1==m && $2==p && $3>0 {print $4/$3}' "$PAIRS" | median)
      ratio_p99=$(awk -v m="$mode" -v p="$peer" '$1==m && $2==p && $7>0 {print $8/$7}' "$PAIRS" | median)
      printf "%-6s %-8s %12s %12s %12.3f %12.3f %12s %12s %12.3f\n" "$mode" "$peer" "$(sel 5 | median)" "$(sel 6 | median)" "$ratio_cpu" "$ratio_req" "$(sel 7 | median)" "$(sel 8 | median)" "$ratio_p99"
    done
  done
  echo "(paired: Tandem and the peer at the same time on the same core, each under its own load; medians of the per-pair ratios, peer over Tandem: cpu/tdm < 1 means the peer spends less CPU per request, req/tdm > 1 that it served more requests in the same seconds, p99/tdm < 1 that its p99 latency was lower)"
fi
