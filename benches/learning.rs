//! Reactive flow setup without I/O: PACKET_IN bytes → learnt MAC → FLOW_MOD (+ PACKET_OUT)
//! bytes, cbench-style (a new source MAC in every packet, destinations already learnt).
//! The peer in the same run is the general codec doing the same work through owned
//! messages (parse `Message`, build and emit a `FlowMod`).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use reflex::openflow::learning::{answer, emit_packet_in, LearningConfig, MacTable, PacketInView};
use reflex::openflow::{Action, FlowMod, Instruction, Match, Message, NO_BUFFER};

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
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
