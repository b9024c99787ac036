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

use super::decode::{check_pixels, DecodeOptions, Decoded};
use super::Image;
use crate::error::{Error, Result};

pub fn decode_dicom(bytes: &[u8], name: &str, opts: &DecodeOptions) -> Result<Decoded> {
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
    check_pixels(name, cols, rows, opts.max_pixels)?;
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
