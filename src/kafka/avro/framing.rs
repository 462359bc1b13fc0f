//! How a schema reference precedes an Avro body in a Kafka message.
//!
//! - With a Schema Registry: the Confluent wire format, `0x00` then the
//!   schema id as a 4-byte big-endian integer.
//! - Without one: Avro single-object encoding, `0xC3 0x01` then an 8-byte
//!   little-endian fingerprint. tidewater computes the fingerprint with
//!   Avro's CRC-64-AVRO (Rabin) algorithm over the *complete* schema text
//!   rather than its Parsing Canonical Form, because the canonical form drops
//!   logical types and properties: two tables differing only in `timestamp`
//!   versus `timestamptz` would otherwise share a fingerprint. The schemas are
//!   published to the `_tidewater_schemas` topic, keyed by the fingerprint in
//!   hex (see [`crate::kafka::schemas`]).

/// CRC-64-AVRO's seed and empty fingerprint.
const EMPTY: u64 = 0xc15d_213a_a4d7_a795;

#[expect(
    clippy::indexing_slicing,
    reason = "i < 256 by the loop bound, in a const fn"
)]
const fn table() -> [u64; 256] {
    let mut table = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut fp = i as u64;
        let mut j = 0;
        while j < 8 {
            fp = (fp >> 1) ^ (EMPTY & (0u64.wrapping_sub(fp & 1)));
            j += 1;
        }
        table[i] = fp;
        i += 1;
    }
    table
}

static TABLE: [u64; 256] = table();

/// The CRC-64-AVRO fingerprint of `bytes`.
pub fn fingerprint(bytes: &[u8]) -> u64 {
    let mut fp = EMPTY;
    for b in bytes {
        let index = ((fp ^ u64::from(*b)) & 0xff) as usize;
        fp = (fp >> 8) ^ TABLE.get(index).copied().unwrap_or(0);
    }
    fp
}

/// The schema a message body was written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SchemaRef {
    /// A Confluent Schema Registry id.
    Registry(u32),
    /// A tidewater fingerprint (single-object encoding).
    Fingerprint(u64),
}

impl SchemaRef {
    /// Writes the header for this reference.
    pub fn write_header(self, out: &mut Vec<u8>) {
        match self {
            SchemaRef::Registry(id) => {
                out.push(0);
                out.extend_from_slice(&id.to_be_bytes());
            }
            SchemaRef::Fingerprint(fp) => {
                out.extend_from_slice(&[0xc3, 0x01]);
                out.extend_from_slice(&fp.to_le_bytes());
            }
        }
    }

    /// Splits a message into its schema reference and body.
    pub fn split(message: &[u8]) -> Result<(SchemaRef, &[u8]), FramingError> {
        match message {
            [0, a, b, c, d, body @ ..] => Ok((
                SchemaRef::Registry(u32::from_be_bytes([*a, *b, *c, *d])),
                body,
            )),
            [0xc3, 0x01, rest @ ..] => match rest.split_first_chunk::<8>() {
                Some((fp, body)) => Ok((SchemaRef::Fingerprint(u64::from_le_bytes(*fp)), body)),
                None => Err(FramingError::Truncated),
            },
            [] => Err(FramingError::Empty),
            [first, ..] => Err(FramingError::UnknownMagic(*first)),
        }
    }

    /// The key this reference has in the schemas topic: the fingerprint's
    /// 8 bytes as they follow `0xC3 0x01` on the wire, in hex.
    pub fn hex(self) -> String {
        match self {
            SchemaRef::Registry(id) => format!("id-{id}"),
            SchemaRef::Fingerprint(fp) => fp
                .to_le_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("an empty message")]
    Empty,
    #[error("the message is shorter than its schema header")]
    Truncated,
    #[error(
        "unknown first byte 0x{0:02x}: neither the Confluent wire format (0x00) nor Avro single-object encoding (0xC3 0x01)"
    )]
    UnknownMagic(u8),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_matches_avro_reference_values() {
        // CRC-64-AVRO of the canonical schemas `"int"` and `"string"`; as
        // little-endian bytes (how the wire and fastavro show them) these are
        // 8f5c393f1ad57572 and c70345637248018f.
        assert_eq!(fingerprint(br#""int""#), 0x7275_d51a_3f39_5c8f);
        assert_eq!(fingerprint(br#""string""#), 0x8f01_4872_6345_03c7);
        assert_eq!(
            SchemaRef::Fingerprint(fingerprint(br#""int""#)).hex(),
            "8f5c393f1ad57572"
        );
    }

    #[test]
    fn headers_round_trip_and_bad_ones_are_named() {
        for r in [
            SchemaRef::Registry(42),
            SchemaRef::Fingerprint(0x0123_4567_89ab_cdef),
        ] {
            let mut out = Vec::new();
            r.write_header(&mut out);
            out.extend_from_slice(b"body");
            assert_eq!(SchemaRef::split(&out).unwrap(), (r, &b"body"[..]));
        }
        assert_eq!(
            SchemaRef::split(b"{json}"),
            Err(FramingError::UnknownMagic(b'{'))
        );
        assert_eq!(
            SchemaRef::split(&[0xc3, 0x01, 1, 2]),
            Err(FramingError::Truncated)
        );
        assert_eq!(SchemaRef::split(&[]), Err(FramingError::Empty));
    }
}
