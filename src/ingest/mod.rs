//! Ingest: the first stage. Reads the claims, the person registry, the registrations and the
//! ledger from Parquet into column vectors keyed by dense person id, rejecting bad claim rows
//! with a reason (see [`claims`]).

pub mod claims;
pub mod read;
pub mod registry;

/// The hash behind ingest's string tables (person ids, diagnosis / institution / drug
/// dictionaries): foldhash with fixed keys. Tens of millions of short ids are hashed per run, so a
/// fast non-cryptographic hash matters; the keys are fixed so that a profile repeats (no output
/// depends on hash order — every table numbers its entries in first-seen order).
#[derive(Clone, Copy, Default)]
pub struct FastHash;

impl std::hash::BuildHasher for FastHash {
    type Hasher = foldhash::fast::FoldHasher<'static>;

    fn build_hasher(&self) -> Self::Hasher {
        const STATE: foldhash::fast::FixedState =
            foldhash::fast::FixedState::with_seed(0x0079_6962_616f);
        STATE.build_hasher()
    }
}

/// A hash map keyed by ingest's strings.
pub type FastMap<K, V> = std::collections::HashMap<K, V, FastHash>;
