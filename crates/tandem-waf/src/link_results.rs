//! What each rule link's operator, after its transformations, said of a value: remembered
//! per thread by value, and decided per target from those records before a rule is visited.
//!
//! Most of what CRS inspects recurs from request to request (header values, cookie flags,
//! common arguments), and for a link whose operator depends on the value alone
//! ([`crate::operator::Operator::memoisable`], no macros in its argument) and whose targets
//! are request data, whether it matches a value is a pure function of the value. A value's
//! record holds two bits per link of the rule set: whether the result is known, and whether
//! the link matched. A transaction loads the record of each value it lists once (one memo
//! lookup per value, not one per rule and value), and:
//!
//! - a rule the literal prefilter lets through is not visited when, for each of its
//!   targets, the prefilter's union for the target refuses it or every value has a known
//!   result for the rule's first link and none matched (the union over a target's values is
//!   an AND of the known bits and an OR of the match bits, computed once per target and
//!   transaction);
//! - a link evaluated on a value with a known non-match skips that value;
//! - every result a link computes is recorded, and the records are written back to the
//!   thread's memo when the phase ends.
//!
//! A target's union lists every value of the target, a superset of what a rule inspects, so
//! a rule it refuses cannot match; a target that the rule's exclusions or the transaction's
//! `ctl`s name is listed as the rule inspects it, with its exclusions (an excluded value is
//! never inspected, so it never gets a result for that rule). A search that hit the
//! backtracking limit is not recorded (the limit's flag must be raised again), and a value
//! longer than 256 bytes has no record.

use std::collections::HashMap;

use crate::memo::{MAX_VALUE, Memo};

type FastMap<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

/// Values in each thread's memo of records.
const MEMO_SLOTS: usize = 1024;

/// A record as the thread's memo keeps it.
#[derive(Default)]
struct Bits {
    known: Vec<u64>,
    hit: Vec<u64>,
}

