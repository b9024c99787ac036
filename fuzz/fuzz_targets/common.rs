//! What every decoder target does with an input: decode it the ways the loader does (full size,
//! reduced, grey, RGB) with the default limits. An `Err` is fine; a panic escaping the decoder's
//! guard, an abort, a leak past the memory cap or a slow input is what the fuzzer reports.

use gradatim_core::image::decode::{decode, ColorMode, DecodeOptions};

pub fn decode_all_ways(data: &[u8]) {
    let mode = match data.last().map(|b| b % 3) {
        Some(0) => ColorMode::Gray,
        Some(1) => ColorMode::Rgb,
        _ => ColorMode::Unchanged,
    };
    let reduce_to = data.first().map(|&b| (16 + b as usize, 16 + b as usize));
    for reduce_to in [None, reduce_to] {
        let opts = DecodeOptions {
            reduce_to,
            mode,
            ..DecodeOptions::default()
        };
        let _ = decode(data, "<fuzz>", &opts);
    }
}
