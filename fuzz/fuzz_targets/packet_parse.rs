#![no_main]
//! Sampled headers: arbitrary bytes as Ethernet, IPv4 and IPv6 headers.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for protocol in [1, 11, 12] {
        let _ = reflex::packet::parse_sampled_header(protocol, data);
    }
});
