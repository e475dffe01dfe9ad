//! One request's evaluation against a [`RuleSet`], with ModSecurity's phase semantics.
//!
//! The request's parts are copied once into `Data`; rules then read them through
//! lightweight descriptors, so enumerating a collection allocates nothing. Transformation
//! results are cached per (transformation-chain prefix, value) for the whole transaction:
//! CRS applies the same few chains (`urlDecodeUni`, `lowercase`, ...) to the same values in
//! hundreds of rules, and each is computed once.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indexmap::IndexMap;

use crate::body::{self, Pairs, PairsFill};
use crate::link_results::{LinkResults, UNKNOWN};
use crate::operator::{OpOutput, atoi};
use crate::prefilter::{ByteSet, LiteralTable, Required, bytes_intersect};
use crate::rule::{
    AllowScope, BodyProcessor, Ctl, Disruptive, Effect, EngineMode, Rule, SetOp, SetVar,
};
use crate::ruleset::{Hot, Item, RuleSet};
use crate::template::Template;
use crate::transform::Transform;
use crate::txvars::TxStore;
use crate::variable::{Key, Target, Var};

type FastMap<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

/// The bytes a descriptor stands for.
fn value_of<'a>(d: &'a Data, tx: &'a TxStore, link: &'a Rule, r: &'a VarRef) -> &'a [u8] {
    match &r.src {
        Src::TxTarget(i) => match link.targets.get(usize::from(*i)) {
            Some(Target {
                tx_slot: Some(id), ..
            }) => tx.get_id(*id).unwrap_or(&[]),
            Some(Target {
                key: Key::Name(k), ..
            }) => tx.get(k.as_str()).unwrap_or(&[]),
            _ => &[],
        },
        _ => d.value(r),
    }
}

/// TX names of capture groups. The rule set interns them first, so `TX:n` is slot `n`.
pub(crate) const CAPTURE_NAMES: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

/// The request line and headers, as the edge received them.
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// Method, as sent.
    pub method: String,
    /// Request target as sent (`/path?query`, or an absolute URI).
    pub uri: Vec<u8>,
    /// Protocol, like `HTTP/1.1`.
    pub protocol: String,
    /// Header fields in order, names as sent.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// The client's address.
    pub client: SocketAddr,
    /// The local address the request arrived on.
    pub server: Option<SocketAddr>,
    /// The request id (becomes `UNIQUE_ID`).
    pub request_id: String,
}

impl RequestHead {
    /// Build from `http` request parts.
    pub fn from_parts(
        parts: &http::request::Parts,
        client: SocketAddr,
        request_id: impl Into<String>,
    ) -> RequestHead {
        Self::from_http(
            &parts.method,
            &parts.uri,
            parts.version,
            &parts.headers,
            client,
            request_id,
        )
    }

    /// Build from the pieces of an `http` request head.
    pub fn from_http(
        method: &http::Method,
        uri: &http::Uri,
        version: http::Version,
        headers: &http::HeaderMap,
        client: SocketAddr,
        request_id: impl Into<String>,
    ) -> RequestHead {
        let target = uri
            .path_and_query()
            .map_or_else(|| uri.to_string(), |p| p.as_str().to_string());
        RequestHead {
            method: method.as_str().to_string(),
            uri: target.into_bytes(),
            protocol: match version {
                http::Version::HTTP_09 => "HTTP/0.9",
                http::Version::HTTP_10 => "HTTP/1.0",
                http::Version::HTTP_2 => "HTTP/2.0",
                http::Version::HTTP_3 => "HTTP/3.0",
                _ => "HTTP/1.1",
            }
            .to_string(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.as_str().as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect(),
            client,
            server: None,
            request_id: request_id.into(),
        }
    }
}

/// A disruptive decision taken by a rule.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Interruption {
    /// The rule that decided.
    pub rule_id: u32,
    /// What to do.
    pub action: InterruptAction,
    /// HTTP status.
    pub status: u16,
}

/// How a transaction was interrupted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InterruptAction {
    /// Refuse with a status.
    Deny,
    /// Close the connection.
    Drop,
    /// Redirect.
    Redirect {
        /// Location.
        location: String,
    },
}

/// A rule that matched.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MatchRecord {
    /// Rule id.
    pub rule_id: u32,
    /// Phase it ran in.
    pub phase: u8,
    /// `msg`, expanded.
    pub message: String,
    /// `logdata`, expanded and truncated.
    pub data: String,
    /// The variable that matched last (like `ARGS:q`).
    pub matched_var: String,
    /// Its value, truncated.
    pub matched_value: String,
    /// Severity (0-7), if set.
    pub severity: Option<u8>,
    /// Tags.
    pub tags: Vec<String>,
    /// Whether the rule logs (`log` / `nolog`).
    pub logged: bool,
    /// Whether the rule's disruptive action would block (deny/drop/redirect).
    pub disruptive: bool,
    /// `ver`
    pub ver: Option<String>,
    /// Source file and line.
    pub file: String,
    /// Line.
    pub line: usize,
}

impl MatchRecord {
    /// The ModSecurity-style error-log line (`[id "942100"] [msg "..."] ...`), which rule
    /// tests and log tooling grep for.
    pub fn log_line(&self) -> String {
        let mut s = format!(
            "ModSecurity: Warning. Matched \"{}\". [file \"{}\"] [line \"{}\"] [id \"{}\"]",
            esc(&self.matched_var),
            esc(&self.file),
            self.line,
            self.rule_id
        );
        if !self.message.is_empty() {
            s.push_str(&format!(" [msg \"{}\"]", esc(&self.message)));
        }
        if !self.data.is_empty() {
            s.push_str(&format!(" [data \"{}\"]", esc(&self.data)));
        }
        if let Some(sev) = self.severity {
            s.push_str(&format!(
                " [severity \"{}\"]",
                crate::rule::severity_name(sev)
            ));
        }
        if let Some(v) = &self.ver {
            s.push_str(&format!(" [ver \"{}\"]", esc(v)));
        }
        for t in &self.tags {
            s.push_str(&format!(" [tag \"{}\"]", esc(t)));
        }
        s
    }
}

fn esc(s: &str) -> String {
    s.replace('"', "\\\"")
}

/// The most bytes of matched data kept in a [`MatchRecord`].
pub const MATCH_DATA_LIMIT: usize = 256;

/// Limits on one transaction's work.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Wall-clock time the rules may take in total.
    pub time: Duration,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            time: Duration::from_millis(50),
        }
    }
}

