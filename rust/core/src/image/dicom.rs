//! DICOM (Part 10 files, with preamble) through dicom-rs: native pixel data plus the encapsulated
//! syntaxes its decoders handle (JPEG baseline/extended/lossless, RLE, JPEG-LS via CharLS).
//! JPEG 2000 is decoded by OpenJPEG's Rust port directly (`j2k`), at a reduced resolution when
//! `reduce_to` allows. The first frame is returned.
//!
//! Grey values are the stored values with the Modality LUT's linear part applied
//! (`out = slope * v + intercept`). MONOCHROME1 (minimum = white) is inverted to MONOCHROME2 over
//! the stored range first: `v' = (2^BitsStored - 1) - v` for unsigned data. Results must fit in
//! 0..=65535 (uint16; uint8 when BitsStored <= 8): data that rescales to negative values (CT-style
//! Hounsfield units) is refused instead of silently clipped.

use dicom_dictionary_std::tags;
use dicom_object::file::{OpenFileOptions, ReadPreamble};
use dicom_pixeldata::{PhotometricInterpretation, PixelDecoder, PixelRepresentation};

use super::decode::{check_size, DecodeOptions, Decoded};
use super::j2k;
use super::Image;
use crate::error::{Error, Result};

/// Decode the first frame; also returns the reduction's denominator (1: full size; JPEG 2000
/// may be decoded at `1 / 2^r`, see [`super::j2k::decode_frame`]).
pub fn decode_dicom(bytes: &[u8], name: &str, opts: &DecodeOptions) -> Result<(Decoded, usize)> {
    check_element_lengths(bytes).map_err(|why| Error::decode(name, format!("DICOM: {why}")))?;
    let obj = OpenFileOptions::new()
        .read_preamble(ReadPreamble::Always)
        .from_reader(bytes)
        .map_err(|e| Error::decode(name, format!("DICOM: {e}")))?;
    let int = |tag, field: &str| -> Result<u64> {
        obj.element(tag)
            .map_err(|_| Error::decode(name, format!("DICOM: missing {field}")))?
            .to_int::<u64>()
            .map_err(|e| Error::decode(name, format!("DICOM: bad {field}: {e}")))
    };
    let (rows, cols) = (int(tags::ROWS, "Rows")?, int(tags::COLUMNS, "Columns")?);
    let spp = int(tags::SAMPLES_PER_PIXEL, "SamplesPerPixel").unwrap_or(1);
    let bits = int(tags::BITS_ALLOCATED, "BitsAllocated")?;
    check_size(name, cols, rows, spp, bits, opts)?;
    if let Ok(stored) = int(tags::BITS_STORED, "BitsStored") {
        if stored == 0 || stored > bits {
            return Err(Error::decode(
                name,
                format!("DICOM: BitsStored {stored} does not fit BitsAllocated {bits}"),
            ));
        }
    }
    if obj.element(tags::PIXEL_DATA).is_err() {
        return Err(Error::decode(name, "DICOM: no Pixel Data element"));
    }
    let syntax = obj.meta().transfer_syntax().trim_end_matches(['\0', ' ']);
    let native = NATIVE_SYNTAXES.contains(&syntax);
    let photometric = obj
        .element(tags::PHOTOMETRIC_INTERPRETATION)
        .ok()
        .and_then(|e| e.to_str().ok().map(|s| s.trim().to_string()))
        .unwrap_or_default();
    if native && photometric == "YBR_FULL_422" && bits == 8 {
        // two pixels share one Cb, Cr pair: Y1 Y2 Cb Cr (PS3.5 8.2.1); dicom-rs sizes the frame
        // as if it were 3 samples per pixel, so it is unpacked here
        let element = obj
            .element(tags::PIXEL_DATA)
            .map_err(|e| Error::decode(name, format!("DICOM pixel data: {}", causes(&e))))?;
        let raw = element
            .to_bytes()
            .map_err(|e| Error::decode(name, format!("DICOM pixel data: {}", causes(&e))))?;
        let (w, h) = (cols as usize, rows as usize);
        return ybr_422_to_rgb(name, &raw, w, h).map(|i| (Decoded::U8(i), 1));
    }
    if syntax == JPEG_EXTENDED && bits > 8 {
        return Err(Error::unsupported(
            name,
            "DICOM JPEG Extended with more than 8 bits (12-bit JPEG); decode it elsewhere, \
             e.g. to an uncompressed transfer syntax",
        ));
    }
    if j2k::SYNTAXES.contains(&syntax) {
        let frame = j2k::first_frame(&obj, name)?;
        let dims = (cols as usize, rows as usize, spp as usize, bits as u16);
        let f = j2k::decode_frame(name, &frame, dims, opts)?;
        let samples = Samples {
            data: &f.data,
            width: f.width,
            height: f.height,
            spp: spp as usize,
            bits_allocated: bits as u16,
            bits_stored: int(tags::BITS_STORED, "BitsStored")? as u16,
            signed: int(tags::PIXEL_REPRESENTATION, "PixelRepresentation")? == 1,
            planar: false, // the decoder's components are interleaved
            monochrome1: photometric == "MONOCHROME1",
            rescale: first_rescale(&obj),
        };
        let image = to_image(name, &obj, samples, &photometric, false, opts)?;
        return Ok((image, f.denominator));
    }
    let px = obj
        .decode_pixel_data_frame(0)
        .map_err(|e| Error::decode(name, format!("DICOM pixel data: {}", causes(&e))))?;
    let rescale = px.rescale().ok().and_then(|r| r.first().copied());
    let samples = Samples {
        data: px.data(),
        width: px.columns() as usize,
        height: px.rows() as usize,
        spp: px.samples_per_pixel() as usize,
        bits_allocated: px.bits_allocated(),
        bits_stored: px.bits_stored(),
        signed: px.pixel_representation() == PixelRepresentation::Signed,
        planar: px.planar_configuration() as u8 == 1,
        monochrome1: *px.photometric_interpretation() == PhotometricInterpretation::Monochrome1,
        rescale: rescale.map_or((1.0, 0.0), |r| (r.slope, r.intercept)),
    };
    Ok((
        to_image(name, &obj, samples, &photometric, native, opts)?,
        1,
    ))
}

