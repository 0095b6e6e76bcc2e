//! Fuzz the switch session: arbitrary bytes from a "switch" in arbitrary chunks, after a
//! completed handshake or from the first byte, must never panic the sans-IO core.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reflex::openflow::learning::LearningConfig;
use reflex::openflow::session::{Session, SessionConfig};
use reflex::openflow::table::Desired;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    // Odd first bytes also run reactive learning (table 0, so any PACKET_IN reaches it).
    let cfg = SessionConfig {
        learning: (split & 1 == 1).then(|| LearningConfig {
            table_id: 0,
            ..LearningConfig::default()
        }),
        ..SessionConfig::default()
    };
    let mut s = Session::new(0, cfg);
    let desired = Desired::default();
    let step = usize::from(split).max(1);
    for (i, chunk) in rest.chunks(step).enumerate() {
        s.handle_input(i as u64, chunk);
        s.handle_timeout(i as u64);
        s.sync(&desired);
        let n = s.poll_transmit().len();
        s.advance_transmit(n);
        while s.poll_event().is_some() {}
    }
});
