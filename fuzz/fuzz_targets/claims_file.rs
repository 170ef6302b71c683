//! Reading and validating a claims file of any bytes: the rows load (bad ones rejected with a
//! reason) or the file is refused with its name, never a panic. A panic of the Parquet decoder
//! that the engine catches and reports as a corrupt file is an answer, not a crash: the engine's
//! own hook keeps it from the fuzzer's.
#![no_main]

use libfuzzer_sys::fuzz_target;

static QUIET: std::sync::Once = std::sync::Once::new();

fuzz_target!(|bytes: &[u8]| {
    QUIET.call_once(yibao::error::quiet_decoder_panics);
    // One file per fuzzing process, rewritten for each input (in memory where /dev/shm is).
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let path = dir.join(format!("yibao-fuzz-claims-{}.parquet", std::process::id()));
    std::fs::write(&path, bytes).expect("a scratch file");
    let mut persons = yibao::ingest::registry::PersonIndex::default();
    let _ = yibao::ingest::claims::Claims::load(&path, &mut persons);
});
