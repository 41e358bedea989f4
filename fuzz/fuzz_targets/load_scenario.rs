//! The scenario loader on arbitrary input: it must return a scenario or located errors,
//! never panic, never hang (run with `-timeout=1`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = harness::scenario::load_str(Path::new("fuzz.yaml"), text);
    }
});
