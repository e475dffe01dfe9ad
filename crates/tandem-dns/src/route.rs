//! Routing: which endpoints a profile answers with, given health and the client's location.
//!
//! [`Routing`] is an immutable snapshot rebuilt whenever an endpoint's health changes (or
//! config reloads). It precomputes, per profile, the endpoints eligible to answer — healthy
//! and enabled, or every enabled one when none is healthy and the profile says so — so a query
//! only applies its routing method to a short, already filtered list.

use std::net::IpAddr;
use std::sync::Arc;

use tandem_config::dns::{AllDown, RoutingMethod};
use tandem_geo::ClientLocation;

use crate::catalog::{Catalog, GeoCode, ProfileId, Target};

/// How deep nested profiles may go (Traffic Manager's limit).
const MAX_DEPTH: usize = 10;
/// The most endpoints one answer can hold.
pub(crate) const MAX_PICKS: usize = 64;

/// The health routing sees for one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EpHealth {
    /// May receive traffic.
    Up,
    /// Failing probes (or, for nested profiles, too few healthy children).
    Down,
    /// Disabled in config or by an operator: never answered.
    Disabled,
}

/// A routing snapshot.
#[derive(Debug)]
pub(crate) struct Routing {
    pub(crate) catalog: Arc<Catalog>,
    /// Per profile: eligible endpoint indices, sorted by (priority, file order).
    eligible: Box<[Box<[u16]>]>,
    /// Per profile: sum of eligible weights.
    weight_total: Box<[u32]>,
    /// Per profile, per endpoint: health as routing saw it.
    pub(crate) health: Box<[Box<[EpHealth]>]>,
    /// Per profile: whether it is answering from all enabled endpoints because none is up.
    pub(crate) all_down: Box<[bool]>,
}

/// Where the client is, resolved lazily: most profiles never need it.
pub(crate) struct Client<'a> {
    pub(crate) ip: IpAddr,
    /// Bits of `ip` the client disclosed: 32/128 for a source address, the ECS source prefix.
    pub(crate) source_prefix: u8,
    pub(crate) catalog: &'a Catalog,
    loc: Option<ClientLocation>,
}

impl<'a> Client<'a> {
    pub(crate) fn new(ip: IpAddr, source_prefix: u8, catalog: &'a Catalog) -> Self {
        Client {
            ip,
            source_prefix,
            catalog,
            loc: None,
        }
    }

    fn location(&mut self) -> ClientLocation {
        if let Some(l) = self.loc {
            return l;
        }
        let l = self.catalog.geo.lookup(self.ip, self.source_prefix);
        self.loc = Some(l);
        l
    }
}

/// The endpoints chosen for one answer, and the ECS scope that answer is valid for.
pub(crate) struct Picks {
    items: [(ProfileId, u16); MAX_PICKS],
    len: usize,
    /// The scope prefix length for ECS: 0 when the answer does not depend on the client.
    pub(crate) scope: u8,
}

impl Picks {
    pub(crate) fn new() -> Self {
        Picks {
            items: [(0, 0); MAX_PICKS],
            len: 0,
            scope: 0,
        }
    }

    fn push(&mut self, p: ProfileId, e: u16) {
        if self.len < MAX_PICKS {
            self.items[self.len] = (p, e);
            self.len += 1;
        }
    }

    pub(crate) fn as_slice(&self) -> &[(ProfileId, u16)] {
        &self.items[..self.len]
    }
}

impl Routing {
    /// Build a snapshot. `probe_health(profile, endpoint)` is the probe state of endpoints
    /// that have a monitor (true = may receive traffic); `disabled(profile, endpoint)` says
    /// an operator took it out.
    pub(crate) fn build(
        catalog: Arc<Catalog>,
        probe_up: &dyn Fn(usize, usize) -> bool,
        disabled: &dyn Fn(usize, usize) -> bool,
    ) -> Routing {
        let n = catalog.profiles.len();
        let mut health: Vec<Option<Box<[EpHealth]>>> = vec![None; n];
        for p in 0..n {
            resolve(&catalog, p, probe_up, disabled, &mut health, 0);
        }
        let health: Box<[Box<[EpHealth]>]> =
            health.into_iter().map(|h| h.unwrap_or_default()).collect();
        let mut eligible = Vec::with_capacity(n);
        let mut weight_total = Vec::with_capacity(n);
        let mut all_down = Vec::with_capacity(n);
        for (pi, p) in catalog.profiles.iter().enumerate() {
            let mut order: Vec<u16> = (0..p.endpoints.len() as u16).collect();
            order.sort_by_key(|&e| (p.endpoints[e as usize].priority, e));
            let up: Vec<u16> = order
                .iter()
                .copied()
                .filter(|&e| health[pi][e as usize] == EpHealth::Up)
                .collect();
            let (list, down) = if up.is_empty() && p.when_all_down == AllDown::AnswerAll {
                (
                    order
                        .into_iter()
                        .filter(|&e| health[pi][e as usize] != EpHealth::Disabled)
                        .collect(),
                    true,
                )
            } else {
                let none = up.is_empty();
                (up, none)
            };
            weight_total.push(list.iter().map(|&e| p.endpoints[e as usize].weight).sum());
            eligible.push(list.into_boxed_slice());
            all_down.push(down);
        }
        Routing {
            catalog,
            eligible: eligible.into(),
            weight_total: weight_total.into(),
            health,
            all_down: all_down.into(),
        }
    }

    /// Choose endpoints of profile `p` for `client`, appending leaf endpoints to `picks`.
    pub(crate) fn route(&self, p: ProfileId, client: &mut Client<'_>, picks: &mut Picks) {
        self.route_depth(p, client, picks, 0);
    }

