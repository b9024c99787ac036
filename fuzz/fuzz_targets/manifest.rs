//! The manifest reader on arbitrary JSON lines.
#![no_main]

use gradatim_core::data::manifest::{Manifest, ManifestOptions};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let opts = ManifestOptions {
        root: "/data".into(),
        allow_outside_root: false,
    };
    let _ = Manifest::from_jsonl(text, "<fuzz>", &opts);
});
