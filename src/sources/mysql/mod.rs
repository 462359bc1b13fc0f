//! MySQL/MariaDB capture: consistent snapshot, row binlog with GTIDs and
//! schema history. Not built yet: `tidewater run` says so and exits non-zero
//! until it is.
