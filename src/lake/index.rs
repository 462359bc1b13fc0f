//! Where each record key of a table lives: key → file group.
//!
//! Keys that are canonical 64-bit integers (the common `bigint` primary key)
//! are stored exactly; any other key by a 128-bit hash (two independent
//! SipHash-1-3 values). The index only routes a change to a file group: the
//! group's stored keys are compared exactly before anything is applied, so a
//! hash collision could at worst misroute, and at 128 bits its probability is
//! below 10^-18 for ten billion keys. The maps themselves hash with
//! foldhash (randomly seeded per process): a lookup in a table of ten
//! million keys is one cache miss either way, and SipHash on top of it
//! made routing a batch a third slower.
//!
//! The maps are split into [`SHARDS`] shards by key, so that a commit's
//! changes to the index (hundreds of thousands of keys placed and removed,
//! each a cache miss) are applied on every core ([`KeyIndex::update`]).
//!
//! Memory: the index holds every key of the table, so it is packed. An
//! entry is a key and its group with no padding: 12 bytes for an integer
//! key, 20 for a hashed one (a map of `(i64, u32)` pads each to 16 bytes,
//! of `(u128, u32)` to 32), plus a control byte a slot. Tables grown by
//! inserts are between 7/16 and 7/8 full (they double when they fill):
//! 15 to 30 bytes a key for integer keys, 24 to 48 for others; deletes
//! leave them emptier until the table is opened again, when they are
//! sized from its first file. The lake benchmark's 10M integer keys take
//! 218 MB ([`KeyIndex::heap_bytes`], logged when a table opens); a table
//! of a billion integer keys needs 15 to 30 GB.

use std::hash::{BuildHasher, Hash, Hasher};

use foldhash::fast::RandomState;
use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

/// An integer key and its group in 12 bytes: the key's low and high
/// halves, then the group.
#[derive(Debug, Clone, Copy)]
struct IntEntry([u32; 3]);

impl IntEntry {
    fn new(key: i64, group: u32) -> IntEntry {
        let bits = key as u64;
        IntEntry([bits as u32, (bits >> 32) as u32, group])
    }
}

impl Packed for IntEntry {
    type Key = i64;

    fn key(&self) -> i64 {
        let [low, high, _] = self.0;
        ((u64::from(high) << 32) | u64::from(low)) as i64
    }

    fn group(&self) -> u32 {
        let [_, _, group] = self.0;
        group
    }
}

/// A hashed key (128 bits, four quarters from the lowest) and its group in
/// 20 bytes.
#[derive(Debug, Clone, Copy)]
struct HashEntry([u32; 5]);

impl HashEntry {
    fn new(hash: u128, group: u32) -> HashEntry {
        let q = |n: u32| (hash >> (32 * n)) as u32;
        HashEntry([q(0), q(1), q(2), q(3), group])
    }
}

impl Packed for HashEntry {
    type Key = u128;

    fn key(&self) -> u128 {
        let [a, b, c, d, _] = self.0;
        u128::from(a) | u128::from(b) << 32 | u128::from(c) << 64 | u128::from(d) << 96
    }

    fn group(&self) -> u32 {
        let [_, _, _, _, group] = self.0;
        group
    }
}

/// An entry of one of a shard's tables: its key and its group. Both tables
/// place a key by its hash with the shard's random seed (a hashed key
/// too: `hash128` is SipHash with fixed keys, and keys chosen to collide
/// in it must not pile up in one run of slots).
trait Packed: Copy {
    type Key: Hash + Eq + Copy;

    fn key(&self) -> Self::Key;
    fn group(&self) -> u32;
}

/// The group of `key` in `table`.
fn find<E: Packed>(table: &HashTable<E>, state: &RandomState, key: E::Key) -> Option<u32> {
    table
        .find(state.hash_one(key), |e| e.key() == key)
        .map(E::group)
}

/// Puts `entry` in `table`, in place of the entry of its key if any.
fn place<E: Packed>(table: &mut HashTable<E>, state: &RandomState, entry: E) {
    let key = entry.key();
    match table.entry(state.hash_one(key), |e| e.key() == key, rehash(state)) {
        Entry::Occupied(mut o) => *o.get_mut() = entry,
        Entry::Vacant(v) => {
            v.insert(entry);
        }
    }
}

