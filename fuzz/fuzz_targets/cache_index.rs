//! The pre-decoded cache (`data::cache`) on arbitrary `index.bin` and shard bytes: opening the
//! cache (its entries checked against the header, their checksums and each other) and reading
//! every record through the loader's batch path. An `Err` is fine; a panic, an abort or a slow
//! input is what the fuzzer reports.
//!
//! At start the target writes four images (a JPEG decoded at 1/2, an 8-bit PNG, a 16-bit PNG, a
//! broken file the build lists as failed) and their manifest, and builds their cache: its
//! `cache.json` is the header every input is read with. An input is
//! `[flags: u8][index length: u32 LE][index.bin][shard-000.bin]` (`fuzz/seeds.py` builds real
//! caches of the same four records in this layout). Flags: bit 0 re-stamps and reseals each
//! entry (the record's key and source file size and time set to this target's files, the entry's
//! CRC-32 recomputed: a consistent but hostile index, so the reads are reached); bit 1 also
//! recomputes each present entry's pixel checksum over the shard bytes it names (so arbitrary
//! shapes reach the augmentation); bit 2 reads with `cache_fallback`.
#![no_main]

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, OnceLock};

use gradatim_core::data::augment::AugmentConfig;
use gradatim_core::data::batch::build_batch;
use gradatim_core::data::box_format::BoxFormat;
use gradatim_core::data::box_mask::MaskSpec;
use gradatim_core::data::cache::{self, Cache, ENTRY_BYTES};
use gradatim_core::data::manifest::{Manifest, ManifestOptions};
use gradatim_core::data::sample::{id_key, DatasetConfig, DatasetSpec, OnError, OutputKind};
use gradatim_core::data::tasks::Templates;
use gradatim_core::image::encode::{encode_jpeg, encode_png_u16, encode_png_u8};
use gradatim_core::image::ImageRef;

/// `Augment.fast_train()`'s crop and affine without its CLAHE (a 16-bit CLAHE under the
/// fuzzer's instrumentation takes most of a run): the decode covers the smallest crop, so the
/// JPEG is decoded at 1/2.
const AUGMENT: &str = r#"{"clahe": null, "affine": {"rotate": 15.0, "scale": [0.9, 1.1], "keep_ratio": false, "translate": 0.1, "p": 0.5}, "crop": {"scale": [0.9, 1.0], "ratio": [0.75, 1.3333333333333333], "p": 0.3}, "flip": null, "eval": null, "min_visible": 1e-06, "pipeline": "fast"}"#;

struct World {
    /// Where each input's cache is written.
    cache: PathBuf,
    /// The built cache's `cache.json`.
    header: Vec<u8>,
    spec: DatasetSpec,
    /// Per record: its key and its source file's size and modification time (ns).
    stamps: Vec<(u64, u64, i64)>,
}

