//! The catalog: zones, names and profiles compiled from config into the shape the query
//! path reads. Built once per config (load or reload); health never rebuilds it — routing
//! state lives in [`crate::route::Routing`], which points into it.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use foldhash::fast::FixedState;
use ipnet::IpNet;
use prometheus_client::metrics::counter::Counter;
use tandem_config::dns::{AllDown, DnsConfig, EndpointTarget, RecordData, RoutingMethod};
use tandem_geo::{Geo, LocationId};

use crate::metrics::DnsMetrics;
use crate::wire::{rtype, to_wire};

/// Index of a profile in the catalog.
pub(crate) type ProfileId = u16;

/// Record data, ready to write.
#[derive(Debug, Clone)]
pub(crate) enum RData {
    /// Opaque bytes (A, AAAA, TXT).
    Raw(Box<[u8]>),
    /// A single domain name (CNAME, NS), lower-case wire format.
    Name(Box<[u8]>),
    /// MX: preference and exchange.
    Mx(u16, Box<[u8]>),
    /// SOA fields.
    Soa {
        mname: Box<[u8]>,
        rname: Box<[u8]>,
        /// serial, refresh, retry, expire, minimum.
        numbers: [u32; 5],
    },
}

/// A static record at a name.
#[derive(Debug, Clone)]
pub(crate) struct StaticRr {
    pub(crate) rtype: u16,
    pub(crate) ttl: u32,
    pub(crate) data: RData,
}

/// What lives at a name.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// Static records (the zone apex has SOA and NS here).
    Static(Box<[StaticRr]>),
    /// A traffic-manager profile.
    Profile(ProfileId),
    /// A name that exists only because names below it do (empty non-terminal): NODATA.
    Empty,
}

/// A zone.
#[derive(Debug)]
pub(crate) struct ZoneData {
    pub(crate) origin: Box<[u8]>,
    pub(crate) soa: StaticRr,
    /// The negative-caching TTL (min of SOA minimum and SOA TTL).
    pub(crate) negative_ttl: u32,
}

/// An endpoint's answer.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    V4(Ipv4Addr),
    V6(Ipv6Addr),
    /// CNAME target (wire) and its text for logs.
    Host(Box<[u8]>),
    Profile(ProfileId),
}

/// A compiled endpoint.
#[derive(Debug)]
pub(crate) struct EndpointData {
    pub(crate) name: String,
    pub(crate) target: Target,
    pub(crate) enabled: bool,
    pub(crate) priority: u32,
    pub(crate) weight: u32,
    pub(crate) geo: Box<[GeoCode]>,
    pub(crate) subnets: Box<[IpNet]>,
    pub(crate) min_children: u32,
    pub(crate) region: Option<usize>,
    pub(crate) location: Option<LocationId>,
    /// Whether a monitor probes it (else it is always online).
    pub(crate) probed: bool,
    /// Counts answers that included this endpoint.
    pub(crate) answers: Counter,
}

/// A geographic code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GeoCode {
    Country([u8; 2]),
    Continent([u8; 2]),
    World,
}

/// A compiled profile.
#[derive(Debug)]
pub(crate) struct ProfileData {
    pub(crate) name: String,
    pub(crate) domain: Option<String>,
    pub(crate) method: RoutingMethod,
    pub(crate) ttl: u32,
    pub(crate) when_all_down: AllDown,
    pub(crate) max_answers: usize,
    pub(crate) endpoints: Box<[EndpointData]>,
    /// This profile or a nested one routes by client location.
    pub(crate) uses_location: bool,
    /// Query counters by rcode (index from [`crate::metrics::rcode_index`]).
    pub(crate) queries: Box<[Counter]>,
}

/// Everything the query path needs that only changes with config.
#[derive(Debug)]
pub(crate) struct Catalog {
    pub(crate) zones: Box<[ZoneData]>,
    pub(crate) names: HashMap<Box<[u8]>, Node, FixedState>,
    pub(crate) profiles: Box<[ProfileData]>,
    pub(crate) geo: Arc<Geo>,
    /// Location of each region (by region index), for performance routing.
    pub(crate) region_locations: Box<[Option<LocationId>]>,
    /// Query counters for names that are not profiles.
    pub(crate) other_queries: Box<[Counter]>,
    pub(crate) udp_payload: u16,
}

