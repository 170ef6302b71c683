//! yibao: a columnar claim adjudication engine for provincial medical-insurance data centres.
//!
//! The pipeline, one module per stage, in data-flow order:
//! [`ingest`] (read Parquet, validate, reject) → [`partition`] (claims grouped by dense person id
//! in time order) → [`settle`] (per-person year-to-date state machine against the compiled
//! [`policy`]) → [`audit`] (anomaly flags and risk scores) → [`output`] (settlements, anomalies,
//! rejected rows, summary), with [`state`] beside them: the year-to-date state read at the start
//! and advanced at the end. [`run`] wires the stages for `yibao adjudicate`, [`compare`] settles
//! the same claims under two policy directories (`yibao compare`); [`report`] builds the
//! documents' statutory tables from a run's settlements (`yibao report`), [`capitation`] a
//! capitation budget's year-end accounts (`yibao capitation`); [`generate`] writes a
//! synthetic province; [`floor`] measures the Parquet I/O floor the engine is held to.
//! [`limits`] holds the bounds every input value and per-person count is held to.

pub mod audit;
pub mod capitation;
pub mod compare;
pub mod disk;
pub mod domain;
pub mod error;
pub mod floor;
pub mod generate;
pub mod ingest;
pub mod interner;
pub mod limits;
pub mod money;
pub mod output;
pub mod partition;
pub mod policy;
pub mod progress;
pub mod report;
pub mod run;
pub mod settle;
pub mod state;

pub use error::{Error, Result};
