//! cargo-fuzz target `ops_model`; the body lives in `fuzz_logic.rs`, shared with the stable
//! corpus replay test.
#![no_main]

#[path = "../fuzz_logic.rs"]
mod logic;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = logic::ops_model(data);
});
