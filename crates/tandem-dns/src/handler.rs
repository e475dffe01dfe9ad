//! The life of a query, top to bottom: parse, check, find the zone and the name, route,
//! write the answer, count it. Transport-independent: UDP workers and TCP connections both
//! call [`answer`] with a reused output buffer.

use std::net::IpAddr;

use crate::catalog::{Node, RData, StaticRr, Target, ZoneData};
use crate::metrics::rcode_index;
use crate::route::{Client, Picks, Routing};
use crate::wire::{self, EdnsOut, Owner, Query, Section, WireError, Writer, rcode, rtype};

/// How far CNAME chains inside our own zones are followed.
const MAX_CHASE: usize = 8;

/// What the transport should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Send `buf`.
    Respond,
    /// Send nothing.
    Drop,
}

/// Counters the handler bumps that are not per profile.
pub(crate) struct HandlerCounters {
    pub(crate) malformed_dropped: prometheus_client::metrics::counter::Counter,
    pub(crate) truncated: prometheus_client::metrics::counter::Counter,
}

/// Answer one query packet from `src`. `tcp` lifts the size limit to 65535.
pub(crate) fn answer(
    r: &Routing,
    c: &HandlerCounters,
    pkt: &[u8],
    src: IpAddr,
    tcp: bool,
    buf: &mut Vec<u8>,
) -> Action {
    let cat = &*r.catalog;

    // 1. Receive: parse, or answer FORMERR / drop.
    let q = match wire::parse_query(pkt) {
        Ok(q) => q,
        Err(WireError::Drop) => {
            c.malformed_dropped.inc();
            return Action::Drop;
        }
        Err(WireError::FormErr(why)) => {
            tracing::debug!(%src, why, "FORMERR");
            cat.other_queries[rcode_index(rcode::FORMERR as u16)].inc();
            Writer::error(buf, pkt, rcode::FORMERR);
            return Action::Respond;
        }
    };
    let limit = if tcp {
        u16::MAX as usize
    } else {
        q.edns.map_or(512, |e| e.udp_size.min(cat.udp_payload)) as usize
    };
    let mut edns = q.edns.map(|_| EdnsOut {
        udp_size: cat.udp_payload,
        ext_rcode: 0,
        ecs: None,
    });

    // 2. Check what we serve at all.
    if let (Some(e), Some(out)) = (q.edns, edns.as_mut())
        && e.version != 0
    {
        out.ext_rcode = 1; // BADVERS = 16: upper 8 bits of the 12-bit rcode
        return finish_empty(
            cat,
            buf,
            pkt,
            &q,
            rcode::NOERROR,
            false,
            limit,
            edns,
            rcode::BADVERS,
        );
    }
    if q.opcode != 0 {
        return finish_empty(
            cat,
            buf,
            pkt,
            &q,
            rcode::NOTIMP,
            false,
            limit,
            edns,
            rcode::NOTIMP as u16,
        );
    }
    if q.qclass != wire::CLASS_IN {
        return finish_empty(
            cat,
            buf,
            pkt,
            &q,
            rcode::REFUSED,
            false,
            limit,
            edns,
            rcode::REFUSED as u16,
        );
    }
    // 3. Match: the zone, then the name.
    let Some(zone) = cat.zone_of(q.name()) else {
        return finish_empty(
            cat,
            buf,
            pkt,
            &q,
            rcode::REFUSED,
            false,
            limit,
            edns,
            rcode::REFUSED as u16,
        );
    };
    if q.qtype == rtype::AXFR || q.qtype == rtype::IXFR {
        return finish_empty(
            cat,
            buf,
            pkt,
            &q,
            rcode::REFUSED,
            true,
            limit,
            edns,
            rcode::REFUSED as u16,
        );
    }
    let node = cat.names.get(q.name());
    let profile = match node {
        Some(Node::Profile(p)) => Some(*p),
        _ => None,
    };
    let counters = profile.map_or(&cat.other_queries, |p| &cat.profiles[p as usize].queries);
    let code = if node.is_none() {
        rcode::NXDOMAIN
    } else {
        rcode::NOERROR
    };
    let ecs = q.edns.and_then(|e| e.ecs);
    let (client_ip, source_prefix) = match ecs {
        Some(e) => (e.addr, e.source),
        None => (src, if src.is_ipv4() { 32 } else { 128 }),
    };
    let mut client = Client::new(client_ip, source_prefix, cat);

    // 4. Decide and write.
    let mut picks = Picks::new();
    if let Some(p) = profile {
        r.route(p, &mut client, &mut picks);
        if let (Some(e), Some(out)) = (ecs, edns.as_mut()) {
            out.ecs = Some((e, picks.scope.min(e.source)));
        }
    } else if let (Some(e), Some(out)) = (ecs, edns.as_mut()) {
        out.ecs = Some((e, 0));
    }
    let mut w = Writer::new(buf, pkt, &q, code, true, limit, edns.as_ref());
    let wrote = match node {
        None | Some(Node::Empty) => 0,
        Some(n) => write_node(
            r,
            &mut w,
            Owner::Question,
            n,
            &picks,
            q.qtype,
            &mut client,
            0,
        ),
    };
    if wrote == 0 {
        write_soa(&mut w, zone);
    } else if q.qtype == rtype::NS && q.name() == &*zone.origin {
        write_glue(cat, &mut w, zone);
    }
    let truncated = w.truncated();
    w.finish(edns.as_ref());

    // 5. Count.
    if truncated {
        c.truncated.inc();
    } else if profile.is_some() && wrote > 0 {
        for &(pp, e) in picks.as_slice() {
            cat.profiles[pp as usize].endpoints[e as usize]
                .answers
                .inc();
        }
    }
    counters[rcode_index(code as u16)].inc();
    Action::Respond
}

