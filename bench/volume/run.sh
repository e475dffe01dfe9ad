#!/usr/bin/env bash
# Back up and restore the same generated data set with Tandem and with Debian's restic on this
# machine, in one run, and print throughput, repository size and restore time side by side as
# ratios; then measure the replication lag Tandem holds under a steady write load.
#
#   bench/volume/run.sh                      # default: ~300 MiB (a few minutes here)
#   BENCH_VOLUME_MIB=3000 bench/volume/run.sh  # a few GB
#
# Needs: restic (apt-get install restic), a release build of tandem (built here if missing).
set -euo pipefail
cd "$(dirname "$0")/../.."

MIB=${BENCH_VOLUME_MIB:-300}
INTERVAL=${BENCH_VOLUME_INTERVAL:-2s}
LOAD_SECS=${BENCH_VOLUME_LOAD_SECS:-30}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-volume}
command -v restic >/dev/null || { echo "restic is not installed: apt-get install restic" >&2; exit 1; }
cargo build --release -p tandem -q
TANDEM=$CARGO_TARGET_DIR/release/tandem

W=$(mktemp -d /tmp/tandem-bench-volume.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$W"' EXIT
SRC=$W/eastus/data
mkdir -p "$SRC"
export RESTIC_PASSWORD=bench-password TANDEM_VOLUME_PASSWORD=bench-password

echo "== generating ${MIB} MiB: many small files and a few large ones"
python3 - "$SRC" "$MIB" <<'PY'
import os, sys, random
root, mib = sys.argv[1], int(sys.argv[2])
rnd = random.Random(42)
small_budget = mib * 1024 * 1024 // 5          # a fifth in small files
n = 0; used = 0
while used < small_budget:
    d = os.path.join(root, "small", f"{n // 500:04d}")
    os.makedirs(d, exist_ok=True)
    size = rnd.randint(200, 16384)
    # half text-like (compressible), half random
    data = (f"line {n} of a log file with some repeated text\n" * (size // 45 + 1)).encode()[:size] if n % 2 else os.urandom(size)
    open(os.path.join(d, f"f{n}"), "wb").write(data)
    n += 1; used += size
large = mib * 1024 * 1024 - used
os.makedirs(os.path.join(root, "large"), exist_ok=True)
for i in range(4):
    with open(os.path.join(root, "large", f"blob{i}.bin"), "wb") as f:
        left = large // 4
        while left > 0:
            k = min(left, 1 << 20)
            f.write(os.urandom(k) if i % 2 == 0 else bytes(range(256)) * (k // 256) + os.urandom(k % 256))
            left -= k
print(f"{n} small files, 4 large files")
PY
BYTES=$(du -sb "$SRC" | cut -f1)

cat > "$W/tandem.toml" <<TOML
[regions.eastus]
pair = "westus"
[regions.westus]
pair = "eastus"
[volume]
state_dir = "$W/state"
[volume.volumes.bench]
region = "eastus"
source = "$SRC"
repository = "$W/westus/tandem-repo"
password_env = "TANDEM_VOLUME_PASSWORD"
interval = "$INTERVAL"
lag_alert = "1m"
[volume.volumes.bench.standby]
dir = "$W/westus/standby"
TOML

sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
now() { date +%s.%N; }
t0=$(now); $TANDEM volume -c "$W/tandem.toml" snapshot bench >/dev/null 2>&1; t1=$(now)
T_BACKUP=$(echo "$t1 - $t0" | bc -l)
sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
t0=$(now); restic -q -r "$W/westus/restic-repo" init >/dev/null
restic -q --no-cache -r "$W/westus/restic-repo" backup --compression auto "$SRC" >/dev/null; t1=$(now)
R_BACKUP=$(echo "$t1 - $t0" | bc -l)

T_SIZE=$(du -sb "$W/westus/tandem-repo" | cut -f1)
R_SIZE=$(du -sb "$W/westus/restic-repo" | cut -f1)

t0=$(now); $TANDEM volume -c "$W/tandem.toml" restore bench --target "$W/restore-tandem" >/dev/null 2>&1; t1=$(now)
T_RESTORE=$(echo "$t1 - $t0" | bc -l)
t0=$(now); restic -q --no-cache -r "$W/westus/restic-repo" restore latest --target "$W/restore-restic" >/dev/null; t1=$(now)
R_RESTORE=$(echo "$t1 - $t0" | bc -l)
diff -r "$SRC" "$W/restore-tandem" >/dev/null && echo "tandem restore: identical" || echo "tandem restore: DIFFERS"

mib() { echo "scale=1; $1 / 1048576" | bc -l; }
printf "\n%-22s %14s %14s %10s\n" "" "tandem" "restic" "ratio"
printf "%-22s %11.1f s %11.1f s %9.2fx\n" "backup time" "$T_BACKUP" "$R_BACKUP" "$(echo "$R_BACKUP / $T_BACKUP" | bc -l)"
printf "%-22s %9.1f MiB/s %7.1f MiB/s %9.2fx\n" "backup throughput" "$(echo "$BYTES / $T_BACKUP / 1048576" | bc -l)" "$(echo "$BYTES / $R_BACKUP / 1048576" | bc -l)" "$(echo "$R_BACKUP / $T_BACKUP" | bc -l)"
printf "%-22s %10s MiB %10s MiB %9.2fx\n" "repository size" "$(mib "$T_SIZE")" "$(mib "$R_SIZE")" "$(echo "$T_SIZE / $R_SIZE" | bc -l)"
printf "%-22s %11.1f s %11.1f s %9.2fx\n" "restore time" "$T_RESTORE" "$R_RESTORE" "$(echo "$R_RESTORE / $T_RESTORE" | bc -l)"
echo "(data set: $(mib "$BYTES") MiB; ratio > 1 means tandem is faster / size ratio < 1 means smaller)"

echo
echo "== replication lag under a steady write load (${LOAD_SECS}s, interval $INTERVAL)"
ADMIN=127.0.0.1:19471
$TANDEM volume -c "$W/tandem.toml" --admin "$ADMIN" run --volume bench > "$W/agent.log" 2>&1 &
AGENT=$!
# Wait for the agent's first (incremental) snapshot, so the load starts from a steady state.
for _ in $(seq 1 600); do
  curl -sf "http://$ADMIN/api/v1/status" 2>/dev/null | grep -q '"snapshots":[1-9]' && break
  sleep 0.1
done
( i=0; end=$(( $(date +%s) + LOAD_SECS )); while [ "$(date +%s)" -lt $end ]; do
    head -c 65536 /dev/urandom > "$SRC/small/load-$i"; i=$((i+1)); sleep 0.05; done ) &
LOAD=$!
# Sample the lag the agent reports (the RPO now) from its admin API every 250ms under load.
python3 - "$ADMIN" "$INTERVAL" "$LOAD_SECS" <<'PY'
import json, re, sys, time, urllib.request
admin, iv, secs = sys.argv[1], float(re.sub("s$", "", sys.argv[2])), int(sys.argv[3])
lags, end = [], time.time() + secs
time.sleep(min(2 * iv, secs / 4))  # let the first change of the load be seen
while time.time() < end:
    try:
        doc = json.load(urllib.request.urlopen(f"http://{admin}/api/v1/status", timeout=2))
        agents = doc["components"]["volume"].get("agents", [])
        lags += [a["lag_seconds"] for a in agents if a.get("volume") == "bench"]
    except Exception as e:
        print(f"poll failed: {e}")
    time.sleep(0.25)
if lags:
    s = sorted(lags)
    p99 = s[min(len(s) - 1, int(len(s) * 0.99))]
    print(f"lag samples: {len(s)}, median {s[len(s)//2]:.2f}s, p99 {p99:.2f}s, max {s[-1]:.2f}s; "
          f"goal: within 2 x interval = {2*iv:.1f}s -> {'met' if s[-1] <= 2*iv else 'NOT met'}")
else:
    print("no lag samples: is the agent's admin API up? see the agent log")
PY
wait $LOAD
kill -INT $AGENT; wait $AGENT || true
