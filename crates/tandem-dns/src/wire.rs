//! The DNS wire format for an authoritative server: parse a query, write a response.
//!
//! Pure functions over bytes, no sockets, no allocation per query (the caller passes the
//! output buffer and reuses it). Hand-written rather than built on `hickory-proto`'s
//! `Message` because the query path must not allocate per label or record to reach the
//! throughput of Knot and NSD; `hickory-proto` is what the tests use as the client, so every
//! byte written here is checked by an independent parser.
//!
//! What is accepted (RFC 1035, 6891, 7871): one question, no compression pointers in it;
//! at most one OPT record; an EDNS Client Subnet option whose address bits beyond the source
//! prefix are zero and whose scope is zero. Anything else is a [`WireError`] that maps to
//! FORMERR (if the header could be read) or a silent drop.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Record types the server knows by name.
pub mod rtype {
    /// IPv4 address.
    pub const A: u16 = 1;
    /// Name server.
    pub const NS: u16 = 2;
    /// Canonical name.
    pub const CNAME: u16 = 5;
    /// Start of authority.
    pub const SOA: u16 = 6;
    /// Mail exchanger.
    pub const MX: u16 = 15;
    /// Text.
    pub const TXT: u16 = 16;
    /// IPv6 address.
    pub const AAAA: u16 = 28;
    /// EDNS pseudo-record.
    pub const OPT: u16 = 41;
    /// Zone transfer (refused).
    pub const AXFR: u16 = 252;
    /// Incremental zone transfer (refused).
    pub const IXFR: u16 = 251;
    /// Any type.
    pub const ANY: u16 = 255;
}

/// Response codes.
pub mod rcode {
    /// No error.
    pub const NOERROR: u8 = 0;
    /// Format error.
    pub const FORMERR: u8 = 1;
    /// Server failure.
    pub const SERVFAIL: u8 = 2;
    /// Name does not exist.
    pub const NXDOMAIN: u8 = 3;
    /// Not implemented.
    pub const NOTIMP: u8 = 4;
    /// Refused.
    pub const REFUSED: u8 = 5;
    /// Bad EDNS version (extended rcode 16: 0x1 in the OPT's upper bits, 0 in the header).
    pub const BADVERS: u16 = 16;

    /// The name used in metrics and logs.
    pub fn name(code: u16) -> &'static str {
        match code {
            0 => "NOERROR",
            1 => "FORMERR",
            2 => "SERVFAIL",
            3 => "NXDOMAIN",
            4 => "NOTIMP",
            5 => "REFUSED",
            16 => "BADVERS",
            _ => "OTHER",
        }
    }
}

/// The class IN.
pub const CLASS_IN: u16 = 1;
/// EDNS option code of Client Subnet (RFC 7871).
pub const OPT_ECS: u16 = 8;
/// The header is 12 bytes; the question starts right after it.
pub const HEADER_LEN: usize = 12;
/// Longest wire name.
pub const MAX_NAME: usize = 255;

/// Why a packet could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Shorter than a header, or a response (QR set): nothing sensible to answer; drop it.
    Drop,
    /// The header is readable but the rest is malformed: answer FORMERR.
    FormErr(&'static str),
}

/// A validated EDNS Client Subnet option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ecs {
    /// The client's address (bits beyond `source` are zero).
    pub addr: IpAddr,
    /// How many leading bits the client disclosed.
    pub source: u8,
}

/// EDNS(0) data from the query's OPT record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    /// The requester's UDP payload size (at least 512).
    pub udp_size: u16,
    /// EDNS version; only 0 is served.
    pub version: u8,
    /// The DNSSEC OK bit.
    pub dnssec_ok: bool,
    /// Client Subnet, if sent.
    pub ecs: Option<Ecs>,
}

/// A parsed query. The question name is kept twice: lower-cased for matching, and as the
/// byte range of the packet so the response echoes the client's case (0x20 randomisation).
#[derive(Debug, Clone)]
pub struct Query {
    /// Message id.
    pub id: u16,
    /// Opcode (0 = QUERY).
    pub opcode: u8,
    /// Recursion desired (copied back).
    pub rd: bool,
    /// Checking disabled (copied back).
    pub cd: bool,
    name: [u8; MAX_NAME],
    name_len: u8,
    /// End of the question in the packet (header + question bytes to echo).
    pub question_end: usize,
    /// Question type.
    pub qtype: u16,
    /// Question class.
    pub qclass: u16,
    /// EDNS, if the query had an OPT record.
    pub edns: Option<Edns>,
}

