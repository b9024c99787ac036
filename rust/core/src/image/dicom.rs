//! DICOM (Part 10 files, with preamble) through dicom-rs: native pixel data plus the encapsulated
//! syntaxes its pure-Rust decoders handle (JPEG baseline/extended/lossless, RLE, JPEG 2000 via
//! OpenJPEG's Rust port). The first frame is returned.
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
use crate::error::{Error, Result};

pub fn decode_dicom(bytes: &[u8], name: &str, opts: &DecodeOptions) -> Result<Decoded> {
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
    if obj.element(tags::PIXEL_DATA).is_err() {
        return Err(Error::decode(name, "DICOM: no Pixel Data element"));
    }
    let px = obj
        .decode_pixel_data_frame(0)
        .map_err(|e| Error::decode(name, format!("DICOM pixel data: {e}")))?;
    let (w, h) = (px.columns() as usize, px.rows() as usize);
    let spp = px.samples_per_pixel() as usize;
    let data = px.data();
    let rescale = px.rescale().ok().and_then(|r| r.first().copied());
    let (slope, intercept) = rescale.map_or((1.0, 0.0), |r| (r.slope, r.intercept));

    if spp == 3 {
        if px.bits_allocated() != 8 {
            return Err(Error::unsupported(
                name,
                "DICOM colour with more than 8 bits per sample",
            ));
        }
        let data = planar_to_interleaved(data, w * h, px.planar_configuration() as u8 == 1);
        return sized(name, data, w, h, 3).map(Decoded::U8);
    }
    if spp != 1 {
        return Err(Error::unsupported(
            name,
            format!("DICOM with {spp} samples per pixel"),
        ));
    }
    let bits_stored = px.bits_stored().clamp(1, 16) as u32;
    let signed = px.pixel_representation() == PixelRepresentation::Signed;
    let invert = *px.photometric_interpretation() == PhotometricInterpretation::Monochrome1;
    let raw: Vec<i32> = match px.bits_allocated() {
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
    let values = raw[..w * h].iter().map(|&v| map(v).round() as u16);
    if out_hi <= 255.0 && bits_stored <= 8 {
        sized(name, values.map(|v| v as u8).collect(), w, h, 1).map(Decoded::U8)
    } else {
        sized(name, values.collect(), w, h, 1).map(Decoded::U16)
    }
}

/// Walk the file's top-level data elements and check every defined length against the bytes
/// that are left, before dicom-rs allocates a value of that length: a 1.6 KB file declaring a
/// 4 GB Pixel Data element is refused here. The walk stops (without judging) at the first element
/// of undefined length (a sequence, encapsulated pixel data) or with a deflated data set; the
/// parser's own checks cover what follows.
fn check_element_lengths(bytes: &[u8]) -> std::result::Result<(), String> {
    const LONG_VRS: [&[u8; 2]; 12] = [
        b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT",
    ];
    let mut pos = 132; // preamble + "DICM"
    let mut explicit = true; // the file meta group is explicit VR little endian
    let mut big_endian = false;
    let mut in_meta = true;
    while pos + 8 <= bytes.len() {
        let u16_at = |i: usize, be: bool| {
            let b = [bytes[i], bytes[i + 1]];
            if be {
                u16::from_be_bytes(b)
            } else {
                u16::from_le_bytes(b)
            }
        };
        let u32_at = |i: usize, be: bool| {
            let b = [bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]];
            if be {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        let group = u16_at(pos, big_endian && !in_meta);
        if in_meta && group != 0x0002 {
            in_meta = false;
            // the data set follows, in the transfer syntax the meta group named
            continue;
        }
        let be = big_endian && !in_meta;
        let element = u16_at(pos + 2, be);
        let (len, header) = if explicit || in_meta {
            let vr = [bytes[pos + 4], bytes[pos + 5]];
            if LONG_VRS.contains(&&vr) {
                if pos + 12 > bytes.len() {
                    return Err(format!("element ({group:04X},{element:04X}) is cut short"));
                }
                (u32_at(pos + 8, be), 12)
            } else {
                (u16_at(pos + 6, be) as u32, 8)
            }
        } else {
            (u32_at(pos + 4, be), 8)
        };
        if len == u32::MAX {
            return Ok(()); // undefined length: the parser walks items and delimiters itself
        }
        let start = pos + header;
        let left = bytes.len().saturating_sub(start);
        if len as usize > left {
            return Err(format!(
                "element ({group:04X},{element:04X}) declares {len} bytes but only {left} are left \
                 in the file"
            ));
        }
        if in_meta && group == 0x0002 && element == 0x0010 {
            let uid = String::from_utf8_lossy(&bytes[start..start + len as usize]);
            match uid.trim_end_matches(['\0', ' ']) {
                "1.2.840.10008.1.2" => explicit = false,
                "1.2.840.10008.1.2.2" => big_endian = true,
                "1.2.840.10008.1.2.1.99" => return Ok(()), // deflated: compressed after the meta
                _ => {}
            }
        }
        pos = start + len as usize;
    }
    Ok(())
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
