//! The reactive path allocates nothing per PACKET_IN: a session past its warm-up answers
//! thousands of learning-table misses (floods and learnt flows, buffered and not) under a
//! counting allocator without one allocation on this thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use reflex::openflow::learning::{emit_table_miss, LearningConfig};
use reflex::openflow::session::{Phase, Session, SessionConfig};
use reflex::openflow::table::Desired;
use reflex::openflow::{Message, NO_BUFFER};
use reflex_testkit::switch::EmulatedSwitch;

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

const TABLE: u8 = 250;

fn take(s: &mut Session) -> Vec<(u32, Message)> {
    reflex_testkit::switch::take_session_output(s)
}

fn ready_session() -> Session {
    let cfg = SessionConfig {
        learning: Some(LearningConfig {
            table_id: TABLE,
            ..LearningConfig::default()
        }),
        mac_capacity: 1024,
        ..SessionConfig::default()
    };
    let mut s = Session::new(0, cfg);
    EmulatedSwitch::new(1, 0)
        .converse(0, &mut s)
        .expect("handshake");
    assert_eq!(s.phase(), Phase::Ready);
    let mut d = Desired::default();
    let (k, i) = reflex::openflow::table::learning_miss_entry(TABLE);
    d.flows.insert(k, &i);
    assert_eq!(s.sync(&d), 1);
    take(&mut s);
    s
}

fn mac(n: u32) -> [u8; 6] {
    let b = n.to_be_bytes();
    [0x02, 0, b[0], b[1], b[2], b[3]]
}

#[test]
fn answering_packet_ins_allocates_nothing() {
    let mut s = ready_session();
    // Pre-encoded PACKET_INs: 200 hosts on 4 ports, host j talking to j+1, every fourth
    // buffered; some destinations never seen (floods), most learnt (flows).
    let mut msgs: Vec<Vec<u8>> = Vec::new();
    for i in 0..4000u32 {
        let j = i % 200;
        let dst = if i % 50 == 0 {
            100_000 + i
        } else {
            (j + 1) % 200
        };
        let mut f = Vec::new();
        f.extend_from_slice(&mac(dst));
        f.extend_from_slice(&mac(j));
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&[0x45; 86]);
        let buffer = if i % 4 == 0 { i } else { NO_BUFFER };
        let mut b = Vec::new();
        emit_table_miss(&mut b, i, buffer, j % 4 + 1, TABLE, &f);
        msgs.push(b);
    }
    let feed = |s: &mut Session, range: std::ops::Range<usize>| {
        for m in &msgs[range] {
            s.handle_input(1, m);
            let n = s.poll_transmit().len();
            s.advance_transmit(n);
        }
    };
    // Warm-up: buffers grow to their working size.
    feed(&mut s, 0..1000);
    let before = allocs();
    feed(&mut s, 1000..4000);
    let during = allocs() - before;
    let st = s.stats();
    assert_eq!(st.learn_flows + st.learn_floods + st.learn_hairpins, 4000);
    assert!(st.learn_flows > 3000 && st.learn_floods > 50, "{st:?}");
    assert_eq!(st.packet_ins_shed, 0);
    assert_eq!(during, 0, "allocations while answering 3000 PACKET_INs");
    // The counter does see this thread's allocations.
    let b = allocs();
    drop(std::hint::black_box(Vec::<u8>::with_capacity(64)));
    assert!(allocs() > b);
}
