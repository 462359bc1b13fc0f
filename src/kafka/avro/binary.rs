//! Avro binary primitives: zig-zag varints, length-prefixed bytes, and a
//! bounds-checked reader. Nothing here allocates on the write path beyond the
//! output buffer, and nothing on the read path trusts a length it reads.

/// Appends a zig-zag varint (`int` and `long`).
#[inline]
pub fn write_long(out: &mut Vec<u8>, v: i64) {
    write_varint(out, ((v << 1) ^ (v >> 63)) as u64);
}

/// Appends an unsigned LEB128 varint (what a zig-zag varint is made of;
/// Parquet's level run headers are these too).
#[inline]
pub fn write_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// How many bytes [`write_long`] writes for `v`.
#[inline]
pub fn long_len(v: i64) -> usize {
    let n = ((v << 1) ^ (v >> 63)) as u64;
    (64 - (n | 1).leading_zeros() as usize).div_ceil(7)
}

#[inline]
pub fn write_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_long(out, bytes.len() as i64);
    out.extend_from_slice(bytes);
}

#[inline]
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    write_bytes(out, s.as_bytes());
}

#[inline]
pub fn write_bool(out: &mut Vec<u8>, b: bool) {
    out.push(u8::from(b));
}

/// A union branch index.
#[inline]
pub fn write_branch(out: &mut Vec<u8>, index: i64) {
    write_long(out, index);
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("the message ends early (at byte {0})")]
    Eof(usize),
    #[error("a varint at byte {0} is longer than 10 bytes")]
    Varint(usize),
    #[error("a negative length {len} at byte {at}")]
    Length { len: i64, at: usize },
    #[error("invalid UTF-8 in a string at byte {0}")]
    Utf8(usize),
    #[error("union branch {branch} at byte {at} does not exist")]
    Branch { branch: i64, at: usize },
    #[error("{0}")]
    Invalid(String),
}

