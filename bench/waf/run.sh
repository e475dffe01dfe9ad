#!/usr/bin/env bash
# The WAF benchmark: the same origin behind
#   1. `tandem edge` with the WAF off,
#   2. `tandem edge` with CRS at paranoia level 1 in prevention mode (a [waf] policy on the
#      route),
#   3. nginx with ModSecurity v3 and the same CRS files (Debian's libnginx-mod-http-modsecurity),
# for a benign mix and a mix with attack payloads (bench/waf/mix.lua), in one run. Prints the
# median over REPS repetitions of requests per second, p99 latency and the server's CPU time
# per request (user and system), the CRS edge's own clock of its WAF work per request
# (`tandem_waf_seconds` from its admin API), and the ratios the goals are about.
#
#   bench/waf/run.sh [CRS_DIR]            # default: third_party/crs, else shared/crs
#   REPS=3 DURATION=10 bench/waf/run.sh
#   TANDEM_BIN=target/release/tandem bench/waf/run.sh     # skip the build
#
# Made comparable as bench/edge/run.sh does: each server has one worker (`--threads 1`,
# `worker_processes 1`) pinned to PROXY_CPU (default 1); wrk (-t1) and the origin (an nginx
# answering 64 bytes) are pinned to LOAD_CPU (default 0); every measurement follows a
# WARMUP-second run on the same server; the servers take turns within each repetition.
# Both WAFs log their matches (Tandem at `--log warn`, nginx's error_log at warn). On a
# shared machine requests per second swing with other people's load; CPU µs per request
# (the server's user+system time over the run divided by the requests it answered) is the
# steadier figure.
#
# Needs Debian's wrk, nginx-light (or nginx), libnginx-mod-http-modsecurity, curl,
# util-linux (taskset).
set -euo pipefail

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
REPS=${REPS:-3}
CONNS=${CONNS:-32}
VARIANTS=${VARIANTS:-200}   # bench/waf/mix.lua's variants of each per-visitor value
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
BASE=${BASE_PORT:-18100}
here=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$here/../.." && pwd)
crs="${1:-${TANDEM_CRS_DIR:-$ROOT/third_party/crs}}"
[[ -d "$crs/rules" ]] || crs="$ROOT/../shared/crs"
[[ -d "$crs/rules" ]] || crs="$ROOT/../../shared/crs"
[[ -d "$crs/rules" ]] || { echo "no CRS copy found; pass its path" >&2; exit 1; }
crs=$(cd "$crs" && pwd)

for t in wrk nginx taskset curl; do
  command -v "$t" >/dev/null || { echo "missing $t: apt-get install -y wrk nginx-light libnginx-mod-http-modsecurity curl util-linux" >&2; exit 1; }
done
modsec_so=$(ls /usr/share/nginx/modules/ngx_http_modsecurity_module.so /usr/lib/nginx/modules/ngx_http_modsecurity_module.so 2>/dev/null | head -1 || true)
[[ -n "$modsec_so" ]] || { echo "missing libnginx-mod-http-modsecurity" >&2; exit 1; }
if (( $(nproc) < 2 )); then PROXY_CPU=0; LOAD_CPU=0; fi

if [[ -z "${TANDEM_BIN:-}" ]]; then
  (cd "$ROOT" && cargo build --release -q -p tandem >&2)
  TANDEM_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/tandem"
fi

WORK=$(mktemp -d /tmp/tandem-waf-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

ORIGIN=$BASE; OFF=$((BASE + 1)); CRS=$((BASE + 2)); NGX=$((BASE + 3))
OFF_ADMIN=$((BASE + 11)); CRS_ADMIN=$((BASE + 12))

# --- origin ---------------------------------------------------------------------------------
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
  client_body_temp_path $WORK/origin/body;
  server {
    listen 127.0.0.1:$ORIGIN reuseport backlog=4096;
    location / { default_type text/plain; return 200 "0123456789012345678901234567890123456789012345678901234567890123"; }
  }
}
EOF
taskset -c "$LOAD_CPU" nginx -p "$WORK/origin" -c "$WORK/origin/nginx.conf" -e "$WORK/origin/error.log" & PIDS+=($!)

# --- tandem edge, WAF off and CRS PL1 prevention ---------------------------------------------
# shellcheck source=lib.sh
. "$here/lib.sh"
tandem_waf_conf "$OFF" "$ORIGIN" "$crs" "" > "$WORK/off.toml"
tandem_waf_conf "$CRS" "$ORIGIN" "$crs" 'waf = "crs"' > "$WORK/crs.toml"
taskset -c "$PROXY_CPU" "$TANDEM_BIN" --log warn edge -c "$WORK/off.toml" --region bench --threads 1 \
  --admin "127.0.0.1:$OFF_ADMIN" --access-log off 2>"$WORK/off.log" & PID_off=$!; PIDS+=($PID_off)
