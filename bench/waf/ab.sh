#!/usr/bin/env bash
# A/B of two Tandem binaries' WAF on a noisy machine: two edges with CRS at paranoia level 1
# in prevention mode run at the same time on the same core (PROXY_CPU), each under its own
# wrk with bench/waf/mix.lua on LOAD_CPU with the shared origin, so that whatever else the
# machine does hits both alike. Prints each one's CPU µs per request (user + system) and B
# over A per round, swapping which binary listens where every other round, and the median.
#
#   bench/waf/ab.sh OLD_BIN NEW_BIN                     # benign mix, 4 rounds of 6 s
#   MIX=attack ROUNDS=6 DURATION=8 bench/waf/ab.sh OLD_BIN NEW_BIN
#   VARIANTS=5000 bench/waf/ab.sh OLD_BIN NEW_BIN       # values that do not recur within a round
#
# Needs Debian's wrk, nginx-light (or nginx), util-linux; the CRS copy in third_party/crs
# (or CRS_DIR).
set -euo pipefail

A_BIN=${1:?usage: ab.sh A_BIN B_BIN}
B_BIN=${2:?usage: ab.sh A_BIN B_BIN}
MIX=${MIX:-benign}
VARIANTS=${VARIANTS:-200}   # bench/waf/mix.lua's variants of each per-visitor value
ROUNDS=${ROUNDS:-4}
DURATION=${DURATION:-6}
CONNS=${CONNS:-16}
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
BASE=${BASE_PORT:-18700}
here=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$here/../.." && pwd)
CRS_DIR=${CRS_DIR:-$ROOT/third_party/crs}
[[ -d "$CRS_DIR/rules" ]] || { echo "no CRS copy at $CRS_DIR; set CRS_DIR" >&2; exit 1; }
for t in wrk nginx taskset curl; do
  command -v "$t" >/dev/null || { echo "missing $t: apt-get install -y wrk nginx-light util-linux curl" >&2; exit 1; }
done
WORK=$(mktemp -d /tmp/tandem-waf-ab.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
# shellcheck source=../edge/lib.sh
. "$ROOT/bench/edge/lib.sh"

ORIGIN=$BASE
origin_conf "$WORK" "$ORIGIN"
taskset -c "$LOAD_CPU" nginx -c "$WORK/origin/nginx.conf" -p "$WORK/origin" &
PIDS+=($!)

# shellcheck source=lib.sh
. "$here/lib.sh"
P1=$((BASE + 1)); P2=$((BASE + 2))
tandem_waf_conf "$P1" "$ORIGIN" "$CRS_DIR" 'waf = "crs"' > "$WORK/1.toml"
tandem_waf_conf "$P2" "$ORIGIN" "$CRS_DIR" 'waf = "crs"' > "$WORK/2.toml"
ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
hz=$(getconf CLK_TCK)
load() { taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$2" -s "$here/mix.lua" "http://127.0.0.1:$1/" -- "$MIX" "$VARIANTS"; }
ratios=()
echo "== WAF A/B ($MIX mix): A=$A_BIN B=$B_BIN, $ROUNDS rounds × ${DURATION}s, both on CPU $PROXY_CPU =="
for r in $(seq "$ROUNDS"); do
  if (( r % 2 )); then first=$A_BIN; second=$B_BIN; else first=$B_BIN; second=$A_BIN; fi
  taskset -c "$PROXY_CPU" "$first" --log error edge -c "$WORK/1.toml" --region bench --threads 1 --admin off --access-log off &
  p1=$!
  taskset -c "$PROXY_CPU" "$second" --log error edge -c "$WORK/2.toml" --region bench --threads 1 --admin off --access-log off &
  p2=$!
  PIDS+=("$p1" "$p2")
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$P1/" 2>/dev/null && curl -s -o /dev/null "http://127.0.0.1:$P2/" 2>/dev/null && break
    sleep 0.1
  done
  # Warm-up (regex caches, memos), then the measured run.
  load "$P1" 2 > /dev/null & w=$!
  load "$P2" 2 > /dev/null; wait "$w"
  t1=$(ticks "$p1"); t2=$(ticks "$p2")
  load "$P1" "$DURATION" > "$WORK/l1" & w=$!
  load "$P2" "$DURATION" > "$WORK/l2"; wait "$w"
  u1=$(( $(ticks "$p1") - t1 )); u2=$(( $(ticks "$p2") - t2 ))
  n1=$(awk '/requests in/ {print $1}' "$WORK/l1"); n2=$(awk '/requests in/ {print $1}' "$WORK/l2")
  kill "$p1" "$p2"; wait "$p1" "$p2" 2>/dev/null || true
  line=$(awk -v u1="$u1" -v u2="$u2" -v n1="$n1" -v n2="$n2" -v hz="$hz" -v swap=$(( r % 2 == 0 )) -v r="$r" 'BEGIN {
    c1 = u1 * 1e6 / hz / n1; c2 = u2 * 1e6 / hz / n2
    if (swap) { a = c2; b = c1 } else { a = c1; b = c2 }
    printf "  round %d: A %.1f µs/req  B %.1f µs/req  B/A %.3f\n", r, a, b, b / a }')
  echo "$line"
  ratios+=("${line##* }")
done
printf '%s\n' "${ratios[@]}" | sort -n | awk '{v[NR] = $1} END {
  m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
  printf "B/A CPU per request, median of %d rounds: %.3f (below 1: B is cheaper)\n", NR, m }'