fn gradient(w: usize, h: usize, k: usize) -> Vec<u8> {
    (0..w * h)
        .map(|p| ((p % w) * 200 / w + (p / w) * 3 + k * 17) as u8)
        .collect()
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("gradatim-fuzz-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let jpeg = encode_jpeg(ImageRef::new(96, 80, 1, &gradient(96, 80, 0)).unwrap(), 90);
        let png = encode_png_u8(ImageRef::new(50, 40, 1, &gradient(50, 40, 1)).unwrap());
        let wide: Vec<u16> = gradient(60, 44, 2).iter().map(|&v| v as u16 * 257).collect();
        let png16 = encode_png_u16(ImageRef::new(60, 44, 1, &wide).unwrap());
        let files: [(&str, Vec<u8>); 4] = [
            ("r0.jpg", jpeg.unwrap()),
            ("r1.png", png.unwrap()),
            ("r2.png", png16.unwrap()),
            ("r3.png", b"\x89PNG\r\n\x1a\n broken".to_vec()),
        ];
        let mut lines = Vec::new();
        for (i, (name, bytes)) in files.iter().enumerate() {
            std::fs::write(root.join(name), bytes).unwrap();
            lines.push(format!(
                r#"{{"id": "r{i}", "image": "{name}", "source": "fuzz", "split": "train", "task": "phrase_grounding", "text": "Small left effusion.", "boxes": [{{"box": [4, 6, 30, 28], "phrase": "left effusion"}}]}}"#
            ));
        }
        let opts = ManifestOptions {
            root: root.clone(),
            allow_outside_root: false,
        };
        let manifest = Manifest::from_jsonl(&lines.join("\n"), "fuzz.jsonl", &opts).unwrap();
        let config = DatasetConfig {
            width: 32,
            height: 24,
            channels: 1,
            output: OutputKind::Float32,
            mean: vec![0.5],
            std: vec![0.25],
            augment: AugmentConfig::from_json(AUGMENT).unwrap(),
            box_format: BoxFormat::Cure,
            templates: Templates::default(),
            on_error: OnError::Raise,
            max_pixels: 1 << 28,
            max_bytes: 1 << 30,
            mask: MaskSpec::default(),
            overlay_thickness: 3,
        };
        let spec = DatasetSpec::new(manifest, config).unwrap();
        let built = root.join("built");
        let (done, stop) = (AtomicUsize::new(0), AtomicBool::new(false));
        cache::build(&spec, &built, 1, &done, &stop).unwrap();
        let header = std::fs::read(built.join("cache.json")).unwrap();
        let stamps = files
            .iter()
            .enumerate()
            .map(|(i, (name, _))| {
                let meta = std::fs::metadata(root.join(name)).unwrap();
                let mtime = meta
                    .modified()
                    .unwrap()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as i64;
                (id_key(&format!("r{i}")), meta.len(), mtime)
            })
            .collect();
        let cache = root.join("input");
        std::fs::create_dir_all(&cache).unwrap();
        World {
            cache,
            header,
            spec,
            stamps,
        }
    })
}

/// The CRC-32 of an entry's pixels and of its shape, type and scale, as the cache writes it.
fn pixel_checksum(entry: &[u8], pixels: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(pixels);
    // width, height, channels, denominator, then the WIDE flag
    h.update(&entry[32..48]);
    let flags = u32::from_le_bytes(entry[12..16].try_into().unwrap());
    h.update(&(flags & 2).to_le_bytes());
    h.finalize()
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    if rest.len() < 4 {
        return;
    }
    let (len, rest) = rest.split_at(4);
    let len = (u32::from_le_bytes(len.try_into().unwrap()) as usize).min(rest.len());
    let (index, shard) = rest.split_at(len);
    let w = world();
    let mut index = index.to_vec();
    if flags & 1 != 0 {
        for (i, e) in index.chunks_exact_mut(ENTRY_BYTES).enumerate() {
            if let Some(&(key, size, mtime)) = w.stamps.get(i) {
                e[0..8].copy_from_slice(&key.to_le_bytes());
                e[48..56].copy_from_slice(&size.to_le_bytes());
                e[56..64].copy_from_slice(&mtime.to_le_bytes());
            }
            let (offset, length) = (
                u64::from_le_bytes(e[16..24].try_into().unwrap()),
                u64::from_le_bytes(e[24..32].try_into().unwrap()),
            );
            let pixels = usize::try_from(offset)
                .ok()
                .and_then(|o| shard.get(o..o.checked_add(usize::try_from(length).ok()?)?));
            if let (true, Some(pixels)) = (flags & 2 != 0, pixels) {
                let crc = pixel_checksum(e, pixels);
                e[72..76].copy_from_slice(&crc.to_le_bytes());
            }
            let seal = crc32fast::hash(&e[..ENTRY_BYTES - 4]);
            e[ENTRY_BYTES - 4..].copy_from_slice(&seal.to_le_bytes());
        }
    }
    std::fs::write(w.cache.join("cache.json"), &w.header).unwrap();
    std::fs::write(w.cache.join("index.bin"), &index).unwrap();
    std::fs::write(w.cache.join("shard-000.bin"), shard).unwrap();
    let Ok(opened) = Cache::open(&w.cache) else {
        return;
    };
    let Ok(spec) = w.spec.clone().with_cache(Arc::new(opened), flags & 4 != 0) else {
        return;
    };
    let n = spec.manifest.len();
    let _ = build_batch(&spec, &(0..n).collect::<Vec<_>>(), &[], 0, 7);
    for i in 0..n {
        let _ = build_batch(&spec, &[i], &[], 1, 7);
    }
});