#[allow(clippy::too_many_arguments)]
fn finish_empty(
    cat: &crate::catalog::Catalog,
    buf: &mut Vec<u8>,
    pkt: &[u8],
    q: &Query,
    code: u8,
    aa: bool,
    limit: usize,
    mut edns: Option<EdnsOut>,
    counted: u16,
) -> Action {
    if let (Some(out), Some(ecs)) = (edns.as_mut(), q.edns.and_then(|e| e.ecs)) {
        out.ecs = Some((ecs, 0));
    }
    let w = Writer::new(buf, pkt, q, code, aa, limit, edns.as_ref());
    w.finish(edns.as_ref());
    cat.other_queries[rcode_index(counted)].inc();
    Action::Respond
}

/// Write the records of `node` that answer `qtype`, following CNAMEs inside our zones.
/// Returns how many records were written.
#[allow(clippy::too_many_arguments)]
fn write_node(
    r: &Routing,
    w: &mut Writer<'_>,
    owner: Owner<'_>,
    node: &Node,
    picks: &Picks,
    qtype: u16,
    client: &mut Client<'_>,
    depth: usize,
) -> usize {
    match node {
        Node::Empty => 0,
        Node::Static(rrs) => {
            let mut n = 0;
            for rr in rrs
                .iter()
                .filter(|rr| rr.rtype == qtype || qtype == rtype::ANY)
            {
                n += usize::from(write_rr(w, owner, rr));
            }
            if n == 0
                && qtype != rtype::CNAME
                && let Some(cname) = rrs.iter().find(|rr| rr.rtype == rtype::CNAME)
            {
                n += usize::from(write_rr(w, owner, cname));
                if let RData::Name(target) = &cname.data {
                    n += chase(r, w, target, qtype, client, depth);
                }
            }
            n
        }
        Node::Profile(p) => {
            let prof = &r.catalog.profiles[*p as usize];
            let ttl = prof.ttl;
            let mut n = 0;
            let leaves = picks.as_slice();
            if let Some(&(lp, le)) = leaves.first()
                && let Target::Host(target) =
                    &r.catalog.profiles[lp as usize].endpoints[le as usize].target
            {
                if w.record(Section::Answer, owner, rtype::CNAME, ttl, |w| {
                    w.rdata_name(target)
                }) {
                    n += 1;
                    if qtype != rtype::CNAME {
                        n += chase(r, w, target, qtype, client, depth);
                    }
                }
                return n;
            }
            for &(lp, le) in leaves {
                match r.catalog.profiles[lp as usize].endpoints[le as usize].target {
                    Target::V4(a) if qtype == rtype::A || qtype == rtype::ANY => {
                        n += usize::from(w.record(Section::Answer, owner, rtype::A, ttl, |w| {
                            w.rdata(&a.octets())
                        }));
                    }
                    Target::V6(a) if qtype == rtype::AAAA || qtype == rtype::ANY => {
                        n += usize::from(w.record(Section::Answer, owner, rtype::AAAA, ttl, |w| {
                            w.rdata(&a.octets())
                        }));
                    }
                    _ => {}
                }
            }
            n
        }
    }
}

