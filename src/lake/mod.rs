//! The lake: Apache Hudi copy-on-write tables (table version 6, timeline
//! layout 1) on object storage, written natively.
//!
//! - [`store`]: the object store a `lake.uri` names ([`local`] for a directory);
//! - [`properties`], [`timeline`], [`metadata`]: Hudi's on-disk metadata;
//! - [`layout`], [`batch`], [`files`]: columns, Arrow batches, base files;
//! - [`splice`]: rewriting a base file page by page ([`snappy`]: its
//!   encoder for pages of long byte strings);
//! - [`cpu`]: the threads that decode, merge and encode them;
//! - [`log`]: the commit log that fences concurrent writers;
//! - [`table`]: loading, recovery and the upsert commit.

pub mod actions;
pub mod batch;
pub mod bloom;
pub mod commit;
pub mod cpu;
pub mod ddl;
pub mod files;
pub mod index;
pub mod layout;
pub mod local;
pub mod log;
pub mod metadata;
pub mod properties;
pub mod snappy;
pub mod splice;
pub mod store;
pub mod table;
pub mod timeline;
