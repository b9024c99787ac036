//! The box-text parsers of every format, and render -> parse round trips of what they return.
#![no_main]

use gradatim_core::data::box_format::{parse_boxes, render_boxes, BoxFormat};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for name in ["cure", "maira2", "loc", "xyxy"] {
        let Ok(format) = name.parse::<BoxFormat>() else {
            continue;
        };
        let boxes = parse_boxes(format, text);
        let _ = parse_boxes(format, &render_boxes(format, &boxes));
    }
});
