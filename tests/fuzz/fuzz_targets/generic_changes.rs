#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flux_recv::fuzzing::generic_changes(data));