impl Query {
    /// The question name in lower-case wire format (`\x03app\x06tandem\x04test\x00`).
    pub fn name(&self) -> &[u8] {
        &self.name[..self.name_len as usize]
    }
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]))
}

/// Parse a query. `Err(Drop)` for packets that must not be answered at all.
pub fn parse_query(pkt: &[u8]) -> Result<Query, WireError> {
    if pkt.len() < HEADER_LEN {
        return Err(WireError::Drop);
    }
    let flags = u16::from_be_bytes([pkt[2], pkt[3]]);
    if flags & 0x8000 != 0 {
        // A response sent to us: answering it could start a packet loop.
        return Err(WireError::Drop);
    }
    let qd = u16::from_be_bytes([pkt[4], pkt[5]]);
    let an = u16::from_be_bytes([pkt[6], pkt[7]]);
    let ns = u16::from_be_bytes([pkt[8], pkt[9]]);
    let ar = u16::from_be_bytes([pkt[10], pkt[11]]);
    let mut q = Query {
        id: u16::from_be_bytes([pkt[0], pkt[1]]),
        opcode: ((flags >> 11) & 0xF) as u8,
        rd: flags & 0x0100 != 0,
        cd: flags & 0x0010 != 0,
        name: [0; MAX_NAME],
        name_len: 0,
        question_end: HEADER_LEN,
        qtype: 0,
        qclass: 0,
        edns: None,
    };
    if qd != 1 {
        return Err(WireError::FormErr("QDCOUNT must be 1"));
    }
    let mut i = HEADER_LEN;
    let mut n = 0usize;
    loop {
        let len = *pkt
            .get(i)
            .ok_or(WireError::FormErr("question name runs past the packet"))?
            as usize;
        if len & 0xC0 != 0 {
            return Err(WireError::FormErr(
                "compression or extended label in the question",
            ));
        }
        if n + len + 1 > MAX_NAME {
            return Err(WireError::FormErr("question name longer than 255 bytes"));
        }
        let label = pkt
            .get(i + 1..i + 1 + len)
            .ok_or(WireError::FormErr("question name runs past the packet"))?;
        q.name[n] = len as u8;
        for (d, s) in q.name[n + 1..n + 1 + len].iter_mut().zip(label) {
            *d = s.to_ascii_lowercase();
        }
        n += len + 1;
        i += len + 1;
        if len == 0 {
            break;
        }
    }
    q.name_len = n as u8;
    q.qtype = u16_at(pkt, i).ok_or(WireError::FormErr("question truncated"))?;
    q.qclass = u16_at(pkt, i + 2).ok_or(WireError::FormErr("question truncated"))?;
    i += 4;
    q.question_end = i;
    // Skip answer and authority records (a query should have none; tolerate and ignore).
    for _ in 0..(an as usize + ns as usize) {
        i = skip_rr(pkt, i)?.1;
    }
    for _ in 0..ar {
        let (name_is_root, next, rtype, class, ttl, rdata) = read_rr(pkt, i)?;
        if rtype == rtype::OPT {
            if q.edns.is_some() {
                return Err(WireError::FormErr("more than one OPT record"));
            }
            if !name_is_root {
                return Err(WireError::FormErr("OPT record with a non-root owner"));
            }
            q.edns = Some(parse_opt(class, ttl, rdata)?);
        }
        i = next;
    }
    Ok(q)
}

type Rr<'a> = (bool, usize, u16, u16, u32, &'a [u8]);

fn skip_name(pkt: &[u8], mut i: usize) -> Result<(bool, usize), WireError> {
    let start = i;
    loop {
        let len = *pkt
            .get(i)
            .ok_or(WireError::FormErr("record name runs past the packet"))?;
        match len & 0xC0 {
            0x00 => {
                i += 1 + len as usize;
                if len == 0 {
                    return Ok((i == start + 1, i));
                }
                if i - start > MAX_NAME {
                    return Err(WireError::FormErr("record name too long"));
                }
            }
            0xC0 => {
                if i + 1 >= pkt.len() {
                    return Err(WireError::FormErr("record name runs past the packet"));
                }
                return Ok((false, i + 2));
            }
            _ => return Err(WireError::FormErr("unknown label type")),
        }
    }
}

