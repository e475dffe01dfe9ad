//! The `TX` collection of a transaction, with names interned at load time.
//!
//! CRS reads and writes about a hundred TX variables per request (paranoia levels, anomaly
//! scores, settings from `crs-setup.conf`), nearly all under names written literally in the
//! rules. The rule set gives each such name a slot ([`TxLayout`]); rules refer to slots by
//! number, so reading `TX:detection_paranoia_level` or adding to
//! `tx.inbound_anomaly_score_pl1` is an index, not a hash of a string. Names built at run
//! time (`setvar:tx.%{...}`) go to a map beside the slots. Insertion order is kept across
//! both, as ModSecurity lists a collection in the order its members were created.
//!
//! Slots keep their buffers when a variable is removed or the store is reused by the next
//! transaction on the thread, and so do names built at run time (up to
//! 128 of them: CRS rule 920450 builds one per request header,
//! `tx.header_name_920450_host`, and the next request's headers are mostly the same names),
//! so steady-state traffic allocates nothing for TX.

use std::collections::HashMap;
use std::sync::Arc;

use indexmap::IndexMap;

/// The TX names a rule set knows, each with a slot number.
#[derive(Debug, Default)]
pub struct TxLayout {
    ids: HashMap<Box<str>, u32, foldhash::fast::FixedState>,
    names: Vec<Box<str>>,
}

