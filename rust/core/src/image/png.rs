//! PNG (8- and 16-bit, grey, grey+alpha, RGB, RGBA, palette) through the `png` crate.
//! Palette and low bit depths are expanded; alpha is dropped (radiographs carry none).

use std::io::Cursor;

use png::{BitDepth, ColorType, Transformations};

use super::decode::{check_pixels, check_size, try_zeroed, DecodeOptions, Decoded};
use super::Image;
use crate::error::{Error, Result};

pub fn decode_png(bytes: &[u8], name: &str, opts: &DecodeOptions) -> Result<Decoded> {
    let err = |e: png::DecodingError| Error::decode(name, format!("PNG: {e}"));
    let mut dec = png::Decoder::new(Cursor::new(bytes));
    dec.set_transformations(Transformations::EXPAND);
    let info = dec.read_header_info().map_err(err)?;
    let (w64, h64) = (info.width as u64, info.height as u64);
    check_pixels(name, w64, h64, opts.max_pixels)?;
    let mut reader = dec.read_info().map_err(err)?;
    let (color, depth) = reader.output_color_type();
    let out_bits = if depth == BitDepth::Sixteen { 16 } else { 8 };
    check_size(name, w64, h64, color.samples() as u64, out_bits, opts)?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| Error::decode(name, "PNG: image too large for this platform"))?;
    let mut buf: Vec<u8> = try_zeroed(name, size)?;
    let frame = reader.next_frame(&mut buf).map_err(err)?;
    let (w, h) = (frame.width as usize, frame.height as usize);
    buf.truncate(frame.buffer_size());
    let (src_ch, keep) = match color {
        ColorType::Grayscale => (1, 1),
        ColorType::GrayscaleAlpha => (2, 1),
        ColorType::Rgb => (3, 3),
        ColorType::Rgba => (4, 3),
        ColorType::Indexed => return Err(Error::decode(name, "PNG: palette was not expanded")),
    };
    // alpha goes first, in place, so the 16-bit samples are built from the smaller buffer
    let sample = if depth == BitDepth::Sixteen { 2 } else { 1 };
    drop_alpha_in_place(&mut buf, src_ch * sample, keep * sample);
    match depth {
        BitDepth::Sixteen => {
            let mut data: Vec<u16> = try_zeroed(name, buf.len() / 2)?;
            for (d, c) in data.iter_mut().zip(buf.chunks_exact(2)) {
                *d = u16::from_be_bytes([c[0], c[1]]);
            }
            drop(buf);
            Ok(Decoded::U16(Image {
                width: w,
                height: h,
                channels: keep,
                data,
            }))
        }
        BitDepth::Eight => Ok(Decoded::U8(Image {
            width: w,
            height: h,
            channels: keep,
            data: buf,
        })),
        d => Err(Error::unsupported(
            name,
            format!("PNG bit depth {d:?} after expansion"),
        )),
    }
}

/// Keep the first `keep` of every `pixel` bytes, compacting `buf` in place.
fn drop_alpha_in_place(buf: &mut Vec<u8>, pixel: usize, keep: usize) {
    if pixel == keep {
        return;
    }
    let pixels = buf.len() / pixel;
    for i in 0..pixels {
        buf.copy_within(i * pixel..i * pixel + keep, i * keep);
    }
    buf.truncate(pixels * keep);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::decode::decode;

    fn encode(width: u32, height: u32, color: ColorType, depth: BitDepth, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, width, height);
        enc.set_color(color);
        enc.set_depth(depth);
        enc.write_header().unwrap().write_image_data(data).unwrap();
        out
    }

    #[test]
    fn sixteen_bit_grey_round_trips() {
        let values: Vec<u16> = (0..6 * 5).map(|i| (i * 2000) as u16).collect();
        let be: Vec<u8> = values.iter().flat_map(|v| v.to_be_bytes()).collect();
        let bytes = encode(6, 5, ColorType::Grayscale, BitDepth::Sixteen, &be);
        let Decoded::U16(img) = decode(&bytes, "g16.png", &DecodeOptions::default()).unwrap()
        else {
            panic!("16-bit expected")
        };
        assert_eq!((img.width, img.height, img.channels), (6, 5, 1));
        assert_eq!(img.data, values);
    }

    #[test]
    fn rgba_drops_alpha_and_oversize_is_refused() {
        let data: Vec<u8> = (0..4 * 3 * 2).map(|i| i as u8).collect();
        let bytes = encode(3, 2, ColorType::Rgba, BitDepth::Eight, &data);
        let Decoded::U8(img) = decode(&bytes, "a.png", &DecodeOptions::default()).unwrap() else {
            panic!("8-bit expected")
        };
        let expect: Vec<u8> = data.chunks(4).flat_map(|p| p[..3].to_vec()).collect();
        assert_eq!(img.data, expect);
        let limited = DecodeOptions {
            max_pixels: 5,
            ..Default::default()
        };
        assert!(matches!(
            decode(&bytes, "a.png", &limited),
            Err(Error::TooLarge { .. })
        ));
    }
}
