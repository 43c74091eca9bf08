//! The bridge as a process: its Unix-socket protocol, refusals, stale sockets, the HTTP API,
//! the Redis cache and its fallback, and durability across SIGKILL.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;
use switchboard_protocol::bridge::{
    decode, encode, BridgeMsg, ConvEvent, StoredMessage, BRIDGE_PROTOCOL_VERSION,
};
use switchboard_protocol::token::{TokenKind, TokenSigner};
use switchboard_protocol::{ConvId, VisitorId};
use switchboard_test_support::bridge::socket_in;
use switchboard_test_support::{eventually, http, temp_dir, Bridge, RedisProc, TIMEOUT};

const SECRET: &str = "bridge test secret, long enough";

/// A bridge in `dir` with the test's token secret and `extra` flags, its warnings shown.
fn start(dir: &Path, extra: &[&str]) -> Bridge {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("secret"), SECRET).unwrap();
    Bridge::builder(dir).args(extra).log("warn").start()
}

fn tempdir(name: &str) -> PathBuf {
    temp_dir(&format!("bridge-{name}"))
}

/// A raw link client.
struct Link {
    s: UnixStream,
    buf: Vec<u8>,
}

impl Link {
    fn connect(path: &Path) -> Link {
        let s = UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Link { s, buf: Vec::new() }
    }

    fn hello(path: &Path) -> Link {
        let mut l = Link::connect(path);
        l.send(&BridgeMsg::Hello {
            version: BRIDGE_PROTOCOL_VERSION,
            shard: 0,
            node: 0,
            shards: 1,
        });
        assert_eq!(
            l.recv(),
            Some(BridgeMsg::Welcome {
                version: BRIDGE_PROTOCOL_VERSION,
                bot: switchboard_protocol::bridge::BotMode::Off,
                disabled: Vec::new(),
                sites: Vec::new(),
            })
        );
        l
    }

    fn send(&mut self, m: &BridgeMsg) {
        let mut out = Vec::new();
        encode(m, &mut out).unwrap();
        self.s.write_all(&out).unwrap();
    }

