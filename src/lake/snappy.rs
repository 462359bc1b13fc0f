//! A Snappy encoder for pages of byte strings (text, JSON, binary): the
//! raw Snappy format every Parquet reader decodes, made with fewer and
//! longer copies than the reference compressor makes.
//!
//! The reference compressor (and the `snap` crate, which ports it) copies
//! any 4 bytes it has seen before. In text with random parts (ids, hashes,
//! hex, digits), many such copies are chance: 4 or 5 bytes that happen to
//! recur somewhere in the last 64 KiB, each saving 2 bytes. They are two in
//! five of its copies on the benchmark's JSON payloads, and they cost where
//! the time goes, in both directions: a compressor's work and a decoder's
//! work are per element, not per byte. This encoder copies only runs of at
//! least [`MIN_MATCH`] bytes (as zstd's fast levels do), hashing that many
//! bytes at each probe, and after a miss it probes sparser as misses go
//! on (every byte for four probes, then every second byte, ...),
//! extending a match backwards over the bytes it skipped. On one base
//! file of the lake benchmark, its payload column (17.5 MB of JSON in
//! 1 MiB pages, best of 9, four runs): compressing took 0.71-0.74 of
//! `snap`'s time, decoding the result (with `snap`) 0.58 of the time
//! decoding `snap`'s took, for 0.5% fewer bytes (see
//! `docs/MEASUREMENTS.md`).
//!
//! Fixed-width columns keep the reference compressor: in little-endian
//! integers the 4-byte copies are real (the high bytes repeat), and this
//! encoder compressed the benchmark's timestamps not at all (against the
//! reference's 0.75) and its customer ids less (0.625 against 0.617).
//!
//! Output: the uncompressed length as a varint, then elements; a copy's
//! offset is at most 65,535 (two bytes), found through a table of the last
//! position seen per hash, positions taken within 64 KiB blocks of the input
//! as the reference compressor takes them.

/// The shortest run copied.
pub const MIN_MATCH: usize = 6;
/// The hash table's size, as a power of two (16,384 entries, 32 KiB).
const HASH_BITS: u32 = 14;
/// Probes at one step before the step grows by one byte.
const SKIP_SHIFT: u32 = 2;
/// The input is compressed in blocks of this size: positions fit 16 bits.
const BLOCK: usize = 1 << 16;
/// Blocks shorter than this are one literal.
const TINY: usize = 16;
// `key` keeps at most 8 bytes of a load; a copy element takes 4 or more.
const _: () = assert!(4 <= MIN_MATCH && MIN_MATCH <= 8 && TINY >= 8 + MIN_MATCH);

/// The most bytes `n` input bytes compress to (the reference's bound).
pub fn max_compressed_len(n: usize) -> usize {
    32 + n + n / 6
}

/// An input longer than the format's 32-bit length.
#[derive(Debug, thiserror::Error)]
#[error("{0} bytes to compress: Snappy takes at most 4 GiB")]
pub struct TooLong(pub usize);

/// A Snappy encoder that keeps its hash table and its output buffer from
/// input to input.
pub struct Encoder {
    table: Vec<u16>,
    out: Vec<u8>,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    pub fn new() -> Encoder {
        Encoder {
            table: vec![0; 1 << HASH_BITS],
            out: Vec::new(),
        }
    }

    /// Compresses `input`; the output lasts until the next call. The
    /// format states the length in 32 bits: a longer input is refused.
    pub fn compress(&mut self, input: &[u8]) -> Result<&[u8], TooLong> {
        if u32::try_from(input.len()).is_err() {
            return Err(TooLong(input.len()));
        }
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        out.reserve(max_compressed_len(input.len()));
        let mut n = input.len() as u64;
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
        for block in input.chunks(BLOCK) {
            self.block(block, &mut out);
        }
        self.out = out;
        Ok(&self.out)
    }

