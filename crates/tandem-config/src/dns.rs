//! The `[dns]` section: the global traffic manager's listeners, zones and routing profiles.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use indexmap::IndexMap;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::ctx::{Ctx, entries};
use crate::monitor::{Monitor, ProbeProtocol, ProbeTarget};
use crate::path::KeyPath;
use crate::value::{Dur, normalize_dns_name};

/// How a profile chooses among its endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RoutingMethod {
    /// The healthy endpoint with the lowest priority number.
    Priority,
    /// A healthy endpoint chosen at random in proportion to its weight.
    Weighted,
    /// The healthy endpoint with the lowest latency from the client's location.
    Performance,
    /// The endpoint assigned to the client's country, else continent, else `WORLD`.
    Geographic,
    /// Up to `max_answers` healthy endpoints, all in one answer.
    Multivalue,
    /// The endpoint whose `subnets` hold the client's address (longest prefix wins).
    Subnet,
}

impl RoutingMethod {
    /// Whether the answer depends on where the client is (and so carries an ECS scope).
    pub fn uses_client_location(self) -> bool {
        matches!(
            self,
            RoutingMethod::Performance | RoutingMethod::Geographic | RoutingMethod::Subnet
        )
    }
}

/// What to answer when no endpoint of a profile is healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AllDown {
    /// Route among all enabled endpoints as if they were healthy (Traffic Manager's behaviour):
    /// a probe outage must not take the name off the internet.
    #[default]
    AnswerAll,
    /// Answer with no records (NODATA).
    Nodata,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDns {
    listen: Option<Vec<String>>,
    udp_payload: Option<u16>,
    tcp_idle_timeout: Option<Dur>,
    max_tcp_connections: Option<usize>,
    workers: Option<usize>,
    #[serde(default)]
    zones: IndexMap<String, RawZone>,
    #[serde(default)]
    profiles: IndexMap<String, RawProfile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawZone {
    ttl: Option<Dur>,
    ns: Vec<String>,
    soa: Option<RawSoa>,
    #[serde(default)]
    records: IndexMap<String, RawRecordSet>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSoa {
    mname: Option<String>,
    rname: Option<String>,
    serial: Option<u32>,
    refresh: Option<Dur>,
    retry: Option<Dur>,
    expire: Option<Dur>,
    minimum: Option<Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecordSet {
    ttl: Option<Dur>,
    #[serde(default)]
    a: Vec<String>,
    #[serde(default)]
    aaaa: Vec<String>,
    cname: Option<String>,
    #[serde(default)]
    txt: Vec<String>,
    #[serde(default)]
    mx: Vec<RawMx>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMx {
    preference: u16,
    exchange: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    domain: Option<String>,
    method: RoutingMethod,
    ttl: Option<Dur>,
    monitor: Option<String>,
    #[serde(default)]
    when_all_down: AllDown,
    max_answers: Option<usize>,
    #[serde(default)]
    endpoints: Vec<RawEndpoint>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    name: String,
    region: Option<String>,
    address: Option<String>,
    host: Option<String>,
    profile: Option<String>,
    port: Option<u16>,
    monitor: Option<String>,
    #[serde(default = "yes")]
    enabled: bool,
    priority: Option<u32>,
    weight: Option<u32>,
    #[serde(default)]
    geo: Vec<String>,
    #[serde(default)]
    subnets: Vec<String>,
    min_children: Option<u32>,
    location: Option<String>,
}

fn yes() -> bool {
    true
}

/// The DNS traffic manager, as validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DnsConfig {
    /// UDP and TCP listen addresses.
    pub listen: Vec<SocketAddr>,
    /// The largest EDNS UDP payload this server sends.
    pub udp_payload: u16,
    /// How long an idle TCP connection is kept.
    pub tcp_idle_timeout: Duration,
    /// The most TCP connections served at once; more wait in the accept queue.
    pub max_tcp_connections: usize,
    /// UDP worker threads per listen address; 0 means one per core.
    pub workers: usize,
    /// Authoritative zones.
    pub zones: Vec<Zone>,
    /// Routing profiles, in file order.
    pub profiles: Vec<Profile>,
}

/// An authoritative zone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Zone {
    /// The zone apex, lower case, no trailing dot.
    pub origin: String,
    /// Default TTL of static records.
    pub ttl: Duration,
    /// Start of authority.
    pub soa: Soa,
    /// Name servers of the zone (one per `tandem dns` instance).
    pub ns: Vec<String>,
    /// Static records.
    pub records: Vec<StaticRecord>,
}

/// The zone's SOA record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Soa {
    /// Primary name server.
    pub mname: String,
    /// Responsible mailbox, as a DNS name.
    pub rname: String,
    /// Serial number.
    pub serial: u32,
    /// Refresh interval.
    pub refresh: Duration,
    /// Retry interval.
    pub retry: Duration,
    /// Expire time.
    pub expire: Duration,
    /// Negative-caching TTL (also the SOA record's own TTL in negative answers).
    pub minimum: Duration,
}

/// A static record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StaticRecord {
    /// Owner name, lower case, no trailing dot.
    pub name: String,
    /// Time to live.
    pub ttl: Duration,
    /// The data.
    pub data: RecordData,
}

