//! The operator's tools over REST, end to end: the visitor's widget says where it is and the
//! agent sees it; a conversation transferred and closed through the API (the gateway does
//! it, the visitor is told); the visitor rates it; the conversation read back with its
//! transcript, context and rating, exported as CSV, and counted in the reports; and the
//! browsable API documentation. Real gateway, bridge, clients.

use serde_json::{json, Value};
use switchboard_test_support::{eventually, free_addr, http, temp_dir, Client, Gateway, TIMEOUT};

fn json_of(r: &http::Response) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|_| panic!("JSON: {}", r.text()))
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_close_and_transfer_over_the_api_and_visitors_rate() {
    let dir = temp_dir("operator-api");
    let api = free_addr();
    let gw = Gateway::builder().data_dir(&dir).bridge_http(&api).start();
    let root = switchboard_test_support::accounts::admin_bearer(&dir, &api);
    for id in ["ann", "bob"] {
        let body = json!({"id": id, "password": format!("{id} passphrase")}).to_string();
        let r = http::post(&api, "/api/v1/agents", &[("Authorization", &root)], &body);
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let login =
        |id: &str| switchboard_test_support::accounts::login(&api, id, &format!("{id} passphrase"));
    let (ann_t, bob_t) = (login("ann"), login("bob"));
    let bearer = |t: &Value| format!("Bearer {}", t["token"].as_str().unwrap());
    let (ann_b, bob_b) = (bearer(&ann_t), bearer(&bob_t));
    let call = |b: &str, method: &str, path: &str, body: Option<Value>| {
        let body = body.map(|v| v.to_string());
        http::request(method, &api, path, &[("Authorization", b)], body.as_deref())
    };
    let agent = |t: &Value| {
        let url = gw.url(&format!("/ws/agent?token={}", t["token"].as_str().unwrap()));
        async move { Client::connect(&url).await.unwrap() }
    };
    let mut ann = agent(&ann_t).await;

    // The widget says where the visitor is, then the visitor writes: ann sees where.
    let mut v = Client::connect(&gw.url("/ws/visitor")).await.unwrap();
    v.send(json!({"type":"context","page":"https://shop.example/cart","referrer":"https://search.example/","user_agent":"Mozilla/5.0 (test)","lang":"fr-FR"}))
        .await;
    v.msg("m1", "my cart lost its items", None).await;
    let a = ann.assigned().await;
    assert_eq!(a["context"]["page"], "https://shop.example/cart");
    assert_eq!(a["context"]["lang"], "fr-FR");
    let conv = a["conv"].as_str().unwrap().to_owned();
    let mut bob = agent(&bob_t).await;
    // Both are online, as the API says.
    let online = |who: &str| {
        json_of(&call(&root, "GET", &format!("/api/v1/agents/{who}"), None))["online"] == true
    };
    eventually(
        "ann and bob online",
        TIMEOUT,
        || (online("ann"), online("bob")),
        |o| *o == (true, true),
    );

    // The store has it (`assigned` may reach ann before its opening batch commits, and
    // the API reads the store).
    eventually(
        "the conversation stored",
        TIMEOUT,
        || {
            call(
                &ann_b,
                "GET",
                &format!("/api/v1/conversations/{conv}"),
                None,
            )
            .status
        },
        |s| *s == 200,
    );
    // Ann hands it to bob over the API.
    let path = |what: &str| format!("/api/v1/conversations/{conv}/{what}");
    let r = call(
        &ann_b,
        "POST",
        &path("transfer"),
        Some(json!({"to": "nobody"})),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    let r = call(
        &ann_b,
        "POST",
        &path("transfer"),
        Some(json!({"to": "bob", "note": "cart bug"})),
    );
    assert_eq!(r.status, 204, "{}", r.text());
    let b = bob.assigned().await;
    assert_eq!(
        (b["conv"].as_str(), b["reason"].as_str()),
        (Some(conv.as_str()), Some("transferred by ann: cart bug"))
    );
    assert_eq!(v.expect("transferred").await["to"], "bob");
    // It is bob's now: ann may not close it (the gateway knows at once; the store, once the
    // assignment is written, hides it from her); bob may, once.
    let refused = call(&ann_b, "POST", &path("close"), None).status;
    assert!([404, 409].contains(&refused), "{refused}");
    eventually(
        "the store knows bob has it",
        TIMEOUT,
        || call(&ann_b, "POST", &path("close"), None).status,
        |s| *s == 404,
    );
    // The shop's order system posts a system message with its key; a resend is not doubled.
    let r = call(
        &root,
        "POST",
        "/api/v1/api-keys",
        Some(json!({"name": "orders", "scopes": ["messages:send"]})),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let key = format!("Bearer {}", json_of(&r)["key"].as_str().unwrap());
    let note = json!({"cid": "order-1042", "body": "Order 1042 has shipped."});
    for _ in 0..2 {
        let r = call(&key, "POST", &path("messages"), Some(note.clone()));
        assert_eq!(r.status, 202, "{}", r.text());
    }
    let sys = v.expect("msg").await;
    assert_eq!(
        (sys["from"].as_str(), sys["body"].as_str()),
        (Some("system:switchboard"), Some("Order 1042 has shipped."))
    );
    // Bob sees it after the transcript his resume replayed.
    let mut seen = bob.expect("msg").await;
    while seen["from"] != "system:switchboard" {
        seen = bob.expect("msg").await;
    }
    let no_scope = call(&key, "GET", "/api/v1/conversations", None);
    assert_eq!(no_scope.status, 403, "the key only sends");
    bob.msg("b1", "Fixed: your items are back.", Some(&conv))
        .await;
    let r = call(&bob_b, "POST", &path("close"), None);
    assert_eq!(r.status, 204, "{}", r.text());
    let closed = v.expect("closed").await;
    assert_eq!(
        (closed["conv"].as_str(), closed["by"].as_str()),
        (Some(conv.as_str()), Some("bob"))
    );
    let again = call(&bob_b, "POST", &path("close"), None);
    assert!(again.status == 409, "{}", again.text());

    // The visitor rates it.
    v.send(json!({"type":"rate","conv":conv,"score":5,"comment":"fast, thanks"}))
        .await;
    assert_eq!(v.expect("rated").await["score"], 5);

    // Read back: transcript, context, rating.
    let one = eventually(
        "the rating stored",
        TIMEOUT,
        || {
            json_of(&call(
                &bob_b,
                "GET",
                &format!("/api/v1/conversations/{conv}"),
                None,
            ))
        },
        |c| c["rating"]["score"] == 5,
    );
    assert_eq!(one["rating"]["comment"], "fast, thanks");
    assert_eq!(one["context"]["referrer"], "https://search.example/");
    assert_eq!(one["closed_by"], "bob");
    let bodies: Vec<&str> = one["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(
        bodies,
        vec![
            "my cart lost its items",
            "Order 1042 has shipped.",
            "Fixed: your items are back."
        ]
    );
    let csv = call(
        &bob_b,
        "GET",
        &format!("{}?format=csv", path("export")),
        None,
    );
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    let text = csv.text();
    assert!(
        text.starts_with("conversation,seq,from,ts,body\r\n"),
        "{text}"
    );
    assert!(
        text.contains(",bob,") && text.contains("Fixed: your items are back."),
        "{text}"
    );
    assert_eq!(
        call(
            &bob_b,
            "GET",
            &format!("{}?format=xml", path("export")),
            None
        )
        .status,
        400
    );

    // The reports count it: bob answered, closed, and was rated 5.
    let report = json_of(&call(&root, "GET", "/api/v1/reports", None));
    assert_eq!(report["per_day"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report["per_day"][0]["conversations"], 1);
    let bob_fig = &report["per_agent"]["bob"];
    assert_eq!(
        (bob_fig["closed"].as_i64(), bob_fig["csat"].as_f64()),
        (Some(1), Some(5.0)),
        "{report}"
    );
    assert!(bob_fig["first_response_s"].as_f64().unwrap() >= 0.0);
    assert_eq!(
        call(&ann_b, "GET", "/api/v1/reports", None).status,
        403,
        "agents do not"
    );

    // Bob leaves: the API says so.
    drop(bob);
    eventually("bob offline", TIMEOUT, || online("bob"), |o| !*o);

    // The API's documentation is browsable, from the bridge itself.
    let page = http::get(&api, "/api/docs/", &[]);
    assert_eq!(page.status, 200);
    assert!(page.text().contains("swagger-ui-bundle.js"));
    let js = http::get(&api, "/api/docs/swagger-ui-bundle.js", &[]);
    assert_eq!((js.status, js.body.len() > 1_000_000), (200, true));
    assert_eq!(http::get(&api, "/api/docs/nothing.js", &[]).status, 404);
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}
