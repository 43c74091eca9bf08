//! One suite, run against both stores: the embedded SQLite file and a real PostgreSQL
//! (`SWITCHBOARD_TEST_DATABASE_URL`, default postgres://postgres@127.0.0.1:5432/test).
//! Each PostgreSQL test gets a schema of its own (`switchboard_test_support::pg`). A missing PostgreSQL fails these tests.

use std::path::PathBuf;
use storage_bridge::store::{From, PgStore, SqliteStore, Store, Val};
use switchboard_protocol::bridge::{ConvEvent, StoredMessage};
use switchboard_protocol::{ConvId, VisitorId};

async fn pg() -> Store {
    let store = pg_unmigrated().await;
    store.migrate().await.unwrap();
    store
}

async fn pg_unmigrated() -> Store {
    let url = switchboard_test_support::pg::fresh_schema();
    Store::Postgres(PgStore::new(&url, 4).unwrap())
}

async fn sqlite() -> Store {
    let store = sqlite_unmigrated().await;
    store.migrate().await.unwrap();
    store
}

async fn sqlite_unmigrated() -> Store {
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "sb-store-{}-{}",
        std::process::id(),
        fastrand::u32(..)
    ));
    Store::Sqlite(SqliteStore::open(&dir.join("test.db")).unwrap())
}

fn msg(conv: u64, seq: u64, sender: &str, cid: &str) -> StoredMessage {
    StoredMessage {
        conv: ConvId(conv),
        seq,
        sender: sender.into(),
        cid: cid.into(),
        body: format!("body {seq} ✓ \"q\""),
        ts: 1_700_000_000_000 + seq,
    }
}

fn opened(conv: u64, visitor: u64) -> ConvEvent {
    ConvEvent::Opened {
        conv: ConvId(conv),
        visitor: VisitorId(visitor),
        ts: 1,
        lease: 0,
        site: None,
    }
}

/// Issue 13's upgrade: a database as the bridge before accounts left it (schema 2), with
/// conversations, messages, leases and agents seen, is migrated; no row is lost, and agents
/// seen become accounts without a password.
async fn an_upgrade_from_schema_2_keeps_every_row(s: Store) {
    s.migrate_to(2).await.unwrap();
    // The rows as that bridge wrote them (this one writes columns it did not have).
    let row = |sql: &'static str, vals: Vec<Val>| (sql, vals);
    s.transaction(vec![
        row(
            "INSERT INTO conversations (id, visitor, agent, opened_at, assigned_at)
            VALUES ($1, $2, $3, $4, $5)",
            vec![
                1i64.into(),
                9i64.into(),
                "ann".into(),
                1i64.into(),
                2i64.into(),
            ],
        ),
        row(
            "INSERT INTO messages (conv, seq, sender, cid, body, ts) VALUES
            ($1, 1, 'v1', 'a', 'hello', 1), ($1, 2, 'ann', 'b', 'hi', 2)",
            vec![1i64.into()],
        ),
        row(
            "INSERT INTO seq_leases (conv, upto) VALUES ($1, 64)",
            vec![1i64.into()],
        ),
        row(
            "INSERT INTO agents (id, first_seen, last_seen) VALUES ($1, 2, 2)",
            vec!["ann".into()],
        ),
    ])
    .await
    .unwrap();
    s.migrate().await.unwrap();
    assert_eq!(s.count_messages(ConvId(1)).await.unwrap(), 2);
    let info = s.load_conv(ConvId(1), 10, 10).await.unwrap().unwrap();
    assert_eq!(info.agent.as_deref(), Some("ann"));
    assert!(info.seq_lease >= 64);
    // Conversations from before sites belong to the default one.
    let row = s.conversation(ConvId(1)).await.unwrap().unwrap();
    assert_eq!((row.site.as_str(), row.rating), ("default", None));
    assert_eq!(info.site, None);
    let ann = s
        .account("ann")
        .await
        .unwrap()
        .expect("the agent seen is kept");
    assert_eq!(
        (
            ann.role.as_str(),
            ann.password_hash.as_deref(),
            ann.disabled
        ),
        ("agent", None, false)
    );
    // And accounts work on the upgraded schema.
    let mut admin = ann.clone();
    admin.id = "root".into();
    admin.role = "admin".into();
    admin.password_hash = Some("$argon2id$...".into());
    s.put_account(admin.clone()).await.unwrap();
    assert_eq!(s.account("root").await.unwrap(), Some(admin.clone()));
    admin.disabled = true;
    s.put_account(admin.clone()).await.unwrap();
    assert!(s.account("root").await.unwrap().unwrap().disabled);
    assert_eq!(s.account("nobody").await.unwrap(), None);
}

