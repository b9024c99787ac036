//! JPEG-LS inside DICOM (CharLS): the input is a JPEG-LS codestream, placed as the one frame of
//! a DICOM file whose header agrees with the codestream's frame header (SOF55) or contradicts it
//! (see `encapsulated.rs`), then decoded the ways the loader does. Seeds: the first frames of
//! pydicom-data's JPEG-LS files.
#![no_main]

mod common;
mod encapsulated;

use gradatim_core::image::dicom_frame::frame_headers;

fn header(cs: &[u8]) -> Option<encapsulated::Dims> {
    let h = *frame_headers(cs).ok()?.first()?;
    let spp = if h.components == 3 { 3 } else { 1 };
    Some((h.cols, h.rows, spp, encapsulated::allocated(h.bits as u32)))
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let file = encapsulated::framed("1.2.840.10008.1.2.4.80", data, header);
    common::decode_all_ways(&file);
});