/// Where a value comes from.
#[derive(Debug, Clone)]
enum Src {
    /// `(collection storage, index, name?)`: value or name of a pair.
    Pair(Store, u32, bool),
    /// A scalar variable (stable within the transaction).
    Scalar(Var),
    /// XML text (0) or attribute (1+i).
    Xml(u32),
    /// A computed or volatile value.
    Owned(Vec<u8>),
    /// The TX variable named by the link's target `i` (read when inspected).
    TxTarget(u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
enum Store {
    ArgsGet,
    ArgsPost,
    Headers,
    Cookies,
    Files,
    FileSizes,
    PartHeaders,
    RespHeaders,
}

/// A value to inspect: where it is and what it is called.
#[derive(Debug, Clone)]
struct VarRef {
    src: Src,
    var: Var,
    /// The member name, unless it can be read from the pair (`Src::Pair`).
    name: Vec<u8>,
}

impl VarRef {
    /// Cache key for transformation results, when the value is stable.
    fn cache_key(&self) -> Option<(u8, u32)> {
        match &self.src {
            Src::Pair(s, i, n) => Some((*s as u8 * 2 + u8::from(*n), *i)),
            Src::Scalar(v) => Some((16, *v as u32)),
            Src::Xml(i) => Some((17, *i)),
            Src::Owned(_) | Src::TxTarget(_) => None,
        }
    }
}

/// The request and response as rules see them.
#[derive(Debug, Default)]
struct Data {
    method: Vec<u8>,
    protocol: Vec<u8>,
    uri_raw: Vec<u8>,
    uri: Vec<u8>,
    filename: Vec<u8>,
    basename: Vec<u8>,
    query: Vec<u8>,
    request_line: Vec<u8>,
    headers: Pairs,
    cookies: Pairs,
    args_get: Pairs,
    args_post: Pairs,
    body: Vec<u8>,
    body_len: usize,
    body_visible: bool,
    processor: Option<BodyProcessor>,
    reqbody_error: bool,
    reqbody_error_msg: Vec<u8>,
    urlencoded_error: bool,
    multipart: body::Multipart,
    multipart_strict_error: bool,
    xml: Option<body::XmlDoc>,
    remote_addr: Vec<u8>,
    remote_ip: Option<IpAddr>,
    remote_port: Vec<u8>,
    server_addr: Vec<u8>,
    server_port: Vec<u8>,
    server_name: Vec<u8>,
    unique_id: Vec<u8>,
    resp_status: Vec<u8>,
    resp_protocol: Vec<u8>,
    resp_headers: Pairs,
    resp_body: Vec<u8>,
    resp_content_type: Vec<u8>,
}

impl Data {
    fn pairs(&self, s: Store) -> &Pairs {
        match s {
            Store::ArgsGet => &self.args_get,
            Store::ArgsPost => &self.args_post,
            Store::Headers => &self.headers,
            Store::Cookies => &self.cookies,
            Store::Files => &self.multipart.files,
            Store::FileSizes => &self.multipart.file_sizes,
            Store::PartHeaders => &self.multipart.part_headers,
            Store::RespHeaders => &self.resp_headers,
        }
    }

    fn value<'a>(&'a self, r: &'a VarRef) -> &'a [u8] {
        match &r.src {
            Src::Pair(s, i, name) => self
                .pairs(*s)
                .get(*i as usize)
                .map_or(&[][..], |(n, v)| if *name { n } else { v }),
            Src::Xml(0) => self.xml.as_ref().map_or(&[][..], |x| &x.text),
            Src::Xml(i) => self
                .xml
                .as_ref()
                .and_then(|x| x.attributes.get(*i as usize - 1))
                .map_or(&[][..], Vec::as_slice),
            Src::Scalar(v) => self.scalar(*v).unwrap_or(&[]),
            Src::Owned(v) => v,
            Src::TxTarget(_) => &[],
        }
    }

    fn scalar(&self, v: Var) -> Option<&[u8]> {
        Some(match v {
            Var::RequestMethod => &self.method,
            Var::RequestProtocol => &self.protocol,
            Var::RequestUriRaw => &self.uri_raw,
            Var::RequestUri => &self.uri,
            Var::RequestFilename => &self.filename,
            Var::RequestBasename => &self.basename,
            Var::QueryString => &self.query,
            Var::RequestLine => &self.request_line,
            Var::RequestBody if self.body_visible => &self.body,
            Var::RequestBody => return None,
            Var::ResponseBody => &self.resp_body,
            Var::RemoteAddr => &self.remote_addr,
            Var::RemotePort => &self.remote_port,
            Var::ServerAddr => &self.server_addr,
            Var::ServerPort => &self.server_port,
            Var::ServerName => &self.server_name,
            Var::RemoteHost => &self.remote_addr,
            Var::UniqueId => &self.unique_id,
            Var::ReqbodyErrorMsg | Var::ReqbodyProcessorErrorMsg => &self.reqbody_error_msg,
            Var::ResponseStatus => &self.resp_status,
            Var::ResponseProtocol => &self.resp_protocol,
            Var::ResponseContentType => &self.resp_content_type,
            Var::MultipartFilename => &self.multipart.last_filename,
            Var::MultipartName => &self.multipart.last_name,
            _ => return None,
        })
    }
}

#[derive(Debug, Default)]
struct TCache {
    /// Per value class (pair store and side, scalars, XML): a dense table indexed by
    /// `value index * nodes + chain node`. Lookups are two bounds-checked loads, no hashing.
    dense: [Vec<Loc>; CACHE_CLASSES],
    nodes: usize,
    arena: Vec<u8>,
    scratch: Vec<u8>,
    /// (value class, index, input, transformation) -> output, for steps that changed their
    /// input: chains that reach the same intermediate value through different prefixes
    /// (`t:utf8toUnicode` changed nothing, then `t:urlDecodeUni`) share the step's result,
    /// its arena bytes, and so the prefilter's scan of them.
    memo: FastMap<(u8, u32, Loc, Transform), Loc>,
    /// The rule set's trie in the per-thread [`CHAIN_MEMO`] (0: not used).
    memo_owner: u64,
}

const CACHE_CLASSES: usize = 18;

/// Slots in each thread's operator memo: a request meets a few hundred (link, value) pairs.
const OP_MEMO_SLOTS: usize = 2048;

thread_local! {
    /// Each thread's memo of operator results on short values, by rule link (see
    /// [`crate::memo`] and [`exec_op`]).
    static OP_MEMO: std::cell::RefCell<crate::memo::Memo<bool>> =
        std::cell::RefCell::new(crate::memo::Memo::new(OP_MEMO_SLOTS));
}

/// Run `link`'s operator on `v` (`owner` 0: without the memo). A value of up to 256 bytes
/// that this link's operator saw recently on this thread is answered from [`OP_MEMO`] when
/// the operator's result depends on the value alone ([`crate::operator::Operator::memoisable`]):
/// the same user agent or cookie flag is not run through the same regex on every request.
/// Not remembered: a match whose groups are captured (the groups are needed) and a search
/// that hit the backtracking limit.
fn exec_op(
    owner: u64,
    link: &Rule,
    v: &[u8],
    arg: &[u8],
    capture: bool,
    remote: Option<std::net::IpAddr>,
    out: &mut OpOutput,
) -> bool {
    let memo = owner != 0 && v.len() <= crate::memo::MAX_VALUE && link.op.memoisable();
    if memo
        && let Some(r) = OP_MEMO.with(|m| {
            m.try_borrow()
                .ok()
                .and_then(|m| m.get(owner, link.link_no, v).copied())
        })
        && !(r && capture)
    {
        return r;
    }
    let r = link.op.exec(v, arg, capture, remote, out);
    if memo && !out.limit_exceeded && !(r && capture) {
        OP_MEMO.with(|m| {
            if let Ok(mut m) = m.try_borrow_mut() {
                *m.claim(owner, link.link_no, v) = r;
            }
        });
    }
    r
}

/// Slots in each thread's chain memo.
const CHAIN_MEMO_SLOTS: usize = 512;

/// A chain's output for a value: whether it changed the value, and into what.
type ChainOut = (bool, Vec<u8>);

thread_local! {
    /// Each thread's memo of whole transformation chains over short values (by the chain's
    /// trie node): a header value that recurs is transformed once per thread, not once per
    /// request (see [`crate::memo`]).
    static CHAIN_MEMO: std::cell::RefCell<crate::memo::Memo<ChainOut>> =
        std::cell::RefCell::new(crate::memo::Memo::new(CHAIN_MEMO_SLOTS));
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Loc {
    Unset,
    Base,
    Arena(u32, u32),
}

impl TCache {
    fn get<'a>(&'a self, base: &'a [u8], loc: Loc) -> &'a [u8] {
        match loc {
            Loc::Base | Loc::Unset => base,
            Loc::Arena(s, l) => &self.arena[s as usize..(s + l) as usize],
        }
    }

    fn lookup(&self, class: u8, idx: u32, node: u16) -> Option<Loc> {
        let slot = (idx as usize) * self.nodes + usize::from(node);
        match self.dense.get(usize::from(class))?.get(slot) {
            Some(Loc::Unset) | None => None,
            Some(l) => Some(*l),
        }
    }

    fn store(&mut self, class: u8, idx: u32, node: u16, loc: Loc) {
        let slot = (idx as usize) * self.nodes + usize::from(node);
        let Some(v) = self.dense.get_mut(usize::from(class)) else {
            return;
        };
        if v.len() <= slot {
            v.resize((idx as usize + 1) * self.nodes, Loc::Unset);
        }
        v[slot] = loc;
    }

    /// Run `steps` over `base`, caching each prefix when `key` is given. `locs` receives the
    /// location after every step (for multiMatch).
    fn run(
        &mut self,
        base: &[u8],
        key: Option<(u8, u32)>,
        steps: &[(u16, Transform)],
        locs: Option<&mut Vec<Loc>>,
    ) -> Loc {
        // The whole chain is usually cached already: one lookup instead of one per step.
        if locs.is_none()
            && let (Some((k, i)), Some(&(last, _))) = (key, steps.last())
        {
            if let Some(l) = self.lookup(k, i, last) {
                return l;
            }
            if self.memo_owner != 0 && base.len() <= crate::memo::MAX_VALUE {
                let l = match self.recall_chain(last, base) {
                    Some(l) => l,
                    None => {
                        let l = self.run_steps(base, key, steps, None);
                        self.remember_chain(last, base, l);
                        l
                    }
                };
                self.store(k, i, last, l);
                return l;
            }
        }
        self.run_steps(base, key, steps, locs)
    }

    /// The chain's output for `base` from the thread's memo, copied into the arena.
    fn recall_chain(&mut self, node: u16, base: &[u8]) -> Option<Loc> {
        CHAIN_MEMO.with(|m| {
            let m = m.try_borrow().ok()?;
            let (changed, out) = m.get(self.memo_owner, u32::from(node), base)?;
            if !changed {
                return Some(Loc::Base);
            }
            let start = self.arena.len();
            self.arena.extend_from_slice(out);
            Some(Loc::Arena(start as u32, out.len() as u32))
        })
    }

    fn remember_chain(&self, node: u16, base: &[u8], l: Loc) {
        CHAIN_MEMO.with(|m| {
            let Ok(mut m) = m.try_borrow_mut() else {
                return;
            };
            let (changed, out) = m.claim(self.memo_owner, u32::from(node), base);
            out.clear();
            match l {
                Loc::Base | Loc::Unset => *changed = false,
                Loc::Arena(s, n) => {
                    *changed = true;
                    out.extend_from_slice(&self.arena[s as usize..(s + n) as usize]);
                }
            }
        });
    }

    /// [`TCache::run`] step by step.
    fn run_steps(
        &mut self,
        base: &[u8],
        key: Option<(u8, u32)>,
        steps: &[(u16, Transform)],
        mut locs: Option<&mut Vec<Loc>>,
    ) -> Loc {
        let mut loc = Loc::Base;
        for &(node, t) in steps {
            if let Some((k, i)) = key
                && let Some(l) = self.lookup(k, i, node)
            {
                loc = l;
            } else {
                let memo = key.and_then(|(k, i)| self.memo.get(&(k, i, loc, t)).copied());
                if let Some(out) = memo {
                    loc = out;
                } else {
                    let input = match loc {
                        Loc::Base | Loc::Unset => base,
                        Loc::Arena(s, l) => &self.arena[s as usize..(s + l) as usize],
                    };
                    let changed = t.apply(input, &mut self.scratch);
                    if changed {
                        let start = self.arena.len();
                        self.arena.extend_from_slice(&self.scratch);
                        let out = Loc::Arena(start as u32, self.scratch.len() as u32);
                        if let Some((k, i)) = key {
                            self.memo.insert((k, i, loc, t), out);
                        }
                        loc = out;
                    }
                }
                if let Some((k, i)) = key {
                    self.store(k, i, node, loc);
                }
            }
            if let Some(l) = locs.as_deref_mut() {
                l.push(loc);
            }
        }
        loc
    }
}

/// What the literal prefilter found in values: one record per distinct transformed value
/// (by where its bytes are), and the union over each (target, transformation chain).
#[derive(Debug, Default)]
struct Scans {
    /// Transformed value (see [`scan_key`]) -> record.
    by_value: FastMap<ScanKey, u32>,
    /// Union slot of a (target, chain, all steps?) ([`Rule::target_slots`]) -> its record,
    /// or [`NO_UNION`].
    by_target: Vec<u32>,
    /// Union slot of a link's targets ([`Rule::set_slot`]) -> record, or [`NO_UNION`].
    by_set: Vec<u32>,
    recs: Vec<ScanRec>,
    /// The literal-list bits ([`LiteralTable::scan`]) of every record, `words` each.
    pool: Vec<u64>,
    /// Words per record: [`LiteralTable::words`] of the transaction's rule set.
    words: usize,
}

/// A union slot not computed yet in this transaction (or since its data changed).
const NO_UNION: u32 = u32::MAX;

/// The record in union slot `slot` of `slots`, if computed.
fn union_in(slots: &[u32], slot: u32) -> Option<u32> {
    slots.get(slot as usize).copied().filter(|&u| u != NO_UNION)
}

/// Keep `rec` as the union in slot `slot` of `slots`.
fn store_union(slots: &mut [u32], slot: u32, rec: u32) {
    if let Some(e) = slots.get_mut(slot as usize) {
        *e = rec;
    }
}

#[derive(Debug, Clone, Copy)]
struct ScanRec {
    bytes: ByteSet,
    /// Where its bits start in `pool`.
    bits: u32,
}

/// Where a transformed value's bytes are, as a key: the arena range (unique within the
/// transaction: the arena only grows, and an empty value at an offset is told apart from the
/// value written there next by its length), or the untransformed value's class and index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ScanKey {
    Arena(u32, u32),
    Base(u8, u32),
}

fn scan_key(key: (u8, u32), loc: Loc) -> Option<ScanKey> {
    Some(match loc {
        Loc::Arena(s, l) => ScanKey::Arena(s, l),
        Loc::Base | Loc::Unset => ScanKey::Base(key.0, key.1),
    })
}

impl Scans {
    /// The record for `hay`, scanned once per `key`.
    fn value(&mut self, lits: &LiteralTable, key: Option<ScanKey>, hay: &[u8]) -> u32 {
        if let Some(k) = key
            && let Some(&r) = self.by_value.get(&k)
        {
            return r;
        }
        let from = self.pool.len();
        self.pool.resize(from + self.words, 0);
        let bytes = lits.scan(hay, &mut self.pool[from..]);
        let r = self.recs.len() as u32;
        self.recs.push(ScanRec {
            bytes,
            bits: from as u32,
        });
        if let Some(k) = key {
            self.by_value.insert(k, r);
        }
        r
    }

    /// The record of a value scanned before, if it was.
    fn scanned(&self, key: Option<ScanKey>) -> Option<u32> {
        key.and_then(|k| self.by_value.get(&k).copied())
    }

    fn may_match(&self, req: &Required, r: u32) -> bool {
        let rec = &self.recs[r as usize];
        let from = rec.bits as usize;
        req.may_match(&rec.bytes, &self.pool[from..from + self.words])
    }

    /// Merge records into a new one (a target's union).
    fn union(&mut self, parts: &[u32]) -> u32 {
        let mut bytes: ByteSet = [0; 4];
        let from = self.pool.len();
        let w = self.words;
        self.pool.resize(from + w, 0);
        for &p in parts {
            let rec = self.recs[p as usize];
            for (b, x) in bytes.iter_mut().zip(rec.bytes) {
                *b |= x;
            }
            let src = rec.bits as usize;
            for i in 0..w {
                self.pool[from + i] |= self.pool[src + i];
            }
        }
        let r = self.recs.len() as u32;
        self.recs.push(ScanRec {
            bytes,
            bits: from as u32,
        });
        r
    }

    /// Forget everything derived from request data (new data arrived).
    fn invalidate_targets(&mut self) {
        self.by_target.fill(NO_UNION);
        self.by_set.fill(NO_UNION);
    }
}

/// `MATCHED_VARS`: the (name, value) pairs the current rule's last matching link matched.
/// Entries keep their buffers when the list is emptied, so recording a match copies bytes
/// into existing allocations.
#[derive(Debug, Default)]
struct MatchedVars {
    entries: Vec<(Vec<u8>, Vec<u8>)>,
    len: usize,
}

impl MatchedVars {
    fn clear(&mut self) {
        self.len = 0;
    }

    fn push(&mut self, name: &[u8], value: &[u8]) {
        if self.len == self.entries.len() {
            self.entries.push((Vec::new(), Vec::new()));
        }
        let (n, v) = &mut self.entries[self.len];
        n.clear();
        n.extend_from_slice(name);
        v.clear();
        v.extend_from_slice(value);
        self.len += 1;
    }

    fn iter(&self) -> impl Iterator<Item = &(Vec<u8>, Vec<u8>)> {
        self.entries[..self.len].iter()
    }

    /// Whether the kept buffers hold more than `bytes` in all (too much to keep).
    fn oversized(&self, bytes: usize) -> bool {
        self.entries
            .iter()
            .map(|(n, v)| n.capacity() + v.capacity())
            .sum::<usize>()
            > bytes
    }
}

/// The working buffers of a transaction, handed to the next transaction on the same thread
/// when it ends: TX value buffers, the transformation cache and its arena, the prefilter's
/// maps. Refilling them costs no allocation once they have grown to a request's size; a
/// transaction that made one of them unusually large does not return it.
#[derive(Debug, Default)]
struct Reuse {
    tx: TxStore,
    cache: TCache,
    scans: Scans,
    refs_buf: Vec<VarRef>,
    union_refs: Vec<VarRef>,
    union_parts: Vec<u32>,
    union_locs: Vec<Loc>,
    set_parts: Vec<u32>,
    results: LinkResults,
    op_out: OpOutput,
    scratch: Scratch,
    matched_var: Vec<u8>,
    matched_var_name: Vec<u8>,
    matched_vars: MatchedVars,
    data: DataBufs,
}

/// The buffers of a transaction's copy of the request, emptied, for the next transaction on
/// the thread. A field not listed here starts fresh in every transaction.
#[derive(Debug, Default)]
struct DataBufs {
    method: Vec<u8>,
    protocol: Vec<u8>,
    uri_raw: Vec<u8>,
    request_line: Vec<u8>,
    uri: Vec<u8>,
    filename: Vec<u8>,
    basename: Vec<u8>,
    query: Vec<u8>,
    server_name: Vec<u8>,
    remote_addr: Vec<u8>,
    remote_port: Vec<u8>,
    unique_id: Vec<u8>,
    /// Empty lists that keep their capacity.
    headers: Pairs,
    cookies: Pairs,
    args_get: Pairs,
    /// Pairs of the lists above, emptied: their buffers serve the next request's pairs.
    spare: Pairs,
}

/// At most this many spare pairs are kept.
const SPARE_PAIRS: usize = 256;

impl DataBufs {
    /// The buffers of `d`, emptied (its other fields are dropped with it).
    fn from_data(d: &mut Data) -> DataBufs {
        let mut b = DataBufs {
            method: std::mem::take(&mut d.method),
            protocol: std::mem::take(&mut d.protocol),
            uri_raw: std::mem::take(&mut d.uri_raw),
            request_line: std::mem::take(&mut d.request_line),
            uri: std::mem::take(&mut d.uri),
            filename: std::mem::take(&mut d.filename),
            basename: std::mem::take(&mut d.basename),
            query: std::mem::take(&mut d.query),
            server_name: std::mem::take(&mut d.server_name),
            remote_addr: std::mem::take(&mut d.remote_addr),
            remote_port: std::mem::take(&mut d.remote_port),
            unique_id: std::mem::take(&mut d.unique_id),
            headers: std::mem::take(&mut d.headers),
            cookies: std::mem::take(&mut d.cookies),
            args_get: std::mem::take(&mut d.args_get),
            spare: Vec::new(),
        };
        b.clear();
        b
    }

    /// The byte buffers (the pair lists aside).
    fn bufs(&mut self) -> [&mut Vec<u8>; 12] {
        [
            &mut self.method,
            &mut self.protocol,
            &mut self.uri_raw,
            &mut self.request_line,
            &mut self.uri,
            &mut self.filename,
            &mut self.basename,
            &mut self.query,
            &mut self.server_name,
            &mut self.remote_addr,
            &mut self.remote_port,
            &mut self.unique_id,
        ]
    }

    /// Empty every buffer, keeping capacity; the lists' pairs become spares.
    fn clear(&mut self) {
        for v in self.bufs() {
            v.clear();
        }
        for list in [&mut self.headers, &mut self.cookies, &mut self.args_get] {
            let room = SPARE_PAIRS.saturating_sub(self.spare.len());
            self.spare.extend(list.drain(..).take(room));
            list.clear();
        }
    }

    /// Bytes held, roughly.
    fn bytes(&mut self) -> usize {
        let pairs: usize = [&self.headers, &self.cookies, &self.args_get, &self.spare]
            .iter()
            .flat_map(|l| l.iter())
            .map(|(n, v)| n.capacity() + v.capacity())
            .sum();
        pairs + self.bufs().iter().map(|v| v.capacity()).sum::<usize>()
    }
}

/// `buf` emptied and refilled with `src`.
fn refill(buf: &mut Vec<u8>, src: &[u8]) -> Vec<u8> {
    let mut b = std::mem::take(buf);
    b.clear();
    b.extend_from_slice(src);
    b
}

/// Buffers that macro expansions write into instead of allocating: a `setvar` key built at
/// run time (`tx.header_name_920450_%{tx.0}`), a `setvar` value, an operator argument
/// (`@within %{tx.restricted_headers_basic}`).
#[derive(Debug, Default)]
struct Scratch {
    key: Vec<u8>,
    value: Vec<u8>,
    arg: Vec<u8>,
}

/// At most this many buffer sets wait per thread (one per transaction in flight on it).
const REUSE_MAX: usize = 32;
/// A buffer larger than this (a big request's transformation arena, say) is not kept, so
/// what a thread holds stays in the low megabytes.
const REUSE_MAX_BYTES: usize = 256 << 10;
/// Nor a map with more entries than this.
const REUSE_MAX_ENTRIES: usize = 16 << 10;

thread_local! {
    static REUSE: std::cell::RefCell<Vec<Reuse>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Reuse {
    /// Buffers for a new transaction: a set left by an earlier one on this thread, else new.
    fn take() -> Reuse {
        REUSE
            .try_with(|p| p.borrow_mut().pop())
            .ok()
            .flatten()
            .unwrap_or_else(|| Reuse {
                cache: TCache {
                    arena: Vec::with_capacity(4096),
                    scratch: Vec::with_capacity(1024),
                    ..TCache::default()
                },
                refs_buf: Vec::with_capacity(64),
                union_refs: Vec::with_capacity(64),
                union_parts: Vec::with_capacity(64),
                union_locs: Vec::with_capacity(16),
                set_parts: Vec::with_capacity(16),
                ..Reuse::default()
            })
    }

    /// Empty everything, keeping capacity.
    fn clear(&mut self) {
        for d in &mut self.cache.dense {
            d.clear();
        }
        self.cache.arena.clear();
        self.cache.scratch.clear();
        self.cache.memo.clear();
        self.scans.by_value.clear();
        self.scans.by_target.clear();
        self.scans.by_set.clear();
        self.scans.recs.clear();
        self.scans.pool.clear();
        self.refs_buf.clear();
        self.union_refs.clear();
        self.union_parts.clear();
        self.union_locs.clear();
        self.set_parts.clear();
        self.results.clear();
        self.op_out.captures.clear();
        self.op_out.limit_exceeded = false;
        self.matched_var.clear();
        self.matched_var_name.clear();
        self.matched_vars.clear();
        self.data.clear();
    }

    /// Hand the buffers to the next transaction on this thread.
    fn give_back(mut self) {
        if self.cache.arena.capacity() > REUSE_MAX_BYTES
            || self.cache.scratch.capacity() > REUSE_MAX_BYTES
            || self.scans.pool.capacity() * 8 > REUSE_MAX_BYTES
            || self
                .cache
                .dense
                .iter()
                .any(|d| d.capacity() * std::mem::size_of::<Loc>() > REUSE_MAX_BYTES)
            || self.cache.memo.capacity() > REUSE_MAX_ENTRIES
            || self.scans.by_value.capacity() > REUSE_MAX_ENTRIES
            || self.scans.recs.capacity() > REUSE_MAX_ENTRIES
            || self.results.oversized(REUSE_MAX_BYTES, REUSE_MAX_ENTRIES)
            || [
                &self.scratch.key,
                &self.scratch.value,
                &self.scratch.arg,
                &self.matched_var,
                &self.matched_var_name,
            ]
            .iter()
            .any(|b| b.capacity() > REUSE_MAX_BYTES)
            || self.matched_vars.oversized(REUSE_MAX_BYTES)
            || self.data.bytes() > REUSE_MAX_BYTES
        {
            return;
        }
        self.clear();
        let _ = REUSE.try_with(|p| {
            if let Ok(mut p) = p.try_borrow_mut()
                && p.len() < REUSE_MAX
            {
                p.push(self);
            }
        });
    }
}

/// Runtime changes made by `ctl` actions.
#[derive(Debug, Default, Clone)]
struct Ctls {
    removed_ids: Vec<(u32, u32)>,
    removed_tags: Vec<String>,
    removed_targets_by_id: Vec<((u32, u32), Arc<Target>)>,
    removed_targets_by_tag: Vec<(String, Arc<Target>)>,
}

/// One transaction.
pub struct Transaction {
    rs: Arc<RuleSet>,
    d: Data,
    tx: TxStore,
    other_colls: FastMap<String, IndexMap<String, Vec<u8>>>,
    matched_var: Vec<u8>,
    matched_var_name: Vec<u8>,
    matched_vars: MatchedVars,
    cache: TCache,
    ctls: Ctls,
    mode: EngineMode,
    request_body_access: bool,
    response_body_access: bool,
    force_body_variable: bool,
    request_body_limit: usize,
    interruption: Option<Interruption>,
    allow: Option<AllowScope>,
    allow_phase: u8,
    matches: Vec<MatchRecord>,
    highest_severity: u8,
    started: Instant,
    budget: Budget,
    rules_time: Duration,
    budget_exceeded: bool,
    limit_exceeded: bool,
    phases_done: u8,
    op_out: OpOutput,
    /// Buffers that macro expansions write into.
    scratch: Scratch,
    /// The rule set's owner id in the per-thread operator memo (0: not used).
    op_memo_owner: u64,
    refs_buf: Vec<VarRef>,
    union_refs: Vec<VarRef>,
    union_parts: Vec<u32>,
    union_locs: Vec<Loc>,
    set_parts: Vec<u32>,
    scans: Scans,
    /// What links said of values, kept per value (see [`crate::link_results`]).
    results: LinkResults,
    prefiltered: u32,
    /// Rules not visited because no value of theirs matches by [`Transaction::results`].
    results_skipped: u32,
    /// Extra error-log lines (body parser errors), for tooling.
    notes: Vec<String>,
    evaluated: u32,
    op_calls: u32,
    silent_matches: u32,
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("unique_id", &String::from_utf8_lossy(&self.d.unique_id))
            .field("mode", &self.mode)
            .field("interruption", &self.interruption)
            .field("matches", &self.matches.len())
            .finish()
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        Reuse {
            tx: std::mem::take(&mut self.tx),
            cache: std::mem::take(&mut self.cache),
            scans: std::mem::take(&mut self.scans),
            refs_buf: std::mem::take(&mut self.refs_buf),
            union_refs: std::mem::take(&mut self.union_refs),
            union_parts: std::mem::take(&mut self.union_parts),
            union_locs: std::mem::take(&mut self.union_locs),
            set_parts: std::mem::take(&mut self.set_parts),
            results: std::mem::take(&mut self.results),
            op_out: std::mem::take(&mut self.op_out),
            scratch: std::mem::take(&mut self.scratch),
            matched_var: std::mem::take(&mut self.matched_var),
            matched_var_name: std::mem::take(&mut self.matched_var_name),
            matched_vars: std::mem::take(&mut self.matched_vars),
            data: DataBufs::from_data(&mut self.d),
        }
        .give_back();
    }
}

impl Transaction {
    /// Start a transaction: copies the request line and headers and parses the query
    /// string and cookies.
    pub fn new(rs: Arc<RuleSet>, head: &RequestHead) -> Transaction {
        let words = rs.literals.words();
        let (target_slots, set_slots) = rs.union_slots;
        let s = &rs.settings;
        let mut reuse = Reuse::take();
        // The request's copy goes into buffers an earlier transaction on this thread left
        // (each emptied when it was given back); everything else starts fresh.
        let b = &mut reuse.data;
        let mut d = Data {
            method: refill(&mut b.method, head.method.as_bytes()),
            protocol: refill(&mut b.protocol, head.protocol.as_bytes()),
            uri_raw: refill(&mut b.uri_raw, &head.uri),
            request_line: std::mem::take(&mut b.request_line),
            uri: std::mem::take(&mut b.uri),
            filename: std::mem::take(&mut b.filename),
            basename: std::mem::take(&mut b.basename),
            query: std::mem::take(&mut b.query),
            headers: std::mem::take(&mut b.headers),
            cookies: std::mem::take(&mut b.cookies),
            args_get: std::mem::take(&mut b.args_get),
            server_name: std::mem::take(&mut b.server_name),
            remote_addr: std::mem::take(&mut b.remote_addr),
            remote_port: std::mem::take(&mut b.remote_port),
            unique_id: refill(&mut b.unique_id, head.request_id.as_bytes()),
            ..Data::default()
        };
        for part in [
            head.method.as_bytes(),
            b" ",
            &head.uri,
            b" ",
            head.protocol.as_bytes(),
        ] {
            d.request_line.extend_from_slice(part);
        }
        // REQUEST_URI has no scheme or host even when the request line had them.
        let mut uri = head.uri.as_slice();
        if let Some(p) = memchr::memmem::find(uri, b"://")
            && uri[..p].iter().all(u8::is_ascii_alphabetic)
        {
            let after = &uri[p + 3..];
            uri = match after.iter().position(|&c| c == b'/' || c == b'?') {
                Some(q) => &after[q..],
                None => b"/",
            };
        }
        d.uri.extend_from_slice(uri);
        let no_frag = match memchr::memchr(b'#', uri) {
            Some(p) => &uri[..p],
            None => uri,
        };
        let (path, query) = match memchr::memchr(b'?', no_frag) {
            Some(p) => (&no_frag[..p], &no_frag[p + 1..]),
            None => (no_frag, &b""[..]),
        };
        // REQUEST_FILENAME is the percent-decoded path, as servers hand it to ModSecurity.
        crate::transform::percent_decode_into(path, &mut d.filename);
        let base = match d.filename.iter().rposition(|&c| c == b'/' || c == b'\\') {
            Some(p) => &d.filename[p + 1..],
            None => &d.filename,
        };
        d.basename.extend_from_slice(base);
        d.query.extend_from_slice(query);
        d.urlencoded_error = body::parse_urlencoded_into(
            query,
            s.argument_separator,
            s.arguments_limit,
            &mut PairsFill::new(&mut d.args_get, &mut b.spare),
        );
        {
            let mut headers = PairsFill::new(&mut d.headers, &mut b.spare);
            for (n, v) in &head.headers {
                let (name, value) = headers.push();
                name.extend_from_slice(n);
                value.extend_from_slice(v);
            }
        }
        for (n, v) in &head.headers {
            if n.eq_ignore_ascii_case(b"cookie") {
                body::parse_cookies_into(v, &mut PairsFill::new(&mut d.cookies, &mut b.spare));
            }
            if n.eq_ignore_ascii_case(b"host") {
                let host = match v.iter().rposition(|&c| c == b':') {
                    Some(p) if !v.contains(&b']') || v[..p].ends_with(b"]") => &v[..p],
                    _ => v,
                };
                d.server_name.clear();
                d.server_name.extend_from_slice(host);
            }
        }
        {
            use std::io::Write as _;
            d.remote_ip = Some(head.client.ip());
            let _ = write!(d.remote_addr, "{}", head.client.ip());
            let _ = write!(d.remote_port, "{}", head.client.port());
            if let Some(srv) = head.server {
                let _ = write!(d.server_addr, "{}", srv.ip());
                let _ = write!(d.server_port, "{}", srv.port());
            }
        }
        // The first Content-Type header, as `header` finds it.
        let ct = d
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(b"content-type"))
            .map_or(&b""[..], |(_, v)| v.as_slice());
        let starts = |p: &[u8]| ct.len() >= p.len() && ct[..p.len()].eq_ignore_ascii_case(p);
        if starts(b"application/x-www-form-urlencoded") {
            d.processor = Some(BodyProcessor::Urlencoded);
        } else if starts(b"multipart/form-data") {
            d.processor = Some(BodyProcessor::Multipart);
        }
        let mode = s.engine;
        let layout = rs.tx_layout.clone();
        let nodes = rs.trie().len();
        let request_body_access = s.request_body_access;
        let response_body_access = s.response_body_access;
        let request_body_limit = s.request_body_limit;
        reuse.tx.reset(&layout);
        reuse.cache.nodes = nodes;
        let op_memo_owner = if rs.op_memo { rs.trie().memo_id } else { 0 };
        reuse.cache.memo_owner = if rs.chain_memo { rs.trie().memo_id } else { 0 };
        reuse
            .results
            .reset(rs.results_owner, rs.links, target_slots);
        Transaction {
            rs,
            d,
            tx: reuse.tx,
            other_colls: FastMap::default(),
            matched_var: reuse.matched_var,
            matched_var_name: reuse.matched_var_name,
            matched_vars: reuse.matched_vars,
            cache: reuse.cache,
            ctls: Ctls::default(),
            mode,
            request_body_access,
            response_body_access,
            force_body_variable: false,
            request_body_limit,
            interruption: None,
            allow: None,
            allow_phase: 0,
            matches: Vec::new(),
            highest_severity: 255,
            started: Instant::now(),
            budget: Budget::default(),
            rules_time: Duration::ZERO,
            budget_exceeded: false,
            limit_exceeded: false,
            phases_done: 0,
            op_out: reuse.op_out,
            scratch: reuse.scratch,
            op_memo_owner,
            refs_buf: reuse.refs_buf,
            union_refs: reuse.union_refs,
            union_parts: reuse.union_parts,
            union_locs: reuse.union_locs,
            set_parts: reuse.set_parts,
            scans: {
                let mut scans = Scans {
                    words,
                    ..reuse.scans
                };
                scans.by_target.resize(target_slots as usize, NO_UNION);
                scans.by_set.resize(set_slots as usize, NO_UNION);
                scans
            },
            results: reuse.results,
            prefiltered: 0,
            results_skipped: 0,
            notes: Vec::new(),
            evaluated: 0,
            op_calls: 0,
            silent_matches: 0,
        }
    }

    /// Override the engine mode for this transaction (before any phase runs).
    pub fn set_mode(&mut self, mode: EngineMode) {
        self.mode = mode;
    }

    /// The engine mode in effect (rules may change it with `ctl:ruleEngine`).
    pub fn mode(&self) -> EngineMode {
        self.mode
    }

    /// Set the work budget.
    pub fn set_budget(&mut self, budget: Budget) {
        self.budget = budget;
    }

    /// Remove rules for this transaction only (policy exclusions).
    pub fn remove_rules(&mut self, ranges: &[(u32, u32)], tags: &[String]) {
        self.ctls.removed_ids.extend_from_slice(ranges);
        self.ctls.removed_tags.extend(tags.iter().cloned());
    }

    /// Exclude a target from rules for this transaction only (policy exclusions).
    pub fn remove_target(&mut self, ranges: &[(u32, u32)], target: Arc<Target>) {
        for r in ranges {
            self.ctls.removed_targets_by_id.push((*r, target.clone()));
        }
    }

    /// Exclude a target from rules with a tag for this transaction only.
    pub fn remove_target_by_tag(&mut self, tag: &str, target: Arc<Target>) {
        self.ctls
            .removed_targets_by_tag
            .push((tag.to_string(), target));
    }

    /// Set a TX variable before evaluation (policy settings like paranoia level).
    pub fn set_tx(&mut self, name: &str, value: &str) {
        self.tx.set(&name.to_ascii_lowercase(), value.as_bytes());
    }

    /// Set a numeric TX variable before evaluation.
    pub fn set_tx_int(&mut self, name: &str, value: i64) {
        use std::io::Write as _;
        let v = self.tx.entry(&name.to_ascii_lowercase());
        v.clear();
        let _ = write!(v, "{value}");
    }

    /// A TX variable.
    pub fn tx(&self, name: &str) -> Option<&[u8]> {
        self.tx.get(&name.to_ascii_lowercase())
    }

    /// Phase 1: request headers.
    pub fn process_request_headers(&mut self) -> Option<&Interruption> {
        self.run_phase(1);
        self.interruption.as_ref()
    }

    /// The body size limit in effect (rules may change it).
    pub fn request_body_limit(&self) -> usize {
        self.request_body_limit
    }

    /// Whether the request body is inspected at all.
    pub fn wants_request_body(&self) -> bool {
        self.request_body_access && self.mode != EngineMode::Off && self.interruption.is_none()
    }

    /// Process the (buffered) request body, then run phase 2. `truncated` says the edge cut
    /// the body at the limit.
    pub fn process_request_body(&mut self, body: &[u8]) -> Option<&Interruption> {
        if self.phases_done < 1 {
            self.run_phase(1);
        }
        if self.interruption.is_none() && self.request_body_access && self.mode != EngineMode::Off {
            self.parse_body(body);
            self.data_changed();
        }
        self.run_phase(2);
        self.interruption.as_ref()
    }

    /// New request or response data: scalar values may have changed, and every target's
    /// prefilter union must be computed again.
    fn data_changed(&mut self) {
        for class in [16usize, 17] {
            self.cache.dense[class].clear();
        }
        self.cache.memo.retain(|&(k, ..), _| k < 16);
        self.scans
            .by_value
            .retain(|k, _| !matches!(k, ScanKey::Base(16 | 17, _)));
        self.scans.invalidate_targets();
        self.results.data_changed(|(class, _)| class >= 16);
    }

    /// [`Transaction::prefilter_passes`] from the rule's [`Hot`] copy when its union is
    /// known (the rule is only visited to compute one).
    fn prefilter_passes_hot(&mut self, rs: &RuleSet, h: &Hot, item: &Item) -> bool {
        if let Some(u) = union_in(&self.scans.by_set, h.set_slot) {
            let rec = &self.scans.recs[u as usize];
            let from = rec.bits as usize;
            return h.may_match(&rec.bytes, &self.scans.pool[from..from + self.scans.words]);
        }
        match item {
            Item::Rule(rule) => self.prefilter_passes(rs, rule),
            Item::Marker(_) => true,
        }
    }

    /// Whether the literal prefilter lets `rule` through: some value of some target, with the
    /// rule's transformations, contains one of its literals.
    fn prefilter_passes(&mut self, rs: &RuleSet, rule: &Rule) -> bool {
        let Some(req) = &rule.prefilter else {
            return true;
        };
        let all_steps = rule.actions.multi_match;
        // Rules with the same targets and transformations share one union.
        let u = match union_in(&self.scans.by_set, rule.set_slot) {
            Some(u) => u,
            None => {
                let steps = rs.trie().path(rule.tchain);
                let mut parts = std::mem::take(&mut self.set_parts);
                parts.clear();
                for (ti, t) in rule.targets.iter().enumerate() {
                    let Some(&slots) = rule.target_slots.get(ti) else {
                        self.set_parts = parts;
                        return true;
                    };
                    parts.push(self.target_union(rs, slots, t, rule.tchain, steps, all_steps));
                }
                let u = if let [one] = parts.as_slice() {
                    *one
                } else {
                    self.scans.union(&parts)
                };
                self.set_parts = parts;
                store_union(&mut self.scans.by_set, rule.set_slot, u);
                u
            }
        };
        self.scans.may_match(req, u)
    }

    /// The literals found in every value of `t` after the chain `steps` (and after each of
    /// its steps, for multiMatch), computed once per transaction and data change. A chain
    /// whose trigger bytes ([`Transform::triggers`]) no value contains changes nothing, so
    /// its union is that of the untransformed values.
    ///
    /// `slots`: the target's union slots ([`Rule::target_slots`]) for `chain` and for its
    /// untransformed values.
    fn target_union(
        &mut self,
        rs: &RuleSet,
        slots: (u32, u32),
        t: &Target,
        chain: u16,
        steps: &[(u16, Transform)],
        all_steps: bool,
    ) -> u32 {
        if let Some(u) = union_in(&self.scans.by_target, slots.0) {
            return u;
        }
        self.target_union_compute(rs, slots, t, chain, steps, all_steps)
    }

    fn target_union_compute(
        &mut self,
        rs: &RuleSet,
        (slot, base_slot): (u32, u32),
        t: &Target,
        chain: u16,
        steps: &[(u16, Transform)],
        all_steps: bool,
    ) -> u32 {
        let mut refs = std::mem::take(&mut self.union_refs);
        let mut parts = std::mem::take(&mut self.union_parts);
        refs.clear();
        parts.clear();
        // The untransformed values: their scans, and (as the chain-0 entry) their union.
        let mut listed = false;
        let base_union = match union_in(&self.scans.by_target, base_slot) {
            Some(u) => u,
            None => {
                self.expand_values(t, &mut refs);
                listed = true;
                for r in &refs {
                    let base = self.d.value(r);
                    let sk = r.cache_key().and_then(|k| scan_key(k, Loc::Base));
                    parts.push(self.scans.value(&rs.literals, sk, base));
                }
                let u = self.scans.union(&parts);
                store_union(&mut self.scans.by_target, base_slot, u);
                u
            }
        };
        let trig = rs.trie().triggers(chain).copied();
        let unchanged = |scans: &Scans, rec: u32| {
            trig.is_some_and(|tr| !bytes_intersect(&tr, &scans.recs[rec as usize].bytes))
        };
        let u = if chain == 0 || unchanged(&self.scans, base_union) {
            base_union
        } else {
            if !listed {
                self.expand_values(t, &mut refs);
            }
            let mut locs = std::mem::take(&mut self.union_locs);
            parts.clear();
            for r in &refs {
                let base = self.d.value(r);
                let ck = r.cache_key();
                let sk = ck.and_then(|k| scan_key(k, Loc::Base));
                let base_rec = self.scans.value(&rs.literals, sk, base);
                if unchanged(&self.scans, base_rec) {
                    parts.push(base_rec);
                } else if all_steps {
                    locs.clear();
                    locs.push(Loc::Base);
                    self.cache.run(base, ck, steps, Some(&mut locs));
                    for &l in &locs {
                        let hay = self.cache.get(base, l);
                        let sk = ck.and_then(|k| scan_key(k, l));
                        parts.push(self.scans.value(&rs.literals, sk, hay));
                    }
                } else {
                    let l = self.cache.run(base, ck, steps, None);
                    let hay = self.cache.get(base, l);
                    let sk = ck.and_then(|k| scan_key(k, l));
                    parts.push(self.scans.value(&rs.literals, sk, hay));
                }
            }
            self.union_locs = locs;
            self.scans.union(&parts)
        };
        store_union(&mut self.scans.by_target, slot, u);
        self.union_refs = refs;
        self.union_parts = parts;
        u
    }

    fn parse_body(&mut self, body: &[u8]) {
        let s = &self.rs.settings;
        let limit = self.request_body_limit;
        let body = if body.len() > limit {
            self.d.reqbody_error = true;
            self.d.reqbody_error_msg = b"Request body is larger than the configured limit".to_vec();
            &body[..limit]
        } else {
            body
        };
        self.d.body = body.to_vec();
        self.d.body_len = body.len();
        self.d.body_visible = self.force_body_variable;
        let sep = s.argument_separator;
        let arg_limit = s.arguments_limit;
        let depth = s.json_depth_limit;
        match self.d.processor {
            Some(BodyProcessor::Urlencoded) => {
                self.d.body_visible = true;
                let (args, bad) = body::parse_urlencoded(body, sep, arg_limit);
                self.d.args_post = args;
                self.d.urlencoded_error |= bad;
            }
            Some(BodyProcessor::Multipart) => {
                let ct = header(&self.d.headers, b"content-type").unwrap_or_default();
                let mut flags = body::MultipartFlags::default();
                match body::multipart_boundary(&ct, &mut flags) {
                    Some(b) => {
                        let mp = body::parse_multipart(body, &b, 100, arg_limit);
                        let mut mp = mp;
                        mp.flags.boundary_quoted |= flags.boundary_quoted;
                        mp.flags.boundary_whitespace |= flags.boundary_whitespace;
                        if let Some(e) = &mp.error {
                            self.d.reqbody_error = true;
                            self.d.reqbody_error_msg =
                                format!("Multipart parsing error: {e}").into_bytes();
                            self.notes.push(format!("Multipart parsing error: {e}"));
                        }
                        self.d.multipart_strict_error = mp.flags.strict_error(mp.error.is_some());
                        self.d.args_post = mp.args.clone();
                        self.d.multipart = mp;
                    }
                    None => {
                        self.d.reqbody_error = true;
                        self.d.multipart_strict_error = true;
                        self.d.reqbody_error_msg =
                            b"Multipart parsing error: invalid boundary in Content-Type".to_vec();
                        self.notes.push(
                            "Multipart parsing error: invalid boundary in Content-Type".into(),
                        );
                    }
                }
            }
            Some(BodyProcessor::Json) => match body::parse_json(body, depth, arg_limit) {
                Ok(args) => self.d.args_post = args,
                Err(e) => {
                    if !body.is_empty() {
                        self.d.reqbody_error = true;
                        self.d.reqbody_error_msg = e.clone().into_bytes();
                        self.notes.push(e);
                    }
                }
            },
            Some(BodyProcessor::Xml) => match body::parse_xml(body, depth) {
                Ok(doc) => self.d.xml = Some(doc),
                Err(e) => {
                    if !body.is_empty() {
                        self.d.reqbody_error = true;
                        self.d.reqbody_error_msg = e.clone().into_bytes();
                        self.notes.push(e);
                    }
                }
            },
            None => {}
        }
    }

    /// Phase 3: response headers.
    pub fn process_response_headers(
        &mut self,
        status: u16,
        protocol: &str,
        headers: &[(Vec<u8>, Vec<u8>)],
    ) -> Option<&Interruption> {
        self.process_response_header_pairs(
            status,
            protocol,
            headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())),
        )
    }

    /// [`Transaction::process_response_headers`] from borrowed (name, value) pairs, such as
    /// an HTTP library's header map, copied once.
    pub fn process_response_header_pairs<'h>(
        &mut self,
        status: u16,
        protocol: &str,
        headers: impl IntoIterator<Item = (&'h [u8], &'h [u8])>,
    ) -> Option<&Interruption> {
        use std::io::Write as _;
        self.d.resp_status.clear();
        let _ = write!(self.d.resp_status, "{status}");
        self.d.resp_protocol.clear();
        self.d.resp_protocol.extend_from_slice(protocol.as_bytes());
        self.d.resp_headers.clear();
        self.d
            .resp_headers
            .extend(headers.into_iter().map(|(n, v)| (n.to_vec(), v.to_vec())));
        self.d.resp_content_type =
            header(&self.d.resp_headers, b"content-type").unwrap_or_default();
        self.data_changed();
        self.run_phase(3);
        self.interruption.as_ref()
    }

    /// Whether the response body should be buffered and passed to
    /// [`Transaction::process_response_body`] (access on and a listed MIME type).
    pub fn wants_response_body(&self) -> bool {
        if !self.response_body_access || self.mode == EngineMode::Off || self.interruption.is_some()
        {
            return false;
        }
        let ct = String::from_utf8_lossy(&self.d.resp_content_type).to_ascii_lowercase();
        let mime = ct.split(';').next().unwrap_or("").trim();
        self.rs
            .settings
            .response_body_mime_types
            .iter()
            .any(|m| m == mime)
    }

    /// Phase 4: response body.
    pub fn process_response_body(&mut self, body: &[u8]) -> Option<&Interruption> {
        if self.wants_response_body() {
            let limit = self.rs.settings.response_body_limit;
            self.d.resp_body = body[..body.len().min(limit)].to_vec();
            self.data_changed();
        }
        self.run_phase(4);
        self.interruption.as_ref()
    }

    /// Phase 5: logging.
    pub fn process_logging(&mut self) {
        self.run_phase(5);
    }

    /// The disruptive decision, if any (only in `On` mode).
    pub fn interruption(&self) -> Option<&Interruption> {
        self.interruption.as_ref()
    }

    /// Rules with `nolog` that matched and decided nothing (not kept as records).
    pub fn silent_matches(&self) -> u32 {
        self.silent_matches
    }

    /// Rules that matched and log or disrupt, in order.
    pub fn matches(&self) -> &[MatchRecord] {
        &self.matches
    }

    /// Body-parser notes (error-log lines that are not rule matches).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Time spent evaluating rules so far.
    pub fn rules_time(&self) -> Duration {
        self.rules_time
    }

    /// Whether evaluation stopped early because the time budget ran out.
    pub fn budget_exceeded(&self) -> bool {
        self.budget_exceeded
    }

    /// Whether a regular expression gave up on its backtracking limit.
    pub fn regex_limit_exceeded(&self) -> bool {
        self.limit_exceeded
    }

    /// Operator executions so far (values inspected by rules).
    pub fn operator_calls(&self) -> u32 {
        self.op_calls
    }

    /// Rules evaluated so far.
    pub fn rules_evaluated(&self) -> u32 {
        self.evaluated
    }

    /// The TX collection in the order its variables were created (for tooling and tests).
    pub fn tx_collection(&self) -> Vec<(String, Vec<u8>)> {
        self.tx
            .ordered()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect()
    }

    /// Rules not visited so far because every value of theirs had a known result for their
    /// first link and none matched (see [`crate::link_results`]).
    pub fn rules_decided_by_results(&self) -> u32 {
        self.results_skipped
    }

    /// Rules the literal prefilter skipped so far (they could not have matched).
    pub fn rules_prefiltered(&self) -> u32 {
        self.prefiltered
    }

    /// Inbound anomaly score as CRS computed it (blocking score, else the total).
    pub fn anomaly_score(&self) -> i64 {
        for k in ["blocking_inbound_anomaly_score", "anomaly_score"] {
            if let Some(v) = self.tx.get(k) {
                let n = atoi(v);
                if n > 0 {
                    return n;
                }
            }
        }
        0
    }

    fn removed(&self, r: &Rule) -> bool {
        self.ctls
            .removed_ids
            .iter()
            .any(|&(a, b)| (a..=b).contains(&r.id))
            || self.ctls.removed_tags.iter().any(|t| r.has_tag(t))
    }

    fn run_phase(&mut self, phase: u8) {
        if phase <= self.phases_done {
            return;
        }
        // Phases run in order; an earlier skipped phase runs now.
        for p in (self.phases_done + 1)..phase {
            self.run_phase(p);
        }
        self.phases_done = phase;
        if self.mode == EngineMode::Off {
            return;
        }
        if self.interruption.is_some() && phase < 5 {
            return;
        }
        match self.allow {
            Some(AllowScope::All) if phase < 5 => return,
            Some(AllowScope::Request) if phase <= 2 => return,
            Some(AllowScope::Phase) if self.allow_phase == phase => return,
            _ => {}
        }
        if self.budget_exceeded {
            return;
        }
        let start = Instant::now();
        let rs = self.rs.clone();
        let items = rs.phase(phase);
        let hot = rs.hot(phase);
        debug_assert_eq!(items.len(), hot.len());
        let mut i = 0;
        let mut since_check = 0u32;
        while i < items.len() {
            // Decided on `hot` first: a rule the prefilter refuses is never visited.
            let h = &hot[i];
            if !h.is_rule {
                i += 1;
                continue;
            }
            if rs.prefilter_enabled && h.decided && !self.prefilter_passes_hot(&rs, h, &items[i]) {
                self.prefiltered += 1;
                i += 1;
                continue;
            }
            let Item::Rule(rule) = &items[i] else {
                i += 1;
                continue;
            };
            if self.removed(rule) {
                i += 1;
                continue;
            }
            if rule.pure && self.results.on() && !self.results_may_match(&rs, rule) {
                self.results_skipped += 1;
                LinkResults::count_skip();
                i += 1;
                continue;
            }
            // (A rule the hot copy did not decide has no rule-level prefilter.)
            self.evaluated += 1;
            self.matched_vars.clear();
            let matched = self.eval_chain(&rs, rule, rule);
            since_check += 1;
            if since_check >= 16 {
                since_check = 0;
                if self.rules_time + start.elapsed() > self.budget.time {
                    self.budget_exceeded = true;
                    break;
                }
            }
            if !matched {
                i += 1;
                continue;
            }
            self.on_full_match(rule, phase);
            if self.interruption.is_some() {
                break;
            }
            if let Some(scope) = self.allow {
                if scope == AllowScope::Phase {
                    self.allow_phase = phase;
                }
                break;
            }
            if let Some(name) = &rule.actions.skip_after {
                // Resolved at load; looked up by name for a rule the loader could not annotate.
                i = rule
                    .skip_after_index
                    .or_else(|| rs.skip_target(phase, name))
                    .unwrap_or(items.len())
                    .max(i + 1);
                continue;
            }
            if rule.actions.skip > 0 {
                let mut n = rule.actions.skip;
                i += 1;
                while i < items.len() && n > 0 {
                    if matches!(items[i], Item::Rule(_)) {
                        n -= 1;
                    }
                    i += 1;
                }
                continue;
            }
            i += 1;
        }
        self.results.flush();
        self.rules_time += start.elapsed();
    }

    /// Whether some value of `rule`'s targets may match its first link: false when, for
    /// every target, the literal prefilter's union (if computed) refuses it or every value's
    /// record has a known result and none matched.
    fn results_may_match(&mut self, rs: &RuleSet, rule: &Rule) -> bool {
        let literal = rule
            .prefilter
            .as_ref()
            .filter(|_| rs.prefilter_enabled && !rule.actions.multi_match);
        for (ti, (t, &(slot, base_slot))) in rule.targets.iter().zip(&rule.target_slots).enumerate()
        {
            // As `collect` filters targets.
            if let Some(req) = literal
                && let Some(u) = union_in(&self.scans.by_target, slot)
                && !self.scans.may_match(req, u)
            {
                continue;
            }
            let u = if self.excludes_from(rule, t.var) {
                // The values this rule inspects, this time.
                self.target_results(rule, Some(ti), t, None)
            } else {
                match self.results.target_union(base_slot) {
                    Some(u) => u,
                    None => self.target_results(rule, None, t, Some(base_slot)),
                }
            };
            if !self.results.refuses(u, rule.link_no) {
                return true;
            }
        }
        false
    }

    /// Whether some exclusion of this rule or of the transaction's `ctl`s names `var` (a
    /// target whose members the rule may not all inspect).
    fn excludes_from(&self, link: &Rule, var: Var) -> bool {
        link.exclusions.iter().any(|t| t.var == var)
            || self
                .ctls
                .removed_targets_by_id
                .iter()
                .any(|((a, b), t)| t.var == var && (*a..=*b).contains(&link.id))
            || self
                .ctls
                .removed_targets_by_tag
                .iter()
                .any(|(tag, t)| t.var == var && link.has_tag(tag))
    }

    /// The union of the records of the values of `t`: those `link` inspects (its target
    /// `ti`, with exclusions), or with `ti` `None` every value, kept in union slot `slot`.
    fn target_results(
        &mut self,
        link: &Rule,
        ti: Option<usize>,
        t: &Target,
        slot: Option<u32>,
    ) -> u32 {
        let mut refs = std::mem::take(&mut self.union_refs);
        let mut recs = std::mem::take(&mut self.union_parts);
        refs.clear();
        recs.clear();
        match ti {
            Some(ti) => self.expand_target(link, ti, t, &mut refs),
            None => self.expand_values(t, &mut refs),
        }
        for r in &refs {
            recs.push(match r.cache_key() {
                Some(k) => self.results.load(k, self.d.value(r)),
                None => UNKNOWN,
            });
        }
        let u = self.results.union(&recs);
        if let Some(slot) = slot {
            self.results.store_target(slot, u);
        }
        self.union_refs = refs;
        self.union_parts = recs;
        u
    }

    /// Evaluate a chain link and the rest of its chain; true when every link matched.
    fn eval_chain(&mut self, rs: &RuleSet, starter: &Rule, link: &Rule) -> bool {
        if !self.eval_link(rs, starter, link) {
            return false;
        }
        match &link.chained {
            Some(next) => self.eval_chain(rs, starter, next),
            None => true,
        }
    }

    fn on_full_match(&mut self, rule: &Rule, phase: u8) {
        let disruptive = matches!(
            rule.disruptive,
            Disruptive::Deny | Disruptive::Drop | Disruptive::Redirect(_)
        );
        if let Some(s) = rule.actions.severity {
            self.highest_severity = self.highest_severity.min(s);
        }
        if rule.log || disruptive {
            self.record_match(rule, phase, disruptive);
        } else {
            self.silent_matches += 1;
        }
        self.disrupt(rule);
    }

    fn record_match(&mut self, rule: &Rule, phase: u8, disruptive: bool) {
        let msg = rule
            .actions
            .msg
            .as_ref()
            .map(|t| lossy(&self.expand(t, Some(rule))))
            .unwrap_or_default();
        let data = rule
            .actions
            .logdata
            .as_ref()
            .map(|t| truncate(&lossy(&self.expand(t, Some(rule))), MATCH_DATA_LIMIT))
            .unwrap_or_default();
        self.matches.push(MatchRecord {
            rule_id: rule.id,
            phase,
            message: msg,
            data,
            matched_var: lossy(&self.matched_var_name),
            matched_value: truncate(&lossy(&self.matched_var), MATCH_DATA_LIMIT),
            severity: rule.actions.severity,
            tags: rule.actions.tags.clone(),
            logged: rule.log,
            disruptive,
            ver: rule.actions.ver.clone(),
            file: rule.file.to_string(),
            line: rule.line,
        });
    }

    fn disrupt(&mut self, rule: &Rule) {
        match &rule.disruptive {
            // allow is not disruptive to the client: it only stops inspection, in detection
            // mode too (as ModSecurity does).
            Disruptive::Allow(scope) => self.allow = Some(*scope),
            Disruptive::Deny | Disruptive::Drop | Disruptive::Redirect(_)
                if self.mode == EngineMode::On =>
            {
                let action = match &rule.disruptive {
                    Disruptive::Drop => InterruptAction::Drop,
                    Disruptive::Redirect(t) => InterruptAction::Redirect {
                        location: lossy(&self.expand(t, Some(rule))),
                    },
                    _ => InterruptAction::Deny,
                };
                self.interruption = Some(Interruption {
                    rule_id: rule.id,
                    action,
                    status: rule.status,
                });
            }
            _ => {}
        }
    }

    /// Evaluate one link: every target value through the transformations and the operator.
    /// Effects run for each matching value, as in ModSecurity.
    fn eval_link(&mut self, rs: &RuleSet, starter: &Rule, link: &Rule) -> bool {
        if link.unconditional {
            self.run_effects(starter, link);
            return true;
        }
        let steps = rs.trie().path(link.tchain);
        // An argument with macros is expanded into a kept buffer (given back below).
        let mut expanded = std::mem::take(&mut self.scratch.arg);
        let arg: &[u8] = match (&link.op.literal, link.op.template()) {
            (Some(l), _) => l,
            (None, Some(t)) => {
                expanded.clear();
                self.expand_into(t, Some(starter), &mut expanded);
                &expanded
            }
            (None, None) => &[],
        };
        if rs.tx_shortcut
            && let [t] = link.targets.as_slice()
            && t.var == Var::Tx
            && steps.is_empty()
            && !link.actions.multi_match
            && let (Key::Name(name), Some(id)) = (&t.key, t.tx_slot)
        {
            let hit = self.eval_tx_scalar(starter, link, name, id, t.count, arg);
            self.scratch.arg = expanded;
            return hit;
        }
        let mut refs = std::mem::take(&mut self.refs_buf);
        refs.clear();
        let filter = link
            .prefilter
            .as_ref()
            .filter(|_| rs.prefilter_enabled && !link.actions.multi_match);
        self.collect(link, filter, &mut refs);
        let capture = link.actions.capture;
        let mut matched_any = false;
        let mut locs = std::mem::take(&mut self.union_locs);
        // A link whose results are recorded per value does not also use the operator memo:
        // a value it knows is not looked at again, and a new one would only fill a slot.
        let op_memo = if link.pure && self.results.on() {
            0
        } else {
            self.op_memo_owner
        };
        for r in &refs {
            let key = if r.var.is_stable() {
                r.cache_key()
            } else {
                None
            };
            let base = value_of(&self.d, &self.tx, link, r);
            let rec = match key {
                Some(k) if link.pure && self.results.on() => self.results.load(k, base),
                _ => UNKNOWN,
            };
            if rec != UNKNOWN && self.results.get(rec, link.link_no) == Some(false) {
                continue;
            }
            // On a hit the value is copied to MATCHED_VAR at once: captures may overwrite the
            // TX variable it was read from.
            let hit: bool;
            {
                self.op_calls += 1;
                self.op_out.limit_exceeded = false;
                let remote = self.d.remote_ip;
                if link.actions.multi_match {
                    locs.clear();
                    locs.push(Loc::Base);
                    self.cache.run(base, key, steps, Some(&mut locs));
                    let mut found = false;
                    let mut prev: Option<&[u8]> = None;
                    for &l in &locs {
                        let v = self.cache.get(base, l);
                        if prev == Some(v) {
                            continue;
                        }
                        prev = Some(v);
                        // A step value that some other rule's prefilter already scanned
                        // (the untransformed value, nearly always) is skipped when it holds
                        // none of the operator's literals; other step values are not scanned
                        // for this (scanning each costs what the operator does).
                        if let (Some(req), Some(k)) = (&link.prefilter, key)
                            && rs.prefilter_enabled
                            && let Some(r) = self.scans.scanned(scan_key(k, l))
                            && !self.scans.may_match(req, r)
                        {
                            continue;
                        }
                        let m = exec_op(op_memo, link, v, arg, capture, remote, &mut self.op_out)
                            != link.op.negated;
                        if m {
                            self.matched_var.clear();
                            self.matched_var.extend_from_slice(v);
                            found = true;
                            break;
                        }
                    }
                    hit = found;
                } else {
                    let l = self.cache.run(base, key, steps, None);
                    let v = self.cache.get(base, l);
                    // The literal prefilter for this one value (its scan is shared by every
                    // rule that looks at the same transformed value).
                    let skip = match (&link.prefilter, key) {
                        (Some(req), Some(k)) if rs.prefilter_enabled => {
                            let r = self.scans.value(&rs.literals, scan_key(k, l), v);
                            !self.scans.may_match(req, r)
                        }
                        _ => false,
                    };
                    hit = !skip
                        && exec_op(op_memo, link, v, arg, capture, remote, &mut self.op_out)
                            != link.op.negated;
                    if hit {
                        self.matched_var.clear();
                        self.matched_var.extend_from_slice(v);
                    }
                }
                if rec != UNKNOWN && !self.op_out.limit_exceeded {
                    self.results.set(rec, base, link.link_no, hit);
                }
                self.after_op(link, hit);
            }
            if !hit {
                continue;
            }
            if !matched_any {
                // MATCHED_VARS becomes this link's matches (the values it inspects were
                // collected before the loop).
                self.matched_vars.clear();
                matched_any = true;
            }
            display_name(&self.d, link, r, &mut self.matched_var_name);
            self.matched_vars
                .push(&self.matched_var_name, &self.matched_var);
            self.run_effects(starter, link);
        }
        self.refs_buf = refs;
        self.union_locs = locs;
        self.scratch.arg = expanded;
        matched_any
    }

    /// [`Transaction::eval_link`] for a link whose one target is a TX variable named
    /// literally, untransformed (`TX:DETECTION_PARANOIA_LEVEL "@lt 2"`, the score checks), or
    /// its count (`&TX:inbound_anomaly_score_threshold "@eq 0"`, the defaults of
    /// REQUEST-901): CRS's paranoia-level gates alone are about 90 of the rules a request
    /// meets at PL1, and the defaults another 20. The same steps as the general path for its
    /// one value, without listing values first (and, for a count, without formatting it).
    fn eval_tx_scalar(
        &mut self,
        starter: &Rule,
        link: &Rule,
        name: &str,
        id: u32,
        count: bool,
        arg: &[u8],
    ) -> bool {
        let excluded =
            self.excludes_from(link, Var::Tx) && self.excluded(link, Var::Tx, name.as_bytes());
        let v = if count {
            // A literal name selects at most one variable.
            if !excluded && self.tx.get_id(id).is_some() {
                &b"1"[..]
            } else {
                &b"0"[..]
            }
        } else {
            if excluded {
                return false;
            }
            let Some(v) = self.tx.get_id(id) else {
                return false;
            };
            v
        };
        self.op_calls += 1;
        self.op_out.limit_exceeded = false;
        let hit = link.op.exec(
            v,
            arg,
            link.actions.capture,
            self.d.remote_ip,
            &mut self.op_out,
        ) != link.op.negated;
        if hit {
            self.matched_var.clear();
            self.matched_var.extend_from_slice(v);
        }
        self.after_op(link, hit);
        if !hit {
            return false;
        }
        self.matched_vars.clear();
        self.matched_var_name.clear();
        self.matched_var_name.extend_from_slice(b"TX:");
        self.matched_var_name.extend_from_slice(name.as_bytes());
        self.matched_vars
            .push(&self.matched_var_name, &self.matched_var);
        self.run_effects(starter, link);
        true
    }

    /// After an operator ran (its output in `op_out`): the backtracking limit's flag, the
    /// capture groups of a match, and the output buffers emptied for the next call.
    fn after_op(&mut self, link: &Rule, hit: bool) {
        if self.op_out.limit_exceeded {
            self.limit_exceeded = true;
            self.tx.set("msc_pcre_limits_exceeded", b"1");
        }
        let caps = &mut self.op_out.captures;
        if hit && link.actions.capture && !link.op.negated && !caps.is_empty() {
            // A match with groups replaces TX:0-9: groups that did not take part are removed.
            for i in 0..CAPTURE_NAMES.len() {
                self.tx.set_capture(i, caps.get(i));
            }
        }
        caps.clear();
    }

    fn run_effects(&mut self, starter: &Rule, link: &Rule) {
        for e in &link.actions.effects {
            match e {
                Effect::SetVar(sv) => {
                    // Literal keys (almost all of CRS's) need no expansion; the others are
                    // expanded into a kept buffer (given back below).
                    let mut key_buf = std::mem::take(&mut self.scratch.key);
                    let key: &str = match &sv.key_literal {
                        Some(k) => k,
                        None => {
                            key_buf.clear();
                            self.expand_into(&sv.key, Some(starter), &mut key_buf);
                            key_buf.make_ascii_lowercase();
                            if std::str::from_utf8(&key_buf).is_err() {
                                let l = lossy(&key_buf);
                                key_buf.clear();
                                key_buf.extend_from_slice(l.as_bytes());
                            }
                            std::str::from_utf8(&key_buf).unwrap_or_default()
                        }
                    };
                    self.set_var(sv, starter, key);
                    self.scratch.key = key_buf;
                }
                Effect::Ctl(c) => self.apply_ctl(c),
                Effect::InitCol(coll, _) => {
                    self.other_colls.entry(coll.clone()).or_default();
                }
                Effect::ExpireVar(..) => {}
            }
        }
    }

    /// One `setvar` with its key resolved.
    fn set_var(&mut self, sv: &SetVar, starter: &Rule, key: &str) {
        let coll = sv.collection.as_str();
        // The common TX cases write into the existing value's buffer.
        if coll == "TX" && !matches!(sv.op, SetOp::Delete) {
            let n = match &sv.op {
                SetOp::Add(t) | SetOp::Sub(t) => {
                    let current = match sv.slot {
                        Some(id) => self.tx.get_id(id),
                        None => self.tx.get(key),
                    }
                    .map(atoi)
                    .unwrap_or(0);
                    let delta = self.expand_int(t, starter);
                    Some(if matches!(sv.op, SetOp::Add(_)) {
                        current.saturating_add(delta)
                    } else {
                        current.saturating_sub(delta)
                    })
                }
                _ => None,
            };
            let literal = match &sv.op {
                SetOp::Set(t) => t.as_literal_bytes(),
                _ => None,
            };
            // A value with macros is expanded first (it may read the variable it replaces),
            // into a kept buffer.
            let mut expanded = std::mem::take(&mut self.scratch.value);
            expanded.clear();
            if let (SetOp::Set(t), None, None) = (&sv.op, n, literal) {
                self.expand_into(t, Some(starter), &mut expanded);
            }
            let slot = match sv.slot.and_then(|id| self.tx.slot_mut(id)) {
                Some(slot) => slot,
                None => self.tx.entry(key),
            };
            slot.clear();
            if let Some(n) = n {
                use std::io::Write as _;
                let _ = write!(slot, "{n}");
            } else if let Some(l) = literal {
                slot.extend_from_slice(l);
            } else {
                slot.extend_from_slice(&expanded);
            }
            self.scratch.value = expanded;
            return;
        }
        let new: Option<Vec<u8>> = match &sv.op {
            SetOp::Set(t) => Some(self.expand(t, Some(starter))),
            SetOp::Add(t) | SetOp::Sub(t) => {
                let current = self.coll_get(coll, key).map(atoi).unwrap_or(0);
                let delta = self.expand_int(t, starter);
                let n = if matches!(sv.op, SetOp::Add(_)) {
                    current.saturating_add(delta)
                } else {
                    current.saturating_sub(delta)
                };
                Some(n.to_string().into_bytes())
            }
            SetOp::Delete => None,
        };
        if coll == "TX" {
            match new {
                Some(v) => self.tx.set(key, &v),
                None => self.tx.remove(key),
            }
        } else {
            self.coll_set(coll, key.to_string(), new);
        }
    }

    fn coll_get(&self, coll: &str, key: &str) -> Option<&[u8]> {
        if coll == "TX" {
            self.tx.get(key)
        } else {
            self.other_colls
                .get(coll)
                .and_then(|c| c.get(key))
                .map(Vec::as_slice)
        }
    }

    fn coll_set(&mut self, coll: &str, key: String, v: Option<Vec<u8>>) {
        if coll == "TX" {
            match v {
                Some(v) => self.tx.set(&key, &v),
                None => self.tx.remove(&key),
            }
            return;
        }
        // Non-TX collections live for this transaction only; see docs/waf.md.
        let c = self.other_colls.entry(coll.to_string()).or_default();
        match v {
            Some(v) => {
                c.insert(key, v);
            }
            None => {
                c.shift_remove(&key);
            }
        }
    }

    fn apply_ctl(&mut self, c: &Ctl) {
        match c {
            Ctl::RuleEngine(m) => {
                // A policy in detection mode never turns blocking on from a rule.
                if !(self.mode == EngineMode::DetectionOnly && *m == EngineMode::On) {
                    self.mode = *m;
                }
            }
            Ctl::RuleRemoveById(r) => self.ctls.removed_ids.extend_from_slice(r),
            Ctl::RuleRemoveByTag(t) => self.ctls.removed_tags.push(t.clone()),
            Ctl::RuleRemoveTargetById(r, t) => {
                for x in r {
                    self.ctls.removed_targets_by_id.push((*x, t.clone()));
                }
            }
            Ctl::RuleRemoveTargetByTag(tag, t) => {
                self.ctls
                    .removed_targets_by_tag
                    .push((tag.clone(), t.clone()));
            }
            Ctl::RequestBodyProcessor(p) => self.d.processor = Some(*p),
            Ctl::ForceRequestBodyVariable(b) => self.force_body_variable = *b,
            Ctl::RequestBodyAccess(b) => self.request_body_access = *b,
            Ctl::ResponseBodyAccess(b) => self.response_body_access = *b,
            Ctl::RequestBodyLimit(n) => self.request_body_limit = *n,
            Ctl::Ignored => {}
        }
    }

    /// Whether the member `name` of `var` is excluded for this rule.
    fn excluded(&self, link: &Rule, var: Var, name: &[u8]) -> bool {
        let hit = |t: &Target| t.var == var && t.key.selects(name);
        if link.exclusions.iter().any(hit) {
            return true;
        }
        if self
            .ctls
            .removed_targets_by_id
            .iter()
            .any(|((a, b), t)| (*a..=*b).contains(&link.id) && hit(t))
        {
            return true;
        }
        self.ctls
            .removed_targets_by_tag
            .iter()
            .any(|(tag, t)| link.has_tag(tag) && hit(t))
    }

    /// The values `link` inspects, target by target. With `filter` (the link's literal
    /// prefilter), a request-data target whose union for the link's transformations is known
    /// (it was computed to decide this or another rule) and holds none of the literals is
    /// not listed: none of its values could match.
    fn collect(&self, link: &Rule, filter: Option<&Required>, out: &mut Vec<VarRef>) {
        for (ti, t) in link.targets.iter().enumerate() {
            if let (Some(req), Some(&(slot, _))) = (filter, link.target_slots.get(ti))
                && !t.count
                && t.var.is_scanned()
                && let Some(u) = union_in(&self.scans.by_target, slot)
                && !self.scans.may_match(req, u)
            {
                continue;
            }
            let before = out.len();
            self.expand_target(link, ti, t, out);
            if t.count {
                let n = out.len() - before;
                out.truncate(before);
                out.push(VarRef {
                    src: Src::Owned(n.to_string().into_bytes()),
                    var: t.var,
                    name: match &t.key {
                        Key::Name(k) => k.as_bytes().to_vec(),
                        _ => Vec::new(),
                    },
                });
            }
        }
    }

    fn push_pairs(
        &self,
        link: &Rule,
        t: &Target,
        var: Var,
        store: Store,
        names: bool,
        out: &mut Vec<VarRef>,
    ) {
        let no_exclusions = !self.excludes_from(link, var);
        let pairs = self.d.pairs(store);
        out.reserve(pairs.len());
        for (i, (n, _)) in pairs.iter().enumerate() {
            if !t.key.selects(n) || (!no_exclusions && self.excluded(link, var, n)) {
                continue;
            }
            out.push(VarRef {
                src: Src::Pair(store, i as u32, names),
                var,
                name: Vec::new(),
            });
        }
    }

    /// Every value of a scanned target ([`Var::is_scanned`]), ignoring exclusions (the
    /// prefilter's union over them is a superset of what any rule with the target sees).
    fn expand_values(&self, t: &Target, out: &mut Vec<VarRef>) {
        let v = t.var;
        if let Some(stores) = pair_stores(v) {
            for &(store, names) in stores {
                for (i, (n, _)) in self.d.pairs(store).iter().enumerate() {
                    if t.key.selects(n) {
                        out.push(VarRef {
                            src: Src::Pair(store, i as u32, names),
                            var: v,
                            name: Vec::new(),
                        });
                    }
                }
            }
            return;
        }
        match v {
            Var::Xml => {
                let Some(x) = &self.d.xml else { return };
                let xp = t.xpath.as_deref().unwrap_or("/*");
                if xp.contains('@') {
                    for i in 0..x.attributes.len() {
                        out.push(VarRef {
                            src: Src::Xml(i as u32 + 1),
                            var: v,
                            name: Vec::new(),
                        });
                    }
                } else {
                    out.push(VarRef {
                        src: Src::Xml(0),
                        var: v,
                        name: Vec::new(),
                    });
                }
            }
            _ => {
                if self.d.scalar(v).is_some() {
                    out.push(VarRef {
                        src: Src::Scalar(v),
                        var: v,
                        name: Vec::new(),
                    });
                }
            }
        }
    }

    fn expand_target(&self, link: &Rule, ti: usize, t: &Target, out: &mut Vec<VarRef>) {
        let v = t.var;
        if let Some(stores) = pair_stores(v) {
            for &(store, names) in stores {
                self.push_pairs(link, t, v, store, names, out);
            }
            return;
        }
        match v {
            Var::FilesTmpNames | Var::FilesTmpContent => {}
            Var::Xml => {
                let Some(x) = &self.d.xml else { return };
                let xp = t.xpath.as_deref().unwrap_or("/*");
                if xp.contains('@') {
                    for i in 0..x.attributes.len() {
                        out.push(VarRef {
                            src: Src::Xml(i as u32 + 1),
                            var: v,
                            name: xp.as_bytes().to_vec(),
                        });
                    }
                } else {
                    out.push(VarRef {
                        src: Src::Xml(0),
                        var: v,
                        name: xp.as_bytes().to_vec(),
                    });
                }
            }
            Var::Tx | Var::Ip | Var::Global | Var::Session | Var::User | Var::Resource => {
                let no_exclusions = !self.excludes_from(link, v);
                // `selected`: the key is known to select `k` already.
                let mut push = |k: &str, val: &[u8], selected: bool| {
                    if !(selected || t.key.selects(k.as_bytes()))
                        || (!no_exclusions && self.excluded(link, v, k.as_bytes()))
                    {
                        return;
                    }
                    out.push(VarRef {
                        src: Src::Owned(val.to_vec()),
                        var: v,
                        name: k.as_bytes().to_vec(),
                    });
                };
                if v == Var::Tx {
                    // A literal key is a slot (or hash) lookup, not a scan, and its value is
                    // read when inspected (no copy).
                    if let Key::Name(k) = &t.key {
                        let present = match t.tx_slot {
                            Some(id) => self.tx.get_id(id).is_some(),
                            None => self.tx.contains(k),
                        };
                        if present && (no_exclusions || !self.excluded(link, v, k.as_bytes())) {
                            out.push(VarRef {
                                src: Src::TxTarget(ti as u16),
                                var: v,
                                name: Vec::new(),
                            });
                        }
                    } else {
                        // Only the selected variables are put in creation order (a regex key
                        // selects a few of the hundred and more).
                        let slots = t.tx_slots.as_deref();
                        for (k, val) in self.tx.select_in(slots, |k| t.key.selects(k.as_bytes())) {
                            push(k, val, true);
                        }
                    }
                } else if let Some(c) = self.other_colls.get(v.name()) {
                    for (k, val) in c {
                        push(k, val, false);
                    }
                }
            }
            Var::Env | Var::Geo | Var::Rule => {}
            Var::MatchedVars | Var::MatchedVarsNames => {
                for (n, val) in self.matched_vars.iter() {
                    if !t.key.selects(n) {
                        continue;
                    }
                    out.push(VarRef {
                        src: Src::Owned(if v == Var::MatchedVars {
                            val.clone()
                        } else {
                            n.clone()
                        }),
                        var: v,
                        name: n.clone(),
                    });
                }
            }
            _ => {
                if self.excludes_from(link, v) && self.excluded(link, v, b"") {
                    return;
                }
                if let Some(val) = self.scalar_owned(v) {
                    out.push(VarRef {
                        src: Src::Owned(val),
                        var: v,
                        name: Vec::new(),
                    });
                } else if self.d.scalar(v).is_some() {
                    out.push(VarRef {
                        src: Src::Scalar(v),
                        var: v,
                        name: Vec::new(),
                    });
                }
            }
        }
    }

    /// Computed scalars (numbers, flags, volatile values).
    fn scalar_owned(&self, v: Var) -> Option<Vec<u8>> {
        let flag = |b: bool| Some(if b { b"1".to_vec() } else { b"0".to_vec() });
        let f = &self.d.multipart.flags;
        match v {
            Var::RequestBodyLength => Some(self.d.body_len.to_string().into_bytes()),
            Var::ArgsCombinedSize => Some(
                self.d
                    .args_get
                    .iter()
                    .chain(&self.d.args_post)
                    .map(|(n, v)| n.len() + v.len())
                    .sum::<usize>()
                    .to_string()
                    .into_bytes(),
            ),
            Var::FilesCombinedSize => Some(
                self.d
                    .multipart
                    .files_combined_size
                    .to_string()
                    .into_bytes(),
            ),
            Var::FullRequest => {
                let mut s = self.d.request_line.clone();
                s.extend_from_slice(b"\r\n");
                for (n, v) in &self.d.headers {
                    s.extend_from_slice(n);
                    s.extend_from_slice(b": ");
                    s.extend_from_slice(v);
                    s.extend_from_slice(b"\r\n");
                }
                s.extend_from_slice(b"\r\n");
                s.extend_from_slice(&self.d.body);
                Some(s)
            }
            Var::FullRequestLength => Some(
                (self.d.request_line.len()
                    + self
                        .d
                        .headers
                        .iter()
                        .map(|(n, v)| n.len() + v.len() + 4)
                        .sum::<usize>()
                    + 4
                    + self.d.body.len())
                .to_string()
                .into_bytes(),
            ),
            Var::ReqbodyError => flag(self.d.reqbody_error),
            Var::ReqbodyProcessorError => flag(self.d.reqbody_error),
            Var::ReqbodyProcessor => Some(
                self.d
                    .processor
                    .map_or(Vec::new(), |p| p.name().as_bytes().to_vec()),
            ),
            Var::UrlencodedError => flag(self.d.urlencoded_error),
            Var::InboundDataError | Var::OutboundDataError => flag(false),
            Var::MultipartStrictError => flag(self.d.multipart_strict_error),
            Var::MultipartUnmatchedBoundary => flag(f.unmatched_boundary),
            Var::MultipartBoundaryQuoted => flag(f.boundary_quoted),
            Var::MultipartBoundaryWhitespace => flag(f.boundary_whitespace),
            Var::MultipartDataBefore => flag(f.data_before),
            Var::MultipartDataAfter => flag(f.data_after),
            Var::MultipartHeaderFolding => flag(f.header_folding),
            Var::MultipartLfLine => flag(f.lf_line),
            Var::MultipartCrlfLfLines => flag(f.crlf_lf_lines),
            Var::MultipartMissingSemicolon => flag(f.missing_semicolon),
            Var::MultipartInvalidQuoting => flag(f.invalid_quoting),
            Var::MultipartInvalidPart => flag(f.invalid_part),
            Var::MultipartInvalidHeaderFolding => flag(f.invalid_header_folding),
            Var::MultipartFileLimitExceeded => flag(f.file_limit_exceeded),
            Var::MatchedVar => Some(self.matched_var.clone()),
            Var::MatchedVarName => Some(self.matched_var_name.clone()),
            Var::Duration => Some(
                (self.started.elapsed().as_micros() as u64)
                    .to_string()
                    .into_bytes(),
            ),
            Var::TimeEpoch => Some(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
                    .to_string()
                    .into_bytes(),
            ),
            Var::HighestSeverity => Some(self.highest_severity.to_string().into_bytes()),
            Var::ResponseContentLength => header(&self.d.resp_headers, b"content-length"),
            Var::StatusLine => {
                Some([&self.d.resp_protocol[..], b" ", &self.d.resp_status[..]].concat())
            }
            _ => None,
        }
    }

    /// A template as an integer, without building the text when it is one reference.
    fn expand_int(&self, t: &Template, rule: &Rule) -> i64 {
        if let [crate::template::Part::Ref { var, key: Some(k) }] = t.parts()
            && var == "TX"
        {
            return self.tx.get(k.as_str()).map_or(0, atoi);
        }
        if let Some(l) = t.as_literal() {
            return atoi(l.as_bytes());
        }
        atoi(&self.expand(t, Some(rule)))
    }

    /// Expand a macro template against the current state.
    fn expand(&self, t: &Template, rule: Option<&Rule>) -> Vec<u8> {
        t.expand(|var, key, out| self.resolve(var, key, rule, out))
    }

    /// [`Transaction::expand`] appended to `out`.
    fn expand_into(&self, t: &Template, rule: Option<&Rule>, out: &mut Vec<u8>) {
        t.expand_into(out, |var, key, out| self.resolve(var, key, rule, out));
    }

    fn resolve(&self, var: &str, key: Option<&str>, rule: Option<&Rule>, out: &mut Vec<u8>) {
        match var {
            "TX" => {
                if let Some(v) = key.and_then(|k| self.tx.get(k)) {
                    out.extend_from_slice(v);
                }
                return;
            }
            "RULE" => {
                if let Some(r) = rule {
                    match key.unwrap_or("") {
                        "id" => out.extend_from_slice(r.id.to_string().as_bytes()),
                        "msg" => {
                            if let Some(m) = r.actions.msg.as_ref().and_then(|m| m.as_literal()) {
                                out.extend_from_slice(m.as_bytes());
                            }
                        }
                        "severity" => {
                            if let Some(s) = r.actions.severity {
                                out.extend_from_slice(s.to_string().as_bytes());
                            }
                        }
                        "ver" => {
                            if let Some(v) = &r.actions.ver {
                                out.extend_from_slice(v.as_bytes());
                            }
                        }
                        "phase" => out.extend_from_slice(r.phase.to_string().as_bytes()),
                        _ => {}
                    }
                }
                return;
            }
            "IP" | "GLOBAL" | "SESSION" | "USER" | "RESOURCE" => {
                if let Some(v) = key.and_then(|k| self.coll_get(var, k)) {
                    out.extend_from_slice(v);
                }
                return;
            }
            _ => {}
        }
        let Some(v) = Var::from_name(var) else {
            return;
        };
        if v.is_collection() {
            let k = key.unwrap_or("");
            let store = match v {
                Var::RequestHeaders => Some((Store::Headers, false)),
                Var::RequestCookies => Some((Store::Cookies, false)),
                Var::ArgsGet => Some((Store::ArgsGet, false)),
                Var::ArgsPost => Some((Store::ArgsPost, false)),
                Var::ResponseHeaders => Some((Store::RespHeaders, false)),
                Var::Files => Some((Store::Files, false)),
                _ => None,
            };
            if let Some((s, _)) = store {
                if let Some((_, val)) = self
                    .d
                    .pairs(s)
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(k.as_bytes()))
                {
                    out.extend_from_slice(val);
                }
            } else if v == Var::Args
                && let Some((_, val)) = self
                    .d
                    .args_get
                    .iter()
                    .chain(&self.d.args_post)
                    .find(|(n, _)| n.eq_ignore_ascii_case(k.as_bytes()))
            {
                out.extend_from_slice(val);
            }
            return;
        }
        if let Some(val) = self.scalar_owned(v) {
            out.extend_from_slice(&val);
        } else if let Some(val) = self.d.scalar(v) {
            out.extend_from_slice(val);
        }
    }
}

