//! The PNG decoder through gradatim's decode entry (seeds: real PNG files).
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| common::decode_all_ways(data));