/// A decoded frame's samples and what interpreting them needs (dicom-pixeldata's view of it).
struct Samples<'a> {
    data: &'a [u8],
    width: usize,
    height: usize,
    spp: usize,
    bits_allocated: u16,
    bits_stored: u16,
    signed: bool,
    planar: bool,
    monochrome1: bool,
    /// Modality LUT's linear part `(slope, intercept)`.
    rescale: (f64, f64),
}

/// The first frame's Rescale Slope and Intercept, where dicom-pixeldata looks for them: the top
/// level, else the Pixel Value Transformation Sequence of the first per-frame functional group
/// that has one, else of the shared functional groups (or flat in their first item).
fn first_rescale(obj: &dicom_object::DefaultDicomObject) -> (f64, f64) {
    let find = |tag| -> Option<f64> {
        let value = |e: &dicom_object::mem::InMemElement| {
            e.to_float64().ok().filter(|v: &f64| v.is_finite())
        };
        if let Ok(e) = obj.element(tag) {
            return value(e);
        }
        let group = |item: &dicom_object::InMemDicomObject| {
            item.get(tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE)?
                .items()?
                .first()?
                .get(tag)
                .and_then(value)
        };
        let per_frame = obj
            .get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
            .and_then(|s| s.items()?.iter().find_map(group));
        per_frame.or_else(|| {
            let shared = obj
                .get(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE)?
                .items()?
                .first()?;
            group(shared).or_else(|| shared.get(tag).and_then(value))
        })
    };
    (
        find(tags::RESCALE_SLOPE).unwrap_or(1.0),
        find(tags::RESCALE_INTERCEPT).unwrap_or(0.0),
    )
}