/// Removes `key` from `table` if it is there in `group`.
fn take<E: Packed>(table: &mut HashTable<E>, state: &RandomState, key: E::Key, group: u32) {
    if let Ok(o) = table.find_entry(state.hash_one(key), |e| {
        e.key() == key && e.group() == group
    }) {
        o.remove();
    }
}

/// Makes room in `table` for `additional` more entries.
fn room<E: Packed>(table: &mut HashTable<E>, state: &RandomState, additional: usize) {
    table.reserve(additional, rehash(state));
}

/// How a table places an entry it moves when it grows.
fn rehash<E: Packed>(state: &RandomState) -> impl Fn(&E) -> u64 + '_ {
    move |e| state.hash_one(e.key())
}

/// How many shards the index is split into (a power of two).
pub const SHARDS: usize = 16;

/// Index updates smaller than this are applied on the calling thread.
const PARALLEL_FROM: usize = 20_000;

#[derive(Debug)]
pub struct KeyIndex {
    shards: Vec<Shard>,
}

#[derive(Debug, Default)]
struct Shard {
    ints: HashTable<IntEntry>,
    hashed: HashTable<HashEntry>,
    /// The seed both tables hash their keys with (see [`Packed`]).
    state: RandomState,
}

impl Default for KeyIndex {
    fn default() -> Self {
        KeyIndex {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
        }
    }
}

/// What the index stores of a key: [`Slot::of`] is computed off the
/// index's thread when a table is opened (on the CPU pool, with the file's
/// decoding), so that building the index is only inserting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Int(i64),
    Hash(u128),
}

/// The integer a key spells, if it spells one the way `i64::to_string`
/// would (no sign but `-`, no leading zeros).
fn canonical_int(key: &str) -> Option<i64> {
    let digits = key.strip_prefix('-').unwrap_or(key);
    let canonical = !digits.is_empty()
        && digits.len() <= 19
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && key != "-0";
    if canonical { key.parse().ok() } else { None }
}

fn hash128(key: &str) -> u128 {
    let mut a = std::collections::hash_map::DefaultHasher::new();
    0u8.hash(&mut a);
    key.hash(&mut a);
    let mut b = std::collections::hash_map::DefaultHasher::new();
    1u8.hash(&mut b);
    key.hash(&mut b);
    (u128::from(a.finish()) << 64) | u128::from(b.finish())
}

impl Slot {
    pub fn of(key: &str) -> Slot {
        match canonical_int(key) {
            Some(i) => Slot::Int(i),
            None => Slot::Hash(hash128(key)),
        }
    }

    /// The shard that holds the slot: the top bits of a multiplicative
    /// hash of an integer key, of a hashed key's own hash.
    fn shard(self) -> usize {
        let bits = match self {
            Slot::Int(i) => (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            Slot::Hash(h) => (h >> 64) as u64,
        };
        (bits >> (64 - SHARDS.trailing_zeros())) as usize
    }
}

impl Shard {
    fn insert(&mut self, slot: Slot, group: u32) {
        match slot {
            Slot::Int(i) => place(&mut self.ints, &self.state, IntEntry::new(i, group)),
            Slot::Hash(h) => place(&mut self.hashed, &self.state, HashEntry::new(h, group)),
        }
    }

    fn get(&self, slot: Slot) -> Option<u32> {
        match slot {
            Slot::Int(i) => find(&self.ints, &self.state, i),
            Slot::Hash(h) => find(&self.hashed, &self.state, h),
        }
    }

    fn remove_from(&mut self, slot: Slot, group: u32) {
        match slot {
            Slot::Int(i) => take(&mut self.ints, &self.state, i, group),
            Slot::Hash(h) => take(&mut self.hashed, &self.state, h, group),
        }
    }
}

/// The shard of `part` (the shards from `first` on) that holds `key`, and
/// the key's slot; `None` when another part holds it.
fn shard_in<'p>(part: &'p mut [Shard], first: usize, key: &str) -> Option<(&'p mut Shard, Slot)> {
    let slot = Slot::of(key);
    let shard = part.get_mut(slot.shard().checked_sub(first)?)?;
    Some((shard, slot))
}