/// A cursor over an Avro body.
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    /// A reader at byte `pos` of `data`.
    pub fn at(data: &'a [u8], pos: usize) -> Self {
        Reader { data, pos }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    #[inline]
    pub fn byte(&mut self) -> Result<u8, ReadError> {
        let b = *self.data.get(self.pos).ok_or(ReadError::Eof(self.pos))?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    pub fn long(&mut self) -> Result<i64, ReadError> {
        let n = self.varint()?;
        Ok(((n >> 1) as i64) ^ -((n & 1) as i64))
    }

    /// An unsigned LEB128 varint of at most 64 bits.
    #[inline]
    pub fn varint(&mut self) -> Result<u64, ReadError> {
        let start = self.pos;
        let mut n: u64 = 0;
        let mut shift = 0;
        loop {
            let b = self.byte()?;
            // The tenth byte holds the 64th bit alone.
            if shift >= 64 || (shift == 63 && b > 1) {
                return Err(ReadError::Varint(start));
            }
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        Ok(n)
    }

    pub fn int(&mut self) -> Result<i32, ReadError> {
        let at = self.pos;
        let v = self.long()?;
        i32::try_from(v)
            .map_err(|_| ReadError::Invalid(format!("int {v} at byte {at} is out of range")))
    }

    pub fn boolean(&mut self) -> Result<bool, ReadError> {
        let at = self.pos;
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(ReadError::Invalid(format!("boolean byte {b} at byte {at}"))),
        }
    }

    pub fn float(&mut self) -> Result<f32, ReadError> {
        Ok(f32::from_le_bytes(self.array::<4>()?))
    }

    pub fn double(&mut self) -> Result<f64, ReadError> {
        Ok(f64::from_le_bytes(self.array::<8>()?))
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ReadError> {
        let slice = self.fixed(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    pub fn fixed(&mut self, len: usize) -> Result<&'a [u8], ReadError> {
        let end = self.pos.checked_add(len).ok_or(ReadError::Eof(self.pos))?;
        let slice = self
            .data
            .get(self.pos..end)
            .ok_or(ReadError::Eof(self.pos))?;
        self.pos = end;
        Ok(slice)
    }

    pub fn bytes(&mut self) -> Result<&'a [u8], ReadError> {
        let at = self.pos;
        let len = self.long()?;
        let len = usize::try_from(len).map_err(|_| ReadError::Length { len, at })?;
        self.fixed(len)
    }

    pub fn string(&mut self) -> Result<&'a str, ReadError> {
        let at = self.pos;
        let bytes = self.bytes()?;
        // SIMD validation: several times std's speed on long text.
        simdutf8::basic::from_utf8(bytes).map_err(|_| ReadError::Utf8(at))
    }

    /// The item count of the next array/map block; negative counts carry a
    /// byte size, which is read and ignored.
    pub fn block_count(&mut self) -> Result<usize, ReadError> {
        let at = self.pos;
        let count = self.long()?;
        if count < 0 {
            let _size = self.long()?;
        }
        let count = count.unsigned_abs();
        // Items take at least a byte each, except nulls: a count far beyond
        // the bytes left is corrupt, and must not drive a long loop.
        let left = (self.data.len() - self.pos.min(self.data.len())) as u64;
        if count > left + (1 << 20) {
            return Err(ReadError::Length {
                len: count as i64,
                at,
            });
        }
        usize::try_from(count).map_err(|_| ReadError::Length {
            len: count as i64,
            at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_varints_match_the_spec() {
        // Examples from the Avro specification.
        for (v, bytes) in [
            (0i64, vec![0x00]),
            (-1, vec![0x01]),
            (1, vec![0x02]),
            (-2, vec![0x03]),
            (2, vec![0x04]),
            (-64, vec![0x7f]),
            (64, vec![0x80, 0x01]),
        ] {
            let mut out = Vec::new();
            write_long(&mut out, v);
            assert_eq!(out, bytes, "{v}");
            assert_eq!(Reader::new(&bytes).long().unwrap(), v);
        }
        for v in [i64::MIN, i64::MAX, 123_456_789_012, 63, 64, -65, 8191, 8192] {
            let mut out = Vec::new();
            write_long(&mut out, v);
            assert_eq!(Reader::new(&out).long().unwrap(), v);
            assert_eq!(long_len(v), out.len(), "{v}");
        }
    }

    #[test]
    fn strings_are_valid_utf8_or_an_error_naming_the_byte() {
        let long_ascii = "a".repeat(200);
        let mut cases: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            "plain".into(),
            "é, 日本, 🦀".into(),
            long_ascii.clone().into(),
            format!("{long_ascii}🦀{long_ascii}").into(),
            vec![0xff],
            vec![0xc0, 0xaf],       // overlong '/'
            vec![0xed, 0xa0, 0x80], // a UTF-16 surrogate
            vec![0xe6, 0x97],       // cut short
            vec![0x80],             // a lone continuation byte
        ];
        // Long text with one bad byte at its end, past the first SIMD blocks.
        let mut bad_tail = long_ascii.clone().into_bytes();
        bad_tail.push(0xfe);
        cases.push(bad_tail);
        for bytes in cases {
            let mut framed = vec![0x00]; // a byte before: the error names 1
            write_bytes(&mut framed, &bytes);
            let mut r = Reader::at(&framed, 1);
            match std::str::from_utf8(&bytes) {
                Ok(s) => assert_eq!(r.string(), Ok(s)),
                Err(_) => assert_eq!(r.string(), Err(ReadError::Utf8(1)), "{bytes:?}"),
            }
        }
    }

    #[test]
    fn reader_refuses_truncated_and_hostile_input() {
        assert_eq!(Reader::new(&[]).long(), Err(ReadError::Eof(0)));
        assert!(matches!(
            Reader::new(&[0xff; 11]).long(),
            Err(ReadError::Varint(0))
        ));
        // Ten bytes, the last carrying more than the 64th bit.
        let mut wide = vec![0xff; 9];
        wide.push(0x02);
        assert!(matches!(
            Reader::new(&wide).long(),
            Err(ReadError::Varint(0))
        ));
        let mut widest = vec![0xff; 9];
        widest.push(0x01);
        assert_eq!(Reader::new(&widest).long(), Ok(i64::MIN));
        // A string claiming 100 bytes with 2 present.
        let mut r = Reader::new(&[0xc8, 0x01, b'a', b'b']);
        assert!(matches!(r.string(), Err(ReadError::Eof(_))));
        // Negative length.
        assert!(matches!(
            Reader::new(&[0x01]).bytes(),
            Err(ReadError::Length { .. })
        ));
        assert!(matches!(
            Reader::new(&[0x02, 0xff]).string(),
            Err(ReadError::Utf8(0))
        ));
    }
}
