//! The lengths and counts a DICOM file declares, checked before dicom-rs parses it: the parser
//! reserves and zero-fills a value's declared length before it reads the value, so a few bytes
//! declaring a 1.5 GB value make it resident.
//!
//! The file meta group is walked as dicom-object reads it (explicit VR little endian, up to the
//! group's declared length, which may end it before or after its last group-2 element). The data
//! set is then read by dicom-parser's own token reader, in the transfer syntax the meta group
//! names, with a decoder that skips every value instead of reading it: the check sees each length
//! exactly where the parser will see it (an undefined-length element of any VR read as a
//! sequence, an implicit-VR sequence of defined length entered, a data set written without VRs
//! under an explicit syntax read as the parser reads it), and allocates nothing from a length.
//!
//! Refused: a value, or an encapsulated Pixel Data item, longer than the bytes left; a deflated
//! data set inflating to more than [`MAX_INFLATED`] bytes; a data set of more than [`MAX_PARTS`]
//! elements, items and string values (each becomes an allocation of its own, 24 bytes or more,
//! from as little as one byte of the file). A file the check cannot follow is left to the parser
//! and its error: the check never refuses what the parser would read within these bounds.

use std::cell::RefCell;
use std::io::Read;
use std::rc::Rc;

use dicom_core::header::{DataElementHeader, SequenceItemHeader};
use dicom_core::{PrimitiveValue, VR};
use dicom_encoding::text::SpecificCharacterSet;
use dicom_encoding::transfer_syntax::{Codec, TransferSyntax, TransferSyntaxIndex};
use dicom_parser::dataset::read::DataSetReaderOptions;
use dicom_parser::dataset::{DataSetReader, DataToken};
use dicom_parser::stateful::decode::{CharacterSetOverride, Result as DecodeResult};
use dicom_parser::{DynStatefulDecoder, StatefulDecode};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

/// The most a deflated data set may inflate to (a deflate stream can expand 1000-fold).
pub const MAX_INFLATED: u64 = 256 << 20;

/// The most elements, items and string values a data set may hold: the parser makes an
/// allocation of 24 bytes or more for each, so 2^21 of them take 50 MB or more; real images hold
/// a few thousand (an enhanced multi-frame file with thousands of frames, some 100 000).
pub const MAX_PARTS: u64 = 1 << 21;

/// Check the file meta group and the data set of a Part 10 file (preamble, "DICM", ...); the
/// reason for refusing it otherwise.
pub fn check_lengths(bytes: &[u8]) -> Result<(), String> {
    let Some((start, syntax)) = meta_group(bytes)? else {
        return Ok(()); // the parser refuses the meta group
    };
    let Some(ts) = TransferSyntaxRegistry.get(&syntax) else {
        return Ok(()); // the parser refuses the transfer syntax
    };
    match ts.codec() {
        Codec::Dataset(Some(adapter)) => {
            // a deflated data set: the parser reads it through this adapter; so does the check,
            // up to the bound
            let mut inflated = Vec::new();
            let reader = adapter.adapt_reader(Box::new(&bytes[start..]));
            // a stream that stops early is the parser's error to report, not this check's
            let _ = reader.take(MAX_INFLATED + 1).read_to_end(&mut inflated);
            if inflated.len() as u64 > MAX_INFLATED {
                return Err(format!(
                    "the deflated data set inflates to more than {MAX_INFLATED} bytes"
                ));
            }
            check_data_set(&inflated, ts)
        }
        Codec::Dataset(None) => Ok(()), // the parser refuses it: no adapter
        _ => check_data_set(&bytes[start..], ts),
    }
}

/// An explicit VR little endian element header at `pos` as dicom-rs decodes it: tag, declared
/// length, header size (items and delimiters have no VR; an unknown VR is UN, 4-byte length).
fn explicit_le_header(bytes: &[u8], pos: usize) -> Option<((u16, u16), u32, usize)> {
    let b = bytes.get(pos..pos + 8)?;
    let tag = (
        u16::from_le_bytes([b[0], b[1]]),
        u16::from_le_bytes([b[2], b[3]]),
    );
    if tag.0 == 0xFFFE {
        return Some((tag, u32::from_le_bytes([b[4], b[5], b[6], b[7]]), 8));
    }
    let vr = VR::from_binary([b[4], b[5]]).unwrap_or(VR::UN);
    if short_length(vr) {
        Some((tag, u16::from_le_bytes([b[6], b[7]]) as u32, 8))
    } else {
        let l = bytes.get(pos + 8..pos + 12)?;
        Some((tag, u32::from_le_bytes([l[0], l[1], l[2], l[3]]), 12))
    }
}

