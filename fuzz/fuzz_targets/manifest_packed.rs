//! The packed-manifest reader (Arrow IPC footer, record batches, the record checks) on arbitrary
//! bytes.
#![no_main]

use gradatim_core::data::manifest::ManifestOptions;
use gradatim_core::data::manifest_arrow;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let opts = ManifestOptions {
        root: "/data".into(),
        allow_outside_root: false,
    };
    let _ = manifest_arrow::from_bytes(data.to_vec(), "<fuzz>", &opts);
});
