//! Policy engine benchmarks: one FSM event → rule delta with 100k instances away from their
//! initial state, and a full compile of `auth >> normal` over 100k hosts.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use reflex::policy::{parse_policy, Compiler, FsmTable, KeyKind, ModuleDef, Policy};

const HOSTS: u32 = 100_000;

fn setup() -> (FsmTable, Policy) {
    let auth = ModuleDef::from_text(
        "auth",
        KeyKind::Ipv4Host,
        None,
        "authenticated",
        None,
        &[("authenticated", "identity"), ("clear", "drop")],
    )
    .expect("module");
    let mut t = FsmTable::new(vec![auth]).expect("table");
    for i in 0..HOSTS {
        let _ = t
            .set(0, 0x0a00_0000 + i as u128, 1, None, 0)
            .expect("event");
    }
    let main = parse_policy("auth >> normal", &|n| t.module_id(n)).expect("policy");
    (t, main)
}

fn bench(c: &mut Criterion) {
    let (mut t, main) = setup();
    let mut g = c.benchmark_group("policy");
    g.sample_size(10);
    g.bench_function("full_compile_auth_normal_100k", |b| {
        b.iter(|| {
            let comp = Compiler::new(&main, &t).expect("compile");
            black_box(comp.rules().len())
        })
    });
    let mut comp = Compiler::new(&main, &t).expect("compile");
    eprintln!("rules for {HOSTS} cleared hosts: {}", comp.rules().len());
    // Toggle one host: each iteration is one event applied and its delta ready.
    let key = 0x0a00_0000 + 77u128;
    let mut to = 0;
    g.sample_size(100);
    g.bench_function("event_to_delta_100k_instances", |b| {
        b.iter(|| {
            let ch = t.set(0, key, to, None, 0).expect("event").expect("change");
            to = 1 - to;
            let d = comp.on_change(&ch).expect("delta");
            black_box(d.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
