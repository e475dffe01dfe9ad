//! The DNS query path, from raw packet to response, against a catalog with every kind of
//! name: static records, CNAME chains and one profile per routing method. Any panic, and any
//! response that does not echo the query id, is a bug.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use tandem_dns::DnsServer;

const CONFIG: &str = r#"
[regions.eastus]
pair = "westus"
location = "us-east"
[regions.westus]
pair = "eastus"
location = "us-west"
[[geo.networks]]
cidr = "10.0.0.0/8"
country = "DE"
continent = "EU"
location = "us-east"
[geo.latency.us-east]
eastus = "5ms"
westus = "50ms"
[dns.zones."tandem.test"]
ns = ["ns1.tandem.test"]
[dns.zones."tandem.test".records]
ns1 = { a = ["127.0.0.1"] }
www = { cname = "static.tandem.test" }
static = { a = ["192.0.2.1"], aaaa = ["2001:db8::1"], txt = ["x"], mx = [{ preference = 1, exchange = "mx.tandem.test" }] }
loop1 = { cname = "loop2.tandem.test" }
loop2 = { cname = "loop1.tandem.test" }
[dns.profiles.p]
domain = "p.tandem.test"
method = "priority"
[[dns.profiles.p.endpoints]]
name = "a"
address = "127.0.1.1"
[[dns.profiles.p.endpoints]]
name = "b"
host = "www.tandem.test"
[dns.profiles.w]
domain = "w.tandem.test"
method = "weighted"
[[dns.profiles.w.endpoints]]
name = "a"
address = "2001:db8::2"
[[dns.profiles.w.endpoints]]
name = "n"
profile = "p"
[dns.profiles.perf]
domain = "perf.tandem.test"
method = "performance"
[[dns.profiles.perf.endpoints]]
name = "e"
region = "eastus"
address = "127.0.1.1"
[[dns.profiles.perf.endpoints]]
name = "w"
region = "westus"
address = "127.0.2.1"
[dns.profiles.g]
domain = "g.tandem.test"
method = "geographic"
[[dns.profiles.g.endpoints]]
name = "de"
address = "127.0.1.1"
geo = ["DE"]
[[dns.profiles.g.endpoints]]
name = "world"
address = "127.0.2.1"
geo = ["WORLD"]
[dns.profiles.mv]
domain = "mv.tandem.test"
method = "multivalue"
[[dns.profiles.mv.endpoints]]
name = "a"
address = "127.0.1.1"
[[dns.profiles.mv.endpoints]]
name = "b"
address = "127.0.1.2"
[dns.profiles.s]
domain = "s.tandem.test"
method = "subnet"
[[dns.profiles.s.endpoints]]
name = "a"
address = "127.0.1.1"
subnets = ["10.0.0.0/8"]
[[dns.profiles.s.endpoints]]
name = "b"
address = "127.0.1.2"
"#;

static SERVER: LazyLock<DnsServer> = LazyLock::new(|| {
    let cfg = tandem_config::parse(CONFIG, "fuzz.toml").expect("fuzz config is valid");
    let mut registry = prometheus_client::registry::Registry::default();
    DnsServer::new(&cfg, &mut registry, tokio_util::sync::CancellationToken::new()).expect("server")
});

fuzz_target!(|data: &[u8]| {
    let tcp = data.last().is_some_and(|b| b & 1 == 1);
    if let Some(resp) = SERVER.answer_packet(data, "10.1.2.3".parse().expect("ip"), tcp) {
        assert!(resp.len() >= 12, "a response has at least a header");
        assert_eq!(&resp[..2], &data[..2], "the response echoes the query id");
        assert!(resp[2] & 0x80 != 0, "QR is set");
        if !tcp {
            assert!(resp.len() <= 4096, "UDP answers respect the payload limit");
        }
    }
});
