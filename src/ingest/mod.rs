//! Ingest: the first stage. Reads the claims, the person registry, the registrations and the
//! ledger from Parquet into column vectors keyed by dense person id, rejecting bad claim rows
//! with a reason (see [`claims`]).

pub mod claims;
pub mod read;
pub mod registry;
