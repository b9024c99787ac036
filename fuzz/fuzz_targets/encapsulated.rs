//! A DICOM file around one encapsulated frame, for the targets that fuzz a codestream inside
//! DICOM (JPEG-LS, JPEG 2000). The input's first byte chooses the DICOM header: even, the size,
//! components and bit depth the codestream's own header declares where it can be read (so the
//! decoder runs on the mutated data), 64 x 64 otherwise; odd, a fixed header that the
//! codestream's may contradict (1 or 3 samples, 8 or 16 bits, from bits 1 and 2).

/// `(columns, rows, samples per pixel, bits allocated)`.
pub type Dims = (u16, u16, u16, u16);

/// The DICOM file for a fuzz input: `header` reads the codestream's own dimensions.
pub fn framed(syntax: &str, data: &[u8], header: fn(&[u8]) -> Option<Dims>) -> Vec<u8> {
    let Some((&flags, frame)) = data.split_first() else {
        return Vec::new();
    };
    let fixed = (
        64,
        64,
        if flags & 2 == 0 { 1 } else { 3 },
        if flags & 4 == 0 { 8 } else { 16 },
    );
    let dims = if flags & 1 == 0 {
        header(frame).unwrap_or(fixed)
    } else {
        fixed
    };
    dicom_with_frame(syntax, dims, frame)
}

fn element(out: &mut Vec<u8>, group: u16, elem: u16, vr: &[u8; 2], value: &[u8]) {
    out.extend_from_slice(&group.to_le_bytes());
    out.extend_from_slice(&elem.to_le_bytes());
    out.extend_from_slice(vr);
    if matches!(vr, b"OB" | b"OW" | b"UN" | b"SQ" | b"UT") {
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    } else {
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    }
    out.extend_from_slice(value);
}

/// Preamble, meta group (explicit VR little endian) naming `syntax`, the Image Pixel module for
/// `dims` (unsigned, MONOCHROME2 or RGB), and Pixel Data holding `frame` as its one fragment.
pub fn dicom_with_frame(syntax: &str, (cols, rows, spp, bits): Dims, frame: &[u8]) -> Vec<u8> {
    let mut uid = syntax.as_bytes().to_vec();
    if uid.len() % 2 == 1 {
        uid.push(0);
    }
    let mut meta = Vec::new();
    element(&mut meta, 0x0002, 0x0010, b"UI", &uid);
    let mut out = vec![0u8; 128];
    out.extend_from_slice(b"DICM");
    element(
        &mut out,
        0x0002,
        0x0000,
        b"UL",
        &(meta.len() as u32).to_le_bytes(),
    );
    out.extend_from_slice(&meta);
    let us = |v: u16| v.to_le_bytes();
    element(&mut out, 0x0028, 0x0002, b"US", &us(spp));
    let photometric: &[u8] = if spp == 3 { b"RGB " } else { b"MONOCHROME2 " };
    element(&mut out, 0x0028, 0x0004, b"CS", photometric);
    element(&mut out, 0x0028, 0x0010, b"US", &us(rows));
    element(&mut out, 0x0028, 0x0011, b"US", &us(cols));
    element(&mut out, 0x0028, 0x0100, b"US", &us(bits));
    element(&mut out, 0x0028, 0x0101, b"US", &us(bits));
    element(&mut out, 0x0028, 0x0102, b"US", &us(bits.saturating_sub(1)));
    element(&mut out, 0x0028, 0x0103, b"US", &us(0));
    out.extend_from_slice(&[
        0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
    ]);
    out.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0]); // empty offset table
    let padded = frame.len() + frame.len() % 2;
    out.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
    out.extend_from_slice(&(padded as u32).to_le_bytes());
    out.extend_from_slice(frame);
    out.resize(out.len() + padded - frame.len(), 0);
    out.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
    out
}

/// Bits allocated for a sample precision: 8 up to 8 bits, 16 above.
pub fn allocated(precision: u32) -> u16 {
    if precision <= 8 {
        8
    } else {
        16
    }
}
