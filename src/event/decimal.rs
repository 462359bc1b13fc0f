//! Exact decimals of any precision, as Avro and Parquet carry them: the
//! unscaled integer in big-endian two's complement, the scale kept by the
//! column type. MySQL `DECIMAL(65,30)` needs 65 digits, more than `i128`
//! holds, so the arithmetic here works on byte strings.
//!
//! Invariant: a [`Decimal`] built from text holds exactly the digits written
//! at the column's scale; text with more fractional digits than the scale, or
//! more digits than the precision, is refused rather than rounded.

use std::fmt;

/// An unscaled integer in minimal big-endian two's complement.
#[derive(Clone)]
pub struct Decimal {
    stored: Stored,
}

/// Values of up to 22 bytes (52 digits: every `numeric` a schema usually
/// declares) are kept inline, so that decoding a decimal costs no
/// allocation of its own; the enum is no larger than a `Vec`.
const INLINE: usize = 22;

#[derive(Clone)]
enum Stored {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl PartialEq for Decimal {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Decimal {}

impl std::hash::Hash for Decimal {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    #[error("`{0}` is not a decimal number")]
    Syntax(String),
    #[error("`{text}` has more than {scale} digits after the point")]
    Scale { text: String, scale: u16 },
    #[error("`{text}` has more than {precision} digits")]
    Precision { text: String, precision: u16 },
}

impl Decimal {
    /// From two's-complement bytes (any length, sign-extended as needed).
    pub fn from_twos_complement(bytes: &[u8]) -> Decimal {
        let minimal = minimal(bytes);
        let stored = match u8::try_from(minimal.len()) {
            Ok(len) if minimal.len() <= INLINE => {
                let mut inline = [0u8; INLINE];
                if let Some(head) = inline.get_mut(..minimal.len()) {
                    head.copy_from_slice(minimal);
                }
                Stored::Inline { len, bytes: inline }
            }
            _ => Stored::Heap(minimal.into()),
        };
        Decimal { stored }
    }

    pub fn from_i128(v: i128) -> Decimal {
        Decimal::from_twos_complement(&v.to_be_bytes())
    }

    pub fn from_u64(v: u64) -> Decimal {
        let mut bytes = vec![0u8];
        bytes.extend_from_slice(&v.to_be_bytes());
        Decimal::from_twos_complement(&bytes)
    }

    /// The minimal big-endian two's complement (what Avro `decimal` carries).
    pub fn as_bytes(&self) -> &[u8] {
        match &self.stored {
            Stored::Inline { len, bytes } => bytes.get(..usize::from(*len)).unwrap_or(&[]),
            Stored::Heap(bytes) => bytes,
        }
    }

    /// The bytes it holds on the heap: none when kept inline.
    #[cfg(test)]
    fn heap_bytes(&self) -> usize {
        match &self.stored {
            Stored::Inline { .. } => 0,
            Stored::Heap(bytes) => bytes.len(),
        }
    }

    /// Sign-extended to `width` bytes (Parquet FIXED_LEN_BYTE_ARRAY), or
    /// `None` when it does not fit.
    pub fn to_fixed(&self, width: usize) -> Option<Vec<u8>> {
        if self.as_bytes().len() > width {
            return None;
        }
        let fill = if self.is_negative() { 0xff } else { 0 };
        let mut out = vec![fill; width - self.as_bytes().len()];
        out.extend_from_slice(self.as_bytes());
        Some(out)
    }

    pub fn to_i128(&self) -> Option<i128> {
        let fill = if self.is_negative() { 0xff } else { 0 };
        let mut arr = [fill; 16];
        let start = 16usize.checked_sub(self.as_bytes().len())?;
        arr.get_mut(start..)?.copy_from_slice(self.as_bytes());
        Some(i128::from_be_bytes(arr))
    }

    pub fn is_negative(&self) -> bool {
        self.as_bytes().first().is_some_and(|b| b & 0x80 != 0)
    }