    fn route_depth(&self, p: ProfileId, client: &mut Client<'_>, picks: &mut Picks, depth: usize) {
        if depth > MAX_DEPTH {
            return;
        }
        let prof = &self.catalog.profiles[p as usize];
        let eligible = &self.eligible[p as usize];
        if eligible.is_empty() {
            return;
        }
        let chosen: Option<u16> = match prof.method {
            RoutingMethod::Priority => Some(eligible[0]),
            RoutingMethod::Weighted => {
                let total = self.weight_total[p as usize].max(1);
                let mut r = rand::random_range(0..total);
                let mut pick = eligible[0];
                for &e in eligible.iter() {
                    let w = prof.endpoints[e as usize].weight;
                    if r < w {
                        pick = e;
                        break;
                    }
                    r -= w;
                }
                Some(pick)
            }
            RoutingMethod::Multivalue => {
                let n = eligible.len();
                let start = if n > 1 { rand::random_range(0..n) } else { 0 };
                for i in 0..n.min(prof.max_answers) {
                    picks.push(p, eligible[(start + i) % n]);
                }
                None
            }
            RoutingMethod::Performance => {
                let loc = client.location();
                picks.scope = picks.scope.max(scope_for(&loc, client.source_prefix));
                let cat = &self.catalog;
                let latency = |e: u16| {
                    let ep = &prof.endpoints[e as usize];
                    let from = loc.location?;
                    if ep.location == Some(from) {
                        return Some(std::time::Duration::ZERO);
                    }
                    let region = ep.region?;
                    if cat.region_locations.get(region).copied().flatten() == Some(from) {
                        return Some(std::time::Duration::ZERO);
                    }
                    cat.geo.latency(from, region)
                };
                // `eligible` is already in priority order, so ties keep it.
                eligible
                    .iter()
                    .copied()
                    .min_by_key(|&e| latency(e).unwrap_or(std::time::Duration::MAX))
            }
            RoutingMethod::Geographic => {
                let loc = client.location();
                picks.scope = picks.scope.max(scope_for(&loc, client.source_prefix));
                let find = |code: GeoCode| {
                    eligible
                        .iter()
                        .copied()
                        .find(|&e| prof.endpoints[e as usize].geo.contains(&code))
                };
                loc.country
                    .and_then(|c| find(GeoCode::Country(c)))
                    .or_else(|| loc.continent.and_then(|c| find(GeoCode::Continent(c))))
                    .or_else(|| find(GeoCode::World))
            }
            RoutingMethod::Subnet => {
                let ip = client.ip;
                let mut best: Option<(u8, u16)> = None;
                for &e in eligible.iter() {
                    for net in prof.endpoints[e as usize].subnets.iter() {
                        if net.contains(&ip)
                            && net.prefix_len() <= client.source_prefix
                            && best.is_none_or(|(l, _)| net.prefix_len() > l)
                        {
                            best = Some((net.prefix_len(), e));
                        }
                    }
                }
                match best {
                    Some((len, e)) => {
                        picks.scope = picks.scope.max(len);
                        Some(e)
                    }
                    None => {
                        picks.scope = picks.scope.max(client.source_prefix);
                        eligible
                            .iter()
                            .copied()
                            .find(|&e| prof.endpoints[e as usize].subnets.is_empty())
                    }
                }
            }
        };
        if let Some(e) = chosen {
            match prof.endpoints[e as usize].target {
                Target::Profile(child) => self.route_depth(child, client, picks, depth + 1),
                _ => picks.push(p, e),
            }
        }
    }

    /// Whether an endpoint is eligible right now (for status: it would be answered).
    pub(crate) fn is_eligible(&self, p: usize, e: usize) -> bool {
        self.eligible[p].contains(&(e as u16))
    }
}

/// The ECS scope of a location-based answer: the prefix that placed the client, or all the
/// bits it disclosed when nothing placed it (a more specific entry could apply to others).
fn scope_for(loc: &ClientLocation, source_prefix: u8) -> u8 {
    if loc.prefix_len > 0 {
        loc.prefix_len
    } else {
        source_prefix
    }
}

/// Compute endpoint health for profile `p`, resolving nested profiles first.
fn resolve(
    cat: &Catalog,
    p: usize,
    probe_up: &dyn Fn(usize, usize) -> bool,
    disabled: &dyn Fn(usize, usize) -> bool,
    memo: &mut Vec<Option<Box<[EpHealth]>>>,
    depth: usize,
) {
    if memo[p].is_some() {
        return;
    }
    let prof = &cat.profiles[p];
    let mut out = Vec::with_capacity(prof.endpoints.len());
    for (ei, ep) in prof.endpoints.iter().enumerate() {
        let h = if !ep.enabled || disabled(p, ei) {
            EpHealth::Disabled
        } else {
            match ep.target {
                Target::Profile(child) if depth < MAX_DEPTH => {
                    resolve(cat, child as usize, probe_up, disabled, memo, depth + 1);
                    let up = memo[child as usize]
                        .as_ref()
                        .map_or(0, |h| h.iter().filter(|s| **s == EpHealth::Up).count());
                    if up as u32 >= ep.min_children.max(1) {
                        EpHealth::Up
                    } else {
                        EpHealth::Down
                    }
                }
                Target::Profile(_) => EpHealth::Down,
                _ if !ep.probed || probe_up(p, ei) => EpHealth::Up,
                _ => EpHealth::Down,
            }
        };
        out.push(h);
    }
    memo[p] = Some(out.into());
}
