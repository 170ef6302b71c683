//! The library's error type: every failure names what it was reading (file, column, row, policy
//! key) so that a data-centre operator can find the bad input without a debugger.

use std::path::PathBuf;

/// Everything that can stop a run. Bad *rows* never appear here: they go to `rejected.parquet`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A Parquet file could not be decoded or encoded.
    #[error("{path}: parquet: {source}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },

    /// An Arrow kernel failed (schema mismatch while building a batch, a cast).
    #[error("{context}: arrow: {source}")]
    Arrow {
        context: String,
        #[source]
        source: arrow::error::ArrowError,
    },

    /// An input file lacks a required column or has it with the wrong type.
    #[error("{path}: column `{column}`: {reason}")]
    Schema {
        path: PathBuf,
        column: String,
        reason: String,
    },

    /// A value in an input file that makes the whole file unusable (not just one row).
    #[error("{path}: column `{column}`, row {row}: {reason}")]
    Value {
        path: PathBuf,
        column: String,
        row: u64,
        reason: String,
    },

    /// A policy file is malformed or inconsistent.
    #[error("{path}: `{key}`: {reason}")]
    Policy {
        path: PathBuf,
        key: String,
        reason: String,
    },

    /// A file's pages could not be decoded: flipped bits, a truncated page, not Parquet inside.
    #[error("{path}: the file is corrupt (a page could not be decoded): {reason}")]
    Corrupt { path: PathBuf, reason: String },

    /// A claims directory holds something that is not a claims file.
    #[error(
        "{path}: not a *.parquet file, in a claims directory: move it out (names starting with \
         . or _ are passed over)"
    )]
    StrayFile { path: PathBuf },

    /// The command line asked for something impossible.
    #[error("{0}")]
    Usage(String),

    /// A chart of a report could not be drawn (an internal error: the data is the engine's own).
    #[error("{context}: chart: {reason}")]
    Chart { context: String, reason: String },
}

impl Error {
    /// Exit code for `main`, per CONTRACT.md: 2 for bad arguments or unreadable input, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Io { .. }
            | Error::Parquet { .. }
            | Error::Schema { .. }
            | Error::Value { .. }
            | Error::Policy { .. }
            | Error::Corrupt { .. }
            | Error::StrayFile { .. }
            | Error::Usage(_) => 2,
            Error::Arrow { .. } | Error::Chart { .. } => 1,
        }
    }

    /// A decoding failure of `path`'s pages.
    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl std::fmt::Display) -> Self {
        Error::Corrupt {
            path: path.into(),
            reason: reason.to_string(),
        }
    }

    /// Runs `decode` over the pages of `path`, turning a panic inside the Parquet decoder (a
    /// corrupt page it does not check) into [`Error::Corrupt`] naming the file. The panic is
    /// not printed where [`quiet_decoder_panics`] is in force: it is an answer, not a crash.
    pub(crate) fn decoding<T>(
        path: &std::path::Path,
        decode: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let was = DECODING.with(|d| d.replace(true));
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode));
        DECODING.with(|d| d.set(was));
        outcome.unwrap_or_else(|panic| {
            let reason = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "the decoder stopped".into());
            Err(Error::corrupt(path, reason))
        })
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn parquet(path: impl Into<PathBuf>, source: parquet::errors::ParquetError) -> Self {
        Error::Parquet {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn arrow(context: impl Into<String>, source: arrow::error::ArrowError) -> Self {
        Error::Arrow {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn schema(
        path: impl Into<PathBuf>,
        column: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Error::Schema {
            path: path.into(),
            column: column.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn value(
        path: impl Into<PathBuf>,
        column: impl Into<String>,
        row: u64,
        reason: impl Into<String>,
    ) -> Self {
        Error::Value {
            path: path.into(),
            column: column.into(),
            row,
            reason: reason.into(),
        }
    }

    pub(crate) fn policy(
        path: impl Into<PathBuf>,
        key: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Error::Policy {
            path: path.into(),
            key: key.into(),
            reason: reason.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

thread_local! {
    /// This thread is decoding a file's pages inside [`Error::decoding`].
    static DECODING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Installs a panic hook that stays silent for a panic of the Parquet decoder caught by
/// [`Error::decoding`] (reported as a corrupt file) and prints every other panic as before.
pub fn quiet_decoder_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !DECODING.with(|d| d.get()) {
            previous(info);
        }
    }));
}
