#!/usr/bin/env bash
# The cost of CRS's paranoia-level gates in-process: a rule set of CRS's setup and
# initialisation (crs-setup.conf.example, REQUEST-901) plus GATES generated groups of the
# shape every CRS file starts with (TX:DETECTION_PARANOIA_LEVEL "@lt 1" and "@lt 2" with
# skipAfter, a rule they skip, the marker), timed with tx_bench against the same set without
# the gates. The difference over 2 × GATES is the cost of one gate.
#
#   bench/waf/gates.sh [CRS_DIR]                  # GATES=100 groups, 50000 transactions
#   TX_BENCH=path/to/tx_bench bench/waf/gates.sh  # skip the build
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CRS=${1:-$ROOT/third_party/crs}
GATES=${GATES:-100}
N=${N:-50000}
if [[ -z "${TX_BENCH:-}" ]]; then
  cargo build --release -q -p tandem-waf --example tx_bench --manifest-path "$ROOT/Cargo.toml"
  TX_BENCH=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/tx_bench
fi
WORK=$(mktemp -d /tmp/tandem-waf-gates.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
for d in base gates; do
  mkdir -p "$WORK/$d/rules"
  cp "$CRS/crs-setup.conf.example" "$WORK/$d/"
  cp "$CRS/rules/REQUEST-901-INITIALIZATION.conf" "$CRS"/rules/*.data "$WORK/$d/rules/"
done
for ((g = 0; g < GATES; g++)); do
  id=$((700000 + g * 10))
  cat <<EOF
SecRule TX:DETECTION_PARANOIA_LEVEL "@lt 1" "id:$((id + 1)),phase:1,pass,nolog,skipAfter:END-GATE-$g"
SecRule TX:DETECTION_PARANOIA_LEVEL "@lt 2" "id:$((id + 2)),phase:1,pass,nolog,skipAfter:END-GATE-$g"
SecRule REQUEST_URI "@contains zzzq" "id:$((id + 3)),phase:1,block,t:none"
SecMarker "END-GATE-$g"
EOF
done > "$WORK/gates/rules/REQUEST-950-GATES.conf"
declare -A us
for d in base gates; do
  line=$(TANDEM_CASE="GET benign" "$TX_BENCH" "$WORK/$d" "$N" | grep "^GET benign")
  us[$d]=$(awk '{print $3}' <<<"$line")
  echo "$d: $line"
done
awk -v a="${us[base]}" -v b="${us[gates]}" -v n=$((2 * GATES)) \
  'BEGIN { printf "%d gates: %.1f µs per transaction, %.0f ns per gate\n", n, b - a, (b - a) * 1000 / n }'