    /// The next message, or None at EOF.
    fn recv(&mut self) -> Option<BridgeMsg> {
        loop {
            if let Some(m) = decode(&mut self.buf).unwrap() {
                return Some(m);
            }
            let mut chunk = [0u8; 65536];
            let n = self.s.read(&mut chunk).unwrap_or(0);
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

fn msg(conv: u64, seq: u64) -> StoredMessage {
    StoredMessage {
        conv: ConvId(conv),
        seq,
        sender: "v00000000000000aa".into(),
        cid: format!("c{seq}"),
        body: format!("m{seq}"),
        ts: seq,
    }
}

fn persist(req: u64, conv: u64, seqs: std::ops::RangeInclusive<u64>) -> BridgeMsg {
    let events = if *seqs.start() == 1 {
        vec![ConvEvent::Opened {
            conv: ConvId(conv),
            visitor: VisitorId(0xaa),
            ts: 1,
            lease: 64,
            site: None,
        }]
    } else {
        vec![]
    };
    BridgeMsg::Persist {
        req,
        messages: seqs.map(|s| msg(conv, s)).collect(),
        events,
    }
}

/// Reads that could outgrow a frame come back in pages: ~18 MB of 60 KB messages, read
/// forward from the start, arrive in order over pages of at most PAGE_BYTES, each saying
/// whether there is more; a load fits its recent messages into half a page.
#[test]
fn large_reads_come_back_in_pages_that_fit_a_frame() {
    use switchboard_protocol::bridge::PAGE_BYTES;
    let dir = tempdir("pages");
    let b = Bridge::start(&dir);
    let mut l = Link::hello(&b.socket);
    let body = "é\"".repeat(20_000); // 60,000 bytes, 80,000 as JSON
    for chunk in 0..30u64 {
        let mut m = persist(chunk + 1, 5, chunk * 10 + 1..=chunk * 10 + 10);
        if let BridgeMsg::Persist { messages, .. } = &mut m {
            for x in messages.iter_mut() {
                x.body = body.clone();
            }
        }
        l.send(&m);
        assert_eq!(l.recv(), Some(BridgeMsg::Persisted { req: chunk + 1 }));
    }
    let (mut after, mut seen, mut pages) = (0u64, Vec::new(), 0);
    loop {
        l.send(&BridgeMsg::History {
            req: 100 + pages,
            conv: ConvId(5),
            after,
            before: u64::MAX,
            limit: 1000,
            oldest_first: true,
            bytes: u32::MAX,
        });
        let Some(BridgeMsg::HistoryIs { messages, more, .. }) = l.recv() else {
            panic!("no page")
        };
        pages += 1;
        let bytes: usize = messages.iter().map(|m| m.encoded_len()).sum();
        assert!(bytes <= PAGE_BYTES, "page of {bytes} bytes");
        seen.extend(messages.iter().map(|m| m.seq));
        after = messages.last().map_or(after, |m| m.seq);
        if !more {
            break;
        }
    }
    assert_eq!(seen, (1..=300).collect::<Vec<_>>(), "all, in order, once");
    assert!(pages >= 3, "{pages} pages");
    l.send(&BridgeMsg::LoadConv {
        req: 999,
        conv: ConvId(5),
        recent: 256,
        cids: 1024,
        lease: 64,
    });
    let Some(BridgeMsg::ConvLoaded {
        info: Some(info), ..
    }) = l.recv()
    else {
        panic!("no load")
    };
    let bytes: usize = info.recent.iter().map(|m| m.encoded_len()).sum();
    assert!(bytes <= PAGE_BYTES / 2 && !info.recent.is_empty());
    assert_eq!(
        info.recent.last().map(|m| m.seq),
        Some(300),
        "the newest kept"
    );
    assert_eq!(info.cids.len(), 300, "every cid (they are small)");
}

#[test]
fn the_link_persists_loads_and_pages_history() {
    let dir = tempdir("link");
    let b = start(&dir, &[]);
    let mut l = Link::hello(&b.socket);
    l.send(&persist(1, 7, 1..=5));
    l.send(&persist(2, 7, 6..=9));
    assert_eq!(l.recv(), Some(BridgeMsg::Persisted { req: 1 }));
    assert_eq!(l.recv(), Some(BridgeMsg::Persisted { req: 2 }));
    l.send(&BridgeMsg::LoadConv {
        req: 3,
        conv: ConvId(7),
        recent: 3,
        cids: 5,
        lease: 100,
    });
    let Some(BridgeMsg::ConvLoaded {
        req: 3,
        info: Some(info),
        ..
    }) = l.recv()
    else {
        panic!()
    };
    assert_eq!(
        (
            info.visitor,
            info.last_seq,
            info.recent.len(),
            info.cids.len()
        ),
        (VisitorId(0xaa), 9, 3, 5)
    );
    // Seqs up to the opening lease (64) may have been shown: the load leases above them.
    assert_eq!((info.seq_floor, info.seq_lease), (64, 164));
    l.send(&BridgeMsg::History {
        req: 4,
        conv: ConvId(7),
        after: 2,
        before: 6,
        limit: 10,
        oldest_first: false,
        bytes: 1 << 20,
    });
    let Some(BridgeMsg::HistoryIs {
        req: 4, messages, ..
    }) = l.recv()
    else {
        panic!()
    };
    assert_eq!(
        messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    // The socket and the database are owner-only.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&b.socket).unwrap().permissions().mode() & 0o777,
        0o600
    );
    for f in ["switchboard.db", "switchboard.db-wal"] {
        assert_eq!(
            std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777,
            0o600,
            "{f}"
        );
    }
}

#[test]
fn a_wrong_version_or_bad_frames_are_refused_and_the_bridge_keeps_serving() {
    let dir = tempdir("refuse");
    let b = start(&dir, &[]);
    let mut l = Link::connect(&b.socket);
    l.send(&BridgeMsg::Hello {
        version: 99,
        shard: 0,
        node: 0,
        shards: 1,
    });
    let Some(BridgeMsg::Refuse { reason }) = l.recv() else {
        panic!("refused")
    };
    assert!(reason.contains("99"), "{reason}");
    assert_eq!(l.recv(), None, "closed after refusing");

    // A gateway in a cluster, to a bridge that is not in one: refused, saying why.
    let mut l = Link::connect(&b.socket);
    l.send(&BridgeMsg::Hello {
        version: BRIDGE_PROTOCOL_VERSION,
        shard: 0,
        node: 7,
        shards: 1,
    });
    let Some(BridgeMsg::Refuse { reason }) = l.recv() else {
        panic!("refused")
    };
    assert!(reason.contains("--cluster-redis"), "{reason}");

    let mut l = Link::hello(&b.socket);
    l.s.write_all(&[0, 0, 0, 5, b'{', b'o', b'o', b'p', b's'])
        .unwrap();
    let Some(BridgeMsg::Refuse { reason }) = l.recv() else {
        panic!("refused")
    };
    assert!(reason.contains("bad frame"), "{reason}");

    let mut l = Link::hello(&b.socket);
    l.s.write_all(&u32::MAX.to_be_bytes()).unwrap();
    assert!(matches!(l.recv(), Some(BridgeMsg::Refuse { .. })));

    let mut l = Link::hello(&b.socket);
    l.send(&persist(1, 1, 1..=1));
    assert_eq!(
        l.recv(),
        Some(BridgeMsg::Persisted { req: 1 }),
        "still serving"
    );
}

#[test]
fn a_stale_socket_file_is_replaced_and_a_live_one_is_not() {
    let dir = tempdir("stale");
    std::fs::create_dir_all(&dir).unwrap();
    // A crash leaves a socket file nobody listens on.
    drop(std::os::unix::net::UnixListener::bind(socket_in(&dir)).unwrap());
    let b = start(&dir, &[]);
    Link::hello(&b.socket);
    // A second bridge on the same socket refuses to start.
    let out = Bridge::builder(&dir.join("other"))
        .socket(&b.socket)
        .http("")
        .command()
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use by a running bridge"));
}

#[test]
fn a_database_migrated_by_a_newer_bridge_is_refused_and_left_alone() {
    let dir = tempdir("newer");
    let mut b = start(&dir, &[]);
    let mut l = Link::hello(&b.socket);
    persisted(&mut l, 2, 1..=3);
    b.kill9();
    let db = rusqlite::Connection::open(dir.join("switchboard.db")).unwrap();
    db.execute(
        "INSERT INTO schema_migrations (version, applied_at) VALUES (99, 0)",
        [],
    )
    .unwrap();
    drop(db);
    let out = Bridge::builder(&dir).http("").command().output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("schema is at version 99, newer than this bridge knows"),
        "{stderr}"
    );
    // Nothing was changed: an older bridge taken out of service again finds it as it was.
    let db = rusqlite::Connection::open(dir.join("switchboard.db")).unwrap();
    let (versions, messages): (i64, i64) = db
        .query_row(
            "SELECT (SELECT COUNT(*) FROM schema_migrations), (SELECT COUNT(*) FROM messages)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let ours = storage_bridge::store::MIGRATIONS.len() as i64;
    assert_eq!((versions, messages), (ours + 1, 3));
}

#[test]
fn confirmed_writes_survive_sigkill() {
    let dir = tempdir("kill");
    let mut b = start(&dir, &[]);
    let mut l = Link::hello(&b.socket);
    for r in 0..50u64 {
        l.send(&persist(r + 1, 3, r * 10 + 1..=r * 10 + 10));
    }
    for r in 0..50u64 {
        assert_eq!(l.recv(), Some(BridgeMsg::Persisted { req: r + 1 }));
    }
    b.kill9();
    let b = start(&dir, &[]);
    let mut l = Link::hello(&b.socket);
    l.send(&BridgeMsg::History {
        req: 1,
        conv: ConvId(3),
        after: 0,
        before: u64::MAX,
        limit: 10_000,
        oldest_first: false,
        bytes: 1 << 20,
    });
    let Some(BridgeMsg::HistoryIs { messages, .. }) = l.recv() else {
        panic!()
    };
    assert_eq!(
        messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=500).collect::<Vec<_>>()
    );
}

#[test]
fn a_full_database_is_an_error_that_is_retried_and_nothing_is_confirmed() {
    let dir = tempdir("full");
    // Room for the schema (about 30 pages) and a few of the 60 KB messages, not all six.
    let b = start(&dir, &["--sqlite-max-bytes", "300000"]);
    let mut l = Link::hello(&b.socket);
    let big = |req: u64, seq: u64| BridgeMsg::Persist {
        req,
        messages: vec![StoredMessage {
            body: "x".repeat(60_000),
            ..msg(5, seq)
        }],
        events: vec![],
    };
    l.send(&big(1, 1));
    assert_eq!(l.recv(), Some(BridgeMsg::Persisted { req: 1 }));
    for i in 2..=6 {
        l.send(&big(i, i));
    }
    // The store fills up: no confirmation arrives for what did not fit.
    l.s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut confirmed = vec![1];
    while let Some(BridgeMsg::Persisted { req }) = l.recv() {
        confirmed.push(req);
    }
    assert!(
        confirmed.len() < 6,
        "some writes must not fit: {confirmed:?}"
    );
    // The bridge is still alive and says why in its metrics.
    let (status, body) = http_get(b.http_addr(), "/metrics", &[]);
    assert_eq!(status, 200);
    assert!(body.contains("bridge_store_errors_total"), "{body}");
    // Everything confirmed is there.
    let mut l2 = Link::hello(&b.socket);
    l2.send(&BridgeMsg::History {
        req: 9,
        conv: ConvId(5),
        after: 0,
        before: u64::MAX,
        limit: 100,
        oldest_first: false,
        bytes: 1 << 20,
    });
    let Some(BridgeMsg::HistoryIs { messages, .. }) = l2.recv() else {
        panic!()
    };
    assert!(messages.len() >= confirmed.len());
}

/// GET over plain HTTP/1.1; returns (status, body as lossy text).
fn http_get(addr: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let r = http::get(addr, path, headers);
    (r.status, r.text())
}

#[test]
fn the_http_api_serves_history_to_agents_compressed_with_zstd() {
    let dir = tempdir("http");
    let b = start(&dir, &[]);
    let mut l = Link::hello(&b.socket);
    l.send(&persist(1, 0xabc, 1..=30));
    assert_eq!(l.recv(), Some(BridgeMsg::Persisted { req: 1 }));
    let addr = b.http.clone().unwrap();
    let signer = TokenSigner::new(SECRET.as_bytes()).unwrap();
    let token = signer.mint(TokenKind::Agent, "ann", u32::MAX as u64);
    let auth = format!("Bearer {token}");
    let path = format!(
        "/api/v1/conversations/{}/messages?before=21&limit=5",
        ConvId(0xabc)
    );

    assert_eq!(http_get(&addr, &path, &[]).0, 401);
    let visitor_token = format!(
        "Bearer {}",
        signer.mint(TokenKind::Visitor, "v00000000000000aa", u32::MAX as u64)
    );
    assert_eq!(
        http_get(&addr, &path, &[("Authorization", &visitor_token)]).0,
        401
    );
    assert_eq!(
        http_get(
            &addr,
            "/api/v1/conversations/nope/messages",
            &[("Authorization", &auth)]
        )
        .0,
        400
    );

    let (status, body) = http_get(&addr, &path, &[("Authorization", &auth)]);
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let seqs: Vec<u64> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![16, 17, 18, 19, 20]);
    assert_eq!(v["messages"][0]["from"], "v00000000000000aa");

    let http::Response {
        status,
        head,
        body: z,
    } = http::get(
        &addr,
        &path,
        &[("Authorization", &auth), ("Accept-Encoding", "gzip, zstd")],
    );
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase().contains("content-encoding: zstd"),
        "{head}"
    );
    let plain = zstd::bulk::decompress(&z, 1 << 20).unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&plain).unwrap(),
        v
    );
    assert_eq!(http_get(&addr, "/healthz", &[]), (200, "ok\n".into()));
}