/// Samples to the image gradatim returns: colour interleaved (native YBR_FULL to RGB), PALETTE
/// COLOR through its tables, grey through the stored bits, MONOCHROME1 inversion and rescale.
fn to_image(
    name: &str,
    obj: &dicom_object::DefaultDicomObject,
    px: Samples<'_>,
    photometric: &str,
    native: bool,
    opts: &DecodeOptions,
) -> Result<Decoded> {
    let (w, h, spp, data) = (px.width, px.height, px.spp, px.data);
    let (slope, intercept) = px.rescale;

    if spp == 3 {
        if px.bits_allocated != 8 {
            return Err(Error::unsupported(
                name,
                "DICOM colour with more than 8 bits per sample",
            ));
        }
        let mut data = planar_to_interleaved(data, w * h, px.planar);
        // compressed YBR data comes out of its decoder as RGB already; native YBR_FULL does not
        if native && photometric == "YBR_FULL" {
            ybr_to_rgb_in_place(&mut data);
        }
        return sized(name, data, w, h, 3).map(Decoded::U8);
    }
    if photometric == "PALETTE COLOR" {
        return palette_to_rgb(name, obj, data, px.bits_allocated, w * h).and_then(|d| match d {
            Palette::U8(v) => sized(name, v, w, h, 3).map(Decoded::U8),
            Palette::U16(v) => sized(name, v, w, h, 3).map(Decoded::U16),
        });
    }
    if spp != 1 {
        return Err(Error::unsupported(
            name,
            format!("DICOM with {spp} samples per pixel"),
        ));
    }
    let bits_stored = px.bits_stored.clamp(1, 16) as u32;
    let signed = px.signed;
    let invert = px.monochrome1;
    let raw: Vec<i32> = match px.bits_allocated {
        8 => data
            .iter()
            .map(|&b| stored_value(b as u32, bits_stored, signed))
            .collect(),
        16 => data
            .chunks_exact(2)
            .map(|c| stored_value(u16::from_le_bytes([c[0], c[1]]) as u32, bits_stored, signed))
            .collect(),
        b => return Err(Error::unsupported(name, format!("DICOM BitsAllocated {b}"))),
    };
    if raw.len() < w * h {
        return Err(Error::decode(
            name,
            format!("DICOM: pixel data holds {} of {} samples", raw.len(), w * h),
        ));
    }
    let (lo, hi) = if signed {
        (
            -(1i32 << (bits_stored - 1)),
            (1i32 << (bits_stored - 1)) - 1,
        )
    } else {
        (0, ((1u32 << bits_stored) - 1) as i32)
    };
    let identity = slope == 1.0 && intercept == 0.0;
    let map = |v: i32| -> f64 {
        let v = if invert { lo + hi - v } else { v };
        if identity {
            v as f64
        } else {
            slope * v as f64 + intercept
        }
    };
    let (out_lo, out_hi) = {
        let (a, b) = (map(lo), map(hi));
        (a.min(b), a.max(b))
    };
    if out_lo < 0.0 || out_hi > 65535.0 {
        return Err(Error::unsupported(
            name,
            format!(
                "DICOM value range {out_lo}..{out_hi} after rescale (gradatim returns 0..65535)"
            ),
        ));
    }
    // stored values as pydicom gives them; with `full_range` (the loader) the range the stored
    // bits allow is stretched over the output type, so a 12-bit DICOM is not 0-6 % grey next to
    // an 8-bit JPEG at 0-100 %
    let eight = out_hi <= 255.0 && bits_stored <= 8;
    let top = if eight { 255.0 } else { 65535.0 };
    let gain = if opts.full_range && out_hi > 0.0 {
        top / out_hi
    } else {
        1.0
    };
    let values = raw[..w * h]
        .iter()
        .map(|&v| (map(v) * gain).round().min(top) as u16);
    if eight {
        sized(name, values.map(|v| v as u8).collect(), w, h, 1).map(Decoded::U8)
    } else {
        sized(name, values.collect(), w, h, 1).map(Decoded::U16)
    }
}