/// Static record data.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordData {
    /// IPv4 address.
    A(Ipv4Addr),
    /// IPv6 address.
    Aaaa(Ipv6Addr),
    /// Canonical name.
    Cname(String),
    /// Text (one string, split into 255-byte chunks on the wire).
    Txt(String),
    /// Mail exchanger.
    Mx {
        /// Preference.
        preference: u16,
        /// Exchange host.
        exchange: String,
    },
}

/// A routing profile: one DNS name (or a nested child) and how it picks endpoints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Profile {
    /// The profile's key in the config.
    pub name: String,
    /// The DNS name it answers for; `None` for profiles used only as nested children.
    pub domain: Option<String>,
    /// The routing method.
    pub method: RoutingMethod,
    /// TTL of answers.
    pub ttl: Duration,
    /// What to answer when nothing is healthy.
    pub when_all_down: AllDown,
    /// Multivalue: the most records in one answer.
    pub max_answers: usize,
    /// Endpoints in file order.
    pub endpoints: Vec<Endpoint>,
}

/// An endpoint of a profile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Endpoint {
    /// Name, unique within the profile.
    pub name: String,
    /// The region it belongs to.
    pub region: Option<String>,
    /// What the endpoint is.
    pub target: EndpointTarget,
    /// Disabled endpoints are never answered and not probed.
    pub enabled: bool,
    /// Priority: lower is preferred.
    pub priority: u32,
    /// Weight for weighted routing.
    pub weight: u32,
    /// Geographic codes: countries (`US`), continents (`GEO-NA`) or `WORLD`.
    pub geo: Vec<String>,
    /// Client networks for subnet routing.
    pub subnets: Vec<IpNet>,
    /// Nested profiles: healthy children needed for this endpoint to count as healthy.
    pub min_children: u32,
    /// Location for performance routing (defaults to the region's location).
    pub location: Option<String>,
    /// How the endpoint is probed, if it is.
    pub probe: Option<ProbeTarget>,
}

/// What an endpoint answers with.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointTarget {
    /// An A or AAAA record.
    Address(IpAddr),
    /// A CNAME to this host name.
    Host(String),
    /// A nested profile, by key.
    Profile(String),
}

/// The default DNS listen address (the lab's).
pub const DEFAULT_DNS_LISTEN: &str = "127.0.0.1:5353";

const MAX_NESTING: usize = 10;

