//! The headers inside a DICOM file's first encapsulated frame, checked before its decoder runs:
//! each decoder sizes its output from the frame's own header, not from the DICOM header that
//! gradatim's limits were checked against. A 64 x 64 DICOM may carry a JPEG-LS frame declaring
//! 65535 x 65535 x 3 samples of 16 bits, which CharLS's binding allocates (25.8 GB) before it
//! decodes a byte; an RLE header declares up to 2^32 segments (16 GB of offsets), and one RLE
//! segment may expand 64-fold before its plane's share is taken.
//!
//! - JPEG (ITU-T T.81 B.2.2, SOF0-SOF15) and JPEG-LS (ITU-T T.87 C.2.2, SOF55): every frame
//!   header before the first scan is read; its size is checked against `max_pixels` and
//!   `max_bytes`, and must equal Columns x Rows, its components SamplesPerPixel, its sample
//!   precision at most BitsAllocated. For JPEG-LS, CharLS's own reading of the header (which an
//!   LSE marker may change) is held to the same rules.
//! - RLE (PS3.5 G.5): the header's segment count is at most 15, and each segment the decoder
//!   uses expands to at most twice its plane (Rows x Columns bytes) plus a run.

use std::borrow::Cow;

use dicom_encoding::adapters::PixelDataObject;

use super::decode::{check_size, DecodeOptions};
use crate::error::{Error, Result};

/// JPEG Baseline, Extended, Lossless (Process 14) and Lossless SV1, decoded by jpeg-decoder.
pub const JPEG_SYNTAXES: [&str; 4] = [
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
];
/// JPEG-LS Lossless and Near-Lossless, decoded by CharLS.
pub const JPEG_LS_SYNTAXES: [&str; 2] = ["1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"];
/// RLE Lossless.
pub const RLE_SYNTAX: &str = "1.2.840.10008.1.2.5";

/// What a frame header declares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// The SOF marker's second byte (0xC0-0xCF, 0xF7 for JPEG-LS).
    pub marker: u8,
    /// Sample precision P, in bits.
    pub bits: u8,
    /// Number of lines Y.
    pub rows: u16,
    /// Samples per line X.
    pub cols: u16,
    /// Number of components Nf.
    pub components: u8,
}

/// Every frame header (SOFn, SOF55) of a JPEG or JPEG-LS codestream before its first scan, read
/// marker segment by marker segment from SOI (bytes that are no marker are skipped, as
/// jpeg-decoder skips them).
pub fn frame_headers(cs: &[u8]) -> std::result::Result<Vec<FrameHeader>, String> {
    if !cs.starts_with(&[0xFF, 0xD8]) {
        return Err("no start of image (SOI) at the start of the frame".into());
    }
    let mut found = Vec::new();
    let mut pos = 2;
    loop {
        while pos < cs.len() && cs[pos] != 0xFF {
            pos += 1;
        }
        while pos < cs.len() && cs[pos] == 0xFF {
            pos += 1; // fill bytes
        }
        let Some(&marker) = cs.get(pos) else {
            break; // the end of the frame before a scan
        };
        pos += 1;
        match marker {
            0xDA | 0xD9 => break,           // SOS: the first scan; EOI
            0x01 | 0xD0..=0xD7 => continue, // TEM, RSTn: no segment
            _ => {}
        }
        let Some(len) = cs
            .get(pos..pos + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
        else {
            break;
        };
        let sof = matches!(marker, 0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC))
            || marker == 0xF7;
        if sof {
            let b = cs
                .get(pos + 2..pos + 8)
                .filter(|_| len >= 8)
                .ok_or_else(|| format!("frame header (FF{marker:02X}) cut short"))?;
            found.push(FrameHeader {
                marker,
                bits: b[0],
                rows: u16::from_be_bytes([b[1], b[2]]),
                cols: u16::from_be_bytes([b[3], b[4]]),
                components: b[5],
            });
        }
        pos += len.max(2);
    }
    if found.is_empty() {
        return Err("no frame header (SOF) before the first scan".into());
    }
    Ok(found)
}

/// The DICOM header's image: Columns, Rows, SamplesPerPixel, BitsAllocated.
pub type Dims = (u64, u64, u64, u64);