    fn block(&mut self, b: &[u8], out: &mut Vec<u8>) {
        let len = b.len();
        if len < TINY {
            literal(b, out);
            return;
        }
        self.table.fill(0);
        // Loads of 8 bytes stay inside the block: a probe at `ip` below
        // `len - 16`, a match compared 8 bytes at a time up to `len - 8`.
        let last_probe = len - TINY;
        let last_load = len - 8;
        let mut anchor = 0usize;
        let mut ip = 1usize;
        'blocks: loop {
            // Find a match: probe, sparser after every few misses.
            let mut skip = 1usize << SKIP_SHIFT;
            let mut next = ip;
            let mut candidate;
            loop {
                ip = next;
                next = ip + (skip >> SKIP_SHIFT);
                skip += 1;
                if next > last_probe {
                    break 'blocks;
                }
                let key = key(load64(b, ip));
                let slot = hash(key);
                candidate = self.get(slot);
                self.set(slot, ip);
                if key_at(b, candidate) == key {
                    break;
                }
            }
            // Take in the bytes skipped that match too.
            while ip > anchor && candidate > 0 && b.get(ip - 1) == b.get(candidate - 1) {
                ip -= 1;
                candidate -= 1;
            }
            literal(b.get(anchor..ip).unwrap_or_default(), out);
            // Emit copies while the bytes after one start another.
            loop {
                let length =
                    MIN_MATCH + common(b, candidate + MIN_MATCH, ip + MIN_MATCH, last_load);
                copy(out, ip - candidate, length);
                ip += length;
                anchor = ip;
                if ip >= last_probe {
                    break 'blocks;
                }
                let before = load64(b, ip - 1);
                self.set(hash(key(before)), ip - 1);
                let here = key(load64(b, ip));
                let slot = hash(here);
                candidate = self.get(slot);
                self.set(slot, ip);
                if key_at(b, candidate) != here {
                    break;
                }
            }
            ip += 1;
        }
        literal(b.get(anchor..).unwrap_or_default(), out);
    }

    #[inline(always)]
    fn get(&self, slot: usize) -> usize {
        self.table.get(slot).copied().map_or(0, usize::from)
    }

    #[inline(always)]
    fn set(&mut self, slot: usize, position: usize) {
        if let Some(s) = self.table.get_mut(slot) {
            *s = position as u16;
        }
    }
}

/// The 8 bytes at `i` (little-endian); callers keep `i + 8` inside `b`.
#[inline(always)]
fn load64(b: &[u8], i: usize) -> u64 {
    b.get(i..i + 8)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map_or(0, u64::from_le_bytes)
}

/// The first [`MIN_MATCH`] bytes of a load, in its high bytes.
#[inline(always)]
fn key(loaded: u64) -> u64 {
    loaded << (64 - 8 * MIN_MATCH as u32)
}

#[inline(always)]
fn key_at(b: &[u8], i: usize) -> u64 {
    key(load64(b, i))
}

#[inline(always)]
fn hash(key: u64) -> usize {
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - HASH_BITS)) as usize
}

/// How many bytes from `from` equal those from `earlier` (`earlier <
/// from`), up to the block's end.
#[inline(always)]
fn common(b: &[u8], mut earlier: usize, mut from: usize, last_load: usize) -> usize {
    let start = from;
    while from <= last_load {
        let differ = load64(b, earlier) ^ load64(b, from);
        if differ != 0 {
            return from - start + (differ.trailing_zeros() / 8) as usize;
        }
        earlier += 8;
        from += 8;
    }
    while from < b.len() && b.get(earlier) == b.get(from) {
        earlier += 1;
        from += 1;
    }
    from - start
}

/// A literal element: a tag holding its length less one (or how many bytes
/// hold it, little-endian, after the tag), then the bytes.
#[inline(always)]
fn literal(bytes: &[u8], out: &mut Vec<u8>) {
    let Some(n) = bytes.len().checked_sub(1) else {
        return;
    };
    if n < 60 {
        out.push((n << 2) as u8);
    } else {
        let width = (usize::BITS - n.leading_zeros()).div_ceil(8) as usize;
        out.push(((59 + width) << 2) as u8);
        out.extend_from_slice(n.to_le_bytes().get(..width).unwrap_or_default());
    }
    out.extend_from_slice(bytes);
}