    /// Parses decimal text (`-12.5`, `1e3` is refused) at `scale`, checking
    /// `precision`.
    pub fn parse(text: &str, precision: u16, scale: u16) -> Result<Decimal, DecimalError> {
        let t = text.trim();
        let (negative, digits) = match t.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, t.strip_prefix('+').unwrap_or(t)),
        };
        let (int_part, frac_part) = digits.split_once('.').unwrap_or((digits, ""));
        let valid = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (int_part.is_empty() && frac_part.is_empty()) || !valid(int_part) || !valid(frac_part) {
            return Err(DecimalError::Syntax(text.to_string()));
        }
        let frac_trimmed = frac_part.trim_end_matches('0');
        if frac_trimmed.len() > usize::from(scale) {
            return Err(DecimalError::Scale {
                text: text.to_string(),
                scale,
            });
        }
        let int_digits = int_part.trim_start_matches('0');
        if int_digits.len() + usize::from(scale) > usize::from(precision) {
            return Err(DecimalError::Precision {
                text: text.to_string(),
                precision,
            });
        }
        // Unscaled digits: integer part, then the fraction padded to `scale`.
        let mut unscaled: Vec<u8> = int_digits.bytes().map(|b| b - b'0').collect();
        unscaled.extend(frac_trimmed.bytes().map(|b| b - b'0'));
        unscaled.extend(std::iter::repeat_n(
            0u8,
            usize::from(scale) - frac_trimmed.len(),
        ));
        Ok(Decimal::from_digits(negative, &unscaled))
    }

    /// Builds from base-10 digits of the magnitude.
    fn from_digits(negative: bool, digits: &[u8]) -> Decimal {
        // Magnitude as big-endian base-256, built by multiply-and-add.
        let mut mag: Vec<u8> = vec![0];
        for d in digits {
            let mut carry = u32::from(*d);
            for byte in mag.iter_mut().rev() {
                let v = u32::from(*byte) * 10 + carry;
                *byte = (v & 0xff) as u8;
                carry = v >> 8;
            }
            while carry > 0 {
                mag.insert(0, (carry & 0xff) as u8);
                carry >>= 8;
            }
        }
        // Room for the sign bit.
        mag.insert(0, 0);
        if negative {
            negate(&mut mag);
        }
        Decimal::from_twos_complement(&mag)
    }

    /// The base-10 text at `scale`: `-12.50` for unscaled -1250 at scale 2.
    pub fn to_string_scaled(&self, scale: u16) -> String {
        let negative = self.is_negative();
        let mut mag = self.as_bytes().to_vec();
        if negative {
            negate(&mut mag);
        }
        // Repeated division by 10 of the big-endian magnitude.
        let mut digits = Vec::new();
        while mag.iter().any(|b| *b != 0) {
            let mut rem = 0u32;
            for byte in mag.iter_mut() {
                let v = (rem << 8) | u32::from(*byte);
                *byte = (v / 10) as u8;
                rem = v % 10;
            }
            digits.push(b'0' + rem as u8);
        }
        let scale = usize::from(scale);
        while digits.len() <= scale {
            digits.push(b'0');
        }
        digits.reverse();
        let (int_part, frac_part) = digits.split_at(digits.len() - scale);
        let mut out = String::with_capacity(digits.len() + 2);
        if negative {
            out.push('-');
        }
        out.push_str(std::str::from_utf8(int_part).unwrap_or("0"));
        if scale > 0 {
            out.push('.');
            out.push_str(std::str::from_utf8(frac_part).unwrap_or("0"));
        }
        out
    }
}

