//! Fuzz the OpenFlow stream path: frame() cuts messages from arbitrary bytes, each is
//! parsed, and whatever parses must re-emit and parse back to the same message. Each
//! message also goes through the reactive learner's borrowed PACKET_IN view, whose answer
//! must be well-framed messages the codec reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reflex::openflow::learning::{answer, LearningConfig, MacTable, PacketInView};
use reflex::openflow::{frame, Message};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    let mut out = Vec::new();
    let mut table = MacTable::new(64);
    let cfg = LearningConfig::default();
    while let Ok(Some((_, n))) = frame(rest) {
        let Some(msg_bytes) = rest.get(..n) else { break };
        if let Ok((xid, msg)) = Message::parse(msg_bytes) {
            out.clear();
            msg.emit(xid, &mut out);
            let again = Message::parse(&out).map(|(_, m)| m);
            assert_eq!(again.as_ref(), Ok(&msg));
        }
        if let Ok(view) = PacketInView::parse(msg_bytes) {
            out.clear();
            answer(&mut table, &cfg, &view, &mut out);
            let mut reply = &out[..];
            while let Ok(Some((_, m))) = frame(reply) {
                assert!(Message::parse(&reply[..m]).is_ok());
                reply = &reply[m..];
            }
            assert!(reply.is_empty());
        }
        rest = &rest[n..];
    }
});
