//! Reactive flow setup without I/O: PACKET_IN bytes → learnt MAC → FLOW_MOD (+ PACKET_OUT)
//! bytes, cbench-style (a new source MAC in every packet, destinations already learnt).
//! The peer in the same run is the general codec doing the same work through owned
//! messages (parse `Message`, build and emit a `FlowMod`). `session_*` runs the whole
//! reactive path of a ready [`Session`]: 64 KiB reads cut anywhere, framing, the view, the
//! answer into the output queue, and draining it.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use reflex::openflow::learning::emit_table_miss;
use reflex::openflow::learning::{answer, emit_packet_in, LearningConfig, MacTable, PacketInView};
use reflex::openflow::session::{Session, SessionConfig};
use reflex::openflow::table::{learning_miss_entry, Desired};
use reflex::openflow::{Action, FlowMod, Instruction, Match, Message, NO_BUFFER};
use reflex_testkit::switch::EmulatedSwitch;

const N: usize = 4096;

fn packet_ins(buffered: bool) -> Vec<Vec<u8>> {
    (0..N)
        .map(|i| {
            let mut f = vec![0u8; 60];
            // Destination: one of 16 hosts learnt up front; source: a new MAC each time.
            f[..6].copy_from_slice(&[0, 0, 0, 0, 0, (i % 16) as u8 + 1]);
            f[6..12].copy_from_slice(&(0x0200_0000_0000u64 + i as u64).to_be_bytes()[2..]);
            f[12] = 0x08;
            let mut b = Vec::new();
            let buffer = if buffered { i as u32 } else { NO_BUFFER };
            emit_packet_in(&mut b, i as u32, buffer, 1 + (i % 8) as u32, &f);
            b
        })
        .collect()
}

fn learnt() -> MacTable {
    let mut t = MacTable::new(1 << 16);
    for h in 1..=16u64 {
        t.learn(h, 100 + h as u32);
    }
    t
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("learning");
    g.throughput(Throughput::Elements(N as u64));
    let cfg = LearningConfig::default();
    for (name, buffered) in [("buffered", true), ("unbuffered", false)] {
        let pins = packet_ins(buffered);
        let mut table = learnt();
        let mut out = Vec::with_capacity(1 << 20);
        g.bench_function(format!("answer_{name}"), |b| {
            b.iter(|| {
                out.clear();
                for p in &pins {
                    if let Ok(v) = PacketInView::parse(p) {
                        black_box(answer(&mut table, &cfg, &v, &mut out));
                    }
                }
                black_box(out.len())
            })
        });
    }
    let pins = packet_ins(true);
    let mut out = Vec::with_capacity(1 << 20);
    g.bench_function("owned_codec_peer", |b| {
        b.iter(|| {
            out.clear();
            for p in &pins {
                let Ok((xid, Message::PacketIn(pi))) = Message::parse(p) else {
                    continue;
                };
                let dst: [u8; 6] = pi.data[..6].try_into().unwrap_or([0; 6]);
                let Ok(m) = Match::builder().in_port(1).eth_dst(dst).build() else {
                    continue;
                };
                let mut fm = FlowMod::add(
                    0,
                    10,
                    m,
                    vec![Instruction::ApplyActions(vec![Action::output(2)])],
                );
                fm.buffer_id = pi.buffer_id;
                Message::FlowMod(fm).emit(xid, &mut out);
            }
            black_box(out.len())
        })
    });
    for (name, buffered) in [("buffered", true), ("unbuffered", false)] {
        let input = session_input(buffered);
        let mut s = ready_session();
        g.bench_function(format!("session_{name}"), |b| {
            b.iter(|| {
                for chunk in input.chunks(64 * 1024) {
                    s.handle_input(1, chunk);
                }
                let n = s.poll_transmit().len();
                s.advance_transmit(n);
                black_box(n)
            })
        });
        // Every PACKET_IN of every iteration went down the learning path.
        let st = s.stats();
        assert_eq!(
            (
                st.packet_ins_shed,
                st.packet_ins_other,
                st.learn_ignored,
                st.malformed
            ),
            (0, 0, 0, 0)
        );
        assert_eq!(
            st.learn_flows + st.learn_floods + st.learn_hairpins,
            st.packet_ins
        );
        assert!(st.learn_flows > st.learn_floods);
        eprintln!(
            "{name}: {} packet-ins answered through the session",
            st.packet_ins
        );
    }
    g.finish();
}

const LEARN_TABLE: u8 = 250;

/// The `packet_ins` workload as one byte stream from the learning table's miss entry.
fn session_input(buffered: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, p) in packet_ins(buffered).iter().enumerate() {
        let Ok(v) = PacketInView::parse(p) else {
            continue;
        };
        let port = v.in_port.unwrap_or(1);
        emit_table_miss(&mut out, i as u32, v.buffer_id, port, LEARN_TABLE, v.data);
    }
    out
}

fn drain(s: &mut Session) -> Vec<(u32, Message)> {
    reflex_testkit::switch::take_session_output(s)
}

/// A session through its handshake with learning on, the 16 destinations learnt.
fn ready_session() -> Session {
    let cfg = SessionConfig {
        learning: Some(LearningConfig {
            table_id: LEARN_TABLE,
            ..LearningConfig::default()
        }),
        mac_capacity: 1 << 16,
        ..SessionConfig::default()
    };
    let mut s = Session::new(0, cfg);
    EmulatedSwitch::new(0, 0)
        .converse(0, &mut s)
        .expect("handshake");
    let mut d = Desired::default();
    let (k, i) = learning_miss_entry(LEARN_TABLE);
    d.flows.insert(k, &i);
    s.sync(&d);
    drain(&mut s);
    let mut learn = Vec::new();
    for h in 1..=16u8 {
        let mut f = vec![0u8; 60];
        f[..6].copy_from_slice(&[0xff; 6]);
        f[6..12].copy_from_slice(&[0, 0, 0, 0, 0, h]);
        emit_table_miss(
            &mut learn,
            0,
            NO_BUFFER,
            100 + u32::from(h),
            LEARN_TABLE,
            &f,
        );
    }
    s.handle_input(0, &learn);
    drain(&mut s);
    s
}

criterion_group!(benches, bench);
criterion_main!(benches);