impl TxLayout {
    /// The slot of a (lower-case) name, adding it.
    pub fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.into());
        self.ids.insert(name.into(), id);
        id
    }

    /// The slot of a (lower-case) name.
    pub fn id(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    /// The name of a slot.
    pub fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map_or("", |n| n)
    }

    /// The slots whose names `keep` accepts, a bit each (bit `i % 64` of word `i / 64`).
    pub fn selected_slots(&self, mut keep: impl FnMut(&str) -> bool) -> Box<[u64]> {
        let mut bits = vec![0u64; self.names.len().div_ceil(64)];
        for (i, n) in self.names.iter().enumerate() {
            if keep(n) {
                bits[i / 64] |= 1 << (i % 64);
            }
        }
        bits.into_boxed_slice()
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// At most this many names built at run time keep their entries (absent, with their buffers)
/// for the next transaction on the thread; a store with more forgets them all, so that
/// requests that invent names (a header name of their own each) cannot grow it.
pub(crate) const DYNAMIC_KEPT: usize = 128;
/// A kept name's value buffer larger than this is let go at the end of a transaction.
const DYNAMIC_VALUE_KEPT: usize = 4096;

#[derive(Debug, Default, Clone)]
struct Slot {
    /// 0: absent; otherwise the insertion sequence number.
    seq: u32,
    value: Vec<u8>,
}

/// One transaction's TX variables.
#[derive(Debug, Default)]
pub(crate) struct TxStore {
    layout: Arc<TxLayout>,
    slots: Vec<Slot>,
    /// Names built at run time: (insertion sequence number, 0 when absent; value).
    dynamic: IndexMap<String, (u32, Vec<u8>), foldhash::fast::FixedState>,
    seq: u32,
}

impl TxStore {
    /// Empty the store for a transaction of a rule set with `layout`, keeping buffers.
    pub(crate) fn reset(&mut self, layout: &Arc<TxLayout>) {
        if !Arc::ptr_eq(&self.layout, layout) {
            self.layout = layout.clone();
            self.slots.clear();
            self.slots.resize(layout.len(), Slot::default());
        } else {
            for s in &mut self.slots {
                s.seq = 0;
            }
        }
        if self.dynamic.len() > DYNAMIC_KEPT {
            self.dynamic.clear();
        } else {
            for (seq, value) in self.dynamic.values_mut() {
                *seq = 0;
                if value.capacity() > DYNAMIC_VALUE_KEPT {
                    *value = Vec::new();
                }
            }
        }
        self.seq = 0;
    }

    fn next_seq(&mut self) -> u32 {
        self.seq += 1;
        self.seq
    }

    /// A variable by slot.
    pub(crate) fn get_id(&self, id: u32) -> Option<&[u8]> {
        self.slots
            .get(id as usize)
            .filter(|s| s.seq != 0)
            .map(|s| s.value.as_slice())
    }

    /// A variable by (lower-case) name.
    pub(crate) fn get(&self, name: &str) -> Option<&[u8]> {
        match self.layout.id(name) {
            Some(id) => self.get_id(id),
            None => self
                .dynamic
                .get(name)
                .filter(|(seq, _)| *seq != 0)
                .map(|(_, v)| v.as_slice()),
        }
    }

    /// Whether a variable exists.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The value buffer of a slot to overwrite (created if absent; its old bytes stay until
    /// the caller clears them).
    pub(crate) fn slot_mut(&mut self, id: u32) -> Option<&mut Vec<u8>> {
        let fresh = self.slots.get(id as usize)?.seq == 0;
        let seq = if fresh { self.next_seq() } else { 0 };
        let s = self.slots.get_mut(id as usize)?;
        if fresh {
            s.seq = seq;
            s.value.clear();
        }
        Some(&mut s.value)
    }

    /// The value buffer of a (lower-case) name to overwrite, created if absent.
    pub(crate) fn entry(&mut self, name: &str) -> &mut Vec<u8> {
        if let Some(id) = self.layout.id(name) {
            let fresh = self.slots[id as usize].seq == 0;
            if fresh {
                let seq = self.next_seq();
                self.slots[id as usize].seq = seq;
                self.slots[id as usize].value.clear();
            }
            return &mut self.slots[id as usize].value;
        }
        let i = match self.dynamic.get_index_of(name) {
            Some(i) => {
                if self.dynamic[i].0 == 0 {
                    // Kept from an earlier transaction or removed: present again, emptied.
                    let seq = self.next_seq();
                    let e = &mut self.dynamic[i];
                    e.0 = seq;
                    e.1.clear();
                }
                i
            }
            None => {
                let seq = self.next_seq();
                self.dynamic
                    .insert_full(name.to_string(), (seq, Vec::new()))
                    .0
            }
        };
        &mut self.dynamic[i].1
    }

    /// Set a variable by name.
    pub(crate) fn set(&mut self, name: &str, value: &[u8]) {
        let v = self.entry(name);
        v.clear();
        v.extend_from_slice(value);
    }

    /// Set (`Some`) or remove (`None`) the capture variable `TX:i` (`i` < 10): by slot when
    /// the layout interned the capture names first, as rule sets do, else by name.
    pub(crate) fn set_capture(&mut self, i: usize, value: Option<&[u8]>) {
        let name = crate::transaction::CAPTURE_NAMES[i];
        let id = i as u32;
        if self.layout.name(id) != name {
            match value {
                Some(v) => self.set(name, v),
                None => self.remove(name),
            }
            return;
        }
        match value {
            Some(v) => {
                if let Some(buf) = self.slot_mut(id) {
                    buf.clear();
                    buf.extend_from_slice(v);
                }
            }
            None => self.slots[i].seq = 0,
        }
    }

    /// Remove a variable by name.
    pub(crate) fn remove(&mut self, name: &str) {
        match self.layout.id(name) {
            Some(id) => self.slots[id as usize].seq = 0,
            None => {
                if let Some((seq, _)) = self.dynamic.get_mut(name) {
                    *seq = 0;
                }
            }
        }
    }

    /// The variables whose names `keep` accepts, in insertion order. `slots`
    /// ([`TxLayout::selected_slots`] of this store's layout), when given, answers for the
    /// slots, and `keep` is asked only about names built at run time.
    pub(crate) fn select_in(
        &self,
        slots: Option<&[u64]>,
        mut keep: impl FnMut(&str) -> bool,
    ) -> Vec<(&str, &[u8])> {
        let mut v: Vec<(u32, &str, &[u8])> = Vec::new();
        let mut take = |i: usize| {
            if let Some(s) = self.slots.get(i)
                && s.seq != 0
            {
                v.push((s.seq, self.layout.name(i as u32), s.value.as_slice()));
            }
        };
        match slots {
            Some(words) => {
                for (w, &word) in words.iter().enumerate() {
                    let mut bits = word;
                    while bits != 0 {
                        take(w * 64 + bits.trailing_zeros() as usize);
                        bits &= bits - 1;
                    }
                }
            }
            None => {
                for i in 0..self.slots.len() {
                    if self.slots[i].seq != 0 && keep(self.layout.name(i as u32)) {
                        take(i);
                    }
                }
            }
        }
        for (k, (seq, val)) in &self.dynamic {
            if *seq != 0 && keep(k) {
                v.push((*seq, k.as_str(), val.as_slice()));
            }
        }
        v.sort_unstable_by_key(|(seq, ..)| *seq);
        v.into_iter().map(|(_, k, val)| (k, val)).collect()
    }

    /// Every variable in insertion order.
    pub(crate) fn ordered(&self) -> Vec<(&str, &[u8])> {
        let mut v: Vec<(u32, &str, &[u8])> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.seq != 0)
            .map(|(i, s)| (s.seq, self.layout.name(i as u32), s.value.as_slice()))
            .chain(
                self.dynamic
                    .iter()
                    .filter(|(_, (seq, _))| *seq != 0)
                    .map(|(k, (seq, val))| (*seq, k.as_str(), val.as_slice())),
            )
            .collect();
        v.sort_unstable_by_key(|(seq, ..)| *seq);
        v.into_iter().map(|(_, k, val)| (k, val)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selecting_by_slot_bits_lists_what_the_key_does() {
        let mut l = TxLayout::default();
        // More than one word of slots.
        for i in 0..150 {
            l.intern(&format!("{}_{i}", if i % 7 == 0 { "msc" } else { "score" }));
        }
        let keep = |n: &str| n.starts_with("msc");
        let bits = l.selected_slots(keep);
        let l = Arc::new(l);
        let mut t = TxStore::default();
        t.reset(&l);
        for i in (0..=147).rev().step_by(3) {
            let name = format!("{}_{i}", if i % 7 == 0 { "msc" } else { "score" });
            t.set(&name, name.as_bytes());
            if i % 21 == 0 {
                t.set(&format!("msc_dynamic_{i}"), b"d");
            }
        }
        let by_bits = t.select_in(Some(&bits), keep);
        let by_key = t.select_in(None, keep);
        assert_eq!(by_bits, by_key);
        let names: Vec<&str> = by_bits.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            names,
            vec![
                "msc_147",
                "msc_dynamic_147",
                "msc_126",
                "msc_dynamic_126",
                "msc_105",
                "msc_dynamic_105",
                "msc_84",
                "msc_dynamic_84",
                "msc_63",
                "msc_dynamic_63",
                "msc_42",
                "msc_dynamic_42",
                "msc_21",
                "msc_dynamic_21",
                "msc_0",
                "msc_dynamic_0",
            ]
        );
    }

    #[test]
    fn slots_dynamic_names_and_order() {
        let mut l = TxLayout::default();
        let a = l.intern("a");
        let b = l.intern("b");
        let l = Arc::new(l);
        let mut t = TxStore::default();
        t.reset(&l);
        t.set("b", b"2");
        t.set("dyn_x", b"x");
        if let Some(v) = t.slot_mut(a) {
            v.extend_from_slice(b"1");
        }
        assert_eq!(t.get("a"), Some(&b"1"[..]));
        assert_eq!(t.get_id(b), Some(&b"2"[..]));
        let names: Vec<&str> = t.ordered().into_iter().map(|(k, _)| k).collect();
        assert_eq!(names, vec!["b", "dyn_x", "a"]);
        t.remove("b");
        assert!(!t.contains("b"));
        t.set("b", b"3");
        let names: Vec<&str> = t.ordered().into_iter().map(|(k, _)| k).collect();
        assert_eq!(names, vec!["dyn_x", "a", "b"]);
        t.reset(&l);
        assert!(t.get("a").is_none() && t.get("dyn_x").is_none());
    }

    /// Names built at run time keep their entries for the next transaction, absent: they are
    /// neither read nor listed until set again, and then listed in their new order.
    #[test]
    fn kept_dynamic_names_are_absent_until_set_again() {
        let l = Arc::new(TxLayout::default());
        let mut t = TxStore::default();
        t.reset(&l);
        t.set("dyn_a", b"1");
        t.set("dyn_b", &[b'x'; 10_000]);
        t.remove("dyn_a");
        assert!(!t.contains("dyn_a"));
        t.set("dyn_a", b"2");
        let names: Vec<&str> = t.ordered().into_iter().map(|(k, _)| k).collect();
        assert_eq!(names, vec!["dyn_b", "dyn_a"]);
        t.reset(&l);
        assert_eq!(t.dynamic.len(), 2, "kept for the next transaction");
        assert_eq!(
            t.dynamic["dyn_b"].1.capacity(),
            0,
            "a large buffer is let go"
        );
        assert!(t.get("dyn_a").is_none() && t.get("dyn_b").is_none());
        assert!(t.ordered().is_empty());
        assert!(t.select_in(None, |_| true).is_empty());
        t.set("dyn_b", b"3");
        t.entry("dyn_c").extend_from_slice(b"4");
        // `entry` on a kept name starts from an empty value.
        t.entry("dyn_a").extend_from_slice(b"5");
        assert_eq!(t.get("dyn_a"), Some(&b"5"[..]));
        let names: Vec<&str> = t.ordered().into_iter().map(|(k, _)| k).collect();
        assert_eq!(names, vec!["dyn_b", "dyn_c", "dyn_a"]);
        // A store that collected more names than it keeps forgets them.
        for i in 0..=DYNAMIC_KEPT {
            t.set(&format!("many_{i}"), b"1");
        }
        t.reset(&l);
        assert!(t.dynamic.is_empty());
    }
}
