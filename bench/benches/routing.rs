//! The routing and assignment decisions: which shard is a conversation's home, and which
//! agent gets a new conversation (least-loaded, with a queue when all are full).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use switchboard_core::assignment::Dispatcher;
use switchboard_core::routing::home_shard;
use switchboard_protocol::{AgentId, ConvId, VisitorId};

fn routing(c: &mut Criterion) {
    c.bench_function("home_shard", |b| {
        let mut id = 1u64;
        b.iter(|| {
            id = id.wrapping_add(0x9e37_79b9_7f4a_7c15);
            home_shard(black_box(ConvId(id)), 16)
        })
    });
    for agents in [10usize, 1000] {
        c.bench_function(&format!("assign_new_conversation_{agents}_agents"), |b| {
            let mut d = Dispatcher::new(u32::MAX);
            for i in 0..agents {
                d.agent_online(&AgentId::new(&format!("agent{i}")).unwrap(), 0);
            }
            let mut n = 0u64;
            b.iter(|| {
                n += 1;
                black_box(d.enqueue(ConvId(n), VisitorId(n)))
            })
        });
    }
}

criterion_group!(benches, routing);
criterion_main!(benches);
