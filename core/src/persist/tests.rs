//! `StoreLink` without sockets: batches, pages, resends, give-ups, the listing.

use super::*;
use proptest::prelude::*;
use switchboard_protocol::bridge::{decode, MAX_FRAME, MAX_MESSAGE_BYTES};
use switchboard_protocol::VisitorId;

type Link = StoreLink<u32, &'static str>;

fn m(conv: u64, seq: u64) -> StoredMessage {
    StoredMessage {
        conv: ConvId(conv),
        seq,
        sender: "v".into(),
        cid: seq.to_string(),
        body: "b".into(),
        ts: 0,
    }
}

/// Writes the new requests and decodes them back.
fn written(l: &mut Link) -> Vec<BridgeMsg> {
    let mut out = Vec::new();
    assert!(l.write_requests(&mut out, 0).is_empty());
    frames(out)
}

fn frames(mut out: Vec<u8>) -> Vec<BridgeMsg> {
    let mut got = Vec::new();
    while let Some(msg) = decode(&mut out).unwrap() {
        got.push(msg);
    }
    assert!(out.is_empty());
    got
}

fn only_req(msgs: &[BridgeMsg]) -> u64 {
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    msgs[0].req().unwrap()
}

#[test]
fn a_batch_becomes_one_persist_and_confirms_its_heads() {
    let mut l = Link::default();
    l.record(m(1, 1));
    l.record(m(2, 5));
    l.record(m(1, 2));
    assert_eq!(l.backlog(), 3);
    let reqs = written(&mut l);
    let BridgeMsg::Persist { req, messages, .. } = &reqs[0] else {
        panic!()
    };
    assert_eq!((reqs.len(), messages.len()), (1, 3));
    assert_eq!(l.unconfirmed(), 3);
    assert!(written(&mut l).is_empty(), "nothing new");
    match l.resolve(BridgeMsg::Persisted { req: *req }) {
        Resolved::Persist(o) => assert_eq!(
            o,
            vec![PersistOutcome {
                heads: vec![(ConvId(1), 2), (ConvId(2), 5)],
                leases: vec![],
                ok: true
            }]
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(l.unconfirmed(), 0);
    assert!(
        matches!(
            l.resolve(BridgeMsg::Persisted { req: *req }),
            Resolved::Nothing
        ),
        "answered once"
    );
}

#[test]
fn leases_are_reported_with_their_request() {
    let mut l = Link::default();
    l.event(ConvEvent::Opened {
        conv: ConvId(1),
        visitor: VisitorId(1),
        ts: 0,
        lease: 64,
        site: None,
    });
    l.event(ConvEvent::SeqLease {
        conv: ConvId(2),
        upto: 99,
        epoch: 0,
    });
    let req = only_req(&written(&mut l));
    match l.resolve(BridgeMsg::Failed {
        req,
        reason: "x".into(),
    }) {
        Resolved::Persist(o) => {
            assert_eq!(o[0].leases, vec![(ConvId(1), 64), (ConvId(2), 99)]);
            assert!(!o[0].ok);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn batches_settle_in_request_order_even_when_answered_out_of_order() {
    let mut l = Link::default();
    let mut reqs = Vec::new();
    for seq in 1..=3 {
        l.record(m(1, seq));
        reqs.push(only_req(&written(&mut l)));
    }
    for r in [reqs[2], reqs[1]] {
        assert!(matches!(
            l.resolve(BridgeMsg::Persisted { req: r }),
            Resolved::Nothing
        ));
    }
    assert_eq!(l.unconfirmed(), 3);
    match l.resolve(BridgeMsg::Persisted { req: reqs[0] }) {
        Resolved::Persist(o) => assert_eq!(
            o.iter().map(|x| x.heads[0].1).collect::<Vec<_>>(),
            vec![1, 2, 3]
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(l.unconfirmed(), 0);
}

#[test]
fn loads_are_asked_once_and_release_everything_parked() {
    let mut l = Link::default();
    l.park(ConvId(9), "a", 10, 20, 64);
    l.park(ConvId(9), "b", 10, 20, 64);
    assert!(l.is_loading(ConvId(9)));
    let reqs = written(&mut l);
    let BridgeMsg::LoadConv {
        req,
        recent: 10,
        cids: 20,
        lease: 64,
        ..
    } = reqs[0]
    else {
        panic!("{reqs:?}")
    };
    assert_eq!(reqs.len(), 1, "one load for both");
    match l.resolve(BridgeMsg::ConvLoaded {
        req,
        conv: ConvId(9),
        info: None,
    }) {
        Resolved::Loaded(c, None, parked) => {
            assert_eq!((c, parked), (ConvId(9), vec!["a", "b"]))
        }
        other => panic!("{other:?}"),
    }
    assert!(l.is_missing(ConvId(9)));
    l.created(ConvId(9));
    assert!(!l.is_missing(ConvId(9)));
}

#[test]
fn failures_resolve_to_what_waited() {
    let mut l = Link::default();
    l.read(7, ConvId(1), 0, 9, 5, false, 1000);
    let req = only_req(&written(&mut l));
    match l.resolve(BridgeMsg::Failed {
        req,
        reason: "x".into(),
    }) {
        Resolved::Read(7, None) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(l.in_flight(), 0);
}

#[test]
fn the_listing_asks_page_after_page_until_done_or_enough() {
    let mut l = Link::default();
    l.list_open(25_000);
    let mut pages = 0;
    let mut after = None;
    loop {
        let reqs = written(&mut l);
        let BridgeMsg::OpenConvs {
            req,
            after: asked_after,
            limit,
        } = reqs[0]
        else {
            panic!("{reqs:?}")
        };
        assert_eq!(asked_after, after);
        let convs: Vec<OpenConv> = (0..limit as u64)
            .map(|i| OpenConv {
                conv: ConvId(pages * 100_000 + i + 1),
                visitor: VisitorId(1),
                agent: None,
                site: None,
            })
            .collect();
        after = convs.last().map(|c| c.conv);
        pages += 1;
        match l.resolve(BridgeMsg::OpenConvsAre {
            req,
            convs,
            next: after,
        }) {
            Resolved::OpenConvs {
                convs: Some(c),
                done,
            } => {
                assert_eq!(c.len() as u32, limit);
                assert_eq!(done, !l.is_listing());
                if done {
                    break;
                }
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(pages, 3, "10,000 + 10,000 + 5,000");
}

#[test]
fn after_a_reconnect_everything_in_flight_goes_again_in_order_and_reads_only_once() {
    let mut l = Link::default();
    l.record(m(1, 1));
    l.read(1, ConvId(1), 0, 9, 5, true, 1000);
    let first = written(&mut l);
    assert_eq!(first.len(), 2);
    // Link lost once: both are sent again, in order.
    assert!(l.link_lost().is_empty());
    l.read(2, ConvId(1), 0, 9, 5, true, 1000);
    let mut out = Vec::new();
    assert!(l.relink(&mut out, 0).is_empty());
    let again = frames(out);
    assert_eq!(again[..2], first[..]);
    assert_eq!(again.len(), 3, "and the new read");
    // Lost again: the first read has now been in flight for two losses, and is failed;
    // the persist is resent whatever happens (it is idempotent and bounded).
    let failed = l.link_lost();
    assert_eq!(failed.len(), 1);
    match l.resolve(failed.into_iter().next().unwrap()) {
        Resolved::Read(1, None) => {}
        other => panic!("{other:?}"),
    }
    let mut out = Vec::new();
    l.relink(&mut out, 0);
    let kinds: Vec<&str> = frames(out).iter().map(BridgeMsg::kind).collect();
    assert_eq!(kinds, vec!["persist", "history"]);
}

#[test]
fn a_message_that_cannot_be_encoded_fails_its_request_instead_of_the_link() {
    let mut l = Link::default();
    let mut big = m(1, 1);
    big.body = "x".repeat(MAX_FRAME);
    l.record(big);
    l.record(m(1, 2));
    let mut out = Vec::new();
    let failed = l.write_requests(&mut out, 0);
    assert_eq!(failed.len(), 1, "the page with the oversized message");
    let sent = frames(out);
    assert_eq!(sent.len(), 1, "the other page still goes");
    match l.resolve(failed.into_iter().next().unwrap()) {
        Resolved::Nothing => {} // waits for the earlier... it is the first: settles
        Resolved::Persist(o) => assert!(!o[0].ok),
        other => panic!("{other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Whatever the sizes of the messages and events recorded (each within the
    /// documented bounds), every request written fits a frame, and the messages arrive
    /// once each, in order.
    #[test]
    fn no_request_can_exceed_the_frame_limit(
        sizes in proptest::collection::vec(prop_oneof![0usize..2_000, 0usize..=MAX_MESSAGE_BYTES - 1_000], 1..12),
        closes in 0usize..40_000,
    ) {
        let mut l = Link::default();
        for (i, &n) in sizes.iter().enumerate() {
            let mut msg = m(i as u64 % 3, i as u64 + 1);
            msg.sender = "a".repeat(64);
            msg.cid = "\u{1}".repeat(10);
            msg.body = "\u{1}".repeat(n / 6);
            l.record(msg);
        }
        for c in 0..closes {
            l.event(ConvEvent::Closed { conv: ConvId(c as u64), by: "\u{1}".repeat(64), ts: u64::MAX });
        }
        let mut out = Vec::new();
        prop_assert!(l.write_requests(&mut out, 0).is_empty());
        let mut seqs = Vec::new();
        let mut events = 0;
        while out.len() >= 4 {
            let len = u32::from_be_bytes(out[..4].try_into().unwrap()) as usize;
            prop_assert!(len <= MAX_FRAME);
            let Some(BridgeMsg::Persist { messages, events: e, .. }) = decode(&mut out).unwrap() else {
                panic!("not a persist")
            };
            seqs.extend(messages.iter().map(|m| m.seq));
            events += e.len();
        }
        prop_assert_eq!(seqs, (1..=sizes.len() as u64).collect::<Vec<_>>());
        prop_assert_eq!(events, closes);
    }
}