/// Check a frame size (`cols` x `rows`, `components` samples of `bits` bits) read from a
/// codestream against the limits and the DICOM header.
fn check_frame(
    name: &str,
    what: &str,
    (cols, rows, components, bits): Dims,
    (dcols, drows, spp, bits_allocated): Dims,
    opts: &DecodeOptions,
) -> Result<()> {
    check_size(name, cols, rows, components, bits, opts)?;
    let bad = |why: String| Err(Error::decode(name, format!("DICOM {what}: {why}")));
    if (cols, rows) != (dcols, drows) {
        return bad(format!(
            "the frame is {cols}x{rows} but Columns x Rows is {dcols}x{drows}"
        ));
    }
    if components != spp {
        return bad(format!(
            "the frame has {components} components for SamplesPerPixel {spp}"
        ));
    }
    if bits > bits_allocated {
        return bad(format!(
            "the frame has {bits} bits per sample, more than BitsAllocated {bits_allocated}"
        ));
    }
    Ok(())
}

/// Check the first frame of a JPEG or JPEG-LS DICOM (`syntax`) before its decoder sees it.
pub fn check_jpeg_frame(
    name: &str,
    obj: &dicom_object::DefaultDicomObject,
    syntax: &str,
    dims: Dims,
    opts: &DecodeOptions,
) -> Result<()> {
    let jpeg_ls = JPEG_LS_SYNTAXES.contains(&syntax);
    let what = if jpeg_ls { "JPEG-LS" } else { "JPEG" };
    // the bytes each decoder is handed (dicom-pixeldata's JPEG adapter and CharLS's differ in
    // how they gather a frame spread over several fragments)
    let frame = if jpeg_ls {
        obj.frame_pixel_data(0)
    } else {
        jpeg_adapter_frame(obj)
    }
    .ok_or_else(|| Error::decode(name, format!("DICOM {what}: no encapsulated frame 0")))?;
    let headers =
        frame_headers(&frame).map_err(|why| Error::decode(name, format!("DICOM {what}: {why}")))?;
    for h in &headers {
        let declared = (
            h.cols as u64,
            h.rows as u64,
            h.components as u64,
            h.bits as u64,
        );
        check_frame(name, what, declared, dims, opts)?;
    }
    if jpeg_ls {
        last_scan_ends_at_a_marker(&frame)
            .map_err(|why| Error::decode(name, format!("DICOM {what}: {why}")))?;
        // CharLS's own reading of the header it will size the output from (an LSE marker may
        // set the size); an error here is CharLS's error when it decodes, before it allocates
        if let Ok(info) = charls::CharLS::default().get_frame_info(&frame) {
            let declared = (
                info.width as u64,
                info.height as u64,
                info.component_count.max(0) as u64,
                info.bits_per_sample.max(0) as u64,
            );
            check_frame(name, what, declared, dims, opts)?;
        }
    }
    Ok(())
}

/// CharLS reads a scan's bits until a marker (an 0xFF byte followed by one with its high bit
/// set, or a last 0xFF); a scan whose data reaches the end of the frame without one can make its
/// bit reader count past the end (a fuzzer-found 33-byte frame spun 4 s, whatever its size). A
/// frame CharLS decodes ends its last scan with EOI, so one whose last scan (after the last SOS
/// segment) holds no marker is refused before CharLS reads it.
pub fn last_scan_ends_at_a_marker(cs: &[u8]) -> std::result::Result<(), String> {
    let Some(sos) = cs.windows(2).rposition(|w| w == [0xFF, 0xDA]) else {
        return Ok(()); // no scan: CharLS's error
    };
    let Some(len) = cs.get(sos + 2..sos + 4) else {
        return Ok(());
    };
    let start = sos + 2 + u16::from_be_bytes([len[0], len[1]]) as usize;
    let data = cs.get(start..).unwrap_or_default();
    let marker = |i: usize| data[i] == 0xFF && data.get(i + 1).is_none_or(|&next| next >= 0x80);
    if (0..data.len()).any(marker) {
        Ok(())
    } else {
        Err("the last scan has no end marker (EOI) before the end of the frame".into())
    }
}

/// Frame 0's bytes as dicom-pixeldata's JPEG adapter gathers them: the first fragment when
/// there is one fragment or one per frame, else the fragments from the offset table's first
/// entry up to its second.
fn jpeg_adapter_frame(obj: &dicom_object::DefaultDicomObject) -> Option<Cow<'_, [u8]>> {
    let raw = obj.raw_pixel_data()?;
    let frames = obj.number_of_frames().unwrap_or(1) as usize;
    if raw.fragments.len() == 1 || raw.fragments.len() == frames {
        return raw.fragments.into_iter().next().map(Cow::Owned);
    }
    let base = raw.offset_table.first().copied().unwrap_or(0) as usize;
    let next = raw.offset_table.get(1).copied().map(|o| o as usize);
    let mut offset = 0;
    let mut out = Vec::new();
    for fragment in &raw.fragments {
        if offset >= base {
            out.extend_from_slice(fragment);
        }
        offset += fragment.len() + 8;
        if next.is_some_and(|n| offset >= n) {
            break;
        }
    }
    Some(Cow::Owned(out))
}