fn read_rr(pkt: &[u8], i: usize) -> Result<Rr<'_>, WireError> {
    let (root, i) = skip_name(pkt, i)?;
    let t = u16_at(pkt, i).ok_or(WireError::FormErr("record truncated"))?;
    let c = u16_at(pkt, i + 2).ok_or(WireError::FormErr("record truncated"))?;
    let ttl = u32::from(u16_at(pkt, i + 4).ok_or(WireError::FormErr("record truncated"))?) << 16
        | u32::from(u16_at(pkt, i + 6).ok_or(WireError::FormErr("record truncated"))?);
    let rdlen = u16_at(pkt, i + 8).ok_or(WireError::FormErr("record truncated"))? as usize;
    let rdata = pkt
        .get(i + 10..i + 10 + rdlen)
        .ok_or(WireError::FormErr("record data runs past the packet"))?;
    Ok((root, i + 10 + rdlen, t, c, ttl, rdata))
}

fn skip_rr(pkt: &[u8], i: usize) -> Result<(u16, usize), WireError> {
    let (_, next, t, ..) = read_rr(pkt, i)?;
    Ok((t, next))
}

fn parse_opt(class: u16, ttl: u32, mut rdata: &[u8]) -> Result<Edns, WireError> {
    let mut edns = Edns {
        udp_size: class.max(512),
        version: ((ttl >> 16) & 0xFF) as u8,
        dnssec_ok: ttl & 0x8000 != 0,
        ecs: None,
    };
    while !rdata.is_empty() {
        let code = u16_at(rdata, 0).ok_or(WireError::FormErr("EDNS option truncated"))?;
        let len = u16_at(rdata, 2).ok_or(WireError::FormErr("EDNS option truncated"))? as usize;
        let data = rdata
            .get(4..4 + len)
            .ok_or(WireError::FormErr("EDNS option runs past the OPT record"))?;
        if code == OPT_ECS {
            if edns.ecs.is_some() {
                return Err(WireError::FormErr("more than one Client Subnet option"));
            }
            edns.ecs = Some(parse_ecs(data)?);
        }
        rdata = &rdata[4 + len..];
    }
    Ok(edns)
}

fn parse_ecs(d: &[u8]) -> Result<Ecs, WireError> {
    if d.len() < 4 {
        return Err(WireError::FormErr("Client Subnet option too short"));
    }
    let family = u16::from_be_bytes([d[0], d[1]]);
    let source = d[2];
    let scope = d[3];
    let addr = &d[4..];
    let max = match family {
        1 => 32,
        2 => 128,
        _ => {
            return Err(WireError::FormErr(
                "Client Subnet family is not IPv4 or IPv6",
            ));
        }
    };
    if source > max {
        return Err(WireError::FormErr("Client Subnet source prefix too long"));
    }
    if scope != 0 {
        return Err(WireError::FormErr(
            "Client Subnet scope must be 0 in a query",
        ));
    }
    if addr.len() != (source as usize).div_ceil(8) {
        return Err(WireError::FormErr(
            "Client Subnet address length does not match its prefix",
        ));
    }
    if !source.is_multiple_of(8)
        && let Some(last) = addr.last()
        && last & (0xFFu8 >> (source % 8)) != 0
    {
        return Err(WireError::FormErr(
            "Client Subnet address has bits set beyond its prefix",
        ));
    }
    let addr = if family == 1 {
        let mut b = [0u8; 4];
        b[..addr.len()].copy_from_slice(addr);
        IpAddr::V4(Ipv4Addr::from(b))
    } else {
        let mut b = [0u8; 16];
        b[..addr.len()].copy_from_slice(addr);
        IpAddr::V6(Ipv6Addr::from(b))
    };
    Ok(Ecs { addr, source })
}

/// Convert a dotted name (`app.tandem.test`) to lower-case wire format.
pub fn to_wire(name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        out.push(label.len().min(63) as u8);
        out.extend(label.bytes().take(63).map(|b| b.to_ascii_lowercase()));
    }
    out.push(0);
    out
}