/// Uncompressed transfer syntaxes: implicit VR LE, explicit VR LE, explicit VR BE.
const NATIVE_SYNTAXES: [&str; 3] = [
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.2",
];
/// JPEG Extended (Process 2 & 4), which may hold 12-bit samples.
const JPEG_EXTENDED: &str = "1.2.840.10008.1.2.4.51";

/// An error and its causes, `a: b: c` (dicom-rs's outer messages alone are generic).
fn causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

/// Full-range YCbCr (YBR_FULL, PS3.3 C.7.6.3.1.2) to RGB, per interleaved pixel, as pydicom's
/// `convert_color_space` (BT.601 full-range coefficients, rounded, clipped).
fn ybr_to_rgb_in_place(data: &mut [u8]) {
    for px in data.chunks_exact_mut(3) {
        let [r, g, b] = ybr_pixel(px[0], px[1], px[2]);
        px.copy_from_slice(&[r, g, b]);
    }
}

fn ybr_pixel(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    let (y, cb, cr) = (y as f64, cb as f64 - 128.0, cr as f64 - 128.0);
    let clip = |v: f64| v.round().clamp(0.0, 255.0) as u8;
    [
        clip(y + 1.402 * cr),
        clip(y - 0.344_136 * cb - 0.714_136 * cr),
        clip(y + 1.772 * cb),
    ]
}

/// YBR_FULL_422 native data (Y1 Y2 Cb Cr per pair of pixels) to interleaved RGB.
fn ybr_422_to_rgb(name: &str, raw: &[u8], w: usize, h: usize) -> Result<Image<u8>> {
    let need = w * h * 2;
    if w % 2 == 1 || raw.len() < need {
        return Err(Error::decode(
            name,
            format!(
                "DICOM YBR_FULL_422: {} bytes of pixel data for {w}x{h} (needs {need}, even width)",
                raw.len()
            ),
        ));
    }
    let mut data = Vec::with_capacity(w * h * 3);
    for q in raw[..need].chunks_exact(4) {
        data.extend_from_slice(&ybr_pixel(q[0], q[2], q[3]));
        data.extend_from_slice(&ybr_pixel(q[1], q[2], q[3]));
    }
    sized(name, data, w, h, 3)
}

enum Palette {
    U8(Vec<u8>),
    U16(Vec<u16>),
}

/// PALETTE COLOR: each stored index through the red, green and blue lookup tables (PS3.3
/// C.7.6.3.1.5), as pydicom's `apply_color_lut`: indices below the first mapped value take the
/// first entry, above the last the last; 8- or 16-bit entries as the table's data length says.
fn palette_to_rgb(
    name: &str,
    obj: &dicom_object::DefaultDicomObject,
    data: &[u8],
    bits_allocated: u16,
    pixels: usize,
) -> Result<Palette> {
    let bad = |why: &str| Error::decode(name, format!("DICOM palette: {why}"));
    let desc = obj
        .element(tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR)
        .map_err(|_| bad("no Red Palette Color Lookup Table Descriptor"))?
        .to_multi_int::<i32>()
        .map_err(|_| bad("unreadable lookup table descriptor"))?;
    if desc.len() < 3 {
        return Err(bad("the lookup table descriptor needs 3 values"));
    }
    let entries = if desc[0] == 0 {
        65536
    } else {
        desc[0] as usize
    };
    let first = desc[1] as i64;
    // the tables as 16-bit words in the file's byte order (dicom-rs reads OW values as such);
    // a table of `entries` bytes holds 8-bit entries
    let table = |tag| -> Result<(usize, Vec<u16>)> {
        let element = obj.element(tag).map_err(|_| {
            Error::unsupported(name, "DICOM palette without lookup table data (segmented?)")
        })?;
        let len = element
            .to_bytes()
            .map_err(|_| bad("unreadable lookup table"))?
            .len();
        let words = element
            .to_multi_int::<u16>()
            .map_err(|_| bad("unreadable lookup table data"))?;
        Ok((len, words))
    };
    let (r_len, r16) = table(tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA)?;
    let (g_len, g16) = table(tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA)?;
    let (b_len, b16) = table(tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA)?;
    if r_len < entries || g_len != r_len || b_len != r_len {
        return Err(bad("lookup tables of unequal or short length"));
    }
    let wide = r_len >= 2 * entries;
    // 8-bit entries: the words' bytes in order, little endian as pydicom reads them
    let bytes = |t: &[u16]| -> Vec<u8> { t.iter().flat_map(|w| w.to_le_bytes()).collect() };
    let (r, g, b) = (bytes(&r16), bytes(&g16), bytes(&b16));
    let index = |i: usize| -> usize {
        let v = match bits_allocated {
            8 => data.get(i).copied().unwrap_or(0) as i64,
            _ => data
                .get(2 * i..2 * i + 2)
                .map_or(0, |c| u16::from_le_bytes([c[0], c[1]]) as i64),
        };
        (v - first).clamp(0, entries as i64 - 1) as usize
    };
    if wide {
        if r16.len() < entries || g16.len() < entries || b16.len() < entries {
            return Err(bad("lookup tables shorter than their descriptor"));
        }
        let mut out = Vec::with_capacity(pixels * 3);
        for i in 0..pixels {
            let k = index(i);
            out.extend_from_slice(&[r16[k], g16[k], b16[k]]);
        }
        Ok(Palette::U16(out))
    } else {
        let mut out = Vec::with_capacity(pixels * 3);
        for i in 0..pixels {
            let k = index(i);
            out.extend_from_slice(&[r[k], g[k], b[k]]);
        }
        Ok(Palette::U8(out))
    }
}