pub(crate) fn validate(
    ctx: &mut Ctx,
    raw: &RawDns,
    monitors: &[Monitor],
    locations: &[String],
) -> DnsConfig {
    let base = KeyPath::root().key("dns");
    let mut listen = Vec::new();
    let listen_raw = raw
        .listen
        .clone()
        .unwrap_or_else(|| vec![DEFAULT_DNS_LISTEN.to_string()]);
    if listen_raw.is_empty() {
        ctx.error(
            &base.key("listen"),
            "the DNS server has no listen address",
            Some(format!("add one, e.g. listen = [\"{DEFAULT_DNS_LISTEN}\"]")),
        );
    }
    for (i, l) in listen_raw.iter().enumerate() {
        if let Some(a) = ctx.parse(
            &base.key("listen").index(i),
            l,
            "socket address",
            "\"127.0.0.1:5353\" or \"[::1]:53\"",
            l.parse::<SocketAddr>(),
        ) {
            listen.push(a);
        }
    }
    let udp_payload = raw.udp_payload.unwrap_or(1232);
    if !(512..=4096).contains(&udp_payload) {
        ctx.error(
            &base.key("udp_payload"),
            format!("udp_payload {udp_payload} is outside 512..=4096"),
            Some("1232 avoids IP fragmentation on almost every path (DNS flag day 2020)".into()),
        );
    }

    let mut zones = Vec::new();
    for (key, origin, z) in entries(&base.key("zones"), &raw.zones) {
        if let Some(zone) = validate_zone(ctx, &key, origin, z) {
            zones.push(zone);
        }
    }
    if raw.zones.is_empty() && !raw.profiles.is_empty() {
        ctx.error(
            &base.key("zones"),
            "profiles are defined but no zone is",
            Some("add a [dns.zones.\"example.com\"] table with `ns` for the zone the profile names live in".into()),
        );
    }

    let profile_names: Vec<&String> = raw.profiles.keys().collect();
    let mut profiles = Vec::new();
    for (key, name, p) in entries(&base.key("profiles"), &raw.profiles) {
        ctx.check_ident(&key, "profile", name);
        let domain = p.domain.as_ref().and_then(|d| {
            match normalize_dns_name(d) {
                Ok(d) => {
                    if !zones.iter().any(|z| in_zone(&d, &z.origin)) {
                        ctx.error(
                            &key.key("domain"),
                            format!("{d:?} is not inside any configured zone"),
                            Some(format!(
                                "add a zone that contains it under [dns.zones], or use a name in one of: {}",
                                zones.iter().map(|z| z.origin.as_str()).collect::<Vec<_>>().join(", ")
                            )),
                        );
                    }
                    if let Some(z) = zones.iter().find(|z| z.records.iter().any(|r| r.name == d)) {
                        ctx.error(
                            &key.key("domain"),
                            format!("{d:?} is also a static record in zone {:?}", z.origin),
                            Some("a name is either a profile or static records; remove one".into()),
                        );
                    }
                    Some(d)
                }
                Err(e) => {
                    ctx.error(&key.key("domain"), e, None);
                    None
                }
            }
        });
        let ttl = p.ttl.map_or(Duration::from_secs(30), |d| d.0);
        if ttl > Duration::from_secs(86400) {
            ctx.error(
                &key.key("ttl"),
                "profile TTL is above one day",
                Some("failover waits out the TTL; keep it short (5s-60s)".into()),
            );
        }
        let monitor = p.monitor.as_ref().and_then(|m| {
            if ctx.check_monitor(&key.key("monitor"), m) {
                monitors.iter().find(|x| &x.name == m).cloned()
            } else {
                None
            }
        });
        let max_answers = p.max_answers.unwrap_or(8);
        if p.max_answers.is_some() && p.method != RoutingMethod::Multivalue {
            ctx.error(
                &key.key("max_answers"),
                "max_answers only applies to method = \"multivalue\"",
                None,
            );
        }
        if !(1..=64).contains(&max_answers) {
            ctx.error(
                &key.key("max_answers"),
                "max_answers must be between 1 and 64",
                None,
            );
        }
        if p.endpoints.is_empty() {
            ctx.error(
                &key.key("endpoints"),
                format!("profile {name:?} has no endpoints"),
                Some(format!(
                    "add at least one [[dns.profiles.{name}.endpoints]] table"
                )),
            );
        }
        let mut endpoints = Vec::new();
        for (i, e) in p.endpoints.iter().enumerate() {
            let ek = key.key("endpoints").index(i);
            if p.endpoints[..i].iter().any(|o| o.name == e.name) {
                ctx.error(
                    &ek.key("name"),
                    format!("endpoint name {:?} is used twice in this profile", e.name),
                    None,
                );
            }
            if let Some(ep) = validate_endpoint(
                ctx,
                &ek,
                p,
                i,
                e,
                monitor.as_ref(),
                monitors,
                &profile_names,
                name,
                locations,
            ) {
                endpoints.push(ep);
            }
        }
        if p.method == RoutingMethod::Geographic {
            let mut seen: Vec<(&str, &str)> = Vec::new();
            for (i, e) in p.endpoints.iter().enumerate() {
                for (j, code) in e.geo.iter().enumerate() {
                    if let Some((_, other)) =
                        seen.iter().find(|(c, _)| c.eq_ignore_ascii_case(code))
                    {
                        ctx.error(
                            &key.key("endpoints").index(i).key("geo").index(j),
                            format!("geographic code {code:?} is already assigned to endpoint {other:?}"),
                            Some("each code may map to one endpoint per profile; use a nested profile to spread one area over several".into()),
                        );
                    } else {
                        seen.push((code, &e.name));
                    }
                }
            }
        }
        profiles.push(Profile {
            name: name.clone(),
            domain,
            method: p.method,
            ttl,
            when_all_down: p.when_all_down,
            max_answers: max_answers.clamp(1, 64),
            endpoints,
        });
    }
    for (i, p) in profiles.iter().enumerate() {
        if let Some(d) = &p.domain
            && let Some(prev) = profiles[..i].iter().find(|q| q.domain.as_ref() == Some(d))
        {
            ctx.error(
                &base.key("profiles").key(&p.name).key("domain"),
                format!("domain {d:?} is already served by profile {:?}", prev.name),
                None,
            );
        }
    }
    check_nesting(ctx, &base, &profiles);

    DnsConfig {
        listen,
        udp_payload: udp_payload.clamp(512, 4096),
        tcp_idle_timeout: raw
            .tcp_idle_timeout
            .map_or(Duration::from_secs(10), |d| d.0),
        max_tcp_connections: raw.max_tcp_connections.unwrap_or(1024).max(1),
        workers: raw.workers.unwrap_or(0),
        zones,
        profiles,
    }
}

