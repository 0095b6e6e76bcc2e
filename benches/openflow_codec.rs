//! OpenFlow codec throughput: FLOW_MOD encode/decode (the compiler's hot path), PACKET_IN,
//! and a 1000-entry FLOW stats reply (reconciliation on connect).

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use reflex::openflow::*;

fn flow_mod() -> Message {
    let m = Match::builder()
        .in_port(1)
        .eth_src([2, 0, 0, 0, 0, 1])
        .ipv4_src(Ipv4Addr::new(10, 0, 0, 1))
        .ipv4_dst(Ipv4Addr::new(10, 0, 0, 2))
        .tcp_dst(80)
        .build()
        .expect("valid match");
    Message::FlowMod(FlowMod::add(
        0,
        100,
        m,
        vec![Instruction::ApplyActions(vec![Action::output(2)])],
    ))
}

fn packet_in() -> Message {
    Message::PacketIn(PacketIn {
        buffer_id: NO_BUFFER,
        total_len: 98,
        reason: 1,
        table_id: 0,
        cookie: 0,
        match_: Match::builder().in_port(3).build().expect("valid match"),
        data: vec![0x5a; 98],
    })
}

fn flow_stats_reply(n: usize) -> Message {
    let Message::FlowMod(fm) = flow_mod() else {
        unreachable!()
    };
    let entry = FlowStats {
        table_id: 0,
        duration_sec: 10,
        duration_nsec: 0,
        priority: 100,
        idle_timeout: 0,
        hard_timeout: 0,
        flags: 0,
        cookie: 0,
        packet_count: 1,
        byte_count: 98,
        match_: fm.match_,
        instructions: fm.instructions,
    };
    Message::MultipartReply(MultipartReply {
        flags: 0,
        body: MultipartReplyBody::Flow(vec![entry; n]),
    })
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("openflow");
    for (name, msg) in [
        ("flow_mod", flow_mod()),
        ("packet_in", packet_in()),
        // 1000 entries (128 bytes each) exceed one 64 KiB message; switches split them, 400 fit
        ("flow_stats_reply_400", flow_stats_reply(400)),
    ] {
        let mut buf = Vec::with_capacity(65536);
        assert!(msg.emit(1, &mut buf) > 0, "{name} fits one message");
        g.throughput(Throughput::Elements(1));
        g.bench_function(format!("{name}/encode"), |b| {
            b.iter(|| {
                buf.clear();
                black_box(&msg).emit(black_box(7), &mut buf)
            })
        });
        let bytes = buf.clone();
        g.bench_function(format!("{name}/decode"), |b| {
            b.iter(|| Message::parse(black_box(&bytes)))
        });
    }
    // 1000 flow entries as a REPLY_MORE sequence, framed from one stream
    let parts: Vec<Message> = (0..3)
        .map(|i| {
            let Message::MultipartReply(mut r) = flow_stats_reply(if i < 2 { 400 } else { 200 })
            else {
                unreachable!()
            };
            r.flags = if i < 2 { MULTIPART_MORE } else { 0 };
            Message::MultipartReply(r)
        })
        .collect();
    let mut stream = Vec::new();
    for p in &parts {
        p.emit(9, &mut stream);
    }
    g.throughput(Throughput::Elements(1000));
    g.bench_function("flow_stats_1000/decode", |b| {
        b.iter(|| {
            let mut rest = black_box(&stream[..]);
            let mut entries = 0;
            while let Ok(Some((_, n))) = frame(rest) {
                if let Ok((_, Message::MultipartReply(r))) = Message::parse(&rest[..n]) {
                    if let MultipartReplyBody::Flow(v) = r.body {
                        entries += v.len();
                    }
                }
                rest = &rest[n..];
            }
            entries
        })
    });
    g.bench_function("flow_stats_1000/encode", |b| {
        let mut buf = Vec::with_capacity(stream.len());
        b.iter(|| {
            buf.clear();
            for p in &parts {
                p.emit(9, &mut buf);
            }
            buf.len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
