#!/usr/bin/env bash
# Registry benchmark: Tandem vs CNCF Distribution (Debian's docker-registry) on this machine,
# same images, same client (curl), in one run. Prints push and pull throughput side by side with
# ratios, then Tandem's replication lag (push acknowledged in eastus -> replicated in westus) per
# image size.
#
#   bench/registry/run.sh                  # small image + a 300 MiB image
#   BIG_MB=500 ROUNDS=5 bench/registry/run.sh
#
# Needs: curl, jq, sha256sum, docker-registry (apt-get install docker-registry curl jq).
set -euo pipefail
cd "$(dirname "$0")/../.."

BIG_MB=${BIG_MB:-300}
ROUNDS=${ROUNDS:-3}
SMALL_LAYERS=${SMALL_LAYERS:-10}
SMALL_LAYER_KB=${SMALL_LAYER_KB:-256}
TANDEM_PORT=${TANDEM_PORT:-5101}
WEST_PORT=${WEST_PORT:-5102}
DIST_PORT=${DIST_PORT:-5103}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}

for t in curl jq sha256sum docker-registry; do
  command -v "$t" >/dev/null || { echo "missing $t: apt-get install -y docker-registry curl jq" >&2; exit 2; }
done

echo "== building tandem (release)"
cargo build --release -p tandem -q
TANDEM="$CARGO_TARGET_DIR/release/tandem"

WORK=$(mktemp -d /tmp/tandem-registry-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

now() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc -l; }

# ---- images, generated locally ------------------------------------------------------------
echo "== generating images in $WORK (small: ${SMALL_LAYERS}x${SMALL_LAYER_KB} KiB, big: ${BIG_MB} MiB)"
mkdir -p "$WORK/img"
mkimage() { # name, layer count, layer size in KiB
  local name=$1 n=$2 kb=$3 dir="$WORK/img/$1"
  mkdir -p "$dir"
  local layers=""
  for i in $(seq 1 "$n"); do
    head -c "$((kb * 1024))" /dev/urandom > "$dir/layer$i"
    local d; d=$(sha256sum "$dir/layer$i" | cut -d' ' -f1)
    mv "$dir/layer$i" "$dir/sha256:$d"
    layers+="${layers:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$d\",\"size\":$((kb * 1024))}"
  done
  printf '{"architecture":"amd64","os":"linux","bench":"%s"}' "$name" > "$dir/config"
  local cd; cd=$(sha256sum "$dir/config" | cut -d' ' -f1)
  mv "$dir/config" "$dir/sha256:$cd"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%d},"layers":[%s]}' \
    "$cd" "$(stat -c %s "$dir/sha256:$cd")" "$layers" > "$dir/manifest.json"
}
mkimage small "$SMALL_LAYERS" "$SMALL_LAYER_KB"
mkimage big 1 "$((BIG_MB * 1024))"

bytes_of() { du -cb "$WORK/img/$1"/sha256:* | tail -1 | cut -f1; }

# ---- servers -------------------------------------------------------------------------------
PASSWORD=bench-password-$$
HASH=$(printf '%s' "$PASSWORD" | "$TANDEM" registry --hash-password)
cat > "$WORK/tandem.toml" <<EOF
[regions.eastus]
pair = "westus"
[regions.westus]
pair = "eastus"
[admin]
listen = "127.0.0.1:0"
[registry]
anonymous_read = ["*"]
[registry.users.bench]
password_hash = "$HASH"
delete = true
[registry.replication]
secret = "bench-replication-secret-0123456789"
poll_wait = "30s"
[registry.replicas.eastus]
listen = "127.0.0.1:$TANDEM_PORT"
data_dir = "$WORK/tandem-eastus"
[registry.replicas.westus]
listen = "127.0.0.1:$WEST_PORT"
data_dir = "$WORK/tandem-westus"
EOF
# westus starts only for the replication phase, so replication does not compete with the
# throughput rounds for the same two cores.
"$TANDEM" --log warn registry -c "$WORK/tandem.toml" --region eastus --no-admin 2>"$WORK/eastus.log" & PIDS+=($!)

mkdir -p "$WORK/distribution"
cat > "$WORK/distribution.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/distribution
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$DIST_PORT
EOF
docker-registry serve "$WORK/distribution.yml" 2>"$WORK/distribution.log" & PIDS+=($!)

wait_up() { for _ in $(seq 1 100); do curl -s -o /dev/null "$1/v2/" && return 0; sleep 0.1; done; echo "$1 did not start" >&2; exit 1; }
EAST="http://127.0.0.1:$TANDEM_PORT"; WEST="http://127.0.0.1:$WEST_PORT"; DIST="http://127.0.0.1:$DIST_PORT"
wait_up "$EAST"; wait_up "$DIST"

# ---- client ---------------------------------------------------------------------------------
# auth_args BASE: curl arguments for pushing there.
auth_args() { if [ "$1" = "$DIST" ]; then echo ""; else echo "-u bench:$PASSWORD"; fi; }