/// At most this many RLE segments (PS3.5 G.5: the 64-byte header holds 15 offsets).
const MAX_RLE_SEGMENTS: u32 = 15;

/// Check the first RLE frame's header, and that each segment the decoder uses expands to at
/// most twice its plane plus one run (dicom-rs's RLE decoder expands a whole segment before it
/// takes the plane's `rows x cols` bytes).
pub fn check_rle_frame(
    name: &str,
    obj: &dicom_object::DefaultDicomObject,
    (cols, rows, spp, bits_allocated): Dims,
) -> Result<()> {
    let bad = |why: String| Error::decode(name, format!("DICOM RLE: {why}"));
    let Some(fragment) = obj.fragment(0) else {
        return Ok(()); // the decoder's error
    };
    if fragment.len() < 64 {
        return Err(bad(format!(
            "the first fragment has {} bytes, less than its 64-byte RLE header",
            fragment.len()
        )));
    }
    let word = |i: usize| u32::from_le_bytes(fragment[4 * i..4 * i + 4].try_into().unwrap());
    let segments = word(0);
    if segments > MAX_RLE_SEGMENTS {
        return Err(bad(format!(
            "the header declares {segments} segments (at most {MAX_RLE_SEGMENTS})"
        )));
    }
    let plane = rows.saturating_mul(cols);
    let limit = plane.saturating_mul(2).saturating_add(128);
    let used = (spp.saturating_mul(bits_allocated / 8)).min(segments as u64) as usize;
    for s in 0..used {
        let start = word(1 + s) as usize;
        let end = if s + 1 < segments as usize {
            word(2 + s) as usize
        } else {
            fragment.len()
        };
        let Some(segment) = fragment.get(start..end) else {
            continue; // the decoder's error ("Invalid RLE segment range")
        };
        if packbits_length(segment, limit) > limit {
            return Err(bad(format!(
                "segment {s} decodes to more than {limit} bytes (its plane holds {plane})"
            )));
        }
    }
    Ok(())
}