/// The seqs of conversation `conv`'s newest `limit` messages below `before`.
fn history_seqs(l: &mut Link, conv: u64, before: u64, limit: u32) -> Vec<u64> {
    l.send(&BridgeMsg::History {
        req: 1_000,
        conv: ConvId(conv),
        after: 0,
        before,
        limit,
        oldest_first: false,
        bytes: 1 << 20,
    });
    let Some(BridgeMsg::HistoryIs { messages, .. }) = l.recv() else {
        panic!("no history")
    };
    messages.iter().map(|m| m.seq).collect()
}

fn persisted(l: &mut Link, conv: u64, seqs: std::ops::RangeInclusive<u64>) {
    let req = *seqs.end();
    l.send(&persist(req, conv, seqs));
    assert_eq!(l.recv(), Some(BridgeMsg::Persisted { req }));
}

/// A counter's value on the bridge's /metrics (0 when not exported yet).
fn counter(b: &Bridge, name: &str) -> u64 {
    b.metric(name, &[]) as u64
}

#[test]
fn the_cache_answers_only_for_what_this_process_wrote_into_it() {
    let dir = tempdir("cache-restarts");
    let redis = RedisProc::start();
    let url = redis.url();
    let with_redis = ["--redis-url", url.as_str()];
    let mut a = start(&dir, &with_redis);
    let mut l = Link::hello(&a.socket);
    persisted(&mut l, 9, 1..=100);
    assert_eq!(
        history_seqs(&mut l, 9, u64::MAX, 5),
        vec![96, 97, 98, 99, 100]
    );
    assert_eq!(counter(&a, "bridge_cache_hits_total"), 1);
    a.kill9();
    // Messages stored while no bridge wrote to the cache...
    let mut b = start(&dir, &[]);
    let mut l = Link::hello(&b.socket);
    persisted(&mut l, 9, 101..=200);
    b.kill9();
    // ...must not be hidden by what the first bridge cached.
    let c = start(&dir, &with_redis);
    let mut l = Link::hello(&c.socket);
    assert_eq!(
        history_seqs(&mut l, 9, 150, 10),
        (140..150).collect::<Vec<_>>()
    );
    assert_eq!(history_seqs(&mut l, 9, u64::MAX, 3), vec![198, 199, 200]);
    assert_eq!(counter(&c, "bridge_cache_hits_total"), 0);
    // What this bridge writes it serves from the cache.
    persisted(&mut l, 9, 201..=210);
    assert_eq!(history_seqs(&mut l, 9, u64::MAX, 3), vec![208, 209, 210]);
    assert_eq!(counter(&c, "bridge_cache_hits_total"), 1);
    // The first bridge's keys are deleted in the background.
    eventually(
        "the first bridge's keys (sb:e1:*) to be deleted",
        TIMEOUT,
        || redis.keys("sb:*"),
        |keys| !keys.iter().any(|k| k.starts_with("sb:e1:")),
    );
    assert!(!redis.keys("sb:e2:*").is_empty());
}