fn display_name(d: &Data, link: &Rule, r: &VarRef, s: &mut Vec<u8>) {
    s.clear();
    s.extend_from_slice(r.var.name().as_bytes());
    let name: &[u8] = match &r.src {
        Src::Pair(st, i, _) => d.pairs(*st).get(*i as usize).map_or(&[][..], |(n, _)| n),
        Src::TxTarget(i) => match link.targets.get(usize::from(*i)).map(|t| &t.key) {
            Some(Key::Name(k)) => k.as_bytes(),
            _ => &[],
        },
        _ => &r.name,
    };
    if !name.is_empty() {
        s.push(b':');
        s.extend_from_slice(name);
    }
}

fn header(headers: &[(Vec<u8>, Vec<u8>)], name: &[u8]) -> Option<Vec<u8>> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// [`lossy`] that reuses the buffer when it is valid UTF-8.
fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// The stores a collection of (name, value) pairs reads, and whether it yields the names.
fn pair_stores(v: Var) -> Option<&'static [(Store, bool)]> {
    Some(match v {
        Var::Args => &[(Store::ArgsGet, false), (Store::ArgsPost, false)],
        Var::ArgsGet => &[(Store::ArgsGet, false)],
        Var::ArgsPost => &[(Store::ArgsPost, false)],
        Var::ArgsNames => &[(Store::ArgsGet, true), (Store::ArgsPost, true)],
        Var::ArgsGetNames => &[(Store::ArgsGet, true)],
        Var::ArgsPostNames => &[(Store::ArgsPost, true)],
        Var::RequestHeaders => &[(Store::Headers, false)],
        Var::RequestHeadersNames => &[(Store::Headers, true)],
        Var::RequestCookies => &[(Store::Cookies, false)],
        Var::RequestCookiesNames => &[(Store::Cookies, true)],
        Var::ResponseHeaders => &[(Store::RespHeaders, false)],
        Var::ResponseHeadersNames => &[(Store::RespHeaders, true)],
        Var::Files => &[(Store::Files, false)],
        Var::FilesNames => &[(Store::Files, true)],
        Var::FilesSizes => &[(Store::FileSizes, false)],
        Var::MultipartPartHeaders => &[(Store::PartHeaders, false)],
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ruleset::Loader;
    use std::path::Path;

    fn rs(text: &str) -> Arc<RuleSet> {
        let mut l = Loader::new();
        l.add_text(text, "t.conf", Path::new(".")).expect("loads");
        Arc::new(l.finish().expect("finishes"))
    }

    fn head(uri: &str, headers: &[(&str, &str)]) -> RequestHead {
        RequestHead {
            method: "GET".into(),
            uri: uri.as_bytes().to_vec(),
            protocol: "HTTP/1.1".into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect(),
            client: "192.0.2.1:4000".parse().expect("addr"),
            server: None,
            request_id: "req-1".into(),
        }
    }

    #[test]
    fn args_transformations_and_setvar() {
        let rs = rs(r#"
SecRuleEngine On
SecAction "id:1,phase:1,pass,nolog,setvar:tx.score=0"
SecRule ARGS "@rx <script" "id:2,phase:1,deny,status:406,t:none,t:urlDecodeUni,t:lowercase,setvar:tx.score=+5,msg:'XSS in %{MATCHED_VAR_NAME}'"
"#);
        let mut t = Transaction::new(rs, &head("/a?q=%3CSCRIPT%3E&x=1", &[]));
        let i = t.process_request_headers().cloned().expect("blocked");
        assert_eq!(i.status, 406);
        assert_eq!(i.rule_id, 2);
        assert_eq!(t.tx("score"), Some(&b"5"[..]));
        assert_eq!(t.matches()[0].message, "XSS in ARGS:q");
        assert_eq!(t.matches()[0].matched_value, "<script>");
        assert_eq!(t.silent_matches(), 1);
    }

    /// What links said of a value is remembered on the thread: a rule whose values are all
    /// known not to match is not visited, a value known to match is still inspected (and
    /// blocks again), a value the transaction excludes for a rule is neither inspected nor
    /// recorded, and values too long to remember are always inspected.
    #[test]
    fn link_results_decide_only_what_is_known() {
        let rs = rs(r#"
SecRuleEngine On
SecRule REQUEST_URI "@beginsWith /skip" "id:1,phase:1,pass,nolog,ctl:ruleRemoveTargetById=2;ARGS:a"
SecRule ARGS "@rx attack.*z" "id:2,phase:1,deny,status:403,t:none,t:lowercase"
"#);
        let run = |uri: &str| {
            let mut t = Transaction::new(rs.clone(), &head(uri, &[]));
            let blocked = t.process_request_headers().is_some();
            (blocked, t.rules_decided_by_results())
        };
        // (Values hold the literal `attack`, so that the literal prefilter lets rule 2 through.)
        // First sight: evaluated; then known, and rule 2 is not visited.
        assert_eq!(run("/x?a=no+attack"), (false, 0));
        assert_eq!(run("/x?a=no+attack"), (false, 1));
        // A match is never decided without the rule.
        assert_eq!(run("/x?a=ATTACKZ"), (true, 0));
        assert_eq!(run("/x?a=ATTACKZ"), (true, 0));
        // Excluded for this request: the rule has no value to inspect (decided), so the
        // request is not blocked, and the value is not recorded as a non-match either (the
        // next request without the exclusion blocks).
        assert_eq!(run("/skip?a=AttackZ"), (false, 1));
        assert_eq!(run("/x?a=AttackZ"), (true, 0));
        // One value known, one new: the rule runs, on the new value.
        assert_eq!(run("/x?a=no+attack&b=attackz"), (true, 0));
        // Too long to remember: inspected every time.
        let long = format!("/x?a=attack{}", "b".repeat(300));
        assert_eq!(run(&long), (false, 0));
        assert_eq!(run(&long), (false, 0));
        // Off: nothing is decided by the records.
        let mut off = Loader::new();
        off.add_text(
            "SecRuleEngine On\nSecRule ARGS \"@rx attack.*z\" \"id:2,phase:1,deny\"",
            "t.conf",
            Path::new("."),
        )
        .expect("loads");
        let mut off = off.finish().expect("finishes");
        off.set_link_results(false);
        let off = Arc::new(off);
        for _ in 0..2 {
            let mut t = Transaction::new(off.clone(), &head("/x?a=no+attack", &[]));
            assert!(t.process_request_headers().is_none());
            assert_eq!(t.rules_decided_by_results(), 0);
        }
    }

    /// A transaction starts from buffers an earlier one on the thread left behind (TX values,
    /// dynamic TX names, transformation results, prefilter scans, MATCHED_VARS): nothing of
    /// the earlier request may show through.
    #[test]
    fn reused_buffers_leave_nothing_behind() {
        let rs = rs(r#"
SecRuleEngine DetectionOnly
SecRule REQUEST_HEADERS_NAMES "@rx ^.*$" "id:10,phase:1,pass,log,capture,t:lowercase,setvar:'tx.seen_%{tx.0}=%{tx.0}'"
SecRule ARGS "@rx (?i)select" "id:11,phase:1,pass,log,t:urlDecodeUni,t:lowercase,capture,setvar:tx.hits=+1,chain"
    SecRule MATCHED_VARS "@contains union" "setvar:tx.chained=1"
SecRule TX:/^seen_/ "@streq x-first" "id:12,phase:1,pass,log"
SecRule REQUEST_HEADERS:Host "@rx ^([a-z]+)" "id:13,phase:1,pass,nolog,capture,setvar:'tx.host_%{rule.id}=%{tx.1}'"
SecRule REQUEST_COOKIES|REQUEST_COOKIES_NAMES "@contains first" "id:14,phase:1,pass,log"
SecRule REQUEST_LINE|REQUEST_URI|REQUEST_FILENAME|REQUEST_BASENAME|QUERY_STRING|ARGS_NAMES|SERVER_NAME "@contains /a" "id:15,phase:1,pass,log"
"#);
        let run = |h: &RequestHead| {
            let mut t = Transaction::new(rs.clone(), h);
            t.process_request_headers();
            t.process_request_body(b"");
            t.process_logging();
            let ids: Vec<u32> = t.matches().iter().map(|m| m.rule_id).collect();
            (t.tx_collection(), ids)
        };
        let first = head(
            "/a?q=1%20UNION%20SELECT%202&r=select",
            &[
                ("X-First", "1"),
                ("Host", "longer.example"),
                ("Cookie", "first=1; b=first"),
            ],
        );
        let second = head("/b?q=plain&s=text", &[("Host", "b.example")]);
        let fresh = {
            let second = second.clone();
            let rs = rs.clone();
            std::thread::spawn(move || {
                let mut t = Transaction::new(rs, &second);
                t.process_request_headers();
                t.process_request_body(b"");
                t.process_logging();
                let ids: Vec<u32> = t.matches().iter().map(|m| m.rule_id).collect();
                (t.tx_collection(), ids)
            })
            .join()
            .expect("thread")
        };
        let (tx1, ids1) = run(&first);
        assert!(
            [11, 12, 14, 15].iter().all(|id| ids1.contains(id)),
            "{ids1:?}"
        );
        assert!(tx1.iter().any(|(k, _)| k == "seen_x-first"));
        assert!(tx1.iter().any(|(k, _)| k == "chained"));
        // A name built at run time, set again with a shorter value by the next request.
        assert!(tx1.iter().any(|(k, v)| k == "host_13" && v == b"longer"));
        assert!(fresh.0.iter().any(|(k, v)| k == "host_13" && v == b"b"));
        assert!(!fresh.1.contains(&14) && !fresh.1.contains(&15));
        for _ in 0..3 {
            assert_eq!(run(&second), fresh);
        }
        assert!(
            !fresh
                .0
                .iter()
                .any(|(k, _)| k == "seen_x-first" || k == "hits")
        );
    }

    #[test]
    fn detection_only_does_not_interrupt() {
        let rs = rs(r#"
SecRuleEngine DetectionOnly
SecRule REQUEST_HEADERS:User-Agent "@pm nikto" "id:3,phase:1,deny"
"#);
        let mut t = Transaction::new(rs, &head("/", &[("User-Agent", "Nikto/2")]));
        assert!(t.process_request_headers().is_none());
        assert_eq!(t.matches().len(), 1);
    }

    #[test]
    fn chains_captures_and_skip_after() {
        let rs = rs(r#"
SecRule REQUEST_HEADERS:Range "@rx (\d+)-(\d+)" "id:10,phase:1,pass,capture,chain"
  SecRule TX:2 "@lt %{tx.1}" "setvar:tx.bad=1"
SecRule TX:bad "@eq 1" "id:11,phase:1,pass,skipAfter:END"
SecAction "id:12,phase:1,pass,setvar:tx.skipped=0"
SecMarker END
SecRule &TX:skipped "@eq 0" "id:13,phase:1,pass"
"#);
        let mut t = Transaction::new(rs, &head("/", &[("Range", "bytes=10-5")]));
        t.process_request_headers();
        let ids: Vec<u32> = t.matches().iter().map(|m| m.rule_id).collect();
        assert_eq!(ids, vec![10, 11, 13]);
    }

    #[test]
    fn exclusions_and_ctl() {
        let rs = rs(r#"
SecRule REQUEST_URI "@beginsWith /admin" "id:20,phase:1,pass,ctl:ruleRemoveTargetById=22;ARGS:pw"
SecRule ARGS|!ARGS:token "@rx evil" "id:21,phase:1,pass"
SecRule ARGS "@rx evil" "id:22,phase:1,pass"
"#);
        let mut t = Transaction::new(rs.clone(), &head("/admin?pw=evil&token=evil", &[]));
        t.process_request_headers();
        let ids: Vec<u32> = t.matches().iter().map(|m| m.rule_id).collect();
        assert_eq!(ids, vec![20, 21, 22]);
        // 21 matched pw only, 22 matched token only.
        assert_eq!(t.matches()[1].matched_var, "ARGS:pw");
        assert_eq!(t.matches()[2].matched_var, "ARGS:token");
    }

    #[test]
    fn bodies() {
        let rs = rs(r#"
SecRule REQUEST_HEADERS:Content-Type "@rx ^application/json" "id:30,phase:1,pass,ctl:requestBodyProcessor=JSON"
SecRule ARGS:json.a.b "@streq x" "id:31,phase:2,pass"
SecRule REQBODY_ERROR "!@eq 0" "id:32,phase:2,pass"
"#);
        let mut h = head("/", &[("Content-Type", "application/json")]);
        h.method = "POST".into();
        let mut t = Transaction::new(rs.clone(), &h);
        t.process_request_headers();
        t.process_request_body(br#"{"a":{"b":"x"}}"#);
        let ids: Vec<u32> = t.matches().iter().map(|m| m.rule_id).collect();
        assert_eq!(ids, vec![30, 31]);
        let mut t = Transaction::new(rs, &h);
        t.process_request_body(b"{nope");
        assert!(t.matches().iter().any(|m| m.rule_id == 32));
    }

    #[test]
    fn count_and_negation() {
        let rs = rs(r#"
SecRule &REQUEST_HEADERS:Host "@eq 0" "id:40,phase:1,pass"
SecRule &ARGS "@eq 2" "id:41,phase:1,pass"
SecRule REQUEST_METHOD "!@within GET HEAD" "id:42,phase:1,pass"
"#);
        let mut t = Transaction::new(rs, &head("/?a=1&b=2", &[]));
        t.process_request_headers();
        let ids: Vec<u32> = t.matches().iter().map(|m| m.rule_id).collect();
        assert_eq!(ids, vec![40, 41]);
    }

    /// A rule the prefilter lets through lists only the targets whose values hold one of its
    /// literals; what matches, in what order, and the effects per value stay those of the
    /// rule without the prefilter.
    #[test]
    fn targets_without_the_literals_are_not_listed() {
        let text = r#"
SecRule REQUEST_HEADERS|ARGS|REQUEST_COOKIES "@rx (?i)evil[0-9]" "id:50,phase:1,pass,log,t:none,t:lowercase,setvar:tx.hits=+1,msg:'%{MATCHED_VAR_NAME}'"
SecRule REQUEST_HEADERS:X-Other|ARGS:b "@rx (?i)evil[0-9]" "id:51,phase:1,pass,log,t:none,t:lowercase,setvar:tx.late=+1"
"#;
        let h = head(
            "/?a=EVIL1&b=fine&c=evil2",
            &[
                ("Host", "example.com"),
                ("User-Agent", "curl/8"),
                ("Accept", "*/*"),
                ("X-Other", "nothing here"),
                ("Cookie", "s=1; t=2"),
            ],
        );
        let run = |prefilter: bool| {
            let mut rs = rs(text);
            Arc::get_mut(&mut rs)
                .expect("one owner")
                .set_literal_prefilter(prefilter);
            let mut t = Transaction::new(rs, &h);
            t.process_request_headers();
            let seen: Vec<(u32, String, String)> = t
                .matches()
                .iter()
                .map(|m| (m.rule_id, m.message.clone(), m.matched_value.clone()))
                .collect();
            let hits = t.tx("hits").map(<[u8]>::to_vec);
            (seen, hits, t.tx("late").is_some(), t.operator_calls())
        };
        let (seen, hits, late, calls) = run(true);
        assert_eq!(
            seen,
            vec![(50, "ARGS:c".to_string(), "evil2".to_string())],
            "the last matching value is the one recorded"
        );
        assert_eq!(
            hits.as_deref(),
            Some(&b"2"[..]),
            "setvar ran for both values"
        );
        assert!(!late, "rule 51's targets hold no literal");
        let (seen_off, hits_off, late_off, calls_off) = run(false);
        assert_eq!((seen, hits, late), (seen_off, hits_off, late_off));
        // Without the prefilter rule 50 inspects 5 headers, 3 arguments and 2 cookies and rule
        // 51 two values; with it, only rule 50's 3 arguments are inspected.
        assert_eq!(calls_off, 12);
        assert_eq!(calls, 3);
    }
}
