//! The record-key bloom filter Java Hudi's BLOOM index reads from a base
//! file's footer (`org.apache.hudi.bloomfilter`, type `DYNAMIC_V0`), and the
//! key range beside it (`hoodie_min_record_key`, `hoodie_max_record_key`).
//!
//! The bytes must be exactly what Java's `HoodieDynamicBoundedBloomFilter`
//! serializes, or a Java writer sharing the table would miss keys:
//!
//! - sizing from Hudi's defaults (60 000 keys per bit vector, a false
//!   positive rate of 1e-9, at most 100 000 keys before the vectors are
//!   reused round-robin), with Java's formulas: `bits = ceil(n · -ln(p) /
//!   ln²2)`, `hashes = ceil(ln 2 · bits / n)`;
//! - the `k` bit positions of a key from Hadoop's MurmurHash variant, each
//!   hash seeding the next, taken modulo the vector size;
//! - big-endian `DataOutput` framing: version `-1`, hash count, hash type `1`
//!   (murmur), vector size, then per filter the bytes of the bit vector with
//!   bit `i` in byte `i / 8` at bit `i % 8`; the dynamic filter writes its
//!   header, the keys per vector, the keys in the current vector and the
//!   vector count before each vector's own header and bits;
//! - the whole in standard base64.
//!
//! The key range compares keys as Java's `String.compareTo` does (UTF-16
//! code units), since that is how Java's index prunes files.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

pub const FOOTER_FILTER: &str = "org.apache.hudi.bloomfilter";
pub const FOOTER_TYPE: &str = "hoodie_bloom_filter_type_code";
pub const FOOTER_MIN_KEY: &str = "hoodie_min_record_key";
pub const FOOTER_MAX_KEY: &str = "hoodie_max_record_key";

/// Hudi's default sizing.
pub const KEYS_PER_VECTOR: u32 = 60_000;
pub const FALSE_POSITIVE_RATE: f64 = 1e-9;
pub const MAX_KEYS: u32 = 100_000;
/// The smallest vector of a filter sized to its file.
pub const MIN_KEYS_PER_VECTOR: u32 = 1_000;

