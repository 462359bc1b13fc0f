//! The change-event model shared by capture and sink: table identities, and
//! (with the change-event work) `ChangeEvent`, positions and table schemas.

pub mod table_id;
