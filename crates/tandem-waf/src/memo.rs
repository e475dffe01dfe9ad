//! Per-thread memos of pure functions of short byte strings, shared across transactions.
//!
//! Request header values, cookie flags and common arguments recur from request to request,
//! and what the engine computes from a value alone (the literal prefilter's scan, a
//! transformation chain's output) is the same every time. A `Memo` keeps the last result
//! per slot of a direct-mapped table indexed by a keyed hash of (owner, tag, value); the
//! value is compared in full on lookup, so a collision costs the computation, never a wrong
//! answer, and a flood of distinct values only evicts. Slots keep their buffers, so a warm
//! memo allocates nothing.

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

/// A direct-mapped memo from (owner, tag, value) to `V`.
pub(crate) struct Memo<V> {
    hasher: foldhash::fast::RandomState,
    slots: Box<[Slot<V>]>,
}

struct Slot<V> {
    /// 0: empty.
    owner: u64,
    tag: u32,
    value: Vec<u8>,
    result: V,
}

impl<V: Default> Memo<V> {
    pub(crate) fn new(slots: usize) -> Memo<V> {
        Memo {
            hasher: foldhash::fast::RandomState::default(),
            slots: std::iter::repeat_with(|| Slot {
                owner: 0,
                tag: 0,
                value: Vec::new(),
                result: V::default(),
            })
            .take(slots.max(1))
            .collect(),
        }
    }

    fn index(&self, owner: u64, tag: u32, value: &[u8]) -> usize {
        (self.hasher.hash_one((owner, tag, value)) as usize) % self.slots.len()
    }

    /// The result remembered for `value`, if its slot still holds it.
    pub(crate) fn get(&self, owner: u64, tag: u32, value: &[u8]) -> Option<&V> {
        let s = &self.slots[self.index(owner, tag, value)];
        let hit = s.owner == owner && s.tag == tag && s.value == value;
        if hit {
            HITS.with(|h| h.set(h.get() + 1));
        }
        hit.then_some(&s.result)
    }

    /// [`Memo::get`], to change the result in place.
    pub(crate) fn get_mut(&mut self, owner: u64, tag: u32, value: &[u8]) -> Option<&mut V> {
        let i = self.index(owner, tag, value);
        let s = &mut self.slots[i];
        (s.owner == owner && s.tag == tag && s.value == value).then_some(&mut s.result)
    }

    /// The slot for `value`, taken over for it: fill the returned result (its buffers are
    /// the previous occupant's, to be cleared or overwritten).
    pub(crate) fn claim(&mut self, owner: u64, tag: u32, value: &[u8]) -> &mut V {
        let i = self.index(owner, tag, value);
        let s = &mut self.slots[i];
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