/// Hadoop's MurmurHash as Hudi uses it: MurmurHash2 over little-endian words,
/// except that the trailing bytes are sign-extended and the first of them
/// lands highest.
pub fn murmur(data: &[u8], seed: i32) -> i32 {
    const M: u32 = 0x5bd1_e995;
    let mut h = (seed as u32) ^ (data.len() as u32);
    let words = data.len() / 4;
    for w in 0..words {
        let b = |i: usize| u32::from(data.get(w * 4 + i).copied().unwrap_or(0));
        let mut k = b(0) | (b(1) << 8) | (b(2) << 16) | (b(3) << 24);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let tail = data.get(words * 4..).unwrap_or_default();
    if !tail.is_empty() {
        let n = tail.len();
        for (i, byte) in tail.iter().enumerate() {
            let signed = i32::from(*byte as i8) as u32;
            h ^= signed << (8 * (n - 1 - i));
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// A growing set of bit vectors, filled one after the other.
#[derive(Debug, Clone)]
pub struct DynamicBloom {
    bits: u32,
    hashes: u32,
    per_vector: u32,
    max_keys: u32,
    vectors: Vec<Vec<u8>>,
    in_current: u32,
    saturated: bool,
    next: usize,
}

impl DynamicBloom {
    pub fn new(per_vector: u32, rate: f64, max_keys: u32) -> DynamicBloom {
        let ln2 = std::f64::consts::LN_2;
        let bits = (f64::from(per_vector) * (-rate.ln() / (ln2 * ln2))).ceil() as u32;
        let hashes = (ln2 * f64::from(bits) / f64::from(per_vector)).ceil() as u32;
        DynamicBloom {
            bits,
            hashes,
            per_vector,
            max_keys,
            vectors: vec![vec![0u8; bits.div_ceil(8) as usize]],
            in_current: 0,
            saturated: false,
            next: 0,
        }
    }

    /// Hudi's default filter.
    pub fn hudi_default() -> DynamicBloom {
        DynamicBloom::new(KEYS_PER_VECTOR, FALSE_POSITIVE_RATE, MAX_KEYS)
    }

    fn positions(&self, key: &[u8]) -> Vec<usize> {
        let mut seed = 0i32;
        let bits = self.bits as i32;
        (0..self.hashes)
            .map(|_| {
                seed = murmur(key, seed);
                (seed % bits).unsigned_abs() as usize
            })
            .collect()
    }

    /// The vector the next key goes to (adding one when the current is full
    /// and the filter may still grow).
    fn target(&mut self) -> usize {
        if self.saturated {
            let v = self.next % self.vectors.len();
            self.next += 1;
            return v;
        }
        if self.in_current >= self.per_vector {
            let capacity = self.vectors.len() as u64 * u64::from(self.per_vector);
            if capacity < u64::from(self.max_keys) {
                self.vectors.push(vec![0u8; self.bits.div_ceil(8) as usize]);
                self.in_current = 0;
            } else {
                // Java hands out the first vector at saturation and then
                // starts its round-robin at the first vector again.
                self.saturated = true;
                return 0;
            }
        }
        self.vectors.len() - 1
    }

    pub fn add(&mut self, key: &[u8]) {
        let v = self.target();
        let positions = self.positions(key);
        if let Some(vector) = self.vectors.get_mut(v) {
            for p in positions {
                if let Some(byte) = vector.get_mut(p / 8) {
                    *byte |= 1 << (p % 8);
                }
            }
        }
        self.in_current = self.in_current.wrapping_add(1);
    }

    pub fn might_contain(&self, key: &[u8]) -> bool {
        let positions = self.positions(key);
        self.vectors.iter().any(|v| {
            positions
                .iter()
                .all(|p| v.get(p / 8).is_some_and(|b| b & (1 << (p % 8)) != 0))
        })
    }

    fn header(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(-1i32).to_be_bytes());
        out.extend_from_slice(&(self.hashes as i32).to_be_bytes());
        out.push(1);
        out.extend_from_slice(&(self.bits as i32).to_be_bytes());
    }

    /// Java's `serializeToString` of the dynamic filter.
    pub fn to_base64(&self) -> String {
        let mut out = Vec::with_capacity(self.vectors.len() * (self.bits as usize / 8 + 16) + 32);
        self.header(&mut out);
        out.extend_from_slice(&(self.per_vector as i32).to_be_bytes());
        out.extend_from_slice(&(self.in_current as i32).to_be_bytes());
        out.extend_from_slice(&(self.vectors.len() as i32).to_be_bytes());
        for v in &self.vectors {
            self.header(&mut out);
            out.extend_from_slice(v);
        }
        STANDARD.encode(out)
    }

    /// Java's `serializeToString` of a single vector (`SIMPLE`).
    pub fn to_base64_simple(&self) -> String {
        let mut out = Vec::new();
        self.header(&mut out);
        if let Some(v) = self.vectors.first() {
            out.extend_from_slice(v);
        }
        STANDARD.encode(out)
    }
}

/// Java `String.compareTo`: UTF-16 code units.
pub fn java_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

/// The filter for a file of `keys` record keys: Hudi's default (60 000 keys
/// per vector, growing to 100 000) for large files, one vector sized to the
/// file for smaller ones (at least 1 000 keys). Readers take the sizes from
/// the serialized filter, so a small file does not carry Java's 431 KB
/// default filter, which would make every small file look full to the
/// small-file packing.
pub fn sized_for(keys: usize) -> DynamicBloom {
    let per_vector = u32::try_from(keys)
        .unwrap_or(u32::MAX)
        .clamp(MIN_KEYS_PER_VECTOR, KEYS_PER_VECTOR);
    DynamicBloom::new(per_vector, FALSE_POSITIVE_RATE, MAX_KEYS)
}

/// The footer entries for a base file's `count` record keys.
pub fn footer<'a>(
    count: usize,
    keys: impl Iterator<Item = &'a str>,
) -> Vec<(&'static str, String)> {
    let mut bloom = sized_for(count);
    let mut min: Option<&str> = None;
    let mut max: Option<&str> = None;
    for key in keys.filter(|k| !k.is_empty()) {
        bloom.add(key.as_bytes());
        if min.is_none_or(|m| java_order(key, m).is_lt()) {
            min = Some(key);
        }
        if max.is_none_or(|m| java_order(key, m).is_gt()) {
            max = Some(key);
        }
    }
    let mut entries = vec![
        (FOOTER_FILTER, bloom.to_base64()),
        (FOOTER_TYPE, "DYNAMIC_V0".to_string()),
    ];
    if let (Some(min), Some(max)) = (min, max) {
        entries.push((FOOTER_MIN_KEY, min.to_string()));
        entries.push((FOOTER_MAX_KEY, max.to_string()));
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference values produced by Java Hudi (`MurmurHash.getInstance().hash`
    // and `BloomFilter#serializeToString`), as published with hudi-rs's
    // byte-compatible bloom filter.

    #[test]
    fn murmur_matches_java() {
        let cases: [(&str, [i32; 3]); 8] = [
            ("a", [-1838653602, 713507990, -579949966]),
            ("ab", [1525573013, -1797532438, -1822173170]),
            ("abc", [1775488903, -1465591341, -2108309701]),
            ("abcd", [646393889, 1555318719, 758563494]),
            ("abcde", [1594468574, -392878951, 232266555]),
            ("é", [-384040333, -1125067414, 1887701134]),
            ("日本", [659168028, -727673871, -762233106]),
            ("id:ÿ/\u{80}", [1086828780, 1747206571, 276313369]),
        ];
        for (key, expected) in cases {
            assert_eq!(
                [0, -1, 12345].map(|s| murmur(key.as_bytes(), s)),
                expected,
                "{key}"
            );
        }
    }

    fn keys(n: usize) -> Vec<String> {
        let mut k: Vec<String> = [
            "a",
            "ab",
            "abc",
            "abcd",
            "abcde",
            "é",
            "日本",
            "id:ÿ/\u{80}",
            "2026/10/28",
            "key-😀",
        ]
        .map(String::from)
        .to_vec();
        k.extend((0..n.saturating_sub(k.len())).map(|i| format!("key{i}")));
        k.truncate(n);
        k
    }

    #[test]
    fn dynamic_filter_bytes_match_java() {
        // 10 keys a vector, fpp 0.01, at most 30 keys: two more vectors, then
        // round-robin for the last 15 of 45 keys.
        let mut f = DynamicBloom::new(10, 0.01, 30);
        for k in keys(45) {
            f.add(k.as_bytes());
        }
        assert_eq!(
            f.to_base64(),
            "/////wAAAAcBAAAAYAAAAAoAAAAZAAAAA/////8AAAAHAQAAAGC8fX7BbvPs0+eG9hz/////AAAABwEAAABg\
             +l33feftPuy+f/4L/////wAAAAcBAAAAYF/6d/+vL93L4fPL2Q=="
        );
        assert!(keys(45).iter().all(|k| f.might_contain(k.as_bytes())));
    }

    #[test]
    fn simple_filter_bytes_match_java() {
        let mut f = DynamicBloom::new(10, 0.01, 30);
        for k in keys(12) {
            // A SIMPLE filter keeps one vector: add into the first.
            let positions = f.positions(k.as_bytes());
            for p in positions {
                f.vectors[0][p / 8] |= 1 << (p % 8);
            }
        }
        assert_eq!(f.to_base64_simple(), "/////wAAAAcBAAAAYPh9R1Fm82zY55e2GA==");
    }

    #[test]
    fn default_sizing_and_footer() {
        let mut f = DynamicBloom::hudi_default();
        for k in keys(13) {
            f.add(k.as_bytes());
        }
        assert_eq!(
            f.to_base64().len(),
            431_380,
            "Java's default filter is 431 380 characters"
        );
        assert!(!(0..100).any(|i| f.might_contain(format!("absent{i}").as_bytes())));
        let entries = footer(
            6,
            ["k2", "k10", "é", "k1", "\u{FF21}", "\u{1F600}"].into_iter(),
        );
        assert_eq!(entries[1], (FOOTER_TYPE, "DYNAMIC_V0".to_string()));
        // Java order: U+1F600 (a surrogate pair) sorts before U+FF21.
        assert_eq!(entries[2], (FOOTER_MIN_KEY, "k1".to_string()));
        assert_eq!(entries[3], (FOOTER_MAX_KEY, "\u{FF21}".to_string()));
    }

    #[test]
    fn small_files_get_small_filters_that_hold_their_keys() {
        let few = keys(50);
        let mut small = sized_for(few.len());
        for k in &few {
            small.add(k.as_bytes());
        }
        let text = small.to_base64();
        assert!(text.len() < 10_000, "{} characters", text.len());
        assert!(few.iter().all(|k| small.might_contain(k.as_bytes())));
        assert!(!(0..100).any(|i| small.might_contain(format!("absent{i}").as_bytes())));
        // Large files get Java's default.
        assert_eq!(sized_for(250_000).to_base64().len(), 431_380);
        assert_eq!(sized_for(60_000).to_base64().len(), 431_380);
    }
}
