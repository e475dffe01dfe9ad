#!/usr/bin/env bash
# The WAF benchmark: the same origin behind
#   1. Tandem with the WAF off,
#   2. Tandem with CRS at paranoia level 1 in prevention mode,
#   3. nginx with ModSecurity v3 and the same CRS rules (Debian's libnginx-mod-http-modsecurity),
# for a benign mix and a mix with attack payloads, in one run; prints throughput and p99
# latency side by side and as ratios.
#
# Each server gets one worker on CPU 1 (taskset); wrk and the origin share CPU 0. Needs the
# Debian packages wrk, nginx-light (or nginx) and libnginx-mod-http-modsecurity.
#
#   bench/waf/run.sh [CRS_DIR]        (default: shared/crs next to the repository)
#   DURATION=20s CONNECTIONS=32 bench/waf/run.sh
#
# Until the edge serves WAF policies, "Tandem" here is crates/tandem-waf/examples/waf_proxy.rs,
# a hyper HTTP/1.1 proxy that calls the WAF exactly as the edge does.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
crs="${1:-${TANDEM_CRS_DIR:-$root/../shared/crs}}"
[ -d "$crs/rules" ] || crs="$root/../../shared/crs"
[ -d "$crs/rules" ] || { echo "no CRS copy at $crs; pass its path" >&2; exit 1; }
crs="$(cd "$crs" && pwd)"
duration="${DURATION:-10s}"
conns="${CONNECTIONS:-32}"
for tool in wrk nginx taskset; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y wrk nginx-light libnginx-mod-http-modsecurity" >&2; exit 1; }
done
modsec_so="$(ls /usr/share/nginx/modules/ngx_http_modsecurity_module.so /usr/lib/nginx/modules/ngx_http_modsecurity_module.so 2>/dev/null | head -1 || true)"
[ -n "$modsec_so" ] || { echo "missing libnginx-mod-http-modsecurity" >&2; exit 1; }

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
cargo build --release -q -p tandem-waf --example waf_proxy --manifest-path "$root/Cargo.toml"
proxy="$CARGO_TARGET_DIR/release/examples/waf_proxy"

work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

O=18080; OFF=18081; CRS=18082; NGX=18083
taskset -c 0 "$proxy" origin "127.0.0.1:$O" & pids+=($!)
taskset -c 1 "$proxy" proxy "127.0.0.1:$OFF" "127.0.0.1:$O" off "$crs" & pids+=($!)
taskset -c 1 "$proxy" proxy "127.0.0.1:$CRS" "127.0.0.1:$O" prevention "$crs" 1 & pids+=($!)

cat > "$work/modsec.conf" <<CONF
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
CONF
cat > "$work/nginx.conf" <<CONF
load_module $modsec_so;
worker_processes 1;
worker_cpu_affinity 10;
pid $work/nginx.pid;
error_log $work/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/body;
  proxy_temp_path $work/proxy;
  upstream origin { server 127.0.0.1:$O; keepalive 64; }
  server {
    listen 127.0.0.1:$NGX;
    modsecurity on;
    modsecurity_rules_file $work/modsec.conf;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
CONF
nginx -c "$work/nginx.conf" -e "$work/error.log" 2>"$work/nginx.out" || { cat "$work/nginx.out" "$work/error.log" >&2; exit 1; }

for port in $O $OFF $CRS $NGX; do
  for _ in $(seq 1 100); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" && break
    sleep 0.1
  done
done

# Sanity: an attack is refused by both WAFs, a benign request is not.
attack="http://127.0.0.1:PORT/search?q=1%27%20UNION%20SELECT%20password%20FROM%20users--"
for port in $CRS $NGX; do
  code="$(curl -s -o /dev/null -w '%{http_code}' "${attack/PORT/$port}")"
  [ "$code" = 403 ] || echo "warning: port $port answered $code to an SQL injection" >&2
  code="$(curl -s -o /dev/null -w '%{http_code}' -A 'Mozilla/5.0' "http://127.0.0.1:$port/products?page=2")"
  [ "$code" = 200 ] || echo "warning: port $port answered $code to a benign request" >&2
done

run() { # port mix -> "rps p99ms"
  local out
  out="$(taskset -c 0 wrk -t1 -c"$conns" -d"$duration" --latency -s "$here/mix.lua" "http://127.0.0.1:$1" -- "$2")"
  local rps p99
  rps="$(awk '/^Requests\/sec/ {print $2}' <<<"$out")"
  p99="$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}' <<<"$out")"
  echo "$rps $p99"
}

printf '%-8s %-34s %12s %10s\n' mix server "req/s" "p99 ms"
declare -A R P
for mix in benign attack; do
  for s in off:$OFF crs:$CRS nginx:$NGX; do
    name="${s%%:*}"; port="${s##*:}"
    read -r rps p99 < <(run "$port" "$mix")
    R[$mix-$name]="$rps"; P[$mix-$name]="$p99"
    label=$([ "$name" = off ] && echo "Tandem, WAF off" || ([ "$name" = crs ] && echo "Tandem, CRS PL1 prevention" || echo "nginx + ModSecurity v3, CRS PL1"))
    printf '%-8s %-34s %12.0f %10.2f\n' "$mix" "$label" "$rps" "$p99"
  done
done
echo
for mix in benign attack; do
  awk -v m="$mix" -v off="${R[$mix-off]}" -v crs="${R[$mix-crs]}" -v ngx="${R[$mix-nginx]}" \
      -v poff="${P[$mix-off]}" -v pcrs="${P[$mix-crs]}" -v pngx="${P[$mix-nginx]}" 'BEGIN {
    printf "%-7s Tandem+CRS / nginx+ModSecurity: throughput %.2fx, p99 %.2fx (lower is better)\n", m, crs/ngx, pcrs/pngx
    printf "%-7s WAF cost in Tandem: throughput %.0f%% of WAF-off (goal: above 67%%), p99 %.2fx\n", m, 100*crs/off, pcrs/poff
  }'
done
