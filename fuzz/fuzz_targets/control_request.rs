#![no_main]
//! Control socket input: arbitrary bytes through line framing and request parsing.

use libfuzzer_sys::fuzz_target;
use reflex::control::protocol::{parse_request, Line, LineBuffer};

fuzz_target!(|data: &[u8]| {
    let mut lines = LineBuffer::default();
    for chunk in data.chunks(7) {
        lines.extend(chunk);
        loop {
            match lines.next_line() {
                Line::Complete(line) => {
                    let _ = parse_request(&line);
                }
                Line::Incomplete | Line::TooLong => break,
            }
        }
    }
});
