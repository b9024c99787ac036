//! DICOM (Part 10 files, with preamble) through dicom-rs: native pixel data plus the encapsulated
//! syntaxes its decoders handle (JPEG baseline/extended/lossless, RLE, JPEG-LS via CharLS).
//! JPEG 2000 is decoded by OpenJPEG's Rust port directly (`j2k`), at a reduced resolution when
//! `reduce_to` allows. The first frame is returned.
//!
//! Nothing third-party sizes an allocation from the file unchecked: the file's lengths and counts
//! are checked before dicom-rs parses it ([`super::dicom_parse`]), and the first frame's own
//! header (JPEG, JPEG-LS, RLE: [`super::dicom_frame`]; JPEG 2000: [`super::j2k`]) before its
//! decoder sizes the output from it.
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
use super::Image;
use super::{dicom_frame, dicom_parse, j2k};
use crate::error::{Error, Result};

/// Decode the first frame; also returns the reduction's denominator (1: full size; JPEG 2000
/// may be decoded at `1 / 2^r`, see [`super::j2k::decode_frame`]).
pub fn decode_dicom(bytes: &[u8], name: &str, opts: &DecodeOptions) -> Result<(Decoded, usize)> {
    dicom_parse::check_lengths(bytes)
        .map_err(|why| Error::decode(name, format!("DICOM: {why}")))?;
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
    // the frame's own header sizes the decoder's output: held to the limits and the DICOM header
    let dims = (cols, rows, spp, bits);
    if dicom_frame::JPEG_SYNTAXES.contains(&syntax)
        || dicom_frame::JPEG_LS_SYNTAXES.contains(&syntax)
    {
        dicom_frame::check_jpeg_frame(name, &obj, syntax, dims, opts)?;
    } else if syntax == dicom_frame::RLE_SYNTAX {
        dicom_frame::check_rle_frame(name, &obj, dims)?;
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
