# Shared by bench/waf/run.sh and bench/waf/ab.sh (sourced).

# The edge's config for the WAF benchmarks: one route to the origin, with `waf_line` on it
# (empty: WAF off; `waf = "crs"`: CRS at paranoia level 1 in prevention mode).
# usage: tandem_waf_conf LISTEN_PORT ORIGIN_PORT CRS_DIR WAF_LINE
tandem_waf_conf() {
  cat <<EOC
[regions.bench]

[edge]
access_log = false

[edge.instances.bench]
http = ["127.0.0.1:$1"]

[edge.routes.all]
domains = ["*"]
http = "serve"
group = "origin"
$4

[edge.groups.origin]
[[edge.groups.origin.origins]]
name = "origin"
address = "127.0.0.1:$2"

[waf]
crs = "$3"

[waf.policies.crs]
mode = "prevention"
paranoia_level = 1
EOC
}