/// Copy elements for `length` bytes from `offset` back, at most 64 each
/// (never leaving fewer than 4 for the last).
#[inline(always)]
fn copy(out: &mut Vec<u8>, offset: usize, mut length: usize) {
    while length >= 68 {
        copy_upto64(out, offset, 64);
        length -= 64;
    }
    if length > 64 {
        copy_upto64(out, offset, 60);
        length -= 60;
    }
    copy_upto64(out, offset, length);
}

/// One copy: 2 bytes for 4 to 11 bytes from less than 2,048 back, else 3
/// (a 16-bit offset).
#[inline(always)]
fn copy_upto64(out: &mut Vec<u8>, offset: usize, length: usize) {
    if length < 12 && offset < 2048 {
        out.push((1 | ((length - 4) << 2) | ((offset >> 8) << 5)) as u8);
        out.push(offset as u8);
    } else {
        out.push((2 | ((length - 1) << 2)) as u8);
        out.extend_from_slice(&(offset as u16).to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(input: &[u8]) -> usize {
        roundtrip_with(&mut Encoder::new(), input).len()
    }

    /// The output for `input`, checked to decode to it.
    fn roundtrip_with(encoder: &mut Encoder, input: &[u8]) -> Vec<u8> {
        let out = encoder.compress(input).unwrap().to_vec();
        assert!(out.len() <= max_compressed_len(input.len()));
        let decoded = snap::raw::Decoder::new()
            .decompress_vec(&out)
            .unwrap_or_else(|e| panic!("undecodable output for {} bytes: {e}", input.len()));
        assert!(
            decoded == input,
            "{} bytes decoded differently",
            input.len()
        );
        out
    }

    /// The elements of an output, by kind: literals by how many bytes
    /// follow the tag with their length, copies with a 1-byte offset and
    /// their offset's high bits, copies with a 2-byte offset and their
    /// length.
    #[derive(Debug, Default)]
    struct Elements {
        literals: [usize; 3],
        copy1_high_offset: usize,
        copy1: usize,
        copy2_short: usize,
        copy2: usize,
    }

    fn elements(out: &[u8], into: &mut Elements) {
        let mut i = out.iter().position(|b| b & 0x80 == 0).unwrap() + 1;
        while let Some(&tag) = out.get(i) {
            i += 1;
            match tag & 3 {
                0 => {
                    let mut n = usize::from(tag >> 2);
                    let width = n.saturating_sub(59);
                    if width > 0 {
                        n = (0..width).map(|j| usize::from(out[i + j]) << (8 * j)).sum();
                    }
                    into.literals[width] += 1;
                    i += width + n + 1;
                }
                1 => {
                    into.copy1 += 1;
                    into.copy1_high_offset += usize::from(tag >> 5 != 0);
                    i += 1;
                }
                2 => {
                    into.copy2 += 1;
                    into.copy2_short += usize::from((tag >> 2) + 1 < 12);
                    i += 2;
                }
                _ => panic!("a copy with a 4-byte offset"),
            }
        }
        assert_eq!(i, out.len(), "elements past the end");
    }

    /// A small deterministic generator (xorshift).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Rows like the benchmark's payloads: JSON with random digits and hex,
    /// each a PLAIN value (a 4-byte length, then the bytes).
    fn json_rows(rng: &mut Rng, rows: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..rows {
            let row = format!(
                r#"{{"sku":"SKU-{:06}","qty":{},"note":"{:016x}{:016x}","tags":["t{}"]}}"#,
                rng.below(1_000_000),
                rng.below(9) + 1,
                rng.next(),
                rng.next(),
                rng.below(50)
            );
            out.extend_from_slice(&(row.len() as u32).to_le_bytes());
            out.extend_from_slice(row.as_bytes());
        }
        out
    }

    #[test]
    fn outputs_are_the_format_byte_for_byte() {
        // A literal, then a copy of 19 bytes from 1 back (2-byte offset).
        assert_eq!(
            roundtrip_with(&mut Encoder::new(), &[b'a'; 20]),
            [20, 0x00, b'a', 0x4a, 0x01, 0x00]
        );
        // Bytes repeated 310 back: copies of 64, 64, 64, then 8 and 10
        // bytes with 1-byte offsets (310 = 1 << 8 | 54).
        let mut input = b"0123456789".to_vec();
        let run: Vec<u8> = (100..200).collect();
        for _ in 0..3 {
            input.extend_from_slice(&run);
        }
        input.extend_from_slice(b"0123456789ZYXWVUTSRQPONMLKJ");
        let out = roundtrip_with(&mut Encoder::new(), &input);
        assert_eq!(out.get(..3), Some(&[0xd1, 0x02, 0xf0][..]), "{out:x?}");
        let mut kinds = Elements::default();
        elements(&out, &mut kinds);
        assert!(kinds.copy1_high_offset >= 1, "{kinds:?}");
    }

    #[test]
    fn one_encoder_serves_input_after_input() {
        let mut rng = Rng(13);
        let mut encoder = Encoder::new();
        let mut kinds = Elements::default();
        for len in [70_000, 5, 15, 16, 17, 300, 200_000, 0, 1_000] {
            let mut input = json_rows(&mut rng, len / 60 + 1);
            input.truncate(len);
            elements(&roundtrip_with(&mut encoder, &input), &mut kinds);
        }
        for len in [256, 257, 300] {
            let random: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            elements(&roundtrip_with(&mut encoder, &random), &mut kinds);
        }
        // Every kind of element was made, and read back.
        assert!(kinds.literals.iter().all(|n| *n > 0), "{kinds:?}");
        assert!(kinds.copy1 > 0 && kinds.copy1_high_offset > 0, "{kinds:?}");
        assert!(kinds.copy2 > 0 && kinds.copy2_short > 0, "{kinds:?}");
    }

    #[test]
    fn every_length_of_short_inputs_round_trips() {
        let mut rng = Rng(7);
        for len in 0..300 {
            let random: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            roundtrip(&random);
            roundtrip(&vec![b'a'; len]);
            let text: Vec<u8> = (0..len).map(|i| b"abcabcabd"[i % 9]).collect();
            roundtrip(&text);
        }
    }

    #[test]
    fn block_edges_and_long_runs_round_trip() {
        let mut rng = Rng(11);
        for len in [
            BLOCK - 17,
            BLOCK - 1,
            BLOCK,
            BLOCK + 1,
            BLOCK + 15,
            BLOCK + 16,
            3 * BLOCK + 5,
        ] {
            roundtrip(&vec![0u8; len]);
            let random: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            roundtrip(&random);
            let mut mixed = json_rows(&mut rng, len / 60);
            mixed.truncate(len);
            roundtrip(&mixed);
        }
        // Literals whose length takes 1 and 2 bytes after the tag (a
        // literal never passes a block).
        for len in [61, 300, 70_000] {
            let random: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let mut input = random.clone();
            input.extend_from_slice(&random);
            roundtrip(&input);
        }
    }

    #[test]
    fn structured_and_random_pages_round_trip() {
        let mut rng = Rng(3);
        for seed in 0..40 {
            let mut input = Vec::new();
            // Runs of repeats at random distances, random bytes between.
            while input.len() < 200_000 {
                match rng.below(3) {
                    0 => input.extend((0..rng.below(40)).map(|_| rng.next() as u8)),
                    1 if !input.is_empty() => {
                        let back = 1 + rng.below(input.len().min(70_000) as u64) as usize;
                        let from = input.len() - back;
                        for i in 0..rng.below(200) as usize {
                            let byte = input.get(from + i).copied().unwrap_or(seed);
                            input.push(byte);
                        }
                    }
                    _ => input.extend_from_slice(&json_rows(&mut rng, 3)),
                }
            }
            roundtrip(&input);
        }
    }

    #[test]
    fn json_pages_compress_as_well_as_the_reference() {
        let mut rng = Rng(5);
        let page = json_rows(&mut rng, 8_000);
        let ours = roundtrip(&page);
        let reference = snap::raw::Encoder::new()
            .compress_vec(&page)
            .map(|c| c.len())
            .unwrap_or(usize::MAX);
        // Within 2% of the reference's size (measured: see the module doc).
        assert!(
            (ours as f64) < reference as f64 * 1.02,
            "{ours} bytes against the reference's {reference}"
        );
        assert!(ours < page.len() * 3 / 4, "{ours} of {} bytes", page.len());
    }
}
