//! The data side of the loader: manifests, box-aware text, augmentation plans and the threaded
//! batch pipeline, and the pre-decoded cache it can read instead of decoding.

pub mod augment;
pub mod batch;
pub mod box_format;
pub mod box_mask;
pub mod cache;
pub mod cache_remote;
pub mod manifest;
pub mod manifest_arrow;
pub mod sample;
pub mod stream;
pub mod tasks;