/// Follow a CNAME to a name we are authoritative for.
fn chase(
    r: &Routing,
    w: &mut Writer<'_>,
    target: &[u8],
    qtype: u16,
    client: &mut Client<'_>,
    depth: usize,
) -> usize {
    if depth >= MAX_CHASE || r.catalog.zone_of(target).is_none() {
        return 0;
    }
    let Some(node) = r.catalog.names.get(target) else {
        return 0;
    };
    let mut picks = Picks::new();
    if let Node::Profile(p) = node {
        r.route(*p, client, &mut picks);
    }
    write_node(
        r,
        w,
        Owner::Name(target),
        node,
        &picks,
        qtype,
        client,
        depth + 1,
    )
}

fn write_rr(w: &mut Writer<'_>, owner: Owner<'_>, rr: &StaticRr) -> bool {
    w.record(Section::Answer, owner, rr.rtype, rr.ttl, |w| {
        write_rdata(w, &rr.data)
    })
}

fn write_rdata(w: &mut Writer<'_>, d: &RData) {
    match d {
        RData::Raw(b) => w.rdata(b),
        RData::Name(n) => w.rdata_name(n),
        RData::Mx(pref, n) => {
            w.rdata(&pref.to_be_bytes());
            w.rdata_name(n);
        }
        RData::Soa {
            mname,
            rname,
            numbers,
        } => {
            w.rdata_name(mname);
            w.rdata_name(rname);
            for n in numbers {
                w.rdata(&n.to_be_bytes());
            }
        }
    }
}

/// The SOA in the authority section of a negative answer, with the negative TTL.
fn write_soa(w: &mut Writer<'_>, zone: &ZoneData) {
    w.record(
        Section::Authority,
        Owner::Name(&zone.origin),
        rtype::SOA,
        zone.negative_ttl,
        |w| write_rdata(w, &zone.soa.data),
    );
}

/// Addresses of in-zone name servers, after an NS answer.
fn write_glue(cat: &crate::catalog::Catalog, w: &mut Writer<'_>, zone: &ZoneData) {
    let Some(Node::Static(apex)) = cat.names.get(&zone.origin) else {
        return;
    };
    for ns in apex.iter().filter(|rr| rr.rtype == rtype::NS) {
        if let RData::Name(name) = &ns.data
            && let Some(Node::Static(rrs)) = cat.names.get(name)
        {
            for rr in rrs
                .iter()
                .filter(|rr| rr.rtype == rtype::A || rr.rtype == rtype::AAAA)
            {
                w.optional_record(
                    Section::Additional,
                    Owner::Name(name),
                    rr.rtype,
                    rr.ttl,
                    |w| write_rdata(w, &rr.data),
                );
            }
        }
    }
}