/// The length a PackBits segment decodes to as dicom-rs's RLE decoder reads it (a literal run
/// cut short copies what is there; -128 is a no-op), counted up to just past `limit`.
fn packbits_length(segment: &[u8], limit: u64) -> u64 {
    let (mut out, mut pos) = (0u64, 0usize);
    while pos < segment.len() && out <= limit {
        let h = segment[pos] as i8;
        pos += 1;
        if h >= 0 {
            let n = h as usize + 1;
            out += n.min(segment.len() - pos) as u64;
            pos += n;
        } else if h != -128 {
            if pos >= segment.len() {
                break; // the decoder fails to read the repeated byte
            }
            out += (1 - h as i64) as u64;
            pos += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sof(marker: u8, bits: u8, rows: u16, cols: u16, components: u8) -> Vec<u8> {
        let mut v = vec![0xFF, marker];
        v.extend_from_slice(&(8 + 3 * components as u16).to_be_bytes());
        v.push(bits);
        v.extend_from_slice(&rows.to_be_bytes());
        v.extend_from_slice(&cols.to_be_bytes());
        v.push(components);
        for c in 0..components {
            v.extend_from_slice(&[c + 1, 0x11, 0]);
        }
        v
    }

    #[test]
    fn frame_headers_are_found_before_the_first_scan() {
        let mut cs = vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 4, 1, 2, 0x00, 0xFF, 0xFF]; // APP0, junk, fill
        cs.extend_from_slice(&[0xDB, 0, 3, 9]); // DQT (the FF before is a fill byte's successor)
        cs.extend_from_slice(&sof(0xF7, 16, 65535, 65535, 3));
        cs.extend_from_slice(&[0xFF, 0xDA, 0, 8, 1, 1, 0, 0, 0, 0]);
        cs.extend_from_slice(&sof(0xC0, 8, 1, 1, 1)); // in the scan: not read
        let h = frame_headers(&cs).unwrap();
        assert_eq!(
            h,
            vec![FrameHeader {
                marker: 0xF7,
                bits: 16,
                rows: 65535,
                cols: 65535,
                components: 3
            }]
        );
        // two frame headers: both are read
        let mut cs = vec![0xFF, 0xD8];
        cs.extend_from_slice(&sof(0xC0, 8, 8, 8, 1));
        cs.extend_from_slice(&sof(0xC1, 8, 9000, 8, 1));
        assert_eq!(frame_headers(&cs).unwrap().len(), 2);
        assert!(frame_headers(&[0xFF, 0xD8, 0xFF, 0xDA]).is_err());
        assert!(frame_headers(&[0, 1, 2]).is_err());
        assert!(frame_headers(&sof(0xC0, 8, 8, 8, 1)[..6]).is_err());
        let cut = [&[0xFF, 0xD8][..], &sof(0xC0, 8, 8, 8, 1)[..7]].concat();
        assert!(frame_headers(&cut).unwrap_err().contains("cut short"));
    }

    #[test]
    fn frame_sizes_are_held_to_the_limits_and_the_dicom_header() {
        let opts = DecodeOptions::default();
        let dicom = (64, 64, 1, 16);
        let e = check_frame("a.dcm", "JPEG-LS", (65535, 65535, 3, 16), dicom, &opts).unwrap_err();
        assert!(matches!(e, Error::TooLarge { .. }), "{e}");
        let e = check_frame("a.dcm", "JPEG-LS", (64, 64, 255, 16), dicom, &opts).unwrap_err();
        assert!(e.to_string().contains("255 components"), "{e}");
        let small = DecodeOptions {
            max_bytes: 8191,
            ..opts
        };
        let e = check_frame("a.dcm", "JPEG", (64, 64, 1, 16), dicom, &small).unwrap_err();
        assert!(matches!(e, Error::TooManyBytes { .. }), "{e}");
        let e = check_frame("a.dcm", "JPEG", (65, 64, 1, 16), dicom, &opts).unwrap_err();
        assert!(
            e.to_string().contains("65x64 but Columns x Rows is 64x64"),
            "{e}"
        );
        let e = check_frame("a.dcm", "JPEG", (64, 64, 1, 16), (64, 64, 1, 8), &opts).unwrap_err();
        assert!(e.to_string().contains("16 bits per sample"), "{e}");
        assert!(check_frame("a.dcm", "JPEG", (64, 64, 1, 12), dicom, &opts).is_ok());
    }

    #[test]
    fn a_jpeg_ls_scan_must_end_at_a_marker() {
        // the fuzzer's frame (SOF55 10 x 50, 16 bits; SOS near-lossless 2; 7 bytes of scan data
        // without EOI) with the padding byte a DICOM fragment adds: CharLS spins 4 s on it
        let found = "ffd8fff7000b100032000a01011100ffffda0008010100020000400008010100d900";
        let cs: Vec<u8> = (0..found.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&found[i..i + 2], 16).unwrap())
            .collect();
        let e = last_scan_ends_at_a_marker(&cs).unwrap_err();
        assert!(e.contains("no end marker"), "{e}");
        // with EOI (and a padding byte after it), a restart marker, or a last 0xFF: fine
        for tail in [&[0xFF, 0xD9, 0x00][..], &[0xFF, 0xD0, 1, 2], &[0xFF]] {
            assert_eq!(
                last_scan_ends_at_a_marker(&[&cs[..], tail].concat()),
                Ok(())
            );
        }
        // a stuffed 0xFF (next byte's high bit clear) is scan data, not a marker
        assert!(last_scan_ends_at_a_marker(&[&cs[..], &[0xFF, 0x7F, 0]].concat()).is_err());
        // no scan at all is CharLS's error to report
        assert_eq!(last_scan_ends_at_a_marker(&[0xFF, 0xD8]), Ok(()));
    }

    #[test]
    fn packbits_lengths_are_counted_as_the_decoder_expands() {
        // a literal run of 3, a repeat of 4, a no-op, a literal run cut short (2 of 5 bytes)
        let seg = [2, 7, 8, 9, (-3i8) as u8, 5, 0x80, 4, 1, 2];
        assert_eq!(packbits_length(&seg, 1000), 3 + 4 + 2);
        // 64-fold: 2 bytes to 128, counted only just past the limit
        let seg = [0x81u8, 0].repeat(1 << 20);
        assert_eq!(packbits_length(&seg, 1000), 1024);
        assert_eq!(packbits_length(&seg, u64::MAX - 128), 128 << 20);
    }
}
