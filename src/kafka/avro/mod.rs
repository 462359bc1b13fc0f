//! The Avro contract of change events: schemas ([`schema`]), the binary
//! encoding written straight from typed rows ([`encode`]), the schema-driven
//! decoder ([`decode`]) and the message framing ([`framing`]).

pub mod binary;
pub mod decode;
pub mod encode;
pub mod framing;
pub mod reference;
pub mod schema;

#[cfg(test)]
mod tests;
