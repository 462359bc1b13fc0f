//! MySQL/MariaDB capture: consistent snapshot, row binlog with GTIDs and
//! schema history. Only the preflight ([`preflight`]) is built: `tidewater
//! run` says capture is not built and exits non-zero until it is.

pub mod preflight;
