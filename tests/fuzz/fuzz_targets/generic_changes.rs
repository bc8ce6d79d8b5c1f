#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flux_recv_fuzz::generic_changes(data));
