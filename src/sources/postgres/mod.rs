//! Postgres capture: replication slot, publication, consistent snapshot and
//! `pgoutput` streaming. Not built yet: `tidewater run` says so and exits
//! non-zero until it is.