mod upgrade {
    #[tokio::test]
    async fn sqlite_from_schema_2() {
        super::an_upgrade_from_schema_2_keeps_every_row(super::sqlite_unmigrated().await).await
    }
    #[tokio::test]
    async fn postgres_from_schema_2() {
        super::an_upgrade_from_schema_2_keeps_every_row(super::pg_unmigrated().await).await
    }
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite_store { $( #[tokio::test] async fn $name() { super::$name(super::sqlite().await).await } )* }
        mod postgres_store { $( #[tokio::test] async fn $name() { super::$name(super::pg().await).await } )* }
    };
}

both!(
    the_domain_is_scoped_by_site_searched_rated_and_reported,
    migrations_are_idempotent,
    history_is_ordered_bounded_and_newest_first_when_limited,
    replayed_batches_store_nothing_twice,
    conversations_load_with_their_state_and_recent_messages,
    ids_use_all_64_bits,
    open_conversations_are_listed_with_their_agents,
    events_in_one_batch_end_as_if_applied_one_by_one,
    seq_leases_only_grow_and_a_load_takes_one_above_everything_used,
    a_lease_extension_from_an_older_epoch_is_fenced,
    reads_forward_take_the_oldest,
    the_open_listing_pages_through_every_conversation_once,
);

async fn seq_leases_only_grow_and_a_load_takes_one_above_everything_used(s: Store) {
    let lease = |conv, upto| ConvEvent::SeqLease {
        conv: ConvId(conv),
        upto,
        epoch: 0,
    };
    assert_eq!(s.take_lease(ConvId(8), 64).await.unwrap(), None, "unknown");
    // An extension that commits before the opening batch (batches commit concurrently)
    // still counts.
    s.persist(vec![], vec![lease(8, 150)]).await.unwrap();
    // A new conversation's first lease is in its opening batch.
    let opened_with_lease = ConvEvent::Opened {
        conv: ConvId(8),
        visitor: VisitorId(1),
        ts: 1,
        lease: 64,
        site: None,
    };
    s.persist(vec![msg(8, 1, "v", "a")], vec![opened_with_lease])
        .await
        .unwrap();
    let info = s.load_conv(ConvId(8), 10, 10).await.unwrap().unwrap();
    assert_eq!((info.last_seq, info.seq_lease), (1, 150));
    // Leases never go down, whatever order their batches land in.
    s.persist(vec![], vec![lease(8, 200), lease(8, 128)])
        .await
        .unwrap();
    s.persist(vec![], vec![lease(8, 100)]).await.unwrap();
    let info = s.load_conv(ConvId(8), 10, 10).await.unwrap().unwrap();
    assert_eq!(info.seq_lease, 200);
    // A restart: seqs up to 200 may have been shown; the next lease starts above them.
    assert_eq!(
        s.take_lease(ConvId(8), 64).await.unwrap(),
        Some((200, 264, 1))
    );
    // A clean stop hands the unused part back, down to the newest seq handed out...
    let release = |at, held| ConvEvent::SeqRelease {
        conv: ConvId(8),
        at,
        held,
    };
    s.persist(vec![], vec![release(210, 264)]).await.unwrap();
    assert_eq!(
        s.take_lease(ConvId(8), 64).await.unwrap(),
        Some((210, 274, 2))
    );
    // ...but a release that lands after another gateway took a lease above it is void.
    s.persist(vec![], vec![release(212, 264)]).await.unwrap();
    assert_eq!(
        s.take_lease(ConvId(8), 1).await.unwrap(),
        Some((274, 275, 3))
    );
    // A conversation stored past its lease (written before leases existed): above its
    // newest message.
    s.persist(
        (1..=5).map(|i| msg(9, i, "v", &i.to_string())).collect(),
        vec![opened(9, 1)],
    )
    .await
    .unwrap();
    assert_eq!(s.take_lease(ConvId(9), 10).await.unwrap(), Some((5, 15, 1)));
}

async fn a_lease_extension_from_an_older_epoch_is_fenced(s: Store) {
    s.persist(vec![msg(12, 1, "v", "a")], vec![opened(12, 1)])
        .await
        .unwrap();
    let lease = |upto, epoch| ConvEvent::SeqLease {
        conv: ConvId(12),
        upto,
        epoch,
    };
    // Node A loads the conversation (epoch 1) and extends its lease: fine.
    let (_, upto_a, epoch_a) = s.take_lease(ConvId(12), 64).await.unwrap().unwrap();
    assert_eq!(epoch_a, 1);
    assert!(s
        .persist(vec![], vec![lease(upto_a + 32, epoch_a)])
        .await
        .unwrap()
        .is_empty());
    // Node B loads it too (the membership moved it): a fresh lease above A's, epoch 2...
    let (floor_b, upto_b, epoch_b) = s.take_lease(ConvId(12), 64).await.unwrap().unwrap();
    assert_eq!((floor_b, epoch_b), (upto_a + 32, 2));
    // ...and A's next extension is refused (and changes nothing), B's is not.
    let fenced = s
        .persist(vec![], vec![lease(upto_b + 500, epoch_a)])
        .await
        .unwrap();
    assert_eq!(fenced, vec![ConvId(12)]);
    let info = s.load_conv(ConvId(12), 1, 1).await.unwrap().unwrap();
    assert_eq!((info.seq_lease, info.epoch), (upto_b, 2));
    let fenced = s
        .persist(vec![], vec![lease(upto_b + 10, epoch_b)])
        .await
        .unwrap();
    assert!(fenced.is_empty());
}

async fn reads_forward_take_the_oldest(s: Store) {
    let batch: Vec<StoredMessage> = (1..=30).map(|i| msg(11, i, "v", &i.to_string())).collect();
    s.persist(batch, vec![opened(11, 1)]).await.unwrap();
    let seqs = |v: Vec<StoredMessage>| v.iter().map(|m| m.seq).collect::<Vec<_>>();
    let forward = s.read(ConvId(11), 10, 25, 4, From::Oldest).await.unwrap();
    assert_eq!(seqs(forward), vec![11, 12, 13, 14]);
    let back = s.read(ConvId(11), 10, 25, 4, From::Newest).await.unwrap();
    assert_eq!(seqs(back), vec![21, 22, 23, 24]);
}

async fn the_open_listing_pages_through_every_conversation_once(s: Store) {
    // Ids across the whole u64 range (stored as signed 64-bit).
    let ids: Vec<u64> = (0..25u64)
        .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .collect();
    s.persist(vec![], ids.iter().map(|&c| opened(c, 1)).collect())
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = s.open_conversations(after, 7).await.unwrap();
        assert!(page.len() <= 7);
        seen.extend(page.iter().map(|o| o.conv.0));
        if page.len() < 7 {
            break;
        }
        after = page.last().map(|o| o.conv);
    }
    let mut want = ids.clone();
    want.sort_unstable();
    seen.sort_unstable();
    assert_eq!(seen, want, "each open conversation once");
}

async fn events_in_one_batch_end_as_if_applied_one_by_one(s: Store) {
    let assigned = |conv, agent: &str| ConvEvent::Assigned {
        conv: ConvId(conv),
        agent: agent.into(),
        ts: 2,
    };
    let closed = |conv, by: &str| ConvEvent::Closed {
        conv: ConvId(conv),
        by: by.into(),
        ts: 3,
    };
    // Many conversations in one batch (PostgreSQL writes each kind with one statement).
    let mut events: Vec<ConvEvent> = (100..300).map(|c| opened(c, c + 1000)).collect();
    events.extend([
        opened(5, 50),
        opened(5, 51),
        assigned(5, "ann"),
        assigned(5, "bob"),
        closed(5, "bob"),
        closed(5, "carl"),
        opened(6, 50),
        assigned(6, "ann"),
        assigned(7, "ann"),
    ]);
    events.extend((100..300).map(|c| assigned(c, "dee")));
    s.persist(vec![], events).await.unwrap();
    let five = s.load_conv(ConvId(5), 0, 0).await.unwrap().unwrap();
    assert_eq!(
        (five.visitor, five.agent.as_deref(), five.closed),
        (VisitorId(50), Some("bob"), true),
        "first open, last assignment, closed"
    );
    let six = s.load_conv(ConvId(6), 0, 0).await.unwrap().unwrap();
    assert_eq!((six.agent.as_deref(), six.closed), (Some("ann"), false));
    assert_eq!(
        s.load_conv(ConvId(7), 0, 0).await.unwrap(),
        None,
        "never opened"
    );
    let open = s.open_conversations(None, 1000).await.unwrap();
    assert_eq!(open.len(), 201, "6 and 100..300");
    assert!(open
        .iter()
        .filter(|o| o.conv.0 >= 100)
        .all(|o| o.agent.as_deref() == Some("dee") && o.visitor.0 == o.conv.0 + 1000));
}

async fn open_conversations_are_listed_with_their_agents(s: Store) {
    s.persist(vec![], vec![opened(1, 10), opened(2, 20), opened(3, 30)])
        .await
        .unwrap();
    s.persist(
        vec![],
        vec![
            ConvEvent::Assigned {
                conv: ConvId(2),
                agent: "ann".into(),
                ts: 2,
            },
            ConvEvent::Closed {
                conv: ConvId(3),
                by: "bob".into(),
                ts: 3,
            },
        ],
    )
    .await
    .unwrap();
    let mut open = s.open_conversations(None, 10).await.unwrap();
    open.sort_by_key(|o| o.conv);
    let got: Vec<(u64, u64, Option<&str>)> = open
        .iter()
        .map(|o| (o.conv.0, o.visitor.0, o.agent.as_deref()))
        .collect();
    assert_eq!(got, vec![(1, 10, None), (2, 20, Some("ann"))]);
    assert_eq!(
        s.open_conversations(None, 1).await.unwrap().len(),
        1,
        "bounded"
    );
}

async fn migrations_are_idempotent(s: Store) {
    s.migrate().await.unwrap();
    s.migrate().await.unwrap();
    s.persist(vec![msg(1, 1, "v1", "a")], vec![opened(1, 9)])
        .await
        .unwrap();
    s.migrate().await.unwrap();
    assert_eq!(s.count_messages(ConvId(1)).await.unwrap(), 1);
}

async fn history_is_ordered_bounded_and_newest_first_when_limited(s: Store) {
    let batch: Vec<StoredMessage> = (1..=30)
        .rev()
        .map(|i| msg(7, i, "v", &format!("c{i}")))
        .collect();
    s.persist(batch, vec![opened(7, 1)]).await.unwrap();
    s.persist(vec![msg(8, 1, "v", "other")], vec![opened(8, 2)])
        .await
        .unwrap();
    let all = s.history(ConvId(7), 0, u64::MAX, 100).await.unwrap();
    assert_eq!(
        all.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=30).collect::<Vec<_>>()
    );
    assert_eq!(all[4], msg(7, 5, "v", "c5"), "every field round-trips");
    let page = s.history(ConvId(7), 0, 21, 5).await.unwrap();
    assert_eq!(
        page.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![16, 17, 18, 19, 20]
    );
    let after = s.history(ConvId(7), 27, u64::MAX, 100).await.unwrap();
    assert_eq!(
        after.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![28, 29, 30]
    );
    assert!(s
        .history(ConvId(99), 0, u64::MAX, 10)
        .await
        .unwrap()
        .is_empty());
}

async fn replayed_batches_store_nothing_twice(s: Store) {
    let batch = vec![
        msg(3, 1, "v", "a"),
        msg(3, 2, "ann", "a"),
        msg(3, 3, "v", "b"),
    ];
    s.persist(batch.clone(), vec![opened(3, 5)]).await.unwrap();
    s.persist(batch.clone(), vec![opened(3, 5)]).await.unwrap();
    // The same client message under another seq (a resend after a crash) is not stored again.
    s.persist(vec![msg(3, 4, "v", "a")], vec![]).await.unwrap();
    let got = s.history(ConvId(3), 0, u64::MAX, 10).await.unwrap();
    assert_eq!(got, batch);
}

async fn conversations_load_with_their_state_and_recent_messages(s: Store) {
    assert_eq!(s.load_conv(ConvId(4), 10, 10).await.unwrap(), None);
    s.persist(vec![], vec![opened(4, 77)]).await.unwrap();
    let info = s.load_conv(ConvId(4), 10, 10).await.unwrap().unwrap();
    assert_eq!(
        (info.visitor, info.agent.clone(), info.closed, info.last_seq),
        (VisitorId(77), None, false, 0)
    );
    let msgs: Vec<StoredMessage> = (1..=12).map(|i| msg(4, i, "v", &i.to_string())).collect();
    s.persist(
        msgs,
        vec![ConvEvent::Assigned {
            conv: ConvId(4),
            agent: "ann".into(),
            ts: 2,
        }],
    )
    .await
    .unwrap();
    let info = s.load_conv(ConvId(4), 5, 5).await.unwrap().unwrap();
    assert_eq!(
        (info.agent.as_deref(), info.closed, info.last_seq),
        (Some("ann"), false, 12)
    );
    assert_eq!(
        info.recent.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![8, 9, 10, 11, 12]
    );
    s.persist(
        vec![],
        vec![ConvEvent::Closed {
            conv: ConvId(4),
            by: "ann".into(),
            ts: 3,
        }],
    )
    .await
    .unwrap();
    assert!(s.load_conv(ConvId(4), 0, 0).await.unwrap().unwrap().closed);
}

async fn ids_use_all_64_bits(s: Store) {
    let big = u64::MAX - 5;
    s.persist(vec![msg(big, 1, "v", "x")], vec![opened(big, u64::MAX)])
        .await
        .unwrap();
    let info = s.load_conv(ConvId(big), 1, 1).await.unwrap().unwrap();
    assert_eq!(info.visitor, VisitorId(u64::MAX));
    assert_eq!(info.recent[0].conv, ConvId(big));
}

/// Sites, search, ratings and reports: the queries written once for both databases.
async fn the_domain_is_scoped_by_site_searched_rated_and_reported(s: Store) {
    use storage_bridge::store::{ConvFilter, SiteRow};
    let day = 86_400_000i64;
    let open = |conv: u64, visitor: u64, ts: i64, site: Option<&str>| ConvEvent::Opened {
        conv: ConvId(conv),
        visitor: VisitorId(visitor),
        ts: ts as u64,
        lease: 0,
        site: site.map(str::to_owned),
    };
    let said = |conv: u64, seq: u64, sender: &str, body: &str, ts: i64| StoredMessage {
        conv: ConvId(conv),
        seq,
        sender: sender.into(),
        cid: format!("c{seq}"),
        body: body.into(),
        ts: ts as u64,
    };
    let t0 = 20_000 * day;
    s.persist(
        vec![
            said(1, 1, "v1", "Where is my REFUND?", t0),
            said(1, 2, "sue", "Looking", t0 + 30_000),
            said(2, 1, "v2", "50% off_sale?", t0 + day),
            said(3, 1, "v3", "refund please", t0),
        ],
        vec![
            open(1, 11, t0, Some("shop")),
            open(2, 12, t0 + day, Some("shop")),
            open(3, 13, t0, None),
            ConvEvent::Assigned {
                conv: ConvId(1),
                agent: "sue".into(),
                ts: (t0 + 1000) as u64,
            },
            ConvEvent::Closed {
                conv: ConvId(1),
                by: "sue".into(),
                ts: (t0 + 60_000) as u64,
            },
        ],
    )
    .await
    .unwrap();
    // The site rides with the conversation to the gateway.
    let info = s.load_conv(ConvId(1), 10, 10).await.unwrap().unwrap();
    assert_eq!(info.site.as_deref(), Some("shop"));
    let listed = s.open_conversations(None, 10).await.unwrap();
    let site_of = |c: u64| {
        listed
            .iter()
            .find(|o| o.conv == ConvId(c))
            .unwrap()
            .site
            .clone()
    };
    assert_eq!((site_of(2), site_of(3)), (Some("shop".into()), None));

    let search = |f: ConvFilter| {
        let s = &s;
        async move {
            let mut ids: Vec<u64> = s
                .conversations(&f, None, 100)
                .await
                .unwrap()
                .iter()
                .map(|c| c.id.0)
                .collect();
            ids.sort();
            ids
        }
    };
    let shop = |f: ConvFilter| ConvFilter {
        site: "shop".into(),
        status: "all".into(),
        ..f
    };
    assert_eq!(search(shop(ConvFilter::default())).await, vec![1, 2]);
    let default_site = ConvFilter {
        site: "default".into(),
        status: "all".into(),
        ..Default::default()
    };
    assert_eq!(search(default_site).await, vec![3], "nothing crosses sites");
    let text = |t: &str| {
        shop(ConvFilter {
            text: t.into(),
            ..Default::default()
        })
    };
    assert_eq!(
        search(text("refund")).await,
        vec![1],
        "case-insensitive, site-bound"
    );
    assert_eq!(search(text("50%")).await, vec![2]);
    assert_eq!(search(text("0% o")).await, vec![2]);
    assert_eq!(
        search(text("5_%")).await,
        Vec::<u64>::new(),
        "wildcards are literal"
    );
    let closed = shop(ConvFilter {
        status: "closed".into(),
        ..Default::default()
    });
    assert_eq!(
        search(ConvFilter {
            status: "closed".into(),
            ..closed
        })
        .await,
        vec![1]
    );
    let by_visitor = shop(ConvFilter {
        visitor: Some(VisitorId(12)),
        ..Default::default()
    });
    assert_eq!(search(by_visitor).await, vec![2]);
    let dated = shop(ConvFilter {
        from_ms: Some(t0 + day / 2),
        to_ms: Some(t0 + 2 * day),
        ..Default::default()
    });
    assert_eq!(search(dated).await, vec![2]);
    s.set_tags(ConvId(2), vec!["vip".into()]).await.unwrap();
    let tagged = shop(ConvFilter {
        tag: "vip".into(),
        ..Default::default()
    });
    assert_eq!(search(tagged).await, vec![2]);

    // Ratings: a second replaces the first.
    s.put_rating(ConvId(1), 2, None, t0).await.unwrap();
    s.put_rating(ConvId(1), 4, Some("quick".into()), t0)
        .await
        .unwrap();
    s.set_context(ConvId(1), r#"{"page":"/cart"}"#)
        .await
        .unwrap();
    let row = s.conversation(ConvId(1)).await.unwrap().unwrap();
    assert_eq!(
        (
            row.rating,
            row.rating_comment.as_deref(),
            row.context.as_deref()
        ),
        (Some(4), Some("quick"), Some(r#"{"page":"/cart"}"#))
    );

    // Reports: per day, and per agent (first response 30 s, resolution 60 s, CSAT 4).
    let r = s.report("shop", t0, t0 + 7 * day).await.unwrap();
    assert_eq!(r.per_day, vec![(t0 / day, 1), (t0 / day + 1, 1)]);
    assert_eq!(r.per_agent.len(), 1);
    let sue = &r.per_agent[0];
    assert_eq!(
        (sue.agent.as_str(), sue.conversations, sue.closed),
        ("sue", 1, 1)
    );
    assert_eq!(sue.first_response_ms, Some(30_000.0));
    assert_eq!(sue.resolution_ms, Some(60_000.0));
    assert_eq!((sue.csat, sue.ratings), (Some(4.0), 1));
    assert_eq!(
        s.report("blog", t0, t0 + day).await.unwrap(),
        Default::default()
    );

    // Visitor profiles are per site.
    s.put_profile("shop", VisitorId(11), "cust-1", r#"{"name":"Ada"}"#)
        .await
        .unwrap();
    assert!(s.profile("shop", VisitorId(11)).await.unwrap().is_some());
    assert_eq!(s.profile("default", VisitorId(11)).await.unwrap(), None);

    // Canned replies: the site's, a team's, an agent's own.
    use storage_bridge::store::CannedRow;
    let reply = |id: &str, team: Option<&str>, owner: Option<&str>| CannedRow {
        id: id.into(),
        site: "shop".into(),
        team: team.map(str::to_owned),
        owner: owner.map(str::to_owned),
        shortcut: format!("/{id}"),
        body: "b".into(),
        created_at: 1,
    };
    for r in [
        reply("all", None, None),
        reply("billing", Some("billing"), None),
        reply("sales", Some("sales"), None),
        reply("mine", None, Some("sue")),
        reply("theirs", None, Some("bob")),
    ] {
        s.put_canned(r).await.unwrap();
    }
    let ids = |rows: Vec<CannedRow>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let sue = s
        .canned_for("shop", "sue", &["billing".into()])
        .await
        .unwrap();
    assert_eq!(ids(sue), vec!["all", "billing", "mine"]);
    let nobody = s.canned_for("shop", "eve", &[]).await.unwrap();
    assert_eq!(ids(nobody), vec!["all"]);
    assert!(s
        .canned_for("default", "sue", &[])
        .await
        .unwrap()
        .is_empty());

    // Sites.
    let site = SiteRow {
        id: "shop".into(),
        name: "The Shop".into(),
        visitor_secret: "s3cret".into(),
        origins: vec!["https://shop.example".into()],
        teams: vec!["billing".into(), "sales".into()],
        hours: "mon-fri 09:00-17:00".into(),
        welcome_text: Some("Hi".into()),
        offline_text: None,
        created_at: 5,
    };
    s.put_site(site.clone()).await.unwrap();
    assert_eq!(s.site("shop").await.unwrap(), Some(site.clone()));
    let mut changed = site.clone();
    changed.origins.clear();
    changed.offline_text = Some("Back soon".into());
    s.put_site(changed.clone()).await.unwrap();
    assert_eq!(s.sites().await.unwrap(), vec![changed]);
    assert!(s.delete_site("shop").await.unwrap());
    assert!(!s.delete_site("shop").await.unwrap());
    assert_eq!(s.site("shop").await.unwrap(), None);
}