/// `bytes` without redundant sign bytes (0x00 followed by a byte < 0x80, or
/// 0xff followed by a byte >= 0x80); a zero for no bytes.
fn minimal(bytes: &[u8]) -> &[u8] {
    let mut start = 0;
    while let (Some(b), Some(next)) = (bytes.get(start), bytes.get(start + 1)) {
        if (*b == 0 && next & 0x80 == 0) || (*b == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    match bytes.get(start..) {
        Some(rest) if !rest.is_empty() => rest,
        _ => &[0],
    }
}

/// Two's complement negation in place (big-endian).
fn negate(bytes: &mut [u8]) {
    for b in bytes.iter_mut() {
        *b = !*b;
    }
    for b in bytes.iter_mut().rev() {
        let (v, overflow) = b.overflowing_add(1);
        *b = v;
        if !overflow {
            break;
        }
    }
}

impl fmt::Debug for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Decimal({})", self.to_string_scaled(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print_round_trip() {
        for (text, p, s, expect) in [
            ("12.34", 12, 2, "12.34"),
            ("-12.3", 12, 2, "-12.30"),
            ("0", 5, 0, "0"),
            ("-0.01", 5, 2, "-0.01"),
            ("007.50", 5, 2, "7.50"),
            ("18446744073709551615", 20, 0, "18446744073709551615"),
        ] {
            let d = Decimal::parse(text, p, s).unwrap();
            assert_eq!(d.to_string_scaled(s), expect, "{text}");
        }
        let big = "12345678901234567890123456789012345.123456789012345678901234567890";
        let d = Decimal::parse(big, 65, 30).unwrap();
        assert_eq!(d.to_string_scaled(30), big);
        let neg = format!("-{big}");
        assert_eq!(
            Decimal::parse(&neg, 65, 30).unwrap().to_string_scaled(30),
            neg
        );
    }

    #[test]
    fn bytes_are_minimal_twos_complement() {
        assert_eq!(
            Decimal::parse("1250", 10, 0).unwrap().as_bytes(),
            &[0x04, 0xe2]
        );
        assert_eq!(Decimal::parse("-1", 10, 0).unwrap().as_bytes(), &[0xff]);
        assert_eq!(
            Decimal::parse("128", 10, 0).unwrap().as_bytes(),
            &[0x00, 0x80]
        );
        assert_eq!(Decimal::parse("-128", 10, 0).unwrap().as_bytes(), &[0x80]);
        assert_eq!(Decimal::parse("0", 10, 0).unwrap().as_bytes(), &[0x00]);
        assert_eq!(Decimal::from_i128(-1250).to_string_scaled(2), "-12.50");
        assert_eq!(
            Decimal::from_u64(u64::MAX).to_string_scaled(0),
            "18446744073709551615"
        );
        assert_eq!(Decimal::from_i128(i128::MIN).to_i128(), Some(i128::MIN));
        for v in [i128::MAX, -1, 0, 1, 255, -256, 1 << 70] {
            assert_eq!(Decimal::from_i128(v).to_i128(), Some(v));
        }
        assert_eq!(
            Decimal::parse("170141183460469231731687303715884105728", 39, 0)
                .unwrap()
                .to_i128(),
            None,
            "one past i128::MAX needs 17 bytes"
        );
        assert_eq!(
            Decimal::parse("-5", 3, 0).unwrap().to_fixed(4).unwrap(),
            vec![0xff, 0xff, 0xff, 0xfb]
        );
    }

    #[test]
    fn small_values_are_kept_inline_and_large_ones_on_the_heap_alike() {
        use std::hash::BuildHasher;
        assert!(std::mem::size_of::<Decimal>() <= std::mem::size_of::<Vec<u8>>());
        let state = std::collections::hash_map::RandomState::new();
        // 52 nines fit in 22 bytes, 53 do not.
        let (inline, heap) = ("9".repeat(52), "-".to_string() + &"9".repeat(53));
        for (text, heap_bytes) in [("-1250", 0), ("0", 0), (&inline[..], 0), (&heap[..], 23)] {
            let d = Decimal::parse(text, 60, 0).unwrap();
            assert_eq!(d.heap_bytes(), heap_bytes, "{text}");
            assert_eq!(d.to_string_scaled(0), text);
            // Sign-extended input is minimised the same way either side of
            // the boundary; equal values are equal and hash alike.
            let mut extended = vec![if d.is_negative() { 0xff } else { 0 }; 3];
            extended.extend_from_slice(d.as_bytes());
            let again = Decimal::from_twos_complement(&extended);
            assert_eq!(again, d, "{text}");
            assert_eq!(again.as_bytes(), d.as_bytes());
            assert_eq!(state.hash_one(&again), state.hash_one(&d));
        }
        assert_eq!(Decimal::from_twos_complement(&[]).as_bytes(), &[0]);
        assert_ne!(Decimal::from_i128(1), Decimal::from_i128(-1));
    }

    #[test]
    fn refuses_what_it_cannot_hold_exactly() {
        assert!(matches!(
            Decimal::parse("1.234", 10, 2),
            Err(DecimalError::Scale { .. })
        ));
        assert!(matches!(
            Decimal::parse("123.4", 4, 2),
            Err(DecimalError::Precision { .. })
        ));
        assert!(matches!(
            Decimal::parse("1e3", 10, 0),
            Err(DecimalError::Syntax(_))
        ));
        assert!(matches!(
            Decimal::parse("NaN", 10, 0),
            Err(DecimalError::Syntax(_))
        ));
        assert!(matches!(
            Decimal::parse("", 10, 0),
            Err(DecimalError::Syntax(_))
        ));
        // Trailing zeros beyond the scale are exact, so accepted.
        assert_eq!(
            Decimal::parse("1.2300", 10, 2).unwrap().to_string_scaled(2),
            "1.23"
        );
    }
}