/// Whether `name` is `origin` or below it.
pub fn in_zone(name: &str, origin: &str) -> bool {
    name == origin
        || (name.len() > origin.len()
            && name.ends_with(origin)
            && name.as_bytes()[name.len() - origin.len() - 1] == b'.')
}

fn validate_zone(ctx: &mut Ctx, key: &KeyPath, origin: &str, z: &RawZone) -> Option<Zone> {
    let origin = match normalize_dns_name(origin) {
        Ok(o) => o,
        Err(e) => {
            ctx.error(key, e, None);
            return None;
        }
    };
    let ttl = z.ttl.map_or(Duration::from_secs(300), |d| d.0);
    let mut ns = Vec::new();
    if z.ns.is_empty() {
        ctx.error(
            &key.key("ns"),
            "a zone needs at least one name server",
            Some(format!(
                "list the names of the `tandem dns` instances, e.g. ns = [\"ns1.{origin}\"]"
            )),
        );
    }
    for (i, n) in z.ns.iter().enumerate() {
        match normalize_dns_name(n) {
            Ok(n) => ns.push(n),
            Err(e) => ctx.error(&key.key("ns").index(i), e, None),
        }
    }
    let raw_soa = z.soa.as_ref();
    let default_soa = RawSoa::default();
    let s = raw_soa.unwrap_or(&default_soa);
    let sk = key.key("soa");
    let mname = s
        .mname
        .as_ref()
        .and_then(|m| {
            normalize_dns_name(m)
                .map_err(|e| ctx.error(&sk.key("mname"), e, None))
                .ok()
        })
        .or_else(|| ns.first().cloned())
        .unwrap_or_else(|| format!("ns1.{origin}"));
    let rname = s
        .rname
        .as_ref()
        .and_then(|m| {
            normalize_dns_name(&m.replacen('@', ".", 1))
                .map_err(|e| ctx.error(&sk.key("rname"), e, None))
                .ok()
        })
        .unwrap_or_else(|| format!("hostmaster.{origin}"));
    let serial = s.serial.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_secs() as u32)
    });
    let soa = Soa {
        mname,
        rname,
        serial,
        refresh: s.refresh.map_or(Duration::from_secs(3600), |d| d.0),
        retry: s.retry.map_or(Duration::from_secs(600), |d| d.0),
        expire: s.expire.map_or(Duration::from_secs(1_209_600), |d| d.0),
        minimum: s.minimum.map_or(Duration::from_secs(30), |d| d.0),
    };
    let mut records = Vec::new();
    for (rk, owner, set) in entries(&key.key("records"), &z.records) {
        let name = if owner == "@" {
            origin.clone()
        } else {
            let full = if owner.ends_with('.') {
                owner.clone()
            } else {
                format!("{owner}.{origin}")
            };
            match normalize_dns_name(&full) {
                Ok(n) if in_zone(&n, &origin) => n,
                Ok(n) => {
                    ctx.error(
                        &rk,
                        format!("{n:?} is outside zone {origin:?}"),
                        Some(
                            "write names relative to the zone (\"www\"), or \"@\" for the apex"
                                .into(),
                        ),
                    );
                    continue;
                }
                Err(e) => {
                    ctx.error(&rk, e, None);
                    continue;
                }
            }
        };
        let rttl = set.ttl.map_or(ttl, |d| d.0);
        let push = |records: &mut Vec<StaticRecord>, data| {
            records.push(StaticRecord {
                name: name.clone(),
                ttl: rttl,
                data,
            })
        };
        for (i, a) in set.a.iter().enumerate() {
            if let Some(ip) = ctx.parse(
                &rk.key("a").index(i),
                a,
                "IPv4 address",
                "\"192.0.2.1\"",
                a.parse::<Ipv4Addr>(),
            ) {
                push(&mut records, RecordData::A(ip));
            }
        }
        for (i, a) in set.aaaa.iter().enumerate() {
            if let Some(ip) = ctx.parse(
                &rk.key("aaaa").index(i),
                a,
                "IPv6 address",
                "\"2001:db8::1\"",
                a.parse::<Ipv6Addr>(),
            ) {
                push(&mut records, RecordData::Aaaa(ip));
            }
        }
        if let Some(c) = &set.cname {
            let others = !set.a.is_empty()
                || !set.aaaa.is_empty()
                || !set.txt.is_empty()
                || !set.mx.is_empty();
            if others || name == origin {
                ctx.error(
                    &rk.key("cname"),
                    "a CNAME cannot sit beside other records or at the zone apex (RFC 1034 3.6.2)",
                    Some("use A/AAAA records here, or move the CNAME to its own name".into()),
                );
            }
            match normalize_dns_name(c) {
                Ok(c) => push(&mut records, RecordData::Cname(c)),
                Err(e) => ctx.error(&rk.key("cname"), e, None),
            }
        }
        for t in &set.txt {
            push(&mut records, RecordData::Txt(t.clone()));
        }
        for (i, mx) in set.mx.iter().enumerate() {
            match normalize_dns_name(&mx.exchange) {
                Ok(exchange) => push(
                    &mut records,
                    RecordData::Mx {
                        preference: mx.preference,
                        exchange,
                    },
                ),
                Err(e) => ctx.error(&rk.key("mx").index(i).key("exchange"), e, None),
            }
        }
    }
    Some(Zone {
        origin,
        ttl,
        soa,
        ns,
        records,
    })
}

