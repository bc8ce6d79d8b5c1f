#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flux_recv_fuzz::source_payload(data));