/// Applies the part of an update that falls in `part`, the shards from
/// `first` on.
fn update_part(part: &mut [Shard], first: usize, removed: &[(&str, u32)], added: &[(&str, u32)]) {
    for (key, group) in removed {
        if let Some((shard, slot)) = shard_in(part, first, key) {
            shard.remove_from(slot, *group);
        }
    }
    for (key, group) in added {
        if let Some((shard, slot)) = shard_in(part, first, key) {
            shard.insert(slot, *group);
        }
    }
}

impl KeyIndex {
    /// Makes room for `ints` more integer keys and `hashed` more others.
    pub fn reserve(&mut self, ints: usize, hashed: usize) {
        for shard in &mut self.shards {
            if ints > 0 {
                room(&mut shard.ints, &shard.state, ints / SHARDS + 1);
            }
            if hashed > 0 {
                room(&mut shard.hashed, &shard.state, hashed / SHARDS + 1);
            }
        }
    }

    /// The bytes its tables take on the heap.
    pub fn heap_bytes(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.ints.allocation_size() + s.hashed.allocation_size())
            .sum()
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.ints.len() + s.hashed.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, key: &str) -> Option<u32> {
        let slot = Slot::of(key);
        self.shards.get(slot.shard())?.get(slot)
    }

    pub fn insert_slot(&mut self, slot: Slot, group: u32) {
        if let Some(shard) = self.shards.get_mut(slot.shard()) {
            shard.insert(slot, group);
        }
    }

    /// Applies a commit: each `removed` key leaves its group if the index
    /// places it there (a key that moved to another group in the same
    /// commit stays where it went), then each `added` key is placed in its
    /// group. A key that moved is removed from the group it left and
    /// added to the one it went to, in either order of the files, so the
    /// removals going first gives the same index as the files' order. A
    /// large update is applied on every core, each thread to its shards.
    pub fn update(&mut self, removed: &[(&str, u32)], added: &[(&str, u32)]) {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(SHARDS);
        if threads < 2 || removed.len() + added.len() < PARALLEL_FROM {
            update_part(&mut self.shards, 0, removed, added);
            return;
        }
        let per_thread = SHARDS.div_ceil(threads);
        std::thread::scope(|scope| {
            for (t, part) in self.shards.chunks_mut(per_thread).enumerate() {
                scope.spawn(move || update_part(part, t * per_thread, removed, added));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_exact_and_other_keys_hashed() {
        assert_eq!(canonical_int("42"), Some(42));
        assert_eq!(canonical_int("-7"), Some(-7));
        assert_eq!(canonical_int("0"), Some(0));
        assert_eq!(canonical_int("007"), None);
        assert_eq!(canonical_int("-0"), None);
        assert_eq!(canonical_int("+1"), None);
        assert_eq!(canonical_int("99999999999999999999"), None);
        assert_eq!(canonical_int("id:1,name:x"), None);
        let mut ix = KeyIndex::default();
        ix.insert_slot(Slot::of("7"), 1);
        ix.insert_slot(Slot::of("07"), 2);
        ix.insert_slot(Slot::of("a:1,b:2"), 3);
        assert_eq!(ix.get("7"), Some(1));
        assert_eq!(
            ix.get("07"),
            Some(2),
            "text that is not a canonical integer is its own key"
        );
        assert_eq!(ix.get("a:1,b:2"), Some(3));
        ix.update(&[("7", 9)], &[]);
        assert_eq!(
            ix.get("7"),
            Some(1),
            "removal only from the group that holds it"
        );
        ix.update(&[("7", 1)], &[]);
        assert_eq!(ix.get("7"), None);
        assert_eq!(ix.len(), 2);
    }

    #[test]
    fn entries_are_packed_and_keep_every_bit() {
        assert_eq!(std::mem::size_of::<IntEntry>(), 12);
        assert_eq!(std::mem::size_of::<HashEntry>(), 20);
        for key in [i64::MIN, -1, 0, 1, 1 << 32, (1 << 32) - 1, i64::MAX] {
            let e = IntEntry::new(key, u32::MAX);
            assert_eq!((e.key(), e.group()), (key, u32::MAX));
        }
        for hash in [
            0,
            u128::MAX,
            1 << 127,
            (1 << 64) - 1,
            0x0123_4567_89ab_cdef_fedc_ba98_7654_3210,
        ] {
            let e = HashEntry::new(hash, 7);
            assert_eq!((e.key(), e.group()), (hash, 7));
        }
        // Extreme keys are found, replaced and removed like any other.
        let mut ix = KeyIndex::default();
        for (g, key) in [i64::MIN, -1, i64::MAX].iter().enumerate() {
            ix.insert_slot(Slot::Int(*key), g as u32);
        }
        ix.insert_slot(Slot::Int(-1), 9);
        assert_eq!(ix.get(&i64::MIN.to_string()), Some(0));
        assert_eq!(ix.get("-1"), Some(9));
        assert_eq!(ix.get(&i64::MAX.to_string()), Some(2));
        ix.update(&[("-1", 9)], &[]);
        assert_eq!((ix.get("-1"), ix.len()), (None, 2));
    }

    /// 200,000 integer keys, 12,500 a shard: tables of 16,384 slots, 76%
    /// full. At 13 bytes a slot that is 17 bytes a key; entries padded to
    /// 16 bytes (a map of `(i64, u32)`) would take 22.
    #[test]
    fn integer_keys_take_thirteen_bytes_a_slot() {
        let mut ix = KeyIndex::default();
        let n = 200_000usize;
        ix.reserve(n, 0);
        for k in 0..n {
            ix.insert_slot(Slot::of(&(k * 7919).to_string()), (k % 90) as u32);
        }
        let per_key = ix.heap_bytes() as f64 / n as f64;
        assert!(per_key < 20.0, "{per_key:.1} bytes a key");
        assert!((0..n).all(|k| ix.get(&(k * 7919).to_string()) == Some((k % 90) as u32)));
    }

    #[test]
    fn an_update_moves_removes_and_places_keys_on_every_core_as_in_order() {
        for n in [100usize, 3 * PARALLEL_FROM] {
            let mut ix = KeyIndex::default();
            let keys: Vec<String> = (0..n).map(|i| i.to_string()).collect();
            let texts: Vec<String> = (0..n).map(|i| format!("k:{i}")).collect();
            for (i, (k, t)) in keys.iter().zip(&texts).enumerate() {
                ix.insert_slot(Slot::of(k), (i % 7) as u32);
                ix.insert_slot(Slot::of(t), (i % 7) as u32);
            }
            // Every third key moves to group 100, every fifth is deleted,
            // and as many new keys come in; a stale removal (the wrong
            // group) removes nothing.
            let mut removed = Vec::new();
            let mut added = Vec::new();
            let news: Vec<String> = (n..2 * n).map(|i| i.to_string()).collect();
            for (i, (k, t)) in keys.iter().zip(&texts).enumerate() {
                let g = (i % 7) as u32;
                if i % 3 == 0 {
                    added.push((k.as_str(), 100));
                    added.push((t.as_str(), 100));
                    removed.push((k.as_str(), g));
                    removed.push((t.as_str(), g));
                } else if i % 5 == 0 {
                    removed.push((k.as_str(), g));
                    removed.push((t.as_str(), g));
                } else if i % 11 == 0 {
                    removed.push((k.as_str(), g + 1));
                }
            }
            for k in &news {
                added.push((k.as_str(), 200));
            }
            ix.update(&removed, &added);
            for (i, (k, t)) in keys.iter().zip(&texts).enumerate() {
                let expected = if i % 3 == 0 {
                    Some(100)
                } else if i % 5 == 0 {
                    None
                } else {
                    Some((i % 7) as u32)
                };
                assert_eq!(ix.get(k), expected, "key {k}");
                assert_eq!(ix.get(t), expected, "key {t}");
            }
            assert!(news.iter().all(|k| ix.get(k) == Some(200)));
            let deleted = (0..n).filter(|i| i % 3 != 0 && i % 5 == 0).count();
            assert_eq!(ix.len(), 2 * (n - deleted) + n);
            assert!(
                ix.shards.iter().all(|s| !s.ints.is_empty()),
                "integer keys spread over every shard"
            );
        }
    }
}
