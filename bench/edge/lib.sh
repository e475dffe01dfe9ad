# Shared by bench/edge/run.sh and bench/edge/ab.sh (sourced): the certificate, the origin
# and Tandem's edge config, so both scripts measure the same setup.

# bench_cert WORK: an EC certificate for bench.tandem.test in WORK/{cert,key,haproxy}.pem.
bench_cert() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=bench.tandem.test -addext subjectAltName=DNS:bench.tandem.test \
    -keyout "$1/key.pem" -out "$1/cert.pem" 2>/dev/null
  cat "$1/cert.pem" "$1/key.pem" > "$1/haproxy.pem"
}

# origin_conf WORK PORT: the origin, an nginx answering 64 bytes to everything, in WORK/origin.
# With FILES=N it also serves N static files, /f/1 ... /f/N, of 100 × i bytes each, with the
# ETag, Last-Modified and Content-Length that differ per file as a real site's do.
origin_conf() {
  mkdir -p "$1/origin/www/f"
  local i
  for ((i = 1; i <= ${FILES:-0}; i++)); do head -c $((100 * i)) /dev/zero | tr '\0' x > "$1/origin/www/f/$i"; done
  # nginx's workers are not root: let them down the (mktemp, 0700) path to the files.
  chmod a+x "$1" "$1/origin" && chmod -R a+rX "$1/origin/www"
  cat > "$1/origin/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $1/origin/nginx.pid;
error_log $1/origin/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$2 reuseport backlog=4096;
    location / { default_type text/plain; return 200 "0123456789012345678901234567890123456789012345678901234567890123"; }
    location /f/ { root $1/origin/www; default_type text/plain; }
    # What a proxy added to the request, for run.sh's check that every proxy does the same work.
    location = /fields { default_type text/plain; return 200 "xfh=\$http_x_forwarded_host fwd=\$http_forwarded rid=\$http_x_request_id\n"; }
  }
}
EOF
}

# tandem_toml WORK HTTP_PORT HTTPS_PORT ORIGIN_PORT: one region, one route to the origin.
# PROBED=1: the group as production configs have it: an active health probe and a second,
# lower-priority origin (the same address), so selection reads probe state per request.
tandem_toml() {
  local monitor=""
  [[ "${PROBED:-0}" == 1 ]] && monitor='monitor = "bench"'
  cat <<EOF
[regions.bench]

[edge]
access_log = false

[edge.instances.bench]
https = ["127.0.0.1:$3"]
http = ["127.0.0.1:$2"]

[[edge.certificates]]
domains = ["bench.tandem.test"]
cert = "$1/cert.pem"
key = "$1/key.pem"

[edge.routes.all]
domains = ["*"]
http = "serve"
group = "origin"

[edge.groups.origin]
$monitor
[[edge.groups.origin.origins]]
name = "origin"
address = "127.0.0.1:$4"
EOF
  if [[ "${PROBED:-0}" == 1 ]]; then
    cat <<EOF
priority = 1

[[edge.groups.origin.origins]]
name = "standby"
address = "127.0.0.1:$4"
priority = 2

[monitors.bench]
protocol = "http"
path = "/"
interval = "1s"
timeout = "500ms"
EOF
  fi
}

# uris_file WORK PORT: the URIs of the FILES files through a proxy's HTTPS port, for h2load -i.
uris_file() {
  local i
  for ((i = 1; i <= FILES; i++)); do echo "https://127.0.0.1:$2/f/$i"; done > "$1/uris"
}
