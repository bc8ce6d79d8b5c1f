#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flux_recv::fuzzing::http_request_long(data));
