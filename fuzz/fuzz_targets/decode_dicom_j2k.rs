//! JPEG 2000 inside DICOM (OpenJPEG, full and reduced resolution): the input is a JPEG 2000
//! codestream, placed as the one frame of a DICOM file whose header agrees with the codestream's
//! SIZ or contradicts it (see `encapsulated.rs`), then decoded the ways the loader does. Seeds:
//! the first frames of pydicom-data's JPEG 2000 files.
#![no_main]

mod common;
mod encapsulated;

use gradatim_core::image::j2k::read_header;

fn header(cs: &[u8]) -> Option<encapsulated::Dims> {
    let h = read_header(cs).ok()?;
    let (w, hgt) = (
        u16::try_from(h.width()).ok()?,
        u16::try_from(h.height()).ok()?,
    );
    let spp = if h.components >= 3 { 3 } else { 1 };
    let precision = (*cs.get(42)? & 0x7F) as u32 + 1; // the first component's Ssiz
    Some((w, hgt, spp, encapsulated::allocated(precision)))
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let file = encapsulated::framed("1.2.840.10008.1.2.4.90", data, header);
    common::decode_all_ways(&file);
});
