#!/usr/bin/env bash
# Edge proxy benchmark: Tandem, nginx and HAProxy side by side, each proxying to the same
# origin (an nginx that answers a fixed 64-byte body) on loopback, over plain HTTP/1.1, TLS
# HTTP/1.1 (wrk) and TLS HTTP/2 (h2load), in one run. Prints requests per second, p50/p99
# latency and the proxy's CPU time per request, with ratios against Tandem.
#
#   bench/edge/run.sh                 # 10s per case, 50 connections
#   DURATION=20 CONNS=100 bench/edge/run.sh
#   TANDEM_BIN=target/release/tandem bench/edge/run.sh   # skip the build
#
# Needs Debian's wrk, nghttp2-client (h2load), nginx-light (or nginx), haproxy and openssl.
# Every proxy gets one worker thread (THREADS=1) so CPU time per request compares like with
# like on a small machine; wrk runs one thread. The origin also has one worker.
set -euo pipefail

DURATION=${DURATION:-10}
CONNS=${CONNS:-50}
THREADS=${THREADS:-1}
H2_REQUESTS=${H2_REQUESTS:-100000}
H2_STREAMS=${H2_STREAMS:-10}
BASE=${BASE_PORT:-18000}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/tandem-edge-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

for t in wrk h2load nginx haproxy openssl; do
  command -v "$t" >/dev/null || { echo "missing $t: apt-get install -y wrk nghttp2-client nginx-light haproxy openssl" >&2; exit 1; }
done

ORIGIN=$((BASE + 0))
T_HTTP=$((BASE + 1)); T_HTTPS=$((BASE + 2)); T_ADMIN=$((BASE + 3))
N_HTTP=$((BASE + 11)); N_HTTPS=$((BASE + 12))
H_HTTP=$((BASE + 21)); H_HTTPS=$((BASE + 22))

if [[ -z "${TANDEM_BIN:-}" ]]; then
  (cd "$ROOT" && cargo build --release -p tandem >&2)
  TANDEM_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/tandem"
fi

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=bench.tandem.test -addext subjectAltName=DNS:bench.tandem.test \
  -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
cat "$WORK/cert.pem" "$WORK/key.pem" > "$WORK/haproxy.pem"

# --- origin --------------------------------------------------------------------------------
mkdir -p "$WORK/origin"
cat > "$WORK/origin/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/origin/nginx.pid;
error_log $WORK/origin/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$ORIGIN reuseport backlog=4096;
    location / { default_type text/plain; return 200 "0123456789012345678901234567890123456789012345678901234567890123"; }
  }
}
EOF
nginx -p "$WORK/origin" -c "$WORK/origin/nginx.conf" & PIDS+=($!)

# --- tandem ---------------------------------------------------------------------------------
cat > "$WORK/tandem.toml" <<EOF
[regions.bench]

[edge]
access_log = false

[edge.instances.bench]
https = ["127.0.0.1:$T_HTTPS"]
http = ["127.0.0.1:$T_HTTP"]

[[edge.certificates]]
domains = ["bench.tandem.test"]
cert = "$WORK/cert.pem"
key = "$WORK/key.pem"

[edge.routes.all]
domains = ["*"]
http = "serve"
group = "origin"

[edge.groups.origin]
[[edge.groups.origin.origins]]
name = "origin"
address = "127.0.0.1:$ORIGIN"
EOF
"$TANDEM_BIN" --log error edge -c "$WORK/tandem.toml" --region bench --threads "$THREADS" \
  --admin "127.0.0.1:$T_ADMIN" --access-log off & TANDEM_PID=$!; PIDS+=($TANDEM_PID)

# --- nginx proxy ----------------------------------------------------------------------------
mkdir -p "$WORK/nginx"
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
    }
  }
}
EOF
nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" & NGINX_PID=$!; PIDS+=($NGINX_PID)

# --- haproxy --------------------------------------------------------------------------------
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
  default_backend origin
frontend tls
  bind 127.0.0.1:$H_HTTPS ssl crt $WORK/haproxy.pem alpn h2,http/1.1
  http-request set-header X-Forwarded-Proto https
  default_backend origin
backend origin
  server o1 127.0.0.1:$ORIGIN
EOF
haproxy -db -f "$WORK/haproxy.cfg" & HAPROXY_PID=$!; PIDS+=($HAPROXY_PID)

sleep 1.5
for p in $ORIGIN $T_HTTP $T_HTTPS $N_HTTP $N_HTTPS $H_HTTP $H_HTTPS; do
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && break; sleep 0.1; done
done

# CPU ticks (utime+stime) of a process and its threads/children (nginx workers).
cpu_ticks() {
  local total=0 pid
  for pid in "$@" $(pgrep -P "$1" 2>/dev/null || true); do
    [[ -r /proc/$pid/stat ]] || continue
    local f; f=$(sed 's/^.*) //' /proc/$pid/stat)
    set -- $f
    total=$((total + ${12} + ${13}))
  done
  echo $total
}
HZ=$(getconf CLK_TCK)

# to_ms "1.23ms" -> 1.23
to_ms() {
  awk -v v="$1" 'BEGIN{ if (v ~ /us$/) {sub(/us$/,"",v); print v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v); print v+0} else if (v ~ /s$/) {sub(/s$/,"",v); print v*1000} else print v }'
}

