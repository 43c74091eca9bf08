//! Sites end to end: one deployment serving two websites. The deployment's admin makes a
//! site and its agent over the API; a visitor of the site reaches that site's agent only;
//! an agent of one site cannot see the other's conversations over the API; the site's back
//! end signs a customer id and the customer gets a visitor identity of that site; unknown
//! sites and foreign page origins are refused at the door; the site's greeting and offline
//! text reach its visitors. Real gateway, bridge, clients.

use serde_json::{json, Value};
use switchboard_test_support::raw_ws::Raw;
use switchboard_test_support::{eventually, free_addr, http, temp_dir, Client, Gateway, TIMEOUT};

fn json_of(r: &http::Response) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|_| panic!("JSON: {}", r.text()))
}

/// The status an upgrade to `path` gets, with `origin` if given.
fn upgrade_status(gw: &Gateway, path: &str, origin: Option<&str>) -> u16 {
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    let head = Raw::connect(gw.addr).request(&format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{origin}\r\n"
    ));
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_crosses_sites() {
    let dir = temp_dir("sites");
    let api = free_addr();
    let gw = Gateway::builder()
        .data_dir(&dir)
        .bridge_http(&api)
        .args(&["--agent-capacity", "5"])
        .start();
    let root = switchboard_test_support::accounts::admin_bearer(&dir, &api);
    let auth = |b: &str| vec![("Authorization", b.to_owned())];
    let post = |bearer: &str, path: &str, body: Value| {
        let h = auth(bearer);
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        http::post(&api, path, &h, &body.to_string())
    };
    let get = |bearer: &str, path: &str| {
        let h = auth(bearer);
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        http::get(&api, path, &h)
    };

    // The deployment's admin makes the shop's site, and an agent for each site.
    let r = post(
        &root,
        "/api/v1/sites",
        json!({"id": "shop", "name": "The Shop", "origins": ["https://shop.example"],
               "welcome_text": "Welcome to the Shop!", "offline_text": "The Shop answers by e-mail."}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let secret = json_of(&r)["visitor_secret"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 64);
    let bad = post(
        &root,
        "/api/v1/sites",
        json!({"id": "x", "name": "X", "hours": "mon 9-5"}),
    );
    assert_eq!(bad.status, 400, "hours are checked");
    assert_eq!(
        post(
            &root,
            "/api/v1/sites",
            json!({"id": "shop", "name": "again"})
        )
        .status,
        409
    );
    let r = post(
        &root,
        "/api/v1/agents",
        json!({"id": "sue", "password": "sue passphrase", "site": "shop", "role": "admin"}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(json_of(&r)["site"], "shop");
    let r = post(
        &root,
        "/api/v1/agents",
        json!({"id": "ann", "password": "ann passphrase"}),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let login =
        |id: &str| switchboard_test_support::accounts::login(&api, id, &format!("{id} passphrase"));
    let (sue_t, ann_t) = (login("sue"), login("ann"));
    let bearer = |t: &Value| format!("Bearer {}", t["token"].as_str().unwrap());
    let (sue_b, ann_b) = (bearer(&sue_t), bearer(&ann_t));
    // A site's admin makes nothing for another site, nor sites.
    let r = post(
        &sue_b,
        "/api/v1/agents",
        json!({"id": "eve", "password": "eve passphrase", "site": "default"}),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(
        post(
            &sue_b,
            "/api/v1/sites",
            json!({"id": "mine", "name": "Mine"})
        )
        .status,
        403
    );
    // Webhooks carry every site's events: not for a site's admin.
    let hook =
        json!({"url": "http://127.0.0.1:9/x", "secret": "0123456789abcdef", "events": ["message"]});
    assert_eq!(post(&sue_b, "/api/v1/webhooks", hook).status, 403);
    let listed = json_of(&get(&sue_b, "/api/v1/sites"));
    assert_eq!(listed["sites"].as_array().unwrap().len(), 1);
    assert_eq!(listed["sites"][0]["id"], "shop");

    let agent = |t: &Value| {
        let url = gw.url(&format!("/ws/agent?token={}", t["token"].as_str().unwrap()));
        async move { Client::connect(&url).await.unwrap() }
    };
    // Ann comes first: without sites she would take the shop's visitor.
    let mut ann = agent(&ann_t).await;
    let mut sue = agent(&sue_t).await;

    // The site is known to the gateway once the bridge tells it (at once, over the link).
    eventually(
        "the gateway knows the shop",
        TIMEOUT,
        || upgrade_status(&gw, "/ws/visitor?site=shop", None),
        |s| *s == 101,
    );
    assert_eq!(upgrade_status(&gw, "/ws/visitor?site=nowhere", None), 404);
    assert_eq!(
        upgrade_status(&gw, "/ws/visitor?site=shop", Some("https://evil.example")),
        403
    );
    assert_eq!(
        upgrade_status(&gw, "/ws/visitor?site=shop", Some("https://shop.example")),
        101
    );

    let mut shopper = Client::connect(&gw.url("/ws/visitor?site=shop"))
        .await
        .unwrap();
    assert_eq!(shopper.welcome["greeting"], "Welcome to the Shop!");
    shopper.msg("m1", "is the blue one in stock?", None).await;
    let a = sue.assigned().await;
    let shop_conv = a["conv"].as_str().unwrap().to_owned();
    let mut reader = Client::connect(&gw.url("/ws/visitor")).await.unwrap();
    assert!(reader.welcome.get("greeting").is_none());
    reader.msg("m1", "a question about an article", None).await;
    let b = ann.assigned().await;
    let default_conv = b["conv"].as_str().unwrap().to_owned();
    sue.send(json!({"type":"msg","conv":shop_conv,"cid":"r1","body":"It is."}))
        .await;
    assert_eq!(shopper.expect("msg").await["body"], "It is.");

    // The shop's admin supervises: it may watch its site's conversations, not another's.
    sue.send(json!({"type":"resume","conv":default_conv,"last_seq":0}))
        .await;
    assert_eq!(sue.expect("error").await["code"], "not_in_conversation");
    sue.send(json!({"type":"whisper","conv":default_conv,"body":"psst"}))
        .await;
    assert_eq!(sue.expect("error").await["code"], "not_in_conversation");

    // Over the API each agent sees its own site's conversation, and not the other's.
    let ids = |b: &str| -> Vec<String> {
        json_of(&get(b, "/api/v1/conversations"))["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect()
    };
    eventually(
        "both conversations stored",
        TIMEOUT,
        || (ids(&sue_b), ids(&ann_b)),
        |(s, a)| *s == vec![shop_conv.clone()] && *a == vec![default_conv.clone()],
    );
    for (who, other) in [(&sue_b, &default_conv), (&ann_b, &shop_conv)] {
        for path in [
            format!("/api/v1/conversations/{other}"),
            format!("/api/v1/conversations/{other}/messages"),
        ] {
            assert_eq!(get(who, &path).status, 404, "{path}");
        }
        let r = post(
            who,
            &format!("/api/v1/conversations/{other}/notes"),
            json!({"body": "x"}),
        );
        assert_eq!(r.status, 404);
    }
    let one = json_of(&get(&sue_b, &format!("/api/v1/conversations/{shop_conv}")));
    assert_eq!(one["site"], "shop");
    // Even the deployment's admin sees only its own site's.
    assert_eq!(ids(&root), vec![default_conv.clone()]);
    // Searching by text stays within the site.
    let found = json_of(&get(&ann_b, "/api/v1/conversations?q=BLUE%20one"));
    assert_eq!(found["conversations"].as_array().unwrap().len(), 0);
    let found = json_of(&get(&sue_b, "/api/v1/conversations?q=BLUE%20one"));
    assert_eq!(found["conversations"][0]["id"], shop_conv.as_str());
    // Agents and keys, too.
    let agents = json_of(&get(&sue_b, "/api/v1/agents"));
    let names: Vec<&str> = agents["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["sue"]);
    assert_eq!(get(&sue_b, "/api/v1/agents/ann").status, 404);

    // The site's back end signs a customer's id; the customer gets a shop identity, the
    // same on every device; a wrong signature gets nothing.
    let signed = |sig: &str| {
        http::post(
            &api,
            "/api/v1/sites/shop/identify",
            &[],
            &json!({"external_id": "cust-42", "signature": sig}).to_string(),
        )
    };
    let sig = http::hmac_sha256_hex(&secret, b"cust-42");
    let t1 = json_of(&signed(&sig));
    let t2 = json_of(&signed(&sig.to_uppercase()));
    assert_eq!(t1["visitor"], t2["visitor"]);
    assert_eq!(
        signed(&http::hmac_sha256_hex("guess", b"cust-42")).status,
        401
    );
    let token = t1["token"].as_str().unwrap();
    // That token is the shop's: it cannot enter the default site's door as another site.
    assert_eq!(
        upgrade_status(&gw, &format!("/ws/visitor?token={token}&site=blog"), None),
        400
    );
    let mut customer = Client::connect(&gw.url(&format!("/ws/visitor?token={token}")))
        .await
        .unwrap();
    assert_eq!(customer.welcome["id"], t1["visitor"]);
    customer.msg("m1", "my order?", None).await;
    assert_eq!(sue.assigned().await["visitor"], t1["visitor"]);

    // With the shop's only agent gone, its next visitor leaves a message and is told the
    // shop's own text; the default site is unaffected.
    drop(sue);
    let mut late = Client::connect(&gw.url("/ws/visitor?site=shop"))
        .await
        .unwrap();
    late.msg("m1", "anyone?", None).await;
    let q = late.expect("queued").await;
    assert_eq!(
        (q["offline"].clone(), q["offline_text"].clone()),
        (json!(true), json!("The Shop answers by e-mail."))
    );

    // Deleting the site closes its door.
    let h = [("Authorization", root.as_str())];
    let r = http::request("DELETE", &api, "/api/v1/sites/shop", &h, None);
    assert_eq!(r.status, 204);
    eventually(
        "the gateway forgets the shop",
        TIMEOUT,
        || upgrade_status(&gw, "/ws/visitor?site=shop", None),
        |s| *s == 404,
    );
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}
