//! The admin HTTP endpoint (health, Prometheus metrics, status, backfills).
//! Not built yet: `tidewater status` says so and exits non-zero until it is.
