#!/usr/bin/env bash
# Differential test of tandem-injection against the C libinjection 3.9.2.
#
#   gen/difftest.sh [N_RANDOM=1000000] [SEED=1]
#
# Builds the C library (fetched from PyPI by fetch-libinjection.sh, not committed) with a
# small driver, generates a corpus (gen/difftest.py: the CRS regression corpus plus
# N_RANDOM generated inputs), runs both implementations and prints the inputs on which
# they differ. Needs gcc, python3 with PyYAML, and ../shared/crs (or CRS_TESTS).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
crate="$(dirname "$here")"
n="${1:-1000000}"
seed="${2:-1}"
work="${WORK:-/tmp/tandem-injection-difftest}"
crs="${CRS_TESTS:-$crate/../../../shared/crs/tests/regression/tests}"
[ -d "$crs" ] || crs=/work/shared/crs/tests/regression/tests
[ -d "$crs" ] || { echo "CRS regression tests not found: set CRS_TESTS=.../crs/tests/regression/tests" >&2; exit 1; }
mkdir -p "$work"
src="$("$here/fetch-libinjection.sh" "$work/src")"

cat > "$work/driver.c" <<'C'
#include <stdio.h>
#include <string.h>
#include "libinjection.h"
#include "libinjection_sqli.h"
/* hex-encoded input per line -> "<sqli 0|1> <fingerprint|-> <xss 0|1>" */
static int hv(int c){ return c<='9' ? c-'0' : (c|32)-'a'+10; }
int main(void){
  static char line[1<<20]; static char buf[1<<19];
  while (fgets(line, sizeof line, stdin)) {
    size_t n = strlen(line), m = 0;
    while (n && (line[n-1]=='\n' || line[n-1]=='\r')) line[--n] = 0;
    for (size_t i = 0; i + 1 < n; i += 2) buf[m++] = (char)(hv(line[i])*16 + hv(line[i+1]));
    buf[m] = 0;
    char fp[8];
    int s = libinjection_sqli(buf, m, fp);
    printf("%d %s %d\n", s, s ? fp : "-", libinjection_xss(buf, m));
  }
  return 0;
}
C
gcc -O2 -w -I"$src" -o "$work/oracle" "$work/driver.c" "$src/libinjection_sqli.c" "$src/libinjection_xss.c" "$src/libinjection_html5.c"
(cd "$crate" && cargo build --release --example libinjection_cli)
target="${CARGO_TARGET_DIR:-$crate/../../target}"
python3 "$here/difftest.py" corpus "$crs" "$n" "$seed" > "$work/inputs.hex"
"$work/oracle" < "$work/inputs.hex" > "$work/c.out"
"$target/release/examples/libinjection_cli" < "$work/inputs.hex" > "$work/rust.out"
total=$(wc -l < "$work/inputs.hex")
diffs=$(paste -d'|' "$work/c.out" "$work/rust.out" "$work/inputs.hex" | awk -F'|' '$1 != $2' | tee "$work/diffs.txt" | wc -l)
echo "inputs: $total  sqli(C): $(awk '{s+=$1} END {print s}' "$work/c.out")  xss(C): $(awk '{s+=$3} END {print s}' "$work/c.out")  differ: $diffs"
head -20 "$work/diffs.txt"
[ "$diffs" -eq 0 ]
