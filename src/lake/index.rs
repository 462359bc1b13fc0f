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

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

type Map<K> = HashMap<K, u32, foldhash::fast::RandomState>;

#[derive(Debug, Default)]
pub struct KeyIndex {
    ints: Map<i64>,
    hashed: Map<u128>,
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
}

impl KeyIndex {
    pub fn reserve(&mut self, additional: usize) {
        self.ints.reserve(additional);
    }

    pub fn len(&self) -> usize {
        self.ints.len() + self.hashed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, key: &str) -> Option<u32> {
        match Slot::of(key) {
            Slot::Int(i) => self.ints.get(&i).copied(),
            Slot::Hash(h) => self.hashed.get(&h).copied(),
        }
    }

    pub fn insert(&mut self, key: &str, group: u32) {
        self.insert_slot(Slot::of(key), group);
    }

    pub fn insert_slot(&mut self, slot: Slot, group: u32) {
        match slot {
            Slot::Int(i) => {
                self.ints.insert(i, group);
            }
            Slot::Hash(h) => {
                self.hashed.insert(h, group);
            }
        }
    }

    /// Removes `key` if the index places it in `group` (a key that moved to
    /// another group in the same commit stays where it went).
    pub fn remove_from(&mut self, key: &str, group: u32) {
        match Slot::of(key) {
            Slot::Int(i) => {
                if self.ints.get(&i) == Some(&group) {
                    self.ints.remove(&i);
                }
            }
            Slot::Hash(h) => {
                if self.hashed.get(&h) == Some(&group) {
                    self.hashed.remove(&h);
                }
            }
        }
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
        ix.insert("7", 1);
        ix.insert("07", 2);
        ix.insert_slot(Slot::of("a:1,b:2"), 3);
        assert_eq!(ix.get("7"), Some(1));
        assert_eq!(
            ix.get("07"),
            Some(2),
            "text that is not a canonical integer is its own key"
        );
        assert_eq!(ix.get("a:1,b:2"), Some(3));
        ix.remove_from("7", 9);
        assert_eq!(
            ix.get("7"),
            Some(1),
            "removal only from the group that holds it"
        );
        ix.remove_from("7", 1);
        assert_eq!(ix.get("7"), None);
        assert_eq!(ix.len(), 2);
    }
}
