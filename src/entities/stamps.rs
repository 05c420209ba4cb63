//! When each entity last changed, for a decision cache that survives
//! unrelated writes.
//!
//! A cached decision remembers the epoch it was computed at and the
//! entities it read (as stamp slots). It may be served as long as none of
//! them changed since: every slot it read holds a stamp not later than its
//! epoch, and no wholesale invalidation happened after it. Entities share
//! slots by hash, so a write to one entity may retire the decisions of
//! another in its slot: needless recomputation, never a stale answer.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use cedar_policy::{Entities, EntityUid};
use cedar_policy_core::ast::{
    Entity as CoreEntity, EntityUID, Literal, PartialValue, Value, ValueKind,
};

/// Slots: 1,048,576 × 8 bytes (8 MiB). With 65,536, the standard
/// workload's 40,000 cached decisions of about 20 slots each put a dozen
/// decisions in every slot, and each write to an unrelated entity retired
/// about 6 of them (measured; 40–50 µs each to decide again); here it is
/// under one.
const SLOTS: usize = 1 << 20;

/// The epoch of the last change of the entities of each slot.
#[derive(Debug)]
pub(super) struct Stamps {
    slots: Box<[AtomicU64]>,
    /// Decisions computed before this epoch are all stale (every cache was
    /// emptied, or the schema changed).
    floor: AtomicU64,
    /// Seeded at random per process (nobody can pick entity ids that share
    /// a victim's slot on purpose), one for readers and writers alike.
    hasher: foldhash::fast::RandomState,
}

impl Default for Stamps {
    fn default() -> Self {
        Self {
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            floor: AtomicU64::new(0),
            hasher: foldhash::fast::RandomState::default(),
        }
    }
}

impl Stamps {
    /// The slot of `uid`.
    pub(super) fn slot(&self, uid: &EntityUID) -> u32 {
        (self.hasher.hash_one(uid) as usize % SLOTS) as u32
    }

    /// Records that `uid` changes at `epoch` (called before the epoch moves
    /// to it, so that no reader can see the new epoch without the stamp).
    pub(super) fn stamp(&self, uid: &EntityUid, epoch: u64) {
        self.slots[self.slot(uid.as_ref()) as usize].fetch_max(epoch, Ordering::SeqCst);
    }

    /// Records that everything changes at `epoch`.
    pub(super) fn stamp_all(&self, epoch: u64) {
        self.floor.fetch_max(epoch, Ordering::SeqCst);
    }

    /// Whether nothing in `slots` changed after `epoch`.
    pub(super) fn unchanged_since(&self, epoch: u64, slots: &[u32]) -> bool {
        self.floor.load(Ordering::SeqCst) <= epoch
            && slots
                .iter()
                .all(|&s| self.slots[s as usize].load(Ordering::SeqCst) <= epoch)
    }
}

/// Calls `visit` with each entity a decision on `slice` read: each entity
/// of the slice, its ancestors and every entity its attributes and tags
/// name (read or looked for in vain: a missing entity that appears later
/// changes the decision), and `also` (the roots and literals, which may be
/// missing).
pub(super) fn read_by<'a>(
    slice: &'a Entities,
    also: impl IntoIterator<Item = &'a EntityUid>,
    mut visit: impl FnMut(&EntityUID),
) {
    also.into_iter().for_each(|uid| visit(uid.as_ref()));
    for entity in slice.iter() {
        let core: &CoreEntity = entity.as_ref();
        visit(core.uid());
        core.ancestors().for_each(&mut visit);
        for (_, value) in core.attrs().chain(core.tags()) {
            if let PartialValue::Value(v) = value {
                entities_in(v, &mut visit);
            }
        }
    }
}

fn entities_in(value: &Value, visit: &mut impl FnMut(&EntityUID)) {
    match value.value_kind() {
        ValueKind::Lit(Literal::EntityUID(uid)) => visit(uid),
        ValueKind::Set(set) => set.authoritative.iter().for_each(|v| entities_in(v, visit)),
        ValueKind::Record(fields) => fields.values().for_each(|v| entities_in(v, visit)),
        ValueKind::Lit(_) | ValueKind::ExtensionValue(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uid(id: &str) -> EntityUid {
        format!("User::\"{id}\"")
            .parse()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_stamp_retires_only_what_read_its_slot_and_a_floor_retires_everything() {
        let stamps = Stamps::default();
        let (ann, bob) = (uid("ann"), uid("bob"));
        let read_ann = [stamps.slot(ann.as_ref())];
        let read_bob = [stamps.slot(bob.as_ref())];
        assert!(stamps.unchanged_since(3, &read_ann));

        stamps.stamp(&ann, 4);

        assert!(!stamps.unchanged_since(3, &read_ann), "ann changed after 3");
        assert!(
            stamps.unchanged_since(4, &read_ann),
            "computed at 4, after the change"
        );
        assert_eq!(
            stamps.unchanged_since(3, &read_bob),
            read_ann != read_bob,
            "bob is retired only if he shares ann's slot"
        );
        stamps.stamp_all(9);
        assert!(!stamps.unchanged_since(8, &[]));
        assert!(stamps.unchanged_since(9, &read_bob));
    }
}
