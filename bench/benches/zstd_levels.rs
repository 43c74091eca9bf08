//! zstd on a history block (the JSON the bridge's HTTP API returns for 200 messages of a
//! support conversation): speed per level, and the ratio per level printed once.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn history_block() -> Vec<u8> {
    let lines = [
        "Hello, my order has not arrived yet.",
        "Let me check that for you. Could you give me the order number?",
        "Sure, it is 48213. The tracking page says in transit since Monday.",
        "Thanks. I can see the parcel left our warehouse on Monday; the carrier has not scanned it since.",
        "Is there anything you can do? I need it before the weekend.",
        "I am opening an investigation with the carrier now and will write back within the hour.",
    ];
    let mut rng = fastrand::Rng::with_seed(7);
    let messages: Vec<serde_json::Value> = (1..=200u64)
        .map(|seq| {
            let agent = seq % 2 == 0;
            serde_json::json!({
                "seq": seq,
                "from": if agent { "ann".to_string() } else { "v8faae0ef9447d6f7".to_string() },
                "cid": format!("{}-{}", if agent { "a" } else { "m" }, rng.u32(..)),
                "body": format!("{} (ref {})", lines[rng.usize(..lines.len())], rng.u32(..100_000)),
                "ts": 1_795_704_210_239u64 + seq * rng.u64(1_000..60_000),
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({"conv": "c4f1e2d3c4b5a6978", "messages": messages}))
        .unwrap()
}

fn levels(c: &mut Criterion) {
    let block = history_block();
    println!("history block: {} bytes", block.len());
    for level in [1, 3, 9, 19] {
        let z = zstd::encode_all(&block[..], level).unwrap();
        println!(
            "zstd level {level:>2}: {} bytes, ratio {:.2}",
            z.len(),
            block.len() as f64 / z.len() as f64
        );
    }
    let mut g = c.benchmark_group("zstd_history_block");
    g.throughput(Throughput::Bytes(block.len() as u64));
    for level in [1, 3, 9, 19] {
        g.bench_with_input(BenchmarkId::new("compress", level), &level, |b, &l| {
            b.iter(|| zstd::encode_all(black_box(&block[..]), l).unwrap())
        });
    }
    let z = zstd::encode_all(&block[..], 3).unwrap();
    g.bench_function("decompress", |b| {
        b.iter(|| zstd::decode_all(black_box(&z[..])).unwrap())
    });
    g.finish();
}

criterion_group!(benches, levels);
criterion_main!(benches);
