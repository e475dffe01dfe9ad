//! The convergence rule. Every piece of replicated state (a tag, a manifest's presence in a
//! repository, a blob's link into a repository) is a last-writer-wins register stamped with a
//! hybrid logical clock and the writing region. Of two writes, the one with the greater
//! `(wall_ms, logical, region)` wins — in every replica, whatever order they arrive in, however
//! often. A delete is a write of "absent" (a tombstone) and wins over older writes the same way.
//!
//! The clock never goes backwards and jumps past every stamp it observes from peers, so a write
//! made after a replica has seen another write always wins over it (causality is respected),
//! while truly concurrent writes are ordered by wall time, then by region name.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

/// A hybrid logical clock reading.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Hlc {
    /// Milliseconds since the Unix epoch (the largest wall time seen).
    pub wall_ms: u64,
    /// Counter for events within the same millisecond.
    pub logical: u32,
}

/// A write's stamp: clock reading plus the region that wrote it (the tie-breaker).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Stamp {
    /// When.
    pub hlc: Hlc,
    /// Where.
    pub region: String,
}

impl Ord for Stamp {
    fn cmp(&self, other: &Self) -> Ordering {
        self.hlc
            .cmp(&other.hlc)
            .then_with(|| self.region.cmp(&other.region))
    }
}

impl PartialOrd for Stamp {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A replica's clock.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    last: Hlc,
}

impl Clock {
    /// A clock that continues after `last` (restored from storage at start).
    pub fn resume(last: Hlc) -> Clock {
        Clock { last }
    }

    /// The latest reading issued or observed.
    pub fn last(&self) -> Hlc {
        self.last
    }

    /// A new reading, greater than every reading issued or observed before.
    pub fn tick(&mut self, now_ms: u64) -> Hlc {
        if now_ms > self.last.wall_ms {
            self.last = Hlc {
                wall_ms: now_ms,
                logical: 0,
            };
        } else if self.last.logical == u32::MAX {
            self.last = Hlc {
                wall_ms: self.last.wall_ms + 1,
                logical: 0,
            };
        } else {
            self.last.logical += 1;
        }
        self.last
    }

    /// Take note of a peer's reading, so later ticks are greater than it.
    pub fn observe(&mut self, remote: Hlc) {
        if remote > self.last {
            self.last = remote;
        }
    }
}

/// A register value with its stamp: `value == None` is a tombstone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Register<V> {
    /// Who wrote it, when.
    pub stamp: Stamp,
    /// The value, or `None` for deleted.
    pub value: Option<V>,
}

/// Whether `incoming` replaces `current`: it does when there is no current value or its stamp
/// is greater. Equal stamps mean the same write seen twice, which changes nothing.
pub fn wins<V>(current: Option<&Register<V>>, incoming: &Register<V>) -> bool {
    match current {
        None => true,
        Some(c) => incoming.stamp > c.stamp,
    }
}

/// The wall clock in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn clock_is_monotonic_and_passes_observed() {
        let mut c = Clock::default();
        let a = c.tick(100);
        let b = c.tick(100);
        assert!(b > a);
        let c2 = c.tick(50);
        assert!(c2 > b, "wall clock going back does not move the clock back");
        c.observe(Hlc {
            wall_ms: 1_000,
            logical: 7,
        });
        assert!(
            c.tick(200)
                > Hlc {
                    wall_ms: 1_000,
                    logical: 7
                }
        );
    }

    #[test]
    fn region_breaks_ties() {
        let h = Hlc {
            wall_ms: 5,
            logical: 0,
        };
        let e = Register {
            stamp: Stamp {
                hlc: h,
                region: "eastus".into(),
            },
            value: Some(1),
        };
        let w = Register {
            stamp: Stamp {
                hlc: h,
                region: "westus".into(),
            },
            value: Some(2),
        };
        assert!(wins(Some(&e), &w));
        assert!(!wins(Some(&w), &e));
    }

    /// A write as a replica sees it: key, stamp, value.
    #[derive(Debug, Clone)]
    struct Write {
        key: u8,
        reg: Register<u8>,
    }

    fn apply(order: &[Write]) -> BTreeMap<u8, Register<u8>> {
        let mut state: BTreeMap<u8, Register<u8>> = BTreeMap::new();
        for w in order {
            if wins(state.get(&w.key), &w.reg) {
                state.insert(w.key, w.reg.clone());
            }
        }
        state
    }

    fn write() -> impl Strategy<Value = Write> {
        (
            0u8..4,
            0u64..5,
            0u32..3,
            prop::sample::select(vec!["eastus", "westus", "centralus"]),
            prop::option::of(0u8..4),
        )
            .prop_map(|(key, wall_ms, logical, region, value)| Write {
                key,
                reg: Register {
                    stamp: Stamp {
                        hlc: Hlc { wall_ms, logical },
                        region: region.to_string(),
                    },
                    value,
                },
            })
    }

    proptest! {
        /// Any delivery order, with duplicates, converges to the same state: the merge is
        /// commutative, associative and idempotent. Distinct writes never share a stamp (a
        /// region's clock never repeats), so the generator drops such collisions.
        #[test]
        fn every_order_converges(
            writes in prop::collection::vec(write(), 1..40),
            seed in any::<u64>(),
            dup in 0usize..10,
        ) {
            let mut seen = std::collections::BTreeSet::new();
            let writes: Vec<Write> = writes
                .into_iter()
                .filter(|w| seen.insert((w.key, w.reg.stamp.clone())))
                .collect();
            let reference = apply(&writes);
            let mut shuffled = writes.clone();
            // Deterministic shuffle from the seed, then duplicate a few writes.
            let mut s = seed;
            for i in (1..shuffled.len()).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shuffled.swap(i, (s >> 33) as usize % (i + 1));
            }
            for i in 0..dup.min(shuffled.len()) {
                shuffled.push(shuffled[i].clone());
            }
            prop_assert_eq!(apply(&shuffled), reference.clone());
            // The winner of each key is its greatest stamp.
            for (k, r) in &reference {
                let best = writes.iter().filter(|w| w.key == *k).map(|w| &w.reg.stamp).max();
                prop_assert_eq!(Some(&r.stamp), best);
            }
        }

        /// A replica that applies a peer's write and then writes locally always wins over it.
        #[test]
        fn local_write_after_observing_wins(wall in 0u64..1_000_000, remote_wall in 0u64..2_000_000, logical in 0u32..10) {
            let mut c = Clock::default();
            let remote = Hlc { wall_ms: remote_wall, logical };
            c.observe(remote);
            let mine = c.tick(wall);
            prop_assert!(mine > remote);
        }
    }
}
