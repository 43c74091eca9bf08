//! Agent accounts end to end: the first admin made with the bridge's CLI, a login over the
//! REST API for a token, that token accepted by the gateway; wrong passwords, refresh, the
//! one error shape, and the OpenAPI document. Real gateway, real bridge, real clients.

use serde_json::{json, Value};
use switchboard_test_support::{free_addr, http, temp_dir, Client, Ended, Gateway};

fn create_agent(data_dir: &std::path::Path, id: &str, role: &str, password: &str) -> String {
    switchboard_test_support::accounts::try_create_agent(data_dir, id, role, password).1
}

fn json_of(r: &http::Response) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.text()))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_logs_in_and_connects_with_the_token() {
    let dir = temp_dir("accounts");
    let api = free_addr();
    let gw = Gateway::builder().data_dir(&dir).bridge_http(&api).start();
    // The first admin, from the command line (the password on stdin).
    let out = create_agent(&dir, "root", "admin", "correct horse battery");
    assert!(out.contains("agent root saved (admin)"), "{out}");
    assert!(
        create_agent(&dir, "shorty", "agent", "short").contains("at least 8"),
        "a weak password is refused"
    );
    let login = |agent: &str, password: &str| {
        http::post(
            &api,
            "/api/v1/auth/login",
            &[],
            &json!({"agent": agent, "password": password}).to_string(),
        )
    };
    // Wrong password and unknown agent: the same answer.
    for (agent, password) in [("root", "wrong horse battery"), ("nobody", "whatever1")] {
        let r = login(agent, password);
        assert_eq!(r.status, 401, "{}", r.text());
        assert_eq!(json_of(&r)["code"], "bad_credentials");
    }
    let r = http::post(&api, "/api/v1/auth/login", &[], "{\"agent\":1}");
    assert_eq!(
        (r.status, json_of(&r)["code"].clone()),
        (400, json!("bad_request"))
    );
    // The right one: a token the gateway takes.
    let r = login("root", "correct horse battery");
    assert_eq!(r.status, 200, "{}", r.text());
    let issued = json_of(&r);
    assert_eq!(
        (issued["agent"].as_str(), issued["role"].as_str()),
        (Some("root"), Some("admin"))
    );
    let token = issued["token"].as_str().unwrap().to_owned();
    let agent = Client::connect(&gw.url(&format!("/ws/agent?token={token}&client=web")))
        .await
        .unwrap();
    assert_eq!(
        (agent.welcome["role"].as_str(), agent.welcome["id"].as_str()),
        (Some("agent"), Some("root"))
    );
    // Refresh: a new token for the holder of a valid one; none without.
    let bearer = format!("Bearer {token}");
    let r = http::post(
        &api,
        "/api/v1/auth/refresh",
        &[("Authorization", &bearer)],
        "",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(json_of(&r)["expires_at"].as_u64().unwrap() >= issued["expires_at"].as_u64().unwrap());
    let r = http::post(&api, "/api/v1/auth/refresh", &[], "");
    assert_eq!(
        (r.status, json_of(&r)["code"].clone()),
        (401, json!("unauthorized"))
    );
    // The history API takes the token, and answers errors in the same shape.
    let r = http::get(
        &api,
        "/api/v1/conversations/nope/messages",
        &[("Authorization", &bearer)],
    );
    assert_eq!(
        (r.status, json_of(&r)["code"].clone()),
        (400, json!("bad_id"))
    );
    // The admin makes an agent; she logs in; her role limits what she may do.
    let admin = [("Authorization", bearer.as_str())];
    let r = http::post(
        &api,
        "/api/v1/agents",
        &admin,
        &json!({"id":"ann","password":"ann's passphrase","display_name":"Ann","max_conversations":3}).to_string(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(json_of(&r)["role"], "agent");
    let again = http::post(
        &api,
        "/api/v1/agents",
        &admin,
        &json!({"id":"ann","password":"another one"}).to_string(),
    );
    assert_eq!(
        (again.status, json_of(&again)["code"].clone()),
        (409, json!("conflict"))
    );
    let ann_token = json_of(&login("ann", "ann's passphrase"))["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let ann_bearer = format!("Bearer {ann_token}");
    let ann = [("Authorization", ann_bearer.as_str())];
    let r = http::get(&api, "/api/v1/agents", &ann);
    assert_eq!(
        (r.status, json_of(&r)["code"].clone()),
        (403, json!("forbidden"))
    );
    let r = http::get(&api, "/api/v1/agents/ann", &ann);
    assert_eq!(
        (r.status, json_of(&r)["max_conversations"].clone()),
        (200, json!(3))
    );
    let r = http::post(
        &api,
        "/api/v1/agents",
        &ann,
        &json!({"id":"eve","password":"12345678"}).to_string(),
    );
    assert_eq!(r.status, 403, "agents do not make accounts");
    let list = json_of(&http::get(&api, "/api/v1/agents", &admin));
    let ids: Vec<&str> = list["agents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["ann", "root"]);
    // A new password: the old one no longer works.
    let patch = |body: Value| {
        let r = http::request(
            "PATCH",
            &api,
            "/api/v1/agents/ann",
            &admin,
            Some(&body.to_string()),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        json_of(&r)
    };
    patch(json!({"password":"a new passphrase"}));
    assert_eq!(login("ann", "ann's passphrase").status, 401);
    assert_eq!(login("ann", "a new passphrase").status, 200);
    // Disabled: her live connection is closed, and no login, no refresh, no new connection:
    // her still-valid token opens nothing.
    let ann_url = gw.url(&format!("/ws/agent?token={ann_token}&client=web"));
    let mut ann_ws = Client::connect(&ann_url).await.unwrap();
    assert_eq!(ann_ws.welcome["id"], "ann");
    assert_eq!(patch(json!({"disabled":true}))["disabled"], true);
    assert!(matches!(ann_ws.ended().await, Ended::Close(4002)));
    assert!(
        Client::connect(&ann_url).await.is_err(),
        "the upgrade is refused"
    );
    let r = login("ann", "a new passphrase");
    assert_eq!(
        (r.status, json_of(&r)["code"].clone()),
        (403, json!("disabled"))
    );
    let r = http::post(&api, "/api/v1/auth/refresh", &ann, "");
    assert_eq!(
        (r.status, json_of(&r)["code"].clone()),
        (403, json!("disabled"))
    );
    assert_eq!(http::get(&api, "/api/v1/agents/ann", &ann).status, 403);
    // Enabled again: the same token works.
    assert_eq!(patch(json!({"disabled":false}))["disabled"], false);
    let started = std::time::Instant::now();
    loop {
        match Client::connect(&ann_url).await {
            Ok(c) => {
                assert_eq!(c.welcome["id"], "ann");
                break;
            }
            Err(_) if started.elapsed() < std::time::Duration::from_secs(5) => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await
            }
            Err(e) => panic!("ann cannot come back: {e}"),
        }
    }
    // The OpenAPI document covers every endpoint.
    let doc = json_of(&http::get(&api, "/api/v1/openapi.json", &[]));
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    for path in [
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/agents",
        "/api/v1/agents/{id}",
        "/api/v1/conversations/{id}/messages",
        "/api/v1/openapi.json",
        "/healthz",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing");
    }
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}