push_blob() { # base repo file digest
  local base=$1 repo=$2 file=$3 d=$4 loc sep
  # shellcheck disable=SC2046
  loc=$(curl -sf $(auth_args "$base") -X POST -D - -o /dev/null "$base/v2/$repo/blobs/uploads/" \
        | awk 'tolower($1)=="location:"{print $2}' | tr -d '\r')
  case "$loc" in http*) ;; *) loc="$base$loc";; esac
  case "$loc" in *\?*) sep='&';; *) sep='?';; esac
  # shellcheck disable=SC2046
  curl -sf $(auth_args "$base") -X PUT -H 'Content-Type: application/octet-stream' \
    --data-binary @"$file" -o /dev/null "$loc${sep}digest=$d"
}

push_image() { # base repo tag image
  local base=$1 repo=$2 tag=$3 dir="$WORK/img/$4" f
  for f in "$dir"/sha256:*; do push_blob "$base" "$repo" "$f" "$(basename "$f")"; done
  # shellcheck disable=SC2046
  curl -sf $(auth_args "$base") -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
    --data-binary @"$dir/manifest.json" -o /dev/null "$base/v2/$repo/manifests/$tag"
}

pull_image() { # base repo tag image
  local base=$1 repo=$2 tag=$3 dir="$WORK/img/$4" f
  curl -sf -o /dev/null -H 'Accept: application/vnd.oci.image.manifest.v1+json' "$base/v2/$repo/manifests/$tag"
  for f in "$dir"/sha256:*; do curl -sf -o /dev/null "$base/v2/$repo/blobs/$(basename "$f")"; done
}

# measure OP BASE IMAGE -> MB/s over ROUNDS (distinct repositories so nothing is skipped)
measure() {
  local op=$1 base=$2 img=$3 total=0 t0 t1 bytes
  bytes=$(bytes_of "$img")
  for r in $(seq 1 "$ROUNDS"); do
    t0=$(now)
    if [ "$op" = push ]; then push_image "$base" "bench/$img$r" v1 "$img"; else pull_image "$base" "bench/$img$r" v1 "$img"; fi
    t1=$(now)
    total=$(echo "$total + $t1 - $t0" | bc -l)
  done
  echo "$bytes * $ROUNDS / $total / 1048576" | bc -l
}

printf '\n%-28s %14s %14s %8s\n' "" "tandem MB/s" "distribution" "ratio"
for img in small big; do
  for op in push pull; do
    t=$(measure "$op" "$EAST" "$img"); d=$(measure "$op" "$DIST" "$img")
    printf '%-28s %14.1f %14.1f %7.2fx\n' "$op $img ($(( $(bytes_of "$img") / 1048576 )) MiB)" "$t" "$d" "$(echo "$t / $d" | bc -l)"
  done
done

# ---- replication lag -------------------------------------------------------------------------
# Acknowledged in eastus -> replicated in westus (its status shows the tag: content fetched and
# registers committed). Read-through is not involved: the status endpoint never reads through.
# Every round pushes freshly generated content, so westus really has to transfer it.
"$TANDEM" --log warn registry -c "$WORK/tandem.toml" --region westus --no-admin 2>"$WORK/westus.log" & PIDS+=($!)
wait_up "$WEST"
# Let westus catch up on everything pushed so far before measuring.
for _ in $(seq 1 1200); do
  curl -sf -u "bench:$PASSWORD" "$WEST/_tandem/registry/v1/status" | jq -e '.peers[0].lag_changes == 0 and .peers[0].peer_head > 0' >/dev/null && break
  sleep 0.1
done
lag() { # image tag
  local img=$1 tag=$2 t0 t1
  push_image "$EAST" bench/lag "$tag" "$img"
  t0=$(now)
  for _ in $(seq 1 6000); do
    if curl -sf -u "bench:$PASSWORD" "$WEST/_tandem/registry/v1/status?repository=bench/lag" \
        | jq -e --arg t "$tag" '.tags[] | select(.tag == $t and .digest != null)' >/dev/null; then
      t1=$(now); elapsed "$t0" "$t1"; return
    fi
    sleep 0.005
  done
  echo "timeout"
}
printf '\n%-28s %10s %10s %10s %16s\n' "replication lag (s)" "min" "median" "max" "pull time (ref)"
for size in small big; do
  lags=()
  for r in $(seq 1 "$ROUNDS"); do
    if [ "$size" = small ]; then mkimage "lag-$size-$r" "$SMALL_LAYERS" "$SMALL_LAYER_KB"; else mkimage "lag-$size-$r" 1 "$((BIG_MB * 1024))"; fi
    lags+=("$(lag "lag-$size-$r" "$size$r")")
  done
  t0=$(now); pull_image "$EAST" bench/lag "${size}1" "lag-$size-1"; t1=$(now)
  sorted=$(printf '%s\n' "${lags[@]}" | sort -g)
  printf '%-28s %10.3f %10.3f %10.3f %16.3f\n' "$size ($(( $(bytes_of "lag-$size-1") / 1048576 )) MiB), $ROUNDS rounds" \
    "$(echo "$sorted" | head -1)" "$(echo "$sorted" | sed -n "$(( (ROUNDS + 1) / 2 ))p")" "$(echo "$sorted" | tail -1)" "$(elapsed "$t0" "$t1")"
  rm -rf "$WORK"/img/lag-"$size"-*
done
echo
echo "pull time (ref) = one pull of the same image from eastus over loopback: the transfer time."
echo "Goal: lag < 1 s + transfer time."