/// Convert a wire name back to dotted text (for logs and status).
pub fn to_text(wire: &[u8]) -> String {
    let mut s = String::new();
    let mut i = 0;
    while let Some(&len) = wire.get(i) {
        if len == 0 {
            break;
        }
        let label = wire.get(i + 1..i + 1 + len as usize).unwrap_or(&[]);
        for &b in label {
            if b.is_ascii_graphic() && b != b'.' && b != b'\\' {
                s.push(b as char);
            } else {
                s.push_str(&format!("\\{b:03}"));
            }
        }
        s.push('.');
        i += 1 + len as usize;
    }
    if s.is_empty() { ".".into() } else { s }
}

/// Offsets of the label starts of a wire name (up to 128 labels).
fn label_starts(name: &[u8], out: &mut [u8; 128]) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < name.len() && name[i] != 0 && n < 128 {
        out[n] = i as u8;
        n += 1;
        i += 1 + name[i] as usize;
    }
    n
}

/// Which section a record goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Answer.
    Answer,
    /// Authority.
    Authority,
    /// Additional.
    Additional,
}

/// The owner name of a record being written.
#[derive(Debug, Clone, Copy)]
pub enum Owner<'a> {
    /// The question's name (written as a pointer to it).
    Question,
    /// Another name, lower-case wire format.
    Name(&'a [u8]),
}

/// Writes a response into a reused buffer, compressing names against the question and
/// falling back to a truncated (TC) answer when the records do not fit.
pub struct Writer<'b> {
    buf: &'b mut Vec<u8>,
    qname: [u8; MAX_NAME],
    qname_len: usize,
    starts: [u8; 128],
    nstarts: usize,
    limit: usize,
    counts: [u16; 3],
    truncated: bool,
    question_end: usize,
}

/// What to put in the response's OPT record.
#[derive(Debug, Clone, Copy)]
pub struct EdnsOut {
    /// Our UDP payload size.
    pub udp_size: u16,
    /// Extended rcode upper bits (BADVERS = 1).
    pub ext_rcode: u8,
    /// The client subnet to echo with its scope.
    pub ecs: Option<(Ecs, u8)>,
}

impl EdnsOut {
    fn wire_len(&self) -> usize {
        11 + self
            .ecs
            .map_or(0, |(e, _)| 8 + (e.source as usize).div_ceil(8))
    }
}

impl<'b> Writer<'b> {
    /// Start a response to `q` (whose packet is `pkt`): header and the question echoed as
    /// sent. `limit` is the largest message allowed (UDP payload, or 65535 over TCP); the
    /// OPT record's space is reserved up front so a truncated answer still carries it.
    pub fn new(
        buf: &'b mut Vec<u8>,
        pkt: &[u8],
        q: &Query,
        rcode: u8,
        aa: bool,
        limit: usize,
        edns: Option<&EdnsOut>,
    ) -> Self {
        buf.clear();
        let flags: u16 = 0x8000
            | (u16::from(q.opcode) << 11)
            | if aa { 0x0400 } else { 0 }
            | if q.rd { 0x0100 } else { 0 }
            | if q.cd { 0x0010 } else { 0 }
            | u16::from(rcode & 0xF);
        buf.extend_from_slice(&q.id.to_be_bytes());
        buf.extend_from_slice(&flags.to_be_bytes());
        buf.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        buf.extend_from_slice(&pkt[HEADER_LEN..q.question_end]);
        let mut w = Writer {
            question_end: buf.len(),
            buf,
            qname: [0; MAX_NAME],
            qname_len: q.name_len as usize,
            starts: [0; 128],
            nstarts: 0,
            limit: limit.saturating_sub(edns.map_or(0, EdnsOut::wire_len)),
            counts: [0; 3],
            truncated: false,
        };
        w.qname[..w.qname_len].copy_from_slice(q.name());
        w.nstarts = label_starts(&w.qname[..w.qname_len], &mut w.starts);
        w
    }

    /// A header-only error response (FORMERR/NOTIMP) for a query that could not be parsed.
    pub fn error(buf: &mut Vec<u8>, pkt: &[u8], rcode: u8) {
        buf.clear();
        if pkt.len() < 4 {
            return;
        }
        let flags = u16::from_be_bytes([pkt[2], pkt[3]]);
        let out = 0x8000 | (flags & 0x7900) | u16::from(rcode & 0xF);
        buf.extend_from_slice(&pkt[..2]);
        buf.extend_from_slice(&out.to_be_bytes());
        buf.extend_from_slice(&[0; 8]);
    }