thread_local! {
    static MEMO: std::cell::RefCell<Memo<Bits>> =
        std::cell::RefCell::new(Memo::new(MEMO_SLOTS));
    static SKIPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Rules this thread did not visit because their values' records said none of them
/// matches (for tests and diagnostics).
pub fn skips() -> u64 {
    SKIPS.with(std::cell::Cell::get)
}

/// A union slot not computed yet in this transaction (or since its data changed).
const NONE: u32 = u32::MAX;

/// Record 0: nothing known (for values too long to remember).
pub(crate) const UNKNOWN: u32 = 0;

/// One transaction's records and unions.
#[derive(Debug, Default)]
pub(crate) struct LinkResults {
    /// The rule set's owner id in the thread's memo (0: off).
    owner: u64,
    /// Words per bit set: links + 1 (link numbers start at 1), rounded up.
    words: usize,
    /// Records, `2 * words` each: the known bits, then the match bits.
    pool: Vec<u64>,
    /// A value's key (its class and index, as the transformation cache has them) -> record.
    by_value: FastMap<(u8, u32), u32>,
    /// Records changed since the last write-back: (record, where its value is in
    /// `dirty_values`).
    dirty: Vec<(u32, u32, u32)>,
    /// The values of the changed records.
    dirty_values: Vec<u8>,
    /// Per record: whether it is in `dirty`.
    is_dirty: Vec<bool>,
    /// Target union slot (the untransformed values' slot of `Rule::target_slots`) -> union.
    by_target: Vec<u32>,
}

impl LinkResults {
    /// Ready for a transaction of a rule set with `links` links and these union slots;
    /// `owner` 0 turns the records off.
    pub(crate) fn reset(&mut self, owner: u64, links: u32, targets: u32) {
        self.clear();
        self.owner = owner;
        self.words = (links as usize + 1).div_ceil(64);
        self.pool.resize(2 * self.words, 0);
        self.by_target.resize(targets as usize, NONE);
    }

    /// Whether records are kept.
    pub(crate) fn on(&self) -> bool {
        self.owner != 0
    }

    /// Empty everything, keeping capacity.
    pub(crate) fn clear(&mut self) {
        self.owner = 0;
        self.pool.clear();
        self.by_value.clear();
        self.dirty.clear();
        self.dirty_values.clear();
        self.is_dirty.clear();
        self.by_target.clear();
    }

    /// Capacity worth not keeping past a transaction.
    pub(crate) fn oversized(&self, max_bytes: usize, max_entries: usize) -> bool {
        self.pool.capacity() * 8 > max_bytes
            || self.dirty_values.capacity() > max_bytes
            || self.by_value.capacity() > max_entries
    }

    fn push_zeroed(&mut self) -> u32 {
        let r = (self.pool.len() / (2 * self.words)) as u32;
        self.pool.resize(self.pool.len() + 2 * self.words, 0);
        r
    }

    fn known(&self, rec: u32) -> &[u64] {
        let from = rec as usize * 2 * self.words;
        &self.pool[from..from + self.words]
    }

    fn hits(&self, rec: u32) -> &[u64] {
        let from = rec as usize * 2 * self.words + self.words;
        &self.pool[from..from + self.words]
    }

    /// The record of the value with `key`: loaded from the thread's memo the first time the
    /// transaction asks (all unknown if the memo does not have it), [`UNKNOWN`] for a value
    /// too long to remember.
    pub(crate) fn load(&mut self, key: (u8, u32), value: &[u8]) -> u32 {
        if let Some(&r) = self.by_value.get(&key) {
            return r;
        }
        if value.len() > MAX_VALUE || !self.on() {
            return UNKNOWN;
        }
        let r = self.push_zeroed();
        let from = r as usize * 2 * self.words;
        let w = self.words;
        let owner = self.owner;
        MEMO.with(|m| {
            let Ok(m) = m.try_borrow() else { return };
            if let Some(b) = m.get(owner, 0, value)
                && b.known.len() == w
            {
                self.pool[from..from + w].copy_from_slice(&b.known);
                self.pool[from + w..from + 2 * w].copy_from_slice(&b.hit);
            }
        });
        self.by_value.insert(key, r);
        r
    }

    /// What `rec` says of link `link`: `Some(matched)` when known.
    pub(crate) fn get(&self, rec: u32, link: u32) -> Option<bool> {
        let (w, b) = (link as usize / 64, 1u64 << (link % 64));
        (self.known(rec)[w] & b != 0).then(|| self.hits(rec)[w] & b != 0)
    }

    /// Record that link `link` matched `value` (whose record is `rec`) or not.
    pub(crate) fn set(&mut self, rec: u32, value: &[u8], link: u32, matched: bool) {
        if rec == UNKNOWN {
            return;
        }
        let (w, b) = (link as usize / 64, 1u64 << (link % 64));
        let from = rec as usize * 2 * self.words;
        if self.pool[from + w] & b != 0 {
            return;
        }
        let r = rec as usize;
        if self.is_dirty.len() <= r {
            self.is_dirty.resize(r + 1, false);
        }
        if !self.is_dirty[r] {
            self.is_dirty[r] = true;
            let at = self.dirty_values.len() as u32;
            self.dirty_values.extend_from_slice(value);
            self.dirty.push((rec, at, value.len() as u32));
        }
        self.pool[from + w] |= b;
        if matched {
            self.pool[from + self.words + w] |= b;
        }
    }

    /// The union recorded for target slot `slot`, if computed.
    pub(crate) fn target_union(&self, slot: u32) -> Option<u32> {
        self.by_target
            .get(slot as usize)
            .copied()
            .filter(|&u| u != NONE)
    }

    /// A new union of records: known where every record is known, matched where any
    /// matched.
    pub(crate) fn union(&mut self, parts: &[u32]) -> u32 {
        let u = self.push_zeroed();
        let w = self.words;
        let to = u as usize * 2 * w;
        self.pool[to..to + w].fill(u64::MAX);
        for &p in parts {
            let from = p as usize * 2 * w;
            for i in 0..w {
                let (k, h) = (self.pool[from + i], self.pool[from + w + i]);
                self.pool[to + i] &= k;
                self.pool[to + w + i] |= h;
            }
        }
        u
    }

    /// Keep union `u` for target slot `slot`.
    pub(crate) fn store_target(&mut self, slot: u32, u: u32) {
        if let Some(e) = self.by_target.get_mut(slot as usize) {
            *e = u;
        }
    }

    /// Whether union `u` says link `link` matches none of its values.
    pub(crate) fn refuses(&self, u: u32, link: u32) -> bool {
        self.get(u, link) == Some(false)
    }

    /// Count a rule not visited.
    pub(crate) fn count_skip() {
        SKIPS.with(|s| s.set(s.get() + 1));
    }

    /// Write the records changed since the last call back to the thread's memo.
    pub(crate) fn flush(&mut self) {
        for &(r, ..) in &self.dirty {
            self.is_dirty[r as usize] = false;
        }
        if self.dirty.is_empty() || !self.on() {
            self.dirty.clear();
            self.dirty_values.clear();
            return;
        }
        let w = self.words;
        MEMO.with(|m| {
            let Ok(mut m) = m.try_borrow_mut() else {
                return;
            };
            for &(rec, at, len) in &self.dirty {
                let v = &self.dirty_values[at as usize..(at + len) as usize];
                let from = rec as usize * 2 * w;
                let (known, hit) = self.pool[from..from + 2 * w].split_at(w);
                match m.get_mut(self.owner, 0, v) {
                    Some(b) if b.known.len() == w => {
                        for i in 0..w {
                            b.known[i] |= known[i];
                            b.hit[i] |= hit[i];
                        }
                    }
                    _ => {
                        let b = m.claim(self.owner, 0, v);
                        b.known.clear();
                        b.known.extend_from_slice(known);
                        b.hit.clear();
                        b.hit.extend_from_slice(hit);
                    }
                }
            }
        });
        self.dirty.clear();
        self.dirty_values.clear();
    }

    /// New request data: forget the records of keys `stale` says may now name another
    /// value, and every union.
    pub(crate) fn data_changed(&mut self, stale: impl Fn((u8, u32)) -> bool) {
        self.by_value.retain(|&k, _| !stale(k));
        self.by_target.fill(NONE);
    }
}