/// VRs whose explicit length is 2 bytes (PS3.5 7.1.2).
fn short_length(vr: VR) -> bool {
    use VR::*;
    matches!(
        vr,
        AE | AS
            | AT
            | CS
            | DA
            | DS
            | DT
            | FL
            | FD
            | IS
            | LO
            | LT
            | PN
            | SH
            | SL
            | SS
            | ST
            | TM
            | UI
            | UL
            | US
    )
}

fn too_long(tag: (u16, u16), len: u64, left: usize) -> String {
    format!(
        "element ({:04X},{:04X}) declares {len} bytes but only {left} are left in the file",
        tag.0, tag.1
    )
}

/// Walk the file meta group as dicom-object's reader does (preamble, "DICM", (0002,0000) of 4
/// bytes, then elements until the group's declared length is read) and check each length; the
/// data set's offset and the transfer syntax UID, or `None` where the reader will fail.
fn meta_group(bytes: &[u8]) -> Result<Option<(usize, String)>, String> {
    if bytes.get(128..132) != Some(b"DICM") {
        return Ok(None);
    }
    let mut pos = 132;
    let Some(((0x0002, 0x0000), 4, header)) = explicit_le_header(bytes, pos) else {
        return Ok(None);
    };
    pos += header;
    let Some(v) = bytes.get(pos..pos + 4) else {
        return Ok(None);
    };
    let group_length = u32::from_le_bytes([v[0], v[1], v[2], v[3]]);
    pos += 4;
    let mut read = 0u32;
    let mut syntax = None;
    while read < group_length {
        let Some((tag, len, header)) = explicit_le_header(bytes, pos) else {
            return Ok(None);
        };
        if len == u32::MAX {
            return Ok(None); // undefined length: the reader refuses it
        }
        let left = bytes.len() - (pos + header);
        if len as usize > left {
            return Err(too_long(tag, len as u64, left));
        }
        let value = &bytes[pos + header..pos + header + len as usize];
        if tag == (0x0002, 0x0010) {
            let uid = String::from_utf8_lossy(value);
            syntax = Some(
                uid.trim_end_matches(|c: char| c.is_whitespace() || c == '\0')
                    .into(),
            );
        }
        pos += header + len as usize;
        read = read.saturating_add(header as u32).saturating_add(len);
    }
    Ok(syntax.map(|s| (pos, s)))
}

/// What the skipping decoder saw, shared with the loop reading the tokens.
#[derive(Default)]
struct Seen {
    /// Why the file is refused (the first reason found).
    refused: Option<String>,
    /// Position after the last item header read.
    after_item: u64,
    /// String values read (one per backslash-separated part).
    values: u64,
}

/// A decoder that reads headers with dicom-rs's decoder for the transfer syntax and skips every
/// value (checking its length against the bytes left), so that dicom-rs's token reader walks the
/// data set exactly as it will when it parses it, without allocating a value.
struct Skipping<'a, D> {
    inner: D,
    data: &'a [u8],
    seen: Rc<RefCell<Seen>>,
}

impl<D: StatefulDecode> Skipping<'_, D> {
    /// Skip `len` bytes after checking them against what is left; `header`: the element's,
    /// whose string values are counted.
    fn skip(&mut self, len: u32, header: Option<&DataElementHeader>) -> DecodeResult<()> {
        let at = self.inner.position() as usize;
        let left = self.data.len().saturating_sub(at);
        let mut seen = self.seen.borrow_mut();
        if seen.refused.is_some() {
            return Ok(()); // the loop stops at this token
        }
        if len as usize > left {
            seen.refused = Some(match header {
                Some(h) => too_long((h.tag.0, h.tag.1), len as u64, left),
                None => format!(
                    "an encapsulated Pixel Data item declares {len} bytes but only {left} are \
                     left in the file"
                ),
            });
            return Ok(());
        }
        if let Some(h) = header.filter(|h| multi_valued_text(h.vr()) && len > 0) {
            let value = &self.data[at..at + len as usize];
            let parts = value.iter().filter(|&&b| b == b'\\').count() as u64 + 1;
            seen.values += parts;
            if parts > MAX_PARTS {
                seen.refused = Some(format!(
                    "element ({:04X},{:04X}) holds {parts} values (at most {MAX_PARTS})",
                    h.tag.0, h.tag.1
                ));
                return Ok(());
            }
        }
        drop(seen);
        self.inner.skip_bytes(len)
    }

    fn skip_value(&mut self, header: &DataElementHeader) -> DecodeResult<PrimitiveValue> {
        match header.len.get() {
            // an undefined length is read as a sequence before a value is asked for; the
            // decoder refuses it here without allocating
            None => self.inner.read_value(header),
            Some(len) => self.skip(len, Some(header)).map(|_| PrimitiveValue::Empty),
        }
    }
}

