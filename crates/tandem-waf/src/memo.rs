//! Per-thread memos of pure functions of short byte strings, shared across transactions.
//!
//! Request header values, cookie flags and common arguments recur from request to request,
//! and what the engine computes from a value alone (the literal prefilter's scan, a
//! transformation chain's output) is the same every time. A `Memo` keeps results in a
//! two-way set-associative table indexed by a keyed hash of (owner, tag, value), evicting
//! the slot of a set used less recently; the value is compared in full on lookup, so a
//! collision costs the computation, never a wrong answer, and a flood of distinct values
//! only evicts (and cannot push out a value in use that shares its set). Slots keep their
//! buffers, so a warm memo allocates nothing.

use std::hash::BuildHasher;

/// Values longer than this are not memoised (request bodies, long cookies): the memos are for
/// the short values that recur.
pub(crate) const MAX_VALUE: usize = 256;

/// Owners (rule sets' literal tables and transformation tries) made so far in this process:
/// an owner's id keeps its entries apart from another rule set's after a reload.
static OWNERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

thread_local! {
    static HITS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Answers the value memos (scans, transformation chains, operators) gave on this thread.
pub fn hits() -> u64 {
    HITS.with(std::cell::Cell::get)
}

/// A new owner id (never 0).
pub(crate) fn new_owner() -> u64 {
    OWNERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A two-way set-associative memo from (owner, tag, value) to `V`: a value may sit in either
/// slot of its set, and a new value takes the slot used less recently, so that a value in
/// use is not pushed out by one that is seen once (a session id, a search term) which
/// happens to share its set.
pub(crate) struct Memo<V> {
    hasher: foldhash::fast::RandomState,
    slots: Box<[Slot<V>]>,
    /// Per set: whether its second slot was used more recently than its first.
    second_recent: Box<[std::cell::Cell<bool>]>,
}

struct Slot<V> {
    /// 0: empty.
    owner: u64,
    tag: u32,
    value: Vec<u8>,
    result: V,
}

impl<V> Slot<V> {
    fn holds(&self, owner: u64, tag: u32, value: &[u8]) -> bool {
        self.owner == owner && self.tag == tag && self.value == value
    }
}

impl<V: Default> Memo<V> {
    /// A memo of about `slots` values (rounded up to an even number).
    pub(crate) fn new(slots: usize) -> Memo<V> {
        let sets = slots.div_ceil(2).max(1);
        Memo {
            hasher: foldhash::fast::RandomState::default(),
            slots: std::iter::repeat_with(|| Slot {
                owner: 0,
                tag: 0,
                value: Vec::new(),
                result: V::default(),
            })
            .take(2 * sets)
            .collect(),
            second_recent: std::iter::repeat_with(|| std::cell::Cell::new(false))
                .take(sets)
                .collect(),
        }
    }

    /// The set of `value`.
    fn set(&self, owner: u64, tag: u32, value: &[u8]) -> usize {
        (self.hasher.hash_one((owner, tag, value)) as usize) % self.second_recent.len()
    }

    /// The slot holding `value`, if one does (and mark it used).
    fn find(&self, owner: u64, tag: u32, value: &[u8]) -> Option<usize> {
        let set = self.set(owner, tag, value);
        let way = (0..2).find(|&w| self.slots[2 * set + w].holds(owner, tag, value))?;
        self.second_recent[set].set(way == 1);
        Some(2 * set + way)
    }

    /// The result remembered for `value`, if its slot still holds it.
    pub(crate) fn get(&self, owner: u64, tag: u32, value: &[u8]) -> Option<&V> {
        let i = self.find(owner, tag, value)?;
        HITS.with(|h| h.set(h.get() + 1));
        Some(&self.slots[i].result)
    }

    /// [`Memo::get`], to change the result in place.
    pub(crate) fn get_mut(&mut self, owner: u64, tag: u32, value: &[u8]) -> Option<&mut V> {
        let i = self.find(owner, tag, value)?;
        Some(&mut self.slots[i].result)
    }

    /// The slot for `value`, taken over for it: fill the returned result (its buffers are
    /// the previous occupant's, to be cleared or overwritten). The value's own slot if it
    /// has one, else an empty one of its set, else the one used less recently.
    pub(crate) fn claim(&mut self, owner: u64, tag: u32, value: &[u8]) -> &mut V {
        let set = self.set(owner, tag, value);
        let way = (0..2)
            .find(|&w| self.slots[2 * set + w].holds(owner, tag, value))
            .or_else(|| (0..2).find(|&w| self.slots[2 * set + w].owner == 0))
            .unwrap_or(usize::from(!self.second_recent[set].get()));
        self.second_recent[set].set(way == 1);
        let s = &mut self.slots[2 * set + way];
        s.owner = owner;
        s.tag = tag;
        s.value.clear();
        s.value.extend_from_slice(value);
        &mut s.result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value in use keeps its slot while values seen once pass through its set.
    #[test]
    fn a_value_in_use_survives_values_seen_once() {
        let mut m: Memo<u32> = Memo::new(2);
        let o = new_owner();
        *m.claim(o, 0, b"hot") = 7;
        for n in 0..100u32 {
            *m.claim(o, 0, n.to_string().as_bytes()) = n;
            assert_eq!(m.get(o, 0, b"hot"), Some(&7), "after {n}");
        }
        // Without use, it goes: the two slots now hold the last two values.
        *m.claim(o, 0, b"x") = 1;
        *m.claim(o, 0, b"y") = 2;
        assert_eq!(m.get(o, 0, b"hot"), None);
    }

    #[test]
    fn answers_only_what_was_stored_for_the_same_owner_tag_and_value() {
        let mut m: Memo<Vec<u8>> = Memo::new(8);
        let (a, b) = (new_owner(), new_owner());
        assert!(m.get(a, 1, b"x").is_none());
        *m.claim(a, 1, b"x") = b"one".to_vec();
        assert_eq!(m.get(a, 1, b"x").map(Vec::as_slice), Some(&b"one"[..]));
        assert!(m.get(b, 1, b"x").is_none(), "another owner");
        assert!(m.get(a, 2, b"x").is_none(), "another tag");
        assert!(m.get(a, 1, b"y").is_none(), "another value");
        // Many values in 8 slots: every answer is the value's own or none.
        for n in 0..1000u32 {
            let v = n.to_string();
            m.claim(a, 1, v.as_bytes())
                .clone_from(&v.clone().into_bytes());
        }
        for n in 0..1000u32 {
            let v = n.to_string();
            if let Some(r) = m.get(a, 1, v.as_bytes()) {
                assert_eq!(r, v.as_bytes());
            }
        }
    }
}