fn secs(d: std::time::Duration) -> u32 {
    d.as_secs().min(u32::MAX as u64) as u32
}

impl Catalog {
    /// Compile the DNS section for the given regions (in config order).
    pub(crate) fn build(
        cfg: &DnsConfig,
        region_list: &[tandem_config::Region],
        geo: Arc<Geo>,
        metrics: &DnsMetrics,
    ) -> Catalog {
        let regions: Vec<String> = region_list.iter().map(|r| r.name.clone()).collect();
        let mut names: HashMap<Box<[u8]>, Node, FixedState> =
            HashMap::with_hasher(FixedState::default());
        let mut zones = Vec::new();
        for z in &cfg.zones {
            let origin: Box<[u8]> = to_wire(&z.origin).into();
            let soa = StaticRr {
                rtype: rtype::SOA,
                ttl: secs(z.ttl),
                data: RData::Soa {
                    mname: to_wire(&z.soa.mname).into(),
                    rname: to_wire(&z.soa.rname).into(),
                    numbers: [
                        z.soa.serial,
                        secs(z.soa.refresh),
                        secs(z.soa.retry),
                        secs(z.soa.expire),
                        secs(z.soa.minimum),
                    ],
                },
            };
            let mut apex = vec![soa.clone()];
            for ns in &z.ns {
                apex.push(StaticRr {
                    rtype: rtype::NS,
                    ttl: secs(z.ttl),
                    data: RData::Name(to_wire(ns).into()),
                });
            }
            let mut by_name: Vec<(String, Vec<StaticRr>)> = vec![(z.origin.clone(), apex)];
            for r in &z.records {
                let rr = StaticRr {
                    rtype: match r.data {
                        RecordData::A(_) => rtype::A,
                        RecordData::Aaaa(_) => rtype::AAAA,
                        RecordData::Cname(_) => rtype::CNAME,
                        RecordData::Txt(_) => rtype::TXT,
                        RecordData::Mx { .. } => rtype::MX,
                    },
                    ttl: secs(r.ttl),
                    data: match &r.data {
                        RecordData::A(a) => RData::Raw(a.octets().into()),
                        RecordData::Aaaa(a) => RData::Raw(a.octets().into()),
                        RecordData::Cname(c) => RData::Name(to_wire(c).into()),
                        RecordData::Txt(t) => RData::Raw(txt_rdata(t).into()),
                        RecordData::Mx {
                            preference,
                            exchange,
                        } => RData::Mx(*preference, to_wire(exchange).into()),
                    },
                };
                match by_name.iter_mut().find(|(n, _)| *n == r.name) {
                    Some((_, v)) => v.push(rr),
                    None => by_name.push((r.name.clone(), vec![rr])),
                }
            }
            for (name, rrs) in by_name {
                add_with_parents(&mut names, &name, &z.origin, Node::Static(rrs.into()));
            }
            let negative_ttl = secs(z.soa.minimum).min(secs(z.ttl));
            zones.push(ZoneData {
                origin,
                soa,
                negative_ttl,
            });
        }
        zones.sort_by_key(|z| std::cmp::Reverse(z.origin.len()));

        let pid = |name: &str| {
            cfg.profiles
                .iter()
                .position(|p| p.name == name)
                .map(|i| i as ProfileId)
        };
        let mut profiles = Vec::new();
        for p in &cfg.profiles {
            let endpoints = p
                .endpoints
                .iter()
                .map(|e| EndpointData {
                    name: e.name.clone(),
                    target: match &e.target {
                        EndpointTarget::Address(IpAddr::V4(a)) => Target::V4(*a),
                        EndpointTarget::Address(IpAddr::V6(a)) => Target::V6(*a),
                        EndpointTarget::Host(h) => Target::Host(to_wire(h).into()),
                        EndpointTarget::Profile(c) => Target::Profile(pid(c).unwrap_or(0)),
                    },
                    enabled: e.enabled,
                    priority: e.priority,
                    weight: e.weight,
                    geo: e
                        .geo
                        .iter()
                        .map(|g| match g.as_bytes() {
                            b"WORLD" => GeoCode::World,
                            [b'G', b'E', b'O', b'-', a, b] => GeoCode::Continent([*a, *b]),
                            [a, b] => GeoCode::Country([*a, *b]),
                            _ => GeoCode::World,
                        })
                        .collect(),
                    subnets: e.subnets.clone().into(),
                    min_children: e.min_children,
                    region: e
                        .region
                        .as_ref()
                        .and_then(|r| regions.iter().position(|x| x == r)),
                    location: e.location.as_ref().and_then(|l| geo.location_id(l)),
                    probed: e.probe.is_some(),
                    answers: metrics.answer_counter(&p.name, &e.name),
                })
                .collect();
            profiles.push(ProfileData {
                name: p.name.clone(),
                domain: p.domain.clone(),
                method: p.method,
                ttl: secs(p.ttl),
                when_all_down: p.when_all_down,
                max_answers: p.max_answers,
                endpoints,
                uses_location: false,
                queries: metrics.query_counters(&p.name),
            });
        }
        // A profile uses location if it, or anything it nests, does (nesting is acyclic).
        let n = profiles.len();
        let mut uses: Vec<bool> = profiles
            .iter()
            .map(|p| p.method.uses_client_location())
            .collect();
        for _ in 0..n.min(11) {
            for i in 0..n {
                let nested = profiles[i]
                    .endpoints
                    .iter()
                    .any(|e| matches!(e.target, Target::Profile(c) if uses[c as usize]));
                uses[i] |= nested;
            }
        }
        for (p, u) in profiles.iter_mut().zip(uses) {
            p.uses_location = u;
        }
        for (i, p) in profiles.iter().enumerate() {
            if let Some(d) = &p.domain
                && let Some(z) = cfg
                    .zones
                    .iter()
                    .find(|z| tandem_config::dns::in_zone(d, &z.origin))
            {
                add_with_parents(&mut names, d, &z.origin, Node::Profile(i as ProfileId));
            }
        }
        let region_locations = region_list
            .iter()
            .map(|r| r.location.as_deref().and_then(|l| geo.location_id(l)))
            .collect::<Vec<Option<LocationId>>>()
            .into();
        Catalog {
            zones: zones.into(),
            names,
            profiles: profiles.into(),
            geo,
            region_locations,
            other_queries: metrics.query_counters(""),
            udp_payload: cfg.udp_payload,
        }
    }

