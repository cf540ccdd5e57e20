//! libFuzzer entry point; the body is [`vip_fuzz::heartbeat_v2`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vip_fuzz::heartbeat_v2(data));