taskset -c "$PROXY_CPU" "$TANDEM_BIN" --log warn edge -c "$WORK/crs.toml" --region bench --threads 1 \
  --admin "127.0.0.1:$CRS_ADMIN" --access-log off 2>"$WORK/crs.log" & PID_crs=$!; PIDS+=($PID_crs)

# --- nginx + ModSecurity v3 + the same CRS ----------------------------------------------------
mkdir -p "$WORK/nginx"
cat > "$WORK/nginx/modsec.conf" <<EOF
SecRuleEngine On
SecRequestBodyAccess On
SecRule REQUEST_HEADERS:Content-Type "^(?:application(?:/soap\+|/)|text/)xml" "id:200000,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=XML"
SecRule REQUEST_HEADERS:Content-Type "^application/json" "id:200001,phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON"
SecRequestBodyLimit 13107200
SecRequestBodyNoFilesLimit 131072
SecRequestBodyLimitAction Reject
SecRule REQBODY_ERROR "!@eq 0" "id:200002,phase:2,t:none,log,deny,status:400,msg:'Failed to parse request body.'"
SecResponseBodyAccess Off
SecAuditEngine Off
SecDebugLogLevel 0
Include $crs/crs-setup.conf.example
Include $crs/rules/*.conf
EOF
cat > "$WORK/nginx/nginx.conf" <<EOF
load_module $modsec_so;
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  upstream origin { server 127.0.0.1:$ORIGIN; keepalive 64; }
  server {
    listen 127.0.0.1:$NGX backlog=4096;
    modsecurity on;
    modsecurity_rules_file $WORK/nginx/modsec.conf;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
taskset -c "$PROXY_CPU" nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" & PID_nginx=$!; PIDS+=($PID_nginx)

for port in $ORIGIN $OFF $CRS $NGX; do
  ok=0
  for _ in $(seq 1 300); do
    if curl -s -o /dev/null "http://127.0.0.1:$port/"; then ok=1; break; fi
    sleep 0.1
  done
  (( ok )) || { echo "port $port did not come up" >&2; cat "$WORK"/*.log "$WORK"/nginx/error.log >&2 || true; exit 1; }
done
worker_nginx=$(pgrep -P "$PID_nginx" | head -1)
declare -A CPU_PID=([off]=$PID_off [crs]=$PID_crs [nginx]=$worker_nginx)
declare -A PORT=([off]=$OFF [crs]=$CRS [nginx]=$NGX)
declare -A LABEL=([off]="Tandem edge, WAF off" [crs]="Tandem edge, CRS PL1 prevention" [nginx]="nginx + ModSecurity v3, CRS PL1")

# Sanity: both WAFs refuse an attack and pass a benign request; the WAF-off edge passes both.
attack="/search?q=1%27%20UNION%20SELECT%20password%20FROM%20users--"
for s in crs nginx off; do
  want=403; [[ $s == off ]] && want=200
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${PORT[$s]}$attack")
  [[ "$code" == "$want" ]] || { echo "$s answered $code to an SQL injection (wanted $want)" >&2; exit 1; }
  code=$(curl -s -o /dev/null -w '%{http_code}' -A 'Mozilla/5.0' "http://127.0.0.1:${PORT[$s]}/products?page=2")
  [[ "$code" == 200 ]] || { echo "$s answered $code to a benign request" >&2; exit 1; }
done

# User and system CPU ticks of a process ("user sys").
ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12, $13}'; }
hz=$(getconf CLK_TCK)
# The CRS edge's own clock of its WAF work: tandem_waf_seconds' sum and count ("sum count").
waf_clock() {
  curl -s "http://127.0.0.1:$CRS_ADMIN/metrics" |
    awk '/^tandem_waf_seconds_sum/ {s += $2} /^tandem_waf_seconds_count/ {c += $2} END {printf "%.9f %d\n", s, c}'
}

# server mix -> "rps p99ms cpu_us_per_req non2xx_share user_us sys_us waf_us"
# (waf_us: the WAF's time per request by the CRS edge's own clock, wall time; 0 for others)
measure() {
  local s=$1 mix=$2 url="http://127.0.0.1:${PORT[$1]}"
  taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${WARMUP}s" -s "$here/mix.lua" "$url" -- "$mix" "$VARIANTS" >/dev/null
  local t0 out t1 w0="0 0" w1="0 0"
  [[ $s == crs ]] && w0=$(waf_clock)
  t0=$(ticks "${CPU_PID[$s]}")
  out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -s "$here/mix.lua" "$url" -- "$mix" "$VARIANTS")
  t1=$(ticks "${CPU_PID[$s]}")
  [[ $s == crs ]] && w1=$(waf_clock)
  local n rps p99 bad
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  bad=$(awk '/Non-2xx/ {print $NF}' <<<"$out"); bad=${bad:-0}
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}' <<<"$out")
  awk -v r="$rps" -v p="$p99" -v n="$n" -v b="$bad" -v t0="$t0" -v t1="$t1" -v w0="$w0" -v w1="$w1" -v hz="$hz" 'BEGIN {
    split(t0, a, " "); split(t1, z, " "); split(w0, x, " "); split(w1, y, " ")
    u = (z[1] - a[1]) * 1e6 / hz; k = (z[2] - a[2]) * 1e6 / hz
    waf = (y[2] > x[2] ? (y[1] - x[1]) * 1e6 / (y[2] - x[2]) : 0)
    printf "%s %s %.1f %.3f %.1f %.1f %.1f\n", r, p, (n > 0 ? (u + k) / n : 0), (n > 0 ? b / n : 0), (n > 0 ? u / n : 0), (n > 0 ? k / n : 0), waf
  }'
}

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2)}'; }

echo "CRS: $crs; $REPS repetitions of ${DURATION}s (after ${WARMUP}s warm-up), wrk -t1 -c$CONNS; servers on CPU $PROXY_CPU, load and origin on CPU $LOAD_CPU" >&2
declare -A RPS P99 CPU USR SYS WAF
servers=(off crs nginx)
for rep in $(seq 1 "$REPS"); do
  for mix in benign attack; do
    for i in 0 1 2; do
      s=${servers[$(( (i + rep) % 3 ))]}
      read -r r p c b u k w < <(measure "$s" "$mix")
      RPS[$mix-$s]+="$r "; P99[$mix-$s]+="$p "; CPU[$mix-$s]+="$c "
      USR[$mix-$s]+="$u "; SYS[$mix-$s]+="$k "; WAF[$mix-$s]+="$w "
      echo "  rep $rep $mix $s: $r req/s, p99 $p ms, $c CPU µs/req ($u user, $k system), non-2xx share $b" >&2
    done
  done
done

# CPU µs/req = user + system; "WAF µs/req" is the CRS edge's own clock of its WAF work
# (tandem_waf_seconds, wall time, inside the user time).
printf '\n%-7s %-34s %10s %9s %12s %6s %6s %12s\n' mix server "req/s" "p99 ms" "CPU µs/req" user system "WAF µs/req"
declare -A MR MP MC MU MK MW
for mix in benign attack; do
  for s in off crs nginx; do
    MR[$mix-$s]=$(median <<<"${RPS[$mix-$s]}")
    MP[$mix-$s]=$(median <<<"${P99[$mix-$s]}")
    MC[$mix-$s]=$(median <<<"${CPU[$mix-$s]}")
    MU[$mix-$s]=$(median <<<"${USR[$mix-$s]}")
    MK[$mix-$s]=$(median <<<"${SYS[$mix-$s]}")
    MW[$mix-$s]=$(median <<<"${WAF[$mix-$s]}")
    waf="-"; [[ $s == crs ]] && waf=$(printf '%.1f' "${MW[$mix-$s]}")
    printf '%-7s %-34s %10.0f %9.2f %12.1f %6.1f %6.1f %12s\n' "$mix" "${LABEL[$s]}" "${MR[$mix-$s]}" "${MP[$mix-$s]}" "${MC[$mix-$s]}" "${MU[$mix-$s]}" "${MK[$mix-$s]}" "$waf"
  done
done
echo
for mix in benign attack; do
  awk -v m="$mix" -v off="${MR[$mix-off]}" -v crs="${MR[$mix-crs]}" -v ngx="${MR[$mix-nginx]}" \
      -v poff="${MP[$mix-off]}" -v pcrs="${MP[$mix-crs]}" -v pngx="${MP[$mix-nginx]}" \
      -v coff="${MC[$mix-off]}" -v ccrs="${MC[$mix-crs]}" -v cngx="${MC[$mix-nginx]}" 'BEGIN {
    printf "%-7s Tandem+CRS vs nginx+ModSecurity+CRS: throughput %.2fx, p99 %.2fx, CPU/req %.2fx\n", m, crs/ngx, pcrs/pngx, ccrs/cngx
    printf "%-7s WAF in Tandem: throughput %.0f%% of WAF-off (goal: at least 67%%), p99 %.2fx, CPU/req %.2fx (WAF-off CPU share: %.0f%%)\n", m, 100*crs/off, pcrs/poff, ccrs/coff, 100*coff/ccrs
  }'
  awk -v m="$mix" -v c="${MC[$mix-crs]}" -v u="${MU[$mix-crs]}" -v k="${MK[$mix-crs]}" -v w="${MW[$mix-crs]}" \
      -v co="${MC[$mix-off]}" -v uo="${MU[$mix-off]}" -v ko="${MK[$mix-off]}" 'BEGIN {
    printf "%-7s CRS edge CPU/req %.1f us: WAF (own clock) %.1f, other user time %.1f (WAF-off edge: %.1f), system %.1f (WAF-off edge: %.1f)\n", m, c, w, u - w, uo, k, ko
  }'
done