    /// The most specific zone containing `name` (wire, lower case).
    pub(crate) fn zone_of(&self, name: &[u8]) -> Option<&ZoneData> {
        self.zones.iter().find(|z| is_suffix(name, &z.origin))
    }
}

/// Whether wire name `origin` is `name` or an ancestor of it (at a label boundary).
pub(crate) fn is_suffix(name: &[u8], origin: &[u8]) -> bool {
    if origin.len() > name.len() {
        return false;
    }
    let mut i = 0;
    while i < name.len() {
        if name.len() - i == origin.len() {
            return name[i..] == *origin;
        }
        i += 1 + name[i] as usize;
    }
    false
}

/// Insert a node and mark every name between it and the zone origin as existing.
fn add_with_parents(
    names: &mut HashMap<Box<[u8]>, Node, FixedState>,
    name: &str,
    origin: &str,
    node: Node,
) {
    names.insert(to_wire(name).into(), node);
    let mut rest = name;
    while let Some((_, parent)) = rest.split_once('.') {
        if parent.len() <= origin.len() {
            break;
        }
        names.entry(to_wire(parent).into()).or_insert(Node::Empty);
        rest = parent;
    }
}

fn txt_rdata(t: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(t.len() + 1 + t.len() / 255);
    let bytes = t.as_bytes();
    if bytes.is_empty() {
        out.push(0);
    }
    for chunk in bytes.chunks(255) {
        out.push(chunk.len() as u8);
        out.extend_from_slice(chunk);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_at_label_boundaries() {
        let n = to_wire("a.app.tandem.test");
        assert!(is_suffix(&n, &to_wire("tandem.test")));
        assert!(is_suffix(&n, &to_wire("a.app.tandem.test")));
        assert!(!is_suffix(&n, &to_wire("pp.tandem.test")));
        assert!(!is_suffix(&to_wire("test"), &to_wire("tandem.test")));
    }

    #[test]
    fn long_txt_is_chunked() {
        let t = "x".repeat(300);
        let r = txt_rdata(&t);
        assert_eq!(r.len(), 302);
        assert_eq!((r[0], r[256]), (255, 45));
    }
}
