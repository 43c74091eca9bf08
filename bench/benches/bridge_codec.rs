//! The gateway <-> bridge frame codec on a persist batch of real-sized messages.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use switchboard_protocol::bridge::{decode, encode, BridgeMsg, StoredMessage};
use switchboard_protocol::ConvId;

fn batch(n: usize) -> BridgeMsg {
    let body = "Hello, my order #48213 has not arrived yet and the tracking page has said 'in transit' for six days now. Could you check what is going on? I need it before the weekend, thanks!";
    BridgeMsg::Persist {
        req: 7,
        messages: (0..n)
            .map(|i| StoredMessage {
                conv: ConvId(0x4f1e_2d3c_4b5a_6978 + i as u64),
                seq: 1000 + i as u64,
                sender: format!("v{:016x}", 0x8faa_e0ef_9447_d6f7u64 + i as u64),
                cid: format!("m-{i}"),
                body: body.to_string(),
                ts: 1_795_704_210_239,
            })
            .collect(),
        events: Vec::new(),
    }
}

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("bridge_codec");
    for n in [1usize, 64] {
        let msg = batch(n);
        let mut wire = Vec::new();
        encode(&msg, &mut wire).expect("fits a frame");
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("encode_persist", n), &msg, |b, m| {
            let mut out = Vec::with_capacity(wire.len());
            b.iter(|| {
                out.clear();
                encode(black_box(m), &mut out).expect("fits a frame");
            })
        });
        g.bench_with_input(BenchmarkId::new("decode_persist", n), &wire, |b, w| {
            b.iter(|| {
                let mut buf = black_box(w).clone();
                decode(&mut buf).unwrap().unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