/// Walk the file's data elements, into sequences and items, and check every defined length
/// against the bytes that are left, before dicom-rs allocates a value of that length: a 1.6 KB
/// file declaring a 4 GB Pixel Data element (or a 3.7 GB value inside a nested item) is refused
/// here. Encapsulated pixel data fragments are checked and skipped; an undefined-length UN value
/// is walked as dicom-rs reads it (explicit VR, an unknown VR taken as a 4-byte length: a
/// fuzzer-found 674-byte file made the parser allocate 3.7 GB that way), and so is any later
/// element with an unknown VR; a data set whose first element has no VR was written in implicit
/// VR against its transfer syntax and is walked as such (readers detect it); a deflated data set
/// is inflated (at most [`MAX_INFLATED`] bytes: a fuzzer-found 4.6 KB file inflated to a 3 GB
/// value) and walked. The walk stops without judging at an undefined length no reader follows.
/// It never refuses a file it cannot walk.
fn check_element_lengths(bytes: &[u8]) -> std::result::Result<(), String> {
    const LONG_VRS: [&[u8; 2]; 13] = [
        b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV",
    ];
    /// Every VR of PS3.5 6.2; dicom-rs reads any other pair of bytes as UN (4-byte length).
    const VRS: [&[u8; 2]; 34] = [
        b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"OB",
        b"OD", b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM",
        b"UC", b"UI", b"UL", b"UN", b"UR", b"US", b"UT", b"UV",
    ];
    const UNDEFINED: u32 = u32::MAX;
    #[derive(PartialEq)]
    enum Open {
        /// A sequence of undefined length; `true`: the contents of a UN value, which dicom-rs
        /// reads in the transfer syntax's explicit VR with an unknown VR taken as a 4-byte length
        /// (the walk reads them the same way, so it checks the length the parser will allocate).
        Sequence(bool),
        Fragments,
    }
    let mut open: Vec<Open> = Vec::new();
    let mut pos = 132; // preamble + "DICM"
    let mut explicit = true; // the file meta group is explicit VR little endian
    let mut big_endian = false;
    let mut in_meta = true;
    let mut first = false; // at the data set's first element
    let mut deflated = false;
    while pos + 8 <= bytes.len() {
        let be = big_endian && !in_meta;
        let u16_at = |i: usize| {
            let b = [bytes[i], bytes[i + 1]];
            if be {
                u16::from_be_bytes(b)
            } else {
                u16::from_le_bytes(b)
            }
        };
        let u32_at = |i: usize| {
            let b = [bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]];
            if be {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        let (group, element) = (u16_at(pos), u16_at(pos + 2));
        if in_meta && group != 0x0002 && deflated {
            // a deflated data set: walk what the parser will read, inflated (and bounded)
            return check_element_lengths(&inflated_as_explicit_file(&bytes[pos..])?);
        }
        if in_meta && group != 0x0002 {
            in_meta = false; // the data set follows, in the syntax the meta group named
            first = true;
            continue;
        }
        let left_after = |header: usize| bytes.len().saturating_sub(pos + header);
        let too_long = |len: u32, header: usize| {
            format!(
                "element ({group:04X},{element:04X}) declares {len} bytes but only {} are left \
                 in the file",
                left_after(header)
            )
        };
        if group == 0xFFFE {
            // items and delimiters: tag + 4-byte length, no VR, in every transfer syntax
            let len = u32_at(pos + 4);
            match element {
                0xE000 if open.last() == Some(&Open::Fragments) => {
                    if len as usize > left_after(8) {
                        return Err(too_long(len, 8));
                    }
                    pos += 8 + len as usize; // a compressed fragment: skip it
                }
                0xE000 => {
                    if len != UNDEFINED && len as usize > left_after(8) {
                        return Err(too_long(len, 8));
                    }
                    pos += 8; // an item of a sequence: its elements follow
                }
                0xE0DD => {
                    open.pop();
                    pos += 8;
                }
                _ => pos += 8, // item delimiter
            }
            continue;
        }
        let in_un = matches!(open.last(), Some(Open::Sequence(true)));
        let (len, header, vr) = if explicit || in_meta {
            let vr = [bytes[pos + 4], bytes[pos + 5]];
            let known = VRS.contains(&&vr);
            if !vr.iter().all(u8::is_ascii_uppercase) && first && !in_meta {
                // the data set's first element has no VR: it was written in implicit VR whatever
                // the transfer syntax says (readers detect this), so walk it that way
                explicit = false;
                continue;
            }
            if !known || LONG_VRS.contains(&&vr) {
                if pos + 12 > bytes.len() {
                    return Err(format!("element ({group:04X},{element:04X}) is cut short"));
                }
                (u32_at(pos + 8), 12, Some(vr))
            } else {
                (u16_at(pos + 6) as u32, 8, Some(vr))
            }
        } else {
            (u32_at(pos + 4), 8, None)
        };
        first = false;
        let pixel_data = (group, element) == (0x7FE0, 0x0010);
        if len == UNDEFINED {
            match vr {
                Some(v) if &v == b"SQ" => open.push(Open::Sequence(in_un)),
                _ if pixel_data => open.push(Open::Fragments),
                Some(v) if &v == b"UN" || in_un => open.push(Open::Sequence(true)),
                None => open.push(Open::Sequence(false)),
                Some(_) => return Ok(()), // an undefined length no reader follows
            }
            pos += header;
            continue;
        }
        if len as usize > left_after(header) {
            return Err(too_long(len, header));
        }
        let start = pos + header;
        if in_meta && (group, element) == (0x0002, 0x0010) {
            let uid = String::from_utf8_lossy(&bytes[start..start + len as usize]);
            match uid.trim_end_matches(['\0', ' ']) {
                "1.2.840.10008.1.2" => explicit = false,
                "1.2.840.10008.1.2.2" => big_endian = true,
                "1.2.840.10008.1.2.1.99" => deflated = true,
                _ => {}
            }
        }
        // a defined-length sequence's items follow as elements; any other value is skipped
        pos = if vr == Some(*b"SQ") {
            start
        } else {
            start + len as usize
        };
    }
    Ok(())
}

/// The most a deflated data set may inflate to (a deflate stream can expand 1000-fold).
pub const MAX_INFLATED: u64 = 256 << 20;

/// A deflated data set (raw deflate, PS3.5 A.5) inflated, behind a preamble and a meta group
/// naming explicit VR little endian, as [`check_element_lengths`] walks a file.
fn inflated_as_explicit_file(deflated: &[u8]) -> std::result::Result<Vec<u8>, String> {
    use std::io::Read;
    const SYNTAX: &[u8; 20] = b"1.2.840.10008.1.2.1\0";
    let mut out = vec![0u8; 128];
    out.extend_from_slice(b"DICM");
    out.extend_from_slice(&[0x02, 0x00, 0x10, 0x00, b'U', b'I', 20, 0]);
    out.extend_from_slice(SYNTAX);
    let head = out.len();
    let mut reader = flate2::read::DeflateDecoder::new(deflated).take(MAX_INFLATED + 1);
    // a stream that stops early is the parser's error to report, not this walk's
    let _ = reader.read_to_end(&mut out);
    if (out.len() - head) as u64 > MAX_INFLATED {
        return Err(format!(
            "the deflated data set inflates to more than {MAX_INFLATED} bytes"
        ));
    }
    Ok(out)
}

/// The stored value of a sample: the low `bits` bits, sign-extended when signed.
fn stored_value(v: u32, bits: u32, signed: bool) -> i32 {
    let v = v & ((1u32 << bits) - 1);
    if signed && v & (1 << (bits - 1)) != 0 {
        v as i32 - (1i32 << bits)
    } else {
        v as i32
    }
}

fn planar_to_interleaved(data: &[u8], pixels: usize, planar: bool) -> Vec<u8> {
    if !planar || data.len() < 3 * pixels {
        return data.to_vec();
    }
    (0..pixels)
        .flat_map(|i| [data[i], data[pixels + i], data[2 * pixels + i]])
        .collect()
}

fn sized<T>(
    name: &str,
    data: Vec<T>,
    width: usize,
    height: usize,
    channels: usize,
) -> Result<Image<T>> {
    if data.len() < width * height * channels {
        return Err(Error::decode(
            name,
            "DICOM: pixel data is shorter than Rows x Columns",
        ));
    }
    let mut data = data;
    data.truncate(width * height * channels);
    Ok(Image {
        width,
        height,
        channels,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_values_mask_and_sign_extend() {
        assert_eq!(stored_value(0xF000 | 0x0FFF, 12, false), 4095);
        assert_eq!(stored_value(0x0800, 12, true), -2048);
        assert_eq!(stored_value(0x07FF, 12, true), 2047);
    }

    /// Preamble, "DICM", a meta group naming `syntax`, then `body`.
    fn file(syntax: &str, body: &[u8]) -> Vec<u8> {
        let mut uid = syntax.as_bytes().to_vec();
        if uid.len() % 2 == 1 {
            uid.push(0);
        }
        let mut out = vec![0u8; 128];
        out.extend_from_slice(b"DICM");
        out.extend_from_slice(&[0x02, 0x00, 0x10, 0x00, b'U', b'I']);
        out.extend_from_slice(&(uid.len() as u16).to_le_bytes());
        out.extend_from_slice(&uid);
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn forged_element_lengths_are_refused_before_allocation() {
        // explicit VR little endian: (7FE0,0010) OW, 4 GB declared, 8 bytes present
        let mut body = vec![0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0];
        body.extend_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        body.extend_from_slice(&[0; 8]);
        let f = file("1.2.840.10008.1.2.1", &body);
        let e = check_element_lengths(&f).unwrap_err();
        assert!(
            e.contains("(7FE0,0010) declares 4294967280 bytes but only 8"),
            "{e}"
        );
        let e = decode_dicom(&f, "forged.dcm", &DecodeOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("forged.dcm") && e.contains("4294967280"), "{e}");
        // implicit VR: the length follows the tag directly
        let mut body = vec![0xE0, 0x7F, 0x10, 0x00];
        body.extend_from_slice(&0x7FFF_FFFFu32.to_le_bytes());
        assert!(check_element_lengths(&file("1.2.840.10008.1.2", &body)).is_err());
        // inside a sequence and an item, both of undefined length
        let mut body = vec![
            0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
        ];
        body.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        body.extend_from_slice(&[0x08, 0x00, 0x50, 0x11, b'O', b'B', 0, 0]);
        body.extend_from_slice(&0xE000_0000u32.to_le_bytes());
        let e = check_element_lengths(&file("1.2.840.10008.1.2.1", &body)).unwrap_err();
        assert!(e.contains("(0008,1150) declares 3758096384"), "{e}");
        // an undefined-length UN value holding an element with an unknown VR (the fuzzer's 3.7 GB
        // find): dicom-rs reads a 4-byte length after the VR and 2 reserved bytes
        let mut body = vec![
            0x53, 0x44, 0x0C, 0x10, b'U', b'N', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
        ];
        body.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        body.extend_from_slice(&[0x08, 0x00, 0x15, 0x11, 0xFF, 0xFF, 0, 0]);
        body.extend_from_slice(&0xE000_0000u32.to_le_bytes());
        let e = check_element_lengths(&file("1.2.840.10008.1.2.4.70", &body)).unwrap_err();
        assert!(e.contains("(0008,1115) declares 3758096384"), "{e}");
        // a later element with an unknown VR: a 4-byte length after 2 reserved bytes, checked
        let mut body = vec![0x28, 0x00, 0x10, 0x00, b'U', b'S', 2, 0, 4, 0];
        body.extend_from_slice(&[0xFF, 0x80, 0xFF, 0x80, 0xFF, 0x80, 0, 0]);
        body.extend_from_slice(&0xFF80_80FFu32.to_le_bytes());
        assert!(check_element_lengths(&file("1.2.840.10008.1.2.1", &body)).is_err());
        // letters that are no VR ("LM", the fuzzer's 1.4 GB find: one byte of pydicom's
        // JPEG2000.dcm changed) are UN to dicom-rs: the next 4 bytes ("GEMS") are the length
        let mut body = vec![0x28, 0x00, 0x10, 0x00, b'U', b'S', 2, 0, 4, 0];
        body.extend_from_slice(&[0x09, 0x00, 0x10, 0x00, b'L', b'M', 0x0C, 0x00]);
        body.extend_from_slice(b"GEMS_GENIE_1");
        let e = check_element_lengths(&file("1.2.840.10008.1.2.1", &body)).unwrap_err();
        assert!(e.contains("(0009,0010) declares 1397572935"), "{e}");
        // a deflated data set is inflated and walked: a 3 GB OB value inside is refused
        let mut inner = vec![0x08, 0x00, 0x16, 0x00, b'O', b'B', 0, 0];
        inner.extend_from_slice(&0xBCA0_0000u32.to_le_bytes());
        inner.extend_from_slice(&[0; 64]);
        let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut z, &inner).unwrap();
        let f = file("1.2.840.10008.1.2.1.99", &z.finish().unwrap());
        let e = check_element_lengths(&f).unwrap_err();
        assert!(e.contains("(0008,0016) declares 3164602368"), "{e}");
        // a data set written in implicit VR under an explicit transfer syntax walks as implicit
        let mut body = vec![
            0x08, 0x00, 0x08, 0x00, 0x04, 0x00, 0x00, 0x00, b'A', b'B', b'C', b'D',
        ];
        body.extend_from_slice(&[0x28, 0x00, 0x10, 0x00, 0x02, 0x00, 0x00, 0x00, 4, 0]);
        assert!(check_element_lengths(&file("1.2.840.10008.1.2.4.50", &body)).is_ok());
        // a consistent file passes; undefined lengths stop the walk
        let mut body = vec![0x28, 0x00, 0x10, 0x00, b'U', b'S', 2, 0, 4, 0];
        body.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0]);
        body.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(check_element_lengths(&file("1.2.840.10008.1.2.4.50", &body)).is_ok());
    }

    #[test]
    fn truncated_dicom_is_an_error_naming_the_input() {
        let mut bytes = vec![0u8; 128];
        bytes.extend_from_slice(b"DICM\x02\x00");
        let e = decode_dicom(&bytes, "cut.dcm", &DecodeOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("cut.dcm"), "{e}");
    }
}
