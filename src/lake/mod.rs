//! The lake: Apache Hudi copy-on-write tables (table version 6) on object
//! storage. So far it opens the object store a pipeline's `lake.uri` names;
//! the table writer, timeline and cleaner join it with the lake-sink work.

pub mod store;