    /// Whether a record did not fit.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    fn name(&mut self, name: &[u8]) {
        // Longest suffix of `name` that is also a suffix of the question, at label starts.
        let mut i = 0;
        while i < name.len() && name[i] != 0 {
            let suffix = &name[i..];
            if suffix.len() <= self.qname_len {
                let off = self.qname_len - suffix.len();
                if self.qname[off..self.qname_len] == *suffix
                    && self.starts[..self.nstarts].contains(&(off as u8))
                {
                    self.buf.extend_from_slice(&name[..i]);
                    let ptr = 0xC000 | (HEADER_LEN + off) as u16;
                    self.buf.extend_from_slice(&ptr.to_be_bytes());
                    return;
                }
            }
            i += 1 + name[i] as usize;
        }
        self.buf.extend_from_slice(name);
    }

    /// Write one record; `rdata` writes the record data (it may call [`Writer::rdata_name`]).
    /// Returns false (and marks the response truncated) if it did not fit.
    pub fn record(
        &mut self,
        section: Section,
        owner: Owner<'_>,
        rtype: u16,
        ttl: u32,
        rdata: impl FnOnce(&mut Self),
    ) -> bool {
        self.put(section, owner, rtype, ttl, rdata, true)
    }

    /// Like [`Writer::record`] for records the answer can do without (glue): if it does not
    /// fit it is left out and the response is not marked truncated.
    pub fn optional_record(
        &mut self,
        section: Section,
        owner: Owner<'_>,
        rtype: u16,
        ttl: u32,
        rdata: impl FnOnce(&mut Self),
    ) -> bool {
        self.put(section, owner, rtype, ttl, rdata, false)
    }

    fn put(
        &mut self,
        section: Section,
        owner: Owner<'_>,
        rtype: u16,
        ttl: u32,
        rdata: impl FnOnce(&mut Self),
        required: bool,
    ) -> bool {
        if self.truncated {
            return false;
        }
        let mark = self.buf.len();
        match owner {
            Owner::Question => self.buf.extend_from_slice(&[0xC0, HEADER_LEN as u8]),
            Owner::Name(n) => self.name(n),
        }
        self.buf.extend_from_slice(&rtype.to_be_bytes());
        self.buf.extend_from_slice(&CLASS_IN.to_be_bytes());
        self.buf.extend_from_slice(&ttl.to_be_bytes());
        let len_at = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        rdata(self);
        let rdlen = self.buf.len() - len_at - 2;
        if self.buf.len() > self.limit || rdlen > u16::MAX as usize {
            self.buf.truncate(mark);
            self.truncated |= required;
            return false;
        }
        self.buf[len_at..len_at + 2].copy_from_slice(&(rdlen as u16).to_be_bytes());
        self.counts[section as usize] += 1;
        true
    }

    /// Append raw record data bytes.
    pub fn rdata(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Append a (compressible) domain name inside record data.
    pub fn rdata_name(&mut self, name: &[u8]) {
        self.name(name);
    }

    /// Finish: fix the counts, append OPT, set TC if truncated (dropping every record so the
    /// client retries over TCP with nothing half-answered).
    pub fn finish(self, edns: Option<&EdnsOut>) {
        let mut counts = self.counts;
        if self.truncated {
            self.buf.truncate(self.question_end);
            counts = [0; 3];
            self.buf[2] |= 0x02;
        }
        self.buf[6..8].copy_from_slice(&counts[0].to_be_bytes());
        self.buf[8..10].copy_from_slice(&counts[1].to_be_bytes());
        let mut ar = counts[2];
        if let Some(e) = edns {
            ar += 1;
            write_opt(self.buf, e);
        }
        self.buf[10..12].copy_from_slice(&ar.to_be_bytes());
    }
}

