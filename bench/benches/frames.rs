//! Client frames as the gateway sees them, decoded with serde_json and with simd-json, and
//! server frames encoded with both. simd-json parses in place, so its decoder pays for a
//! copy of the frame (the gateway's frames arrive in shared, immutable buffers); that copy
//! is part of what is measured. The numbers decided the gateway's hot path: serde_json
//! decodes (1.9-2.4x faster here), simd-json encodes (1.8x faster).

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use switchboard_protocol::client::decode_client_frame_simd;
use switchboard_protocol::decode_client_frame;
use switchboard_protocol::server::{encode, ServerFrame};
use switchboard_protocol::ConvId;

fn frames() -> Vec<(&'static str, String)> {
    let body200 = "Hello, my order #48213 has not arrived yet and the tracking page has said 'in transit' for six days now. Could you check what is going on? I need it before the weekend, thanks a lot in advance!!";
    let body2k = body200.repeat(10);
    vec![
        (
            "msg_visitor_200B",
            format!(r#"{{"type":"msg","cid":"m-1842","body":"{body200}"}}"#),
        ),
        (
            "msg_agent_200B",
            format!(
                r#"{{"type":"msg","cid":"a-77","body":"{body200}","conv":"c4f1e2d3c4b5a6978"}}"#
            ),
        ),
        (
            "msg_2KiB",
            format!(r#"{{"type":"msg","cid":"m-9","body":"{body2k}"}}"#),
        ),
        (
            "typing",
            r#"{"type":"typing","conv":"c4f1e2d3c4b5a6978"}"#.to_string(),
        ),
        (
            "resume",
            r#"{"type":"resume","conv":"c4f1e2d3c4b5a6978","last_seq":1042}"#.to_string(),
        ),
    ]
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode_client_frame");
    for (name, text) in frames() {
        // Both decoders must agree before their speed means anything.
        let mut copy = text.clone().into_bytes();
        assert_eq!(
            decode_client_frame(&text).unwrap(),
            decode_client_frame_simd(&mut copy).unwrap()
        );
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_with_input(BenchmarkId::new("serde_json", name), &text, |b, t| {
            b.iter(|| decode_client_frame(black_box(t)).unwrap())
        });
        g.bench_with_input(
            BenchmarkId::new("simd_json_with_copy", name),
            &text,
            |b, t| {
                b.iter(|| {
                    let mut buf = black_box(t).as_bytes().to_vec();
                    decode_client_frame_simd(&mut buf).unwrap()
                })
            },
        );
    }
    g.finish();
}

fn encode_frames(c: &mut Criterion) {
    let body = "Let me check that for you. I can see the parcel left our warehouse on Monday; the carrier has not scanned it since. I am opening an investigation with them right now and will write back within the hour.";
    let frame = ServerFrame::Msg {
        conv: ConvId(0x4f1e2d3c4b5a6978),
        seq: 1042,
        from: "ann".into(),
        cid: "a-77".into(),
        body: body.into(),
        ts: 1_795_704_210_239,
    };
    let mut g = c.benchmark_group("encode_server_msg");
    g.bench_function("serde_json", |b| {
        b.iter(|| serde_json::to_vec(black_box(&frame)).unwrap())
    });
    // What the gateway uses (`server::encode`, simd-json since this benchmark).
    g.bench_function("simd_json", |b| b.iter(|| encode(black_box(&frame))));
    g.finish();
}

criterion_group!(benches, decode, encode_frames);
criterion_main!(benches);
