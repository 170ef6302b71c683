//! The policy loader on any text: it compiles or refuses with the key and the reason, never
//! panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let mut policies = yibao::policy::Policies::default();
    let _ = yibao::policy::compile_file(&mut policies, std::path::Path::new("fuzz.toml"), text);
});