#[allow(clippy::too_many_arguments)]
fn validate_endpoint(
    ctx: &mut Ctx,
    ek: &KeyPath,
    p: &RawProfile,
    index: usize,
    e: &RawEndpoint,
    profile_monitor: Option<&Monitor>,
    monitors: &[Monitor],
    profile_names: &[&String],
    profile_name: &str,
    locations: &[String],
) -> Option<Endpoint> {
    ctx.check_ident(&ek.key("name"), "endpoint", &e.name);
    if let Some(r) = &e.region {
        ctx.check_region(&ek.key("region"), r);
    }
    let set = [e.address.is_some(), e.host.is_some(), e.profile.is_some()];
    let target = match set.iter().filter(|b| **b).count() {
        1 => {
            if let Some(a) = &e.address {
                EndpointTarget::Address(ctx.parse(
                    &ek.key("address"),
                    a,
                    "IP address",
                    "\"192.0.2.10\" or \"2001:db8::10\"",
                    a.parse::<IpAddr>(),
                )?)
            } else if let Some(h) = &e.host {
                match normalize_dns_name(h) {
                    Ok(h) => EndpointTarget::Host(h),
                    Err(err) => {
                        ctx.error(&ek.key("host"), err, None);
                        return None;
                    }
                }
            } else {
                let child = e.profile.clone().unwrap_or_default();
                if child == profile_name {
                    ctx.error(&ek.key("profile"), "a profile cannot nest itself", None);
                    return None;
                }
                if !profile_names.iter().any(|n| **n == child) {
                    ctx.error(
                        &ek.key("profile"),
                        format!("profile {child:?} is not defined"),
                        Some(format!(
                            "define [dns.profiles.{child}], or name one of: {}",
                            profile_names
                                .iter()
                                .map(|s| s.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    );
                    return None;
                }
                EndpointTarget::Profile(child)
            }
        }
        0 => {
            ctx.error(
                ek,
                format!("endpoint {:?} has no target", e.name),
                Some(
                    "set exactly one of `address` (A/AAAA), `host` (CNAME) or `profile` (nested)"
                        .into(),
                ),
            );
            return None;
        }
        _ => {
            ctx.error(
                ek,
                format!("endpoint {:?} has more than one target", e.name),
                Some("set exactly one of `address`, `host` or `profile`".into()),
            );
            return None;
        }
    };
    if p.method == RoutingMethod::Multivalue && !matches!(target, EndpointTarget::Address(_)) {
        ctx.error(
            ek,
            "multivalue profiles can only have address endpoints",
            Some("a DNS answer can hold many A/AAAA records but only one CNAME".into()),
        );
    }
    if e.min_children.is_some() && !matches!(target, EndpointTarget::Profile(_)) {
        ctx.error(
            &ek.key("min_children"),
            "min_children only applies to nested-profile endpoints",
            None,
        );
    }
    let weight = e.weight.unwrap_or(1);
    if !(1..=1000).contains(&weight) {
        ctx.error(
            &ek.key("weight"),
            format!("weight {weight} is outside 1..=1000"),
            None,
        );
    }
    let priority = e.priority.unwrap_or(index as u32 + 1);
    if p.method == RoutingMethod::Priority
        && e.priority.is_none()
        && p.endpoints.iter().any(|o| o.priority.is_some())
    {
        ctx.error(
            &ek.key("priority"),
            "some endpoints of this profile set `priority` and this one does not",
            Some(
                "set priority on every endpoint, or on none (file order is then the priority)"
                    .into(),
            ),
        );
    }
    let mut geo = Vec::new();
    for (j, g) in e.geo.iter().enumerate() {
        let up = g.to_ascii_uppercase();
        let ok = up == "WORLD"
            || up
                .strip_prefix("GEO-")
                .is_some_and(|c| crate::geo::CONTINENTS.contains(&c))
            || (up.len() == 2 && up.bytes().all(|b| b.is_ascii_alphabetic()));
        if !ok {
            ctx.error(
                &ek.key("geo").index(j),
                format!("{g:?} is not a geographic code"),
                Some("use a country (\"US\"), a continent (\"GEO-EU\") or \"WORLD\"".into()),
            );
        }
        geo.push(up);
    }
    if p.method == RoutingMethod::Geographic && geo.is_empty() {
        ctx.error(
            &ek.key("geo"),
            "geographic routing needs `geo` on every endpoint",
            Some("e.g. geo = [\"US\", \"GEO-NA\"], or [\"WORLD\"] for the catch-all".into()),
        );
    } else if p.method != RoutingMethod::Geographic && !geo.is_empty() {
        ctx.error(
            &ek.key("geo"),
            "`geo` only applies to method = \"geographic\"",
            None,
        );
    }
    let mut subnets = Vec::new();
    for (j, s) in e.subnets.iter().enumerate() {
        if let Some(n) = ctx.parse(
            &ek.key("subnets").index(j),
            s,
            "CIDR network",
            "\"10.1.0.0/16\"",
            s.parse::<IpNet>(),
        ) {
            subnets.push(n.trunc());
        }
    }
    if p.method != RoutingMethod::Subnet && !subnets.is_empty() {
        ctx.error(
            &ek.key("subnets"),
            "`subnets` only applies to method = \"subnet\"",
            None,
        );
    }
    if let Some(l) = &e.location
        && !locations.iter().any(|x| x == l)
    {
        ctx.error(
            &ek.key("location"),
            format!("location {l:?} is not in the [geo] section"),
            Some("add it to [geo.latency] or to a [[geo.networks]] entry".into()),
        );
    }
    if p.method == RoutingMethod::Performance
        && e.region.is_none()
        && e.location.is_none()
        && !matches!(target, EndpointTarget::Profile(_))
    {
        ctx.error(
            ek,
            "performance routing needs to know where each endpoint is",
            Some("set `region` (whose latency is in [geo.latency]) or `location`".into()),
        );
    }
    let monitor = match &e.monitor {
        Some(m) => {
            if ctx.check_monitor(&ek.key("monitor"), m) {
                monitors.iter().find(|x| &x.name == m).cloned()
            } else {
                None
            }
        }
        None => profile_monitor.cloned(),
    };
    let probe = match (&target, monitor) {
        (EndpointTarget::Profile(_), Some(_)) if e.monitor.is_some() => {
            ctx.error(
                &ek.key("monitor"),
                "nested-profile endpoints are not probed; their health comes from their children",
                None,
            );
            None
        }
        (EndpointTarget::Profile(_), _) | (_, None) => None,
        (t, Some(monitor)) => {
            let port = e.port.or(monitor.port).unwrap_or(match monitor.protocol {
                ProbeProtocol::Https => 443,
                _ => 80,
            });
            let (connect, host) = match t {
                EndpointTarget::Address(IpAddr::V6(a)) => (format!("[{a}]:{port}"), a.to_string()),
                EndpointTarget::Address(a) => (format!("{a}:{port}"), a.to_string()),
                EndpointTarget::Host(h) => (format!("{h}:{port}"), h.clone()),
                EndpointTarget::Profile(_) => unreachable!("handled above"),
            };
            let host = monitor.host.clone().unwrap_or(host);
            Some(ProbeTarget {
                connect,
                host,
                monitor,
            })
        }
    };
    Some(Endpoint {
        name: e.name.clone(),
        region: e.region.clone(),
        target,
        enabled: e.enabled,
        priority,
        weight: weight.clamp(1, 1000),
        geo,
        subnets,
        min_children: e.min_children.unwrap_or(1),
        location: e.location.clone(),
        probe,
    })
}

/// Nested profiles must form a tree no deeper than Traffic Manager's limit of 10 levels.
fn check_nesting(ctx: &mut Ctx, base: &KeyPath, profiles: &[Profile]) {
    fn depth(
        profiles: &[Profile],
        name: &str,
        stack: &mut Vec<String>,
    ) -> Result<usize, Vec<String>> {
        if stack.iter().any(|s| s == name) {
            let mut cycle = stack.clone();
            cycle.push(name.to_string());
            return Err(cycle);
        }
        let Some(p) = profiles.iter().find(|p| p.name == name) else {
            return Ok(0);
        };
        stack.push(name.to_string());
        let mut max = 0;
        for e in &p.endpoints {
            if let EndpointTarget::Profile(child) = &e.target {
                max = max.max(depth(profiles, child, stack)?);
            }
        }
        stack.pop();
        Ok(max + 1)
    }
    for p in profiles {
        match depth(profiles, &p.name, &mut Vec::new()) {
            Err(cycle) => {
                ctx.error(&base.key("profiles").key(&p.name), format!("nested profiles form a cycle: {}", cycle.join(" -> ")), Some("a nested profile cannot contain, directly or not, the profile that nests it".into()));
                return;
            }
            Ok(d) if d > MAX_NESTING => {
                ctx.error(
                    &base.key("profiles").key(&p.name),
                    format!("profiles are nested {d} levels deep; the limit is {MAX_NESTING}"),
                    None,
                );
            }
            Ok(_) => {}
        }
    }
}