#[test]
fn a_bridge_started_before_redis_uses_it_later_and_never_trusts_a_restored_snapshot() {
    let dir = tempdir("cache-late");
    let mut redis = RedisProc::reserve();
    let url = redis.url();
    let b = start(&dir, &["--redis-url", url.as_str()]);
    let mut l = Link::hello(&b.socket);
    persisted(&mut l, 4, 1..=10);
    assert_eq!(history_seqs(&mut l, 4, u64::MAX, 3), vec![8, 9, 10]);
    redis.run();
    // The bridge connects within a few seconds; every answer is right meanwhile.
    let mut last = 10;
    let mut hits_or_write_more = || {
        let hits = counter(&b, "bridge_cache_hits_total");
        if hits == 0 {
            persisted(&mut l, 4, last + 1..=last + 10);
            last += 10;
            assert_eq!(
                history_seqs(&mut l, 4, u64::MAX, 3),
                vec![last - 2, last - 1, last]
            );
        }
        hits
    };
    eventually(
        "the bridge to use Redis (a cache hit)",
        Duration::from_secs(20),
        &mut hits_or_write_more,
        |hits| *hits > 0,
    );
    // Redis goes back to a snapshot that misses the newest messages, without dropping
    // the connection: the cached list looks whole, but the bridge must not trust it.
    assert_eq!(redis.cmd("SAVE").as_deref(), Some("+OK"));
    persisted(&mut l, 4, last + 1..=last + 10);
    last += 10;
    assert_eq!(
        redis.cmd("DEBUG RELOAD NOSAVE").as_deref(),
        Some("+OK"),
        "redis could not reload its snapshot"
    );
    let hits = counter(&b, "bridge_cache_hits_total");
    assert_eq!(
        history_seqs(&mut l, 4, u64::MAX, 3),
        vec![last - 2, last - 1, last]
    );
    assert_eq!(counter(&b, "bridge_cache_hits_total"), hits);
    assert_eq!(counter(&b, "bridge_cache_resets_total"), 1);
    // A new namespace follows, and the cache is used again.
    let before = hits;
    let mut hits_or_write_more = || {
        let hits = counter(&b, "bridge_cache_hits_total");
        if hits == before {
            persisted(&mut l, 4, last + 1..=last + 10);
            last += 10;
            assert_eq!(
                history_seqs(&mut l, 4, u64::MAX, 3),
                vec![last - 2, last - 1, last]
            );
        }
        hits
    };
    eventually(
        "the bridge to use Redis again",
        Duration::from_secs(20),
        &mut hits_or_write_more,
        |hits| *hits > before,
    );
}
