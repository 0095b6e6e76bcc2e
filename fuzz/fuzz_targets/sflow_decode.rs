//! Fuzz target: decodes arbitrary bytes as an sFlow v5 datagram, walks every sample and
//! record, checks that the one-pass scan of the ingest path agrees with that walk, and that
//! whatever decodes re-emits to bytes that decode to the same repr.

#![no_main]

use libfuzzer_sys::fuzz_target;
use reflex::sflow::{parse_datagram, scan_collected, scan_reference, Sample};
use reflex_testkit::sflow::DatagramRepr;

fuzz_target!(|data: &[u8]| {
    let Ok(datagram) = parse_datagram(data) else {
        return;
    };
    let mut items = 0u32;
    for sample in datagram.samples() {
        items += 1;
        match sample {
            Ok(Sample::Flow(flow)) => {
                assert!(flow.records().count() as u64 <= u64::from(flow.record_count) + 1);
            }
            Ok(Sample::Counters(counters)) => {
                assert!(counters.records().count() as u64 <= u64::from(counters.record_count) + 1);
            }
            Ok(Sample::Other { .. }) | Err(_) => {}
        }
    }
    assert!(u64::from(items) <= u64::from(datagram.sample_count) + 1);
    assert_eq!(scan_collected(&datagram), scan_reference(&datagram));

    if let Ok(repr) = DatagramRepr::parse(&datagram) {
        let mut out = vec![0u8; repr.buffer_len()];
        // Decoded values always fit their encodings, so emission cannot fail.
        let n = repr.emit(&mut out).expect("decoded repr re-emits");
        let again = parse_datagram(&out[..n]).expect("re-emitted header decodes");
        assert_eq!(DatagramRepr::parse(&again).as_ref(), Ok(&repr));
    }
});
