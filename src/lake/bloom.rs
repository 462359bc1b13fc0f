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
/// More hash functions than any sizing gives (1e-9 needs 30): a footer
/// asking for more is damaged.
const MAX_HASHES: u32 = 64;

/// Hadoop's MurmurHash as Hudi uses it: MurmurHash2 over little-endian words,
/// except that the trailing bytes are sign-extended and the first of them
/// lands highest.
pub fn murmur(data: &[u8], seed: i32) -> i32 {
    const M: u32 = 0x5bd1_e995;
    let mut h = (seed as u32) ^ (data.len() as u32);
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for word in chunks {
        let mut k = u32::from_le_bytes(word.try_into().unwrap_or([0; 4]));
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
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
        let (bits, hashes) = (self.bits as i32, self.hashes);
        if let Some(vector) = self.vectors.get_mut(v) {
            // The positions of `positions`, without collecting them.
            let mut seed = 0i32;
            for _ in 0..hashes {
                seed = murmur(key, seed);
                let p = (seed % bits).unsigned_abs() as usize;
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

    /// Parses [`Self::to_base64`]'s text (a file's footer): `None` for
    /// anything else, which the caller answers with a fresh filter.
    pub fn from_base64(text: &str) -> Option<DynamicBloom> {
        let bytes = STANDARD.decode(text).ok()?;
        let read_i32 = |at: usize| -> Option<i32> {
            Some(i32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
        };
        // Header: version -1, hash count, hash type (1: murmur), vector size.
        let header = |at: usize| -> Option<(u32, u8, u32)> {
            if read_i32(at)? != -1 {
                return None;
            }
            let hashes = u32::try_from(read_i32(at + 4)?).ok()?;
            let bits = u32::try_from(read_i32(at + 9)?).ok()?;
            Some((hashes, *bytes.get(at + 8)?, bits))
        };
        let (hashes, hash_type, bits) = header(0)?;
        let per_vector = u32::try_from(read_i32(13)?).ok()?;
        let in_current = u32::try_from(read_i32(17)?).ok()?;
        let count = usize::try_from(read_i32(21)?).ok()?;
        if hash_type != 1 || bits == 0 || per_vector == 0 || count == 0 || hashes > MAX_HASHES {
            return None;
        }
        let width = bits.div_ceil(8) as usize;
        // The counts come from the file: check them against its length
        // before allocating anything.
        if count.checked_mul(13 + width)?.checked_add(25)? != bytes.len() {
            return None;
        }
        let mut vectors = Vec::with_capacity(count);
        let mut at = 25usize;
        for _ in 0..count {
            if header(at)? != (hashes, 1, bits) {
                return None;
            }
            at += 13;
            vectors.push(bytes.get(at..at + width)?.to_vec());
            at += width;
        }
        if at != bytes.len() {
            return None;
        }
        let capacity = vectors.len() as u64 * u64::from(per_vector);
        Some(DynamicBloom {
            bits,
            hashes,
            per_vector,
            max_keys: MAX_KEYS,
            saturated: in_current >= per_vector && capacity >= u64::from(MAX_KEYS),
            vectors,
            in_current,
            next: 0,
        })
    }

    /// Keys added so far (a saturated filter keeps counting in its last
    /// vector).
    pub fn count(&self) -> u64 {
        (self.vectors.len().saturating_sub(1) as u64) * u64::from(self.per_vector)
            + u64::from(self.in_current)
    }

    /// Whether a file's filter may be carried into its next version with
    /// `adds` more keys for `rows` rows: a bloom filter of a superset of the
    /// keys never misses one, so only freshness matters. It is carried
    /// when a fresh filter would saturate as well (more rows than
    /// [`MAX_KEYS`]), or when it stays within its vectors (or grows as
    /// Java's default does) and has not collected more than twice the rows
    /// (keys deleted since it was built make it stale).
    pub fn can_extend(&self, rows: usize, adds: usize) -> bool {
        let (rows, adds) = (rows as u64, adds as u64);
        if rows > u64::from(MAX_KEYS) {
            return true;
        }
        if self.saturated {
            return false;
        }
        let after = self.count() + adds;
        let fits = after <= self.vectors.len() as u64 * u64::from(self.per_vector)
            || self.per_vector == KEYS_PER_VECTOR;
        fits && after <= 2 * rows + u64::from(MIN_KEYS_PER_VECTOR)
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

/// Java `String.compareTo`: UTF-16 code units. That is UTF-8 byte order
/// unless a character beyond U+FFFF (4-byte UTF-8, lead byte 0xF0 and up)
/// is involved, so only then are the strings re-encoded.
pub fn java_order(a: &str, b: &str) -> std::cmp::Ordering {
    Ranked::of(a).order(&Ranked::of(b))
}

/// A string with whether it holds a character beyond U+FFFF, looked at
/// once: the key range compares each key twice.
#[derive(Clone, Copy)]
struct Ranked<'a> {
    text: &'a str,
    beyond_bmp: bool,
}

impl<'a> Ranked<'a> {
    fn of(text: &'a str) -> Ranked<'a> {
        let beyond_bmp = !text.is_ascii() && text.bytes().any(|c| c >= 0xF0);
        Ranked { text, beyond_bmp }
    }

    /// [`java_order`].
    fn order(&self, other: &Ranked<'_>) -> std::cmp::Ordering {
        if self.beyond_bmp || other.beyond_bmp {
            self.text.encode_utf16().cmp(other.text.encode_utf16())
        } else {
            self.text.as_bytes().cmp(other.text.as_bytes())
        }
    }
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

/// The footer entries for a base file's `count` record keys: the filter of
/// all `keys`, or `carried` (the previous version's filter, see
/// [`DynamicBloom::can_extend`]) with the `fresh` keys added. The key range
/// is always exact.
pub fn footer<'a>(
    count: usize,
    keys: impl Iterator<Item = &'a str>,
    carried: Option<(DynamicBloom, Vec<&'a str>)>,
) -> Vec<(&'static str, String)> {
    let (mut bloom, fresh) = match carried {
        Some((filter, fresh)) => (filter, Some(fresh)),
        None => (sized_for(count), None),
    };
    if let Some(fresh) = &fresh {
        for key in fresh.iter().filter(|k| !k.is_empty()) {
            bloom.add(key.as_bytes());
        }
    }
    let mut min: Option<Ranked<'_>> = None;
    let mut max: Option<Ranked<'_>> = None;
    for key in keys.filter(|k| !k.is_empty()) {
        if fresh.is_none() {
            bloom.add(key.as_bytes());
        }
        let key = Ranked::of(key);
        if min.is_none_or(|m| key.order(&m).is_lt()) {
            min = Some(key);
        }
        if max.is_none_or(|m| key.order(&m).is_gt()) {
            max = Some(key);
        }
    }
    let (min, max) = (min.map(|m| m.text), max.map(|m| m.text));
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
            None,
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

    #[test]
    fn filters_round_trip_through_their_text_and_carry_forward() {
        // A default-sized filter past saturation, and a small one.
        for (sizing, n) in [(KEYS_PER_VECTOR as usize, 120_000), (200, 200)] {
            let ks = keys(n);
            let mut f = sized_for(sizing);
            for k in &ks {
                f.add(k.as_bytes());
            }
            let text = f.to_base64();
            let back = DynamicBloom::from_base64(&text).expect("parses");
            assert_eq!(back.to_base64(), text, "round trip");
            assert_eq!(back.count(), f.count());
            assert!(ks.iter().all(|k| back.might_contain(k.as_bytes())));
        }
        assert!(DynamicBloom::from_base64("AAAA").is_none());
        assert!(DynamicBloom::from_base64("not base64!").is_none());
        // Counts from a damaged footer: refused before anything is sized
        // by them.
        let mut raw = STANDARD.decode(sized_for(200).to_base64()).unwrap();
        raw[21..25].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(DynamicBloom::from_base64(&STANDARD.encode(&raw)).is_none());
        // The hash count in the filter's header and its one vector's.
        let mut raw = STANDARD.decode(sized_for(200).to_base64()).unwrap();
        raw[4..8].copy_from_slice(&i32::MAX.to_be_bytes());
        raw[29..33].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(DynamicBloom::from_base64(&STANDARD.encode(&raw)).is_none());

        // Carried: a filter sized for 5 000 keys holding 4 000 takes 1 000
        // more; one that collected far more keys than its file holds is
        // rebuilt, as is one that would outgrow its single vector.
        let ks = keys(5_000);
        let mut f = sized_for(5_000);
        for k in ks.iter().take(4_000) {
            f.add(k.as_bytes());
        }
        assert!(f.can_extend(5_000, 1_000));
        assert!(!f.can_extend(100, 1_000), "stale: 5 000 keys for 100 rows");
        assert!(!f.can_extend(10_000, 5_000), "would outgrow its vector");
        let text = f.to_base64();
        let fresh: Vec<&str> = ks.iter().skip(4_000).map(String::as_str).collect();
        let entries = footer(
            5_000,
            ks.iter().map(String::as_str),
            Some((DynamicBloom::from_base64(&text).unwrap(), fresh)),
        );
        let carried = DynamicBloom::from_base64(&entries[0].1).unwrap();
        assert_eq!(carried.count(), 5_000);
        assert!(ks.iter().all(|k| carried.might_contain(k.as_bytes())));
        // Files above the saturation point always carry.
        let mut big = sized_for(200_000);
        for k in keys(120_000) {
            big.add(k.as_bytes());
        }
        assert!(big.can_extend(150_000, 30_000));
    }

    #[test]
    fn java_order_is_byte_order_within_the_bmp() {
        for (a, b) in [
            ("k1", "k10"),
            ("a", "é"),
            ("\u{FF21}", "\u{1F600}"),
            ("z", "\u{1F600}"),
        ] {
            assert_eq!(
                java_order(a, b),
                a.encode_utf16().cmp(b.encode_utf16()),
                "{a} vs {b}"
            );
        }
        assert!(
            java_order("\u{1F600}", "\u{FF21}").is_lt(),
            "surrogates sort low"
        );
    }
}