/// VRs whose values dicom-rs splits at backslashes into separate strings or numbers.
fn multi_valued_text(vr: VR) -> bool {
    use VR::*;
    matches!(
        vr,
        AE | AS | CS | DA | DS | DT | IS | LO | PN | SH | TM | UC | UI
    )
}

impl<D: StatefulDecode> StatefulDecode for Skipping<'_, D> {
    type Reader = D::Reader;

    fn decode_header(&mut self) -> DecodeResult<DataElementHeader> {
        self.inner.decode_header()
    }

    fn decode_item_header(&mut self) -> DecodeResult<SequenceItemHeader> {
        let header = self.inner.decode_item_header();
        self.seen.borrow_mut().after_item = self.inner.position();
        header
    }

    fn read_value(&mut self, header: &DataElementHeader) -> DecodeResult<PrimitiveValue> {
        self.skip_value(header)
    }

    fn read_value_preserved(&mut self, header: &DataElementHeader) -> DecodeResult<PrimitiveValue> {
        self.skip_value(header)
    }

    fn read_value_bytes(&mut self, header: &DataElementHeader) -> DecodeResult<PrimitiveValue> {
        self.skip_value(header)
    }

    fn read_to_vec(&mut self, length: u32, _vec: &mut Vec<u8>) -> DecodeResult<()> {
        self.skip(length, None)
    }

    fn read_u32_to_vec(&mut self, length: u32, _vec: &mut Vec<u32>) -> DecodeResult<()> {
        self.skip(length, None)
    }

    fn read_to<W>(&mut self, length: u32, _out: W) -> DecodeResult<()>
    where
        Self: Sized,
        W: std::io::Write,
    {
        self.skip(length, None)
    }

    fn skip_bytes(&mut self, length: u32) -> DecodeResult<()> {
        self.inner.skip_bytes(length)
    }

    fn seek(&mut self, position: u64) -> DecodeResult<()>
    where
        Self::Reader: std::io::Seek,
    {
        self.inner.seek(position)
    }

    fn position(&self) -> u64 {
        self.inner.position()
    }
}

