//! DICOM (native, RLE Lossless, JPEG baseline / extended / lossless, JPEG-LS, JPEG 2000 full and
//! reduced) through gradatim's decode entry (seeds: pydicom-data's real files). Inputs without the
//! 128-byte preamble and "DICM" get one, so mutations stay DICOM.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if data.len() >= 132 && &data[128..132] == b"DICM" {
        common::decode_all_ways(data);
    } else {
        let mut framed = vec![0u8; 128];
        framed.extend_from_slice(b"DICM");
        framed.extend_from_slice(data);
        common::decode_all_ways(&framed);
    }
});
