//! Encoding, for the embedded phantom data set and for tests: JPEG through libjpeg-turbo, PNG
//! (8/16-bit) through the `png` crate. Not on the training hot path.

use turbojpeg::{Compressor, Image as TjImage, PixelFormat, Subsamp};

use super::ImageRef;
use crate::error::{Error, Result};

/// JPEG-encode an 8-bit grey or RGB image at `quality` (1..=100); colour uses 4:2:0 chroma.
pub fn encode_jpeg(img: ImageRef<u8>, quality: i32) -> Result<Vec<u8>> {
    if !(1..=100).contains(&quality) {
        return Err(Error::invalid(format!(
            "JPEG quality must be in 1..=100, got {quality}"
        )));
    }
    let (format, subsamp) = match img.channels {
        1 => (PixelFormat::GRAY, Subsamp::Gray),
        3 => (PixelFormat::RGB, Subsamp::Sub2x2),
        c => {
            return Err(Error::invalid(format!(
                "JPEG encoding takes 1 or 3 channels, got {c}"
            )))
        }
    };
    let tj = |e: turbojpeg::Error| Error::invalid(format!("JPEG encoding failed: {e}"));
    let mut c = Compressor::new().map_err(tj)?;
    c.set_quality(quality).map_err(tj)?;
    c.set_subsamp(subsamp).map_err(tj)?;
    let src = TjImage {
        pixels: img.data,
        width: img.width,
        pitch: img.width * img.channels,
        height: img.height,
        format,
    };
    c.compress_to_vec(src).map_err(tj)
}

/// PNG-encode a grey or RGB image; 16-bit samples are written big-endian as PNG requires.
pub fn encode_png_u8(img: ImageRef<u8>) -> Result<Vec<u8>> {
    encode_png(
        img.width,
        img.height,
        img.channels,
        png::BitDepth::Eight,
        img.data,
    )
}

pub fn encode_png_u16(img: ImageRef<u16>) -> Result<Vec<u8>> {
    let be: Vec<u8> = img.data.iter().flat_map(|v| v.to_be_bytes()).collect();
    encode_png(
        img.width,
        img.height,
        img.channels,
        png::BitDepth::Sixteen,
        &be,
    )
}

fn encode_png(
    width: usize,
    height: usize,
    channels: usize,
    depth: png::BitDepth,
    data: &[u8],
) -> Result<Vec<u8>> {
    let color = match channels {
        1 => png::ColorType::Grayscale,
        3 => png::ColorType::Rgb,
        c => {
            return Err(Error::invalid(format!(
                "PNG encoding takes 1 or 3 channels, got {c}"
            )))
        }
    };
    let err = |e: png::EncodingError| Error::invalid(format!("PNG encoding failed: {e}"));
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, width as u32, height as u32);
        enc.set_color(color);
        enc.set_depth(depth);
        enc.set_compression(png::Compression::Fast);
        let mut writer = enc.write_header().map_err(err)?;
        writer.write_image_data(data).map_err(err)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::decode::{decode, DecodeOptions, Decoded};

    #[test]
    fn png_round_trips_exactly() {
        let data: Vec<u16> = (0..7 * 3).map(|i| (i * 3000) as u16).collect();
        let bytes = encode_png_u16(ImageRef::new(7, 3, 1, &data).unwrap()).unwrap();
        let Decoded::U16(img) = decode(&bytes, "x.png", &DecodeOptions::default()).unwrap() else {
            panic!()
        };
        assert_eq!(img.data, data);
    }

    #[test]
    fn jpeg_quality_is_validated() {
        let data = vec![0u8; 16];
        assert!(encode_jpeg(ImageRef::new(4, 4, 1, &data).unwrap(), 0).is_err());
        assert!(encode_jpeg(ImageRef::new(4, 4, 1, &data).unwrap(), 90).is_ok());
    }
}
