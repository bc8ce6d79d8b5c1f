#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    flux_recv_fuzz::payload_of(flux_recv::sources::Source::Artifactory, data)
});
