//! Wiring of capture and sink tasks per pipeline, checkpoints, backfills and
//! shutdown. Not built yet: `tidewater run` and `tidewater backfill` say so and
//! exit non-zero until it is.
