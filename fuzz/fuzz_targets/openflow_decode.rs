//! Fuzz the OpenFlow stream path: frame() cuts messages from arbitrary bytes, each is
//! parsed, and whatever parses must re-emit and parse back to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reflex::openflow::{frame, Message};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    let mut out = Vec::new();
    while let Ok(Some((_, n))) = frame(rest) {
        let Some(msg_bytes) = rest.get(..n) else { break };
        if let Ok((xid, msg)) = Message::parse(msg_bytes) {
            out.clear();
            msg.emit(xid, &mut out);
            let again = Message::parse(&out).map(|(_, m)| m);
            assert_eq!(again.as_ref(), Ok(&msg));
        }
        rest = &rest[n..];
    }
});
