//! libFuzzer entry point; the body is [`vip_fuzz::arp_parser`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vip_fuzz::arp_parser(data));