fn write_opt(buf: &mut Vec<u8>, e: &EdnsOut) {
    buf.push(0);
    buf.extend_from_slice(&rtype::OPT.to_be_bytes());
    buf.extend_from_slice(&e.udp_size.to_be_bytes());
    buf.extend_from_slice(&[e.ext_rcode, 0, 0, 0]);
    match e.ecs {
        None => buf.extend_from_slice(&[0, 0]),
        Some((ecs, scope)) => {
            let alen = (ecs.source as usize).div_ceil(8);
            let olen = 4 + alen;
            buf.extend_from_slice(&((4 + olen) as u16).to_be_bytes());
            buf.extend_from_slice(&OPT_ECS.to_be_bytes());
            buf.extend_from_slice(&(olen as u16).to_be_bytes());
            let (family, bytes): (u16, [u8; 16]) = match ecs.addr {
                IpAddr::V4(a) => {
                    let mut b = [0; 16];
                    b[..4].copy_from_slice(&a.octets());
                    (1, b)
                }
                IpAddr::V6(a) => (2, a.octets()),
            };
            buf.extend_from_slice(&family.to_be_bytes());
            buf.push(ecs.source);
            buf.push(scope);
            buf.extend_from_slice(&bytes[..alen]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Edns as HEdns, Message, MessageType, OpCode, Query as HQuery};
    use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
    use hickory_proto::rr::{Name, RecordType};
    use hickory_proto::serialize::binary::{BinDecodable, BinEncodable};

    fn query(name: &str, t: RecordType, edns: Option<HEdns>) -> Vec<u8> {
        let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(HQuery::query(Name::from_ascii(name).expect("name"), t));
        if let Some(e) = edns {
            m.set_edns(e);
        }
        m.to_bytes().expect("encode")
    }

    #[test]
    fn parses_a_plain_query_and_keeps_case_for_the_echo() {
        let pkt = query("App.Tandem.TEST.", RecordType::AAAA, None);
        let q = parse_query(&pkt).expect("parse");
        assert_eq!(q.id, 0x1234);
        assert_eq!(q.name(), &to_wire("app.tandem.test")[..]);
        assert_eq!((q.qtype, q.qclass, q.rd), (rtype::AAAA, CLASS_IN, true));
        assert!(q.edns.is_none());
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf, &pkt, &q, rcode::NOERROR, true, 512, None);
        assert!(
            w.record(Section::Answer, Owner::Question, rtype::AAAA, 30, |w| w
                .rdata(&Ipv6Addr::LOCALHOST.octets()))
        );
        w.finish(None);
        let m = Message::from_bytes(&buf).expect("hickory parses our answer");
        assert_eq!(m.queries[0].name().to_ascii(), "App.Tandem.TEST.");
        assert_eq!(m.answers[0].name.to_ascii(), "App.Tandem.TEST.");
        assert!(m.metadata.authoritative);
        assert_eq!(m.answers[0].ttl, 30);
    }

    #[test]
    fn edns_and_client_subnet() {
        let mut e = HEdns::new();
        e.set_max_payload(4096);
        e.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(
            "10.1.2.0".parse().expect("ip"),
            24,
            0,
        )));
        let pkt = query("a.example.", RecordType::A, Some(e));
        let q = parse_query(&pkt).expect("parse");
        let edns = q.edns.expect("edns");
        assert_eq!(edns.udp_size, 4096);
        let ecs = edns.ecs.expect("ecs");
        assert_eq!(
            (ecs.addr, ecs.source),
            ("10.1.2.0".parse().expect("ip"), 24)
        );
        let mut buf = Vec::new();
        let out = EdnsOut {
            udp_size: 1232,
            ext_rcode: 0,
            ecs: Some((ecs, 16)),
        };
        let mut w = Writer::new(&mut buf, &pkt, &q, rcode::NOERROR, true, 1232, Some(&out));
        w.record(Section::Answer, Owner::Question, rtype::A, 5, |w| {
            w.rdata(&[127, 0, 1, 1])
        });
        w.finish(Some(&out));
        let m = Message::from_bytes(&buf).expect("parse");
        let sub = m
            .edns
            .as_ref()
            .expect("edns")
            .options()
            .options
            .iter()
            .find_map(|(_, o)| match o {
                EdnsOption::Subnet(s) => Some(*s),
                _ => None,
            });
        let sub = sub.expect("ecs echoed");
        assert_eq!((sub.source_prefix(), sub.scope_prefix()), (24, 16));
    }

    #[test]
    fn bad_client_subnets_are_formerr() {
        // Bits beyond the prefix, a non-zero scope, a too-long prefix, a wrong length.
        for (family, source, scope, addr) in [
            (1u16, 24u8, 0u8, vec![10, 1, 2, 5]),
            (1, 24, 0, vec![10, 1, 2]),
            (1, 24, 8, vec![10, 1, 2]),
            (1, 33, 0, vec![10, 1, 2, 3, 4]),
            (1, 20, 0, vec![10, 1, 0x2F]),
            (3, 8, 0, vec![10]),
        ] {
            let mut opt = Vec::new();
            opt.extend_from_slice(&family.to_be_bytes());
            opt.push(source);
            opt.push(scope);
            opt.extend_from_slice(&addr);
            let ok = family == 1 && source == 24 && scope == 0 && addr.len() == 3;
            assert_eq!(
                parse_ecs(&opt).is_ok(),
                ok,
                "{family} {source} {scope} {addr:?}"
            );
        }
    }

    #[test]
    fn compresses_names_against_the_question() {
        let pkt = query("x.app.tandem.test.", RecordType::CNAME, None);
        let q = parse_query(&pkt).expect("parse");
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf, &pkt, &q, rcode::NOERROR, true, 512, None);
        let target = to_wire("edge.tandem.test");
        w.record(Section::Answer, Owner::Question, rtype::CNAME, 5, |w| {
            w.rdata_name(&target)
        });
        w.finish(None);
        // "edge" label + pointer into the question: 1+4+2 bytes of rdata.
        let m = Message::from_bytes(&buf).expect("parse");
        match &m.answers[0].data {
            hickory_proto::rr::RData::CNAME(c) => assert_eq!(c.0.to_ascii(), "edge.tandem.test."),
            other => panic!("not a CNAME: {other:?}"),
        }
        assert_eq!(buf.len(), pkt.len() + 2 + 10 + 7);
    }

    #[test]
    fn truncation_keeps_the_question_and_opt_and_sets_tc() {
        let mut e = HEdns::new();
        e.set_max_payload(512);
        let pkt = query("many.example.", RecordType::A, Some(e));
        let q = parse_query(&pkt).expect("parse");
        let out = EdnsOut {
            udp_size: 1232,
            ext_rcode: 0,
            ecs: None,
        };
        let mut buf = Vec::new();
        let mut w = Writer::new(&mut buf, &pkt, &q, rcode::NOERROR, true, 512, Some(&out));
        let mut n = 0;
        while w.record(Section::Answer, Owner::Question, rtype::A, 5, |w| {
            w.rdata(&[10, 0, 0, n])
        }) {
            n += 1;
        }
        assert!(w.truncated() && n > 20);
        w.finish(Some(&out));
        let m = Message::from_bytes(&buf).expect("parse");
        assert!(m.metadata.truncation);
        assert!(m.answers.is_empty());
        assert!(m.edns.is_some());
        assert!(buf.len() <= 512);
    }

    #[test]
    fn malformed_packets() {
        assert_eq!(parse_query(&[0; 5]).err(), Some(WireError::Drop));
        let mut resp = query("a.", RecordType::A, None);
        resp[2] |= 0x80;
        assert_eq!(parse_query(&resp).err(), Some(WireError::Drop));
        let mut two = query("a.", RecordType::A, None);
        two[5] = 2;
        assert!(matches!(parse_query(&two), Err(WireError::FormErr(_))));
        let good = query("abc.example.", RecordType::A, None);
        for cut in HEADER_LEN..good.len() {
            assert!(
                matches!(parse_query(&good[..cut]), Err(WireError::FormErr(_))),
                "cut at {cut}"
            );
        }
        let mut ptr = good.clone();
        ptr[HEADER_LEN] = 0xC0;
        assert!(parse_query(&ptr).is_err());
        let mut buf = Vec::new();
        Writer::error(&mut buf, &two, rcode::FORMERR);
        let m = Message::from_bytes(&buf).expect("parse");
        assert_eq!(u16::from(m.metadata.response_code), 1);
        assert_eq!(m.metadata.id, 0x1234);
    }

    #[test]
    fn text_round_trip() {
        assert_eq!(to_text(&to_wire("App.Example.")), "app.example.");
        assert_eq!(to_text(&[0]), ".");
    }
}
