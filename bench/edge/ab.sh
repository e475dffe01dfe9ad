#!/usr/bin/env bash
# A/B of two Tandem binaries on a noisy machine: both edges run at the same time on the same
# core (PROXY_CPU), each under its own load generator (wrk for plain HTTP/1.1, h2load for
# HTTP/2 over TLS) on LOAD_CPU with the shared origin, so that whatever else the machine does
# hits both alike. Prints each one's CPU µs per request (user + system) and B over A; ROUNDS
# rounds, swapping which binary is A every other round (the order matters a little).
#
#   bench/edge/ab.sh OLD_BIN NEW_BIN                 # plain, 6 rounds of 6 s
#   MODE=h2 ROUNDS=4 DURATION=5 bench/edge/ab.sh OLD_BIN NEW_BIN
#   MODE=post bench/edge/ab.sh OLD_BIN NEW_BIN     # plain HTTP/1.1 POSTs (bench/edge/post.lua)
#   MODE=tls bench/edge/ab.sh OLD_BIN NEW_BIN      # HTTP/1.1 over TLS (wrk)
#   CLOSE=1 MODE=tls bench/edge/ab.sh OLD NEW      # a new connection per request
#                                                  # (`Connection: close`; TLS: a full handshake)
#   PROBED=1 bench/edge/ab.sh OLD_BIN NEW_BIN      # groups with an active probe and a standby
#   MODE=h2 FILES=100 bench/edge/ab.sh OLD NEW      # h2load cycles through 100 static files
#                                                  # (ETag, Last-Modified, lengths differ)
#
# Needs Debian's wrk, nghttp2-client (h2load), nginx-light (or nginx), openssl, util-linux.
set -euo pipefail

A_BIN=${1:?usage: ab.sh A_BIN B_BIN}
B_BIN=${2:?usage: ab.sh A_BIN B_BIN}
MODE=${MODE:-plain}
ROUNDS=${ROUNDS:-6}
DURATION=${DURATION:-6}
CONNS=${CONNS:-50}
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
BASE=${BASE_PORT:-18500}
WORK=$(mktemp -d /tmp/tandem-edge-ab.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
for t in wrk h2load nginx openssl taskset; do
  command -v "$t" >/dev/null || { echo "missing $t: apt-get install -y wrk nghttp2-client nginx-light openssl util-linux" >&2; exit 1; }
done

ORIGIN=$BASE
# shellcheck source=bench/edge/lib.sh
. "$(dirname "$0")/lib.sh"
bench_cert "$WORK"
origin_conf "$WORK" "$ORIGIN"
taskset -c "$LOAD_CPU" nginx -p "$WORK/origin" -c "$WORK/origin/nginx.conf" & PIDS+=($!)

tandem_toml "$WORK" $((BASE + 1)) $((BASE + 2)) "$ORIGIN" > "$WORK/a.toml"
mkdir -p "$WORK/$((BASE + 1))" "$WORK/$((BASE + 11))"
tandem_toml "$WORK" $((BASE + 11)) $((BASE + 12)) "$ORIGIN" > "$WORK/b.toml"

ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12, $13}'; }
close=()
if [[ "${CLOSE:-0}" == 1 ]]; then
  [[ "$MODE" == h2 ]] && { echo "CLOSE=1 works with wrk's modes only (plain, tls, post)" >&2; exit 1; }
  close=(-H "Connection: close")
fi
load() { # port seconds outfile
  if [[ "$MODE" == h2 && "${FILES:-0}" -gt 0 ]]; then
    uris_file "$WORK/$1" $(($1 + 1))
    taskset -c "$LOAD_CPU" h2load -D "$2" -c "$CONNS" -m 10 -t 1 -i "$WORK/$1/uris" >"$3" 2>&1 || true
  elif [[ "$MODE" == h2 ]]; then
    taskset -c "$LOAD_CPU" h2load -D "$2" -c "$CONNS" -m 10 -t 1 "https://127.0.0.1:$(($1 + 1))/" >"$3" 2>&1 || true
  else
    local url="http://127.0.0.1:$1/" extra=()
    [[ "$MODE" == tls ]] && url="https://127.0.0.1:$(($1 + 1))/"
    [[ "$MODE" == post ]] && extra=(-s "$(dirname "$0")/post.lua")
    taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$2s" "${close[@]}" "${extra[@]}" "$url" >"$3" 2>&1 || true
  fi
}
requests() {
  if [[ "$MODE" == h2 ]]; then awk '/^requests:/ {print $8}' "$1"; else awk '/requests in/ {print $1}' "$1"; fi
}

echo "== A/B ($MODE$([[ "${CLOSE:-0}" == 1 ]] && echo ", a connection per request")): A=$A_BIN B=$B_BIN, $ROUNDS rounds × ${DURATION}s, both on CPU $PROXY_CPU ==" >&2
HZ=$(getconf CLK_TCK)
ratios=()
for round in $(seq "$ROUNDS"); do
  if (( round % 2 )); then first=$A_BIN; second=$B_BIN; else first=$B_BIN; second=$A_BIN; fi
  taskset -c "$PROXY_CPU" "$first" --log error edge -c "$WORK/a.toml" --region bench --threads 1 --admin off --access-log off & p1=$!
  taskset -c "$PROXY_CPU" "$second" --log error edge -c "$WORK/b.toml" --region bench --threads 1 --admin off --access-log off & p2=$!
  sleep 1
  load $((BASE + 1)) 2 /dev/null & w=$!; load $((BASE + 11)) 2 /dev/null; wait "$w"
  read -r u1a s1a < <(ticks "$p1"); read -r u2a s2a < <(ticks "$p2")
  load $((BASE + 1)) "$DURATION" "$WORK/l1" & w=$!; load $((BASE + 11)) "$DURATION" "$WORK/l2"; wait "$w"
  read -r u1b s1b < <(ticks "$p1"); read -r u2b s2b < <(ticks "$p2")
  kill "$p1" "$p2"; wait "$p1" "$p2" 2>/dev/null || true
  n1=$(requests "$WORK/l1"); n2=$(requests "$WORK/l2")
  line=$(awk -v hz="$HZ" -v n1="$n1" -v n2="$n2" -v u1=$((u1b - u1a)) -v s1=$((s1b - s1a)) -v u2=$((u2b - u2a)) -v s2=$((s2b - s2a)) -v swap=$((round % 2 == 0)) '
    BEGIN {
      c1u=u1/hz*1e6/n1; c1s=s1/hz*1e6/n1; c2u=u2/hz*1e6/n2; c2s=s2/hz*1e6/n2;
      if (swap) { au=c2u; as=c2s; bu=c1u; bs=c1s } else { au=c1u; as=c1s; bu=c2u; bs=c2s }
      printf "A %.2f+%.2f µs/req  B %.2f+%.2f µs/req  B/A total %.3f user %.3f", au, as, bu, bs, (bu+bs)/(au+as), bu/au
    }')
  echo "  round $round: $line" >&2
  ratios+=("$(awk '{print $(NF-2), $NF}' <<<"$line")")
done
med() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
total=$(printf '%s\n' "${ratios[@]}" | awk '{print $1}' | med)
user=$(printf '%s\n' "${ratios[@]}" | awk '{print $2}' | med)
echo "B/A CPU per request, median of $ROUNDS rounds: total $total, user $user (below 1: B is cheaper)"