/// Read the data set's tokens as dicom-object will (the same reader, options and decoder for
/// `ts`), values skipped; check each encapsulated Pixel Data item's length when its header is
/// read (the reader reserves it before reading), each value's length before it is read, and
/// count elements, items and values.
fn check_data_set(data: &[u8], ts: &TransferSyntax) -> Result<(), String> {
    let Ok(inner) = DynStatefulDecoder::new_with_override(
        data,
        ts,
        SpecificCharacterSet::default(),
        CharacterSetOverride::default(),
        0,
    ) else {
        return Ok(()); // the parser refuses the transfer syntax
    };
    let seen = Rc::new(RefCell::new(Seen::default()));
    let decoder = Skipping {
        inner,
        data,
        seen: Rc::clone(&seen),
    };
    let tokens = DataSetReader::new(decoder, DataSetReaderOptions::default());
    // the innermost open sequence: `true` for encapsulated Pixel Data
    let mut open: Vec<bool> = Vec::new();
    let mut parts = 0u64;
    for token in tokens {
        if let Some(why) = seen.borrow_mut().refused.take() {
            return Err(why);
        }
        let Ok(token) = token else {
            return Ok(()); // the parser's error, at the same token
        };
        if matches!(
            token,
            DataToken::ElementHeader(_)
                | DataToken::SequenceStart { .. }
                | DataToken::PixelSequenceStart
                | DataToken::ItemStart { .. }
        ) {
            parts += 1;
        }
        match token {
            DataToken::SequenceStart { .. } => open.push(false),
            DataToken::PixelSequenceStart => open.push(true),
            DataToken::SequenceEnd => {
                open.pop();
            }
            DataToken::ItemStart { len } if open.last() == Some(&true) => {
                let left = data.len() as u64 - seen.borrow().after_item.min(data.len() as u64);
                if let Some(len) = len.get().filter(|&l| l as u64 > left) {
                    return Err(format!(
                        "an encapsulated Pixel Data item declares {len} bytes but only {left} \
                         are left in the file"
                    ));
                }
            }
            _ => {}
        }
        let values = seen.borrow().values;
        if parts + values > MAX_PARTS {
            return Err(format!(
                "the data set holds more than {MAX_PARTS} elements, items and values"
            ));
        }
    }
    let refused = seen.borrow_mut().refused.take();
    refused.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Preamble, "DICM", a meta group naming `syntax`, then `body`.
    pub(crate) fn file(syntax: &str, body: &[u8]) -> Vec<u8> {
        let mut uid = syntax.as_bytes().to_vec();
        if uid.len() % 2 == 1 {
            uid.push(0);
        }
        let mut meta = vec![0x02, 0x00, 0x10, 0x00, b'U', b'I'];
        meta.extend_from_slice(&(uid.len() as u16).to_le_bytes());
        meta.extend_from_slice(&uid);
        let mut out = vec![0u8; 128];
        out.extend_from_slice(b"DICM");
        out.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0]);
        out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
        out.extend_from_slice(&meta);
        out.extend_from_slice(body);
        out
    }

    const EXPLICIT: &str = "1.2.840.10008.1.2.1";
    const IMPLICIT: &str = "1.2.840.10008.1.2";

    #[test]
    fn forged_lengths_are_refused_where_the_parser_reads_them() {
        // explicit VR little endian: (7FE0,0010) OW, 4 GB declared, 8 bytes present
        let mut body = vec![0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0];
        body.extend_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        body.extend_from_slice(&[0; 8]);
        let e = check_lengths(&file(EXPLICIT, &body)).unwrap_err();
        assert!(
            e.contains("(7FE0,0010) declares 4294967280 bytes but only 8"),
            "{e}"
        );
        // implicit VR: the length follows the tag directly
        let mut body = vec![0xE0, 0x7F, 0x10, 0x00];
        body.extend_from_slice(&0x7FFF_FFFFu32.to_le_bytes());
        assert!(check_lengths(&file(IMPLICIT, &body)).is_err());
        // inside a sequence and an item, both of undefined length
        let mut body = vec![
            0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
        ];
        body.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        body.extend_from_slice(&[0x08, 0x00, 0x50, 0x11, b'O', b'B', 0, 0]);
        body.extend_from_slice(&0xE000_0000u32.to_le_bytes());
        let e = check_lengths(&file(EXPLICIT, &body)).unwrap_err();
        assert!(e.contains("(0008,1150) declares 3758096384"), "{e}");
        // an undefined-length UN value holding an element with an unknown VR (a fuzzer's 3.7 GB
        // find): dicom-rs reads a 4-byte length after the VR and 2 reserved bytes
        let mut body = vec![
            0x53, 0x44, 0x0C, 0x10, b'U', b'N', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
        ];
        body.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        body.extend_from_slice(&[0x08, 0x00, 0x15, 0x11, 0xFF, 0xFF, 0, 0]);
        body.extend_from_slice(&0xE000_0000u32.to_le_bytes());
        let e = check_lengths(&file("1.2.840.10008.1.2.4.70", &body)).unwrap_err();
        assert!(e.contains("(0008,1115) declares 3758096384"), "{e}");
        // letters that are no VR ("LM", a fuzzer's 1.4 GB find: one byte of pydicom's
        // JPEG2000.dcm changed) are UN to dicom-rs: the next 4 bytes ("GEMS") are the length
        let mut body = vec![0x28, 0x00, 0x10, 0x00, b'U', b'S', 2, 0, 4, 0];
        body.extend_from_slice(&[0x09, 0x00, 0x10, 0x00, b'L', b'M', 0x0C, 0x00]);
        body.extend_from_slice(b"GEMS_GENIE_1");
        let e = check_lengths(&file(EXPLICIT, &body)).unwrap_err();
        assert!(e.contains("(0009,0010) declares 1397572935"), "{e}");
        // any undefined-length element is a sequence to the parser (not only SQ and UN)
        let mut body = vec![
            0x09, 0x00, 0x10, 0x10, b'O', b'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
        ];
        body.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        body.extend_from_slice(&[0x09, 0x00, 0x11, 0x10, b'L', b'T', 0xFF, 0xFF]);
        let e = check_lengths(&file(EXPLICIT, &body)).unwrap_err();
        assert!(
            e.contains("(0009,1011) declares 65535 bytes but only 0"),
            "{e}"
        );
        // implicit VR: a sequence by the dictionary, of defined length, is entered
        let inner = [
            &[0x08, 0x00, 0x50, 0x11][..],
            &0x6000_0000u32.to_le_bytes(),
            &[0; 8],
        ]
        .concat();
        let mut item = vec![0xFE, 0xFF, 0x00, 0xE0];
        item.extend_from_slice(&(inner.len() as u32).to_le_bytes());
        item.extend_from_slice(&inner);
        let mut body = vec![0x08, 0x00, 0x15, 0x11];
        body.extend_from_slice(&(item.len() as u32).to_le_bytes());
        body.extend_from_slice(&item);
        let e = check_lengths(&file(IMPLICIT, &body)).unwrap_err();
        assert!(e.contains("(0008,1150) declares 1610612736 bytes"), "{e}");
        // a data set written in implicit VR under an explicit syntax: the parser reads the first
        // element's length bytes as an unknown VR and the 4 bytes after as its length
        let mut body = vec![0x08, 0x00, 0x08, 0x00, 0x04, 0x00, 0x00, 0x00];
        body.extend_from_slice(&0x6000_0000u32.to_le_bytes());
        let e = check_lengths(&file(EXPLICIT, &body)).unwrap_err();
        assert!(e.contains("(0008,0008) declares 1610612736"), "{e}");
        // a deflated data set is inflated and checked: a 3 GB OB value inside is refused
        let mut inner = vec![0x08, 0x00, 0x16, 0x00, b'O', b'B', 0, 0];
        inner.extend_from_slice(&0xBCA0_0000u32.to_le_bytes());
        inner.extend_from_slice(&[0; 64]);
        let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut z, &inner).unwrap();
        let f = file("1.2.840.10008.1.2.1.99", &z.finish().unwrap());
        let e = check_lengths(&f).unwrap_err();
        assert!(e.contains("(0008,0016) declares 3164602368"), "{e}");
        // an encapsulated Pixel Data fragment longer than the file
        let mut body = vec![
            0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
        ];
        body.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0]);
        body.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0x40, 1, 2]);
        let e = check_lengths(&file("1.2.840.10008.1.2.4.50", &body)).unwrap_err();
        assert!(
            e.contains("Pixel Data item declares 1073741824 bytes"),
            "{e}"
        );
    }

    #[test]
    fn the_meta_group_ends_where_its_length_says() {
        // the group length covers only (0002,0010): (0002,0012) is read in the data set's
        // implicit VR, where "UI" and its 2-byte length make a 4-byte length
        let mut f = file(IMPLICIT, &[]);
        f.extend_from_slice(&[0x02, 0x00, 0x12, 0x00, b'U', b'I', 0x00, 0x60]);
        f.extend_from_slice(&[b'1'; 0x6000]);
        let e = check_lengths(&f).unwrap_err();
        assert!(e.contains("(0002,0012) declares 1610631509"), "{e}");
        // a meta element longer than the file
        let mut f = file(EXPLICIT, &[]);
        f.extend_from_slice(&[0x02, 0x00, 0x12, 0x00, b'U', b'I', 0x00, 0x60]);
        let group = (f.len() - 144) as u32;
        f[140..144].copy_from_slice(&group.to_le_bytes());
        let e = check_lengths(&f).unwrap_err();
        assert!(
            e.contains("(0002,0012) declares 24576 bytes but only 0"),
            "{e}"
        );
    }

    #[test]
    fn counts_are_bounded() {
        // a UC value of 3 M backslashes: 3 M strings
        let n = 3 << 20;
        let mut body = vec![0x18, 0x00, 0x37, 0x99, b'U', b'C', 0, 0];
        body.extend_from_slice(&(n as u32).to_le_bytes());
        body.resize(body.len() + n, b'\\');
        let e = check_lengths(&file(EXPLICIT, &body)).unwrap_err();
        assert!(e.contains("(0018,9937) holds 3145729 values"), "{e}");
        // 3 M empty elements
        let body = [0x09u8, 0x00, 0x10, 0x10, b'L', b'O', 0, 0].repeat(3 << 20);
        let e = check_lengths(&file(EXPLICIT, &body)).unwrap_err();
        assert!(e.contains("more than 2097152 elements"), "{e}");
    }

    #[test]
    fn consistent_files_pass() {
        let mut body = vec![0x28, 0x00, 0x10, 0x00, b'U', b'S', 2, 0, 4, 0];
        body.extend_from_slice(&[0x08, 0x00, 0x60, 0x00, b'C', b'S', 6, 0]);
        body.extend_from_slice(b"CT\\MR ");
        body.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0]);
        body.extend_from_slice(&u32::MAX.to_le_bytes());
        body.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0]);
        body.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 4, 0, 0, 0, 1, 2, 3, 4]);
        body.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        assert_eq!(
            check_lengths(&file("1.2.840.10008.1.2.4.50", &body)),
            Ok(())
        );
        // what the parser cannot read is left to it
        assert_eq!(check_lengths(b"too short"), Ok(()));
        assert_eq!(check_lengths(&file("1.2.3.4.5", &body)), Ok(()));
    }
}
