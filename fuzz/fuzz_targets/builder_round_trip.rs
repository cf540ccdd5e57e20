//! libFuzzer entry point; the body is [`vip_fuzz::builder_round_trip`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vip_fuzz::builder_round_trip(data));