RESULTS="$WORK/results"
: > "$RESULTS"
run_wrk() { # name mode url pid
  local name=$1 mode=$2 url=$3 pid=$4
  wrk -t1 -c10 -d1s -H "Host: bench.tandem.test" "$url" >/dev/null 2>&1 || true
  local c0; c0=$(cpu_ticks "$pid")
  local out; out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -H "Host: bench.tandem.test" "$url" 2>&1)
  local c1; c1=$(cpu_ticks "$pid")
  local rps p50 p99 reqs errs
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  p50=$(to_ms "$(awk '$1=="50%" {print $2}' <<<"$out")")
  p99=$(to_ms "$(awk '$1=="99%" {print $2}' <<<"$out")")
  errs=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
  local cpu_us; cpu_us=$(awk -v a="$c0" -v b="$c1" -v n="$reqs" -v hz="$HZ" 'BEGIN{ if (n>0) printf "%.1f", (b-a)/hz*1e6/n; else print "nan" }')
  echo "$mode $name $rps $p50 $p99 $cpu_us ${errs:-}" >> "$RESULTS"
}
run_h2() { # name url pid
  local name=$1 url=$2 pid=$3
  h2load -n 2000 -c 10 -m "$H2_STREAMS" "$url" >/dev/null 2>&1 || true
  local c0; c0=$(cpu_ticks "$pid")
  local out; out=$(h2load -n "$H2_REQUESTS" -c "$CONNS" -m "$H2_STREAMS" -t 1 "$url" 2>&1)
  local c1; c1=$(cpu_ticks "$pid")
  local rps mean ok
  rps=$(awk '/^finished in/ {print $4}' <<<"$out")
  mean=$(to_ms "$(awk '/^time for request:/ {print $6}' <<<"$out")")
  ok=$(awk '/^requests:/ {print $8}' <<<"$out")
  local cpu_us; cpu_us=$(awk -v a="$c0" -v b="$c1" -v n="$ok" -v hz="$HZ" 'BEGIN{ if (n>0) printf "%.1f", (b-a)/hz*1e6/n; else print "nan" }')
  echo "h2-tls $name $rps $mean - $cpu_us" >> "$RESULTS"
}

echo "== edge proxy benchmark: ${DURATION}s per case, $CONNS connections, $THREADS proxy thread(s), $(nproc) cores ==" >&2
for mode in plain tls; do
  for name in tandem nginx haproxy; do
    case "$name:$mode" in
      tandem:plain) run_wrk tandem plain "http://127.0.0.1:$T_HTTP/" $TANDEM_PID ;;
      tandem:tls) run_wrk tandem tls "https://127.0.0.1:$T_HTTPS/" $TANDEM_PID ;;
      nginx:plain) run_wrk nginx plain "http://127.0.0.1:$N_HTTP/" $NGINX_PID ;;
      nginx:tls) run_wrk nginx tls "https://127.0.0.1:$N_HTTPS/" $NGINX_PID ;;
      haproxy:plain) run_wrk haproxy plain "http://127.0.0.1:$H_HTTP/" $HAPROXY_PID ;;
      haproxy:tls) run_wrk haproxy tls "https://127.0.0.1:$H_HTTPS/" $HAPROXY_PID ;;
    esac
  done
done
run_h2 tandem "https://127.0.0.1:$T_HTTPS/" $TANDEM_PID
run_h2 nginx "https://127.0.0.1:$N_HTTPS/" $NGINX_PID
run_h2 haproxy "https://127.0.0.1:$H_HTTPS/" $HAPROXY_PID

# TLS clients connect by IP (no SNI); all three serve the one certificate (Tandem answers
# with its default certificate).
awk '
  { mode[NR]=$1; name[NR]=$2; rps[NR]=$3; p50[NR]=$4; p99[NR]=$5; cpu[NR]=$6; extra[NR]="";
    for (i=7;i<=NF;i++) extra[NR]=extra[NR] " " $i;
    if ($2=="tandem") { trps[$1]=$3; tp99[$1]=$5; tcpu[$1]=$6 } }
  END {
    printf "%-7s %-8s %10s %9s %9s %10s %9s %9s %9s\n", "mode", "proxy", "req/s", "p50 ms", "p99 ms", "cpu us/req", "rps/tdm", "p99/tdm", "cpu/tdm";
    for (i=1;i<=NR;i++) {
      r = (trps[mode[i]]>0) ? rps[i]/trps[mode[i]] : 0;
      q = (tp99[mode[i]]>0 && p99[i]!="-") ? sprintf("%.2f", p99[i]/tp99[mode[i]]) : "-";
      c = (tcpu[mode[i]]>0) ? cpu[i]/tcpu[mode[i]] : 0;
      printf "%-7s %-8s %10.0f %9s %9s %10s %9.2f %9s %9.2f%s\n", mode[i], name[i], rps[i], p50[i], p99[i], cpu[i], r, q, c, extra[i];
    }
    print "(h2-tls: h2load reports the mean, shown as p50; ratios are the proxy over Tandem)"
  }' "$RESULTS"
