//! Customers the site identifies: the site's back end gets a visitor token from the API for
//! its own customer id, the customer keeps one visitor id on every device, a VIP goes ahead
//! in the human queue, and agents read what the site said of them. Real processes.

use serde_json::{json, Value};
use switchboard_test_support::{free_addr, http, temp_dir, Client, Gateway};

fn json_of(r: &http::Response) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.text()))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vip_keeps_one_id_across_devices_and_goes_ahead_in_the_queue() {
    let dir = temp_dir("visitors");
    let api = free_addr();
    let gw = Gateway::builder()
        .data_dir(&dir)
        .bridge_http(&api)
        .args(&["--agent-capacity", "1"])
        .start();
    let bearer = switchboard_test_support::accounts::admin_bearer(&dir, &api);
    let auth = [("Authorization", bearer.as_str())];
    // The site's back end identifies its customer.
    let profile = json!({"external_id":"cust-42","name":"Li Wei","email":"li.wei@example.com",
        "plan":"gold","vip":true,"attributes":{"orders":"17"}});
    let r = http::post(&api, "/api/v1/visitors", &auth, &profile.to_string());
    assert_eq!(r.status, 200, "{}", r.text());
    let issued = json_of(&r);
    assert_eq!(issued["priority"], 5);
    let again = json_of(&http::post(
        &api,
        "/api/v1/visitors",
        &auth,
        &profile.to_string(),
    ));
    assert_eq!(
        again["visitor"], issued["visitor"],
        "one customer, one visitor id"
    );
    let other = json_of(&http::post(
        &api,
        "/api/v1/visitors",
        &auth,
        &json!({"external_id":"cust-43"}).to_string(),
    ));
    assert_ne!(other["visitor"], issued["visitor"]);
    assert_eq!(other["priority"], 0);
    let r = http::post(
        &api,
        "/api/v1/visitors",
        &auth,
        &json!({"external_id":""}).to_string(),
    );
    assert_eq!(
        (r.status, json_of(&r)["code"].clone()),
        (400, json!("bad_request"))
    );

    // Ann is online with room for one; a first visitor takes it, a second waits.
    let mut ann = gw.agent("ann").await;
    let mut first = gw.visitor().await;
    first.msg("m1", "hello", None).await;
    let c1 = ann.expect("assigned").await["conv"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut calm = gw.visitor().await;
    calm.msg("m1", "hello", None).await;
    assert_eq!(calm.expect("queued").await["position"], 1);
    // The VIP, on two devices: one visitor id; it goes ahead of the calm one.
    let token = issued["token"].as_str().unwrap();
    let url = gw.url(&format!("/ws/visitor?client=web&token={token}"));
    let mut phone = Client::connect(&url).await.unwrap();
    let laptop = Client::connect(&url).await.unwrap();
    assert_eq!(phone.welcome["id"], issued["visitor"]);
    assert_eq!(laptop.welcome["id"], issued["visitor"]);
    phone.msg("m1", "where is my order?", None).await;
    assert_eq!(phone.expect("queued").await["position"], 1, "ahead");
    assert_eq!(calm.expect("queued").await["position"], 2);
    // Ann closes her first: the VIP is next, and she sees why and who.
    ann.send(json!({"type":"close","conv":c1})).await;
    let assigned = ann.expect("assigned").await;
    let ann_bearer = format!("Bearer {}", gw.token("ann"));
    assert_eq!(assigned["visitor"], issued["visitor"]);
    assert_eq!(assigned["priority"], 5);
    assert_eq!(assigned["labels"]["visitor"], "vip");
    let r = http::get(
        &api,
        &format!("/api/v1/visitors/{}", issued["visitor"].as_str().unwrap()),
        &[("Authorization", ann_bearer.as_str())],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = json_of(&r);
    assert_eq!(
        (seen["name"].as_str(), seen["vip"].as_bool()),
        (Some("Li Wei"), Some(true))
    );
    assert_eq!(seen["attributes"]["orders"], "17");
    // A canned reply, site-wide, used by ann for this visitor: its variables filled in.
    let r = http::post(
        &api,
        "/api/v1/canned-replies",
        &auth,
        &json!({"shortcut":"/returns","site_wide":true,
            "body":"Hi {visitor.name}, your {visitor.plan} plan includes free returns. - {agent.name}"})
        .to_string(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let ann_auth = [("Authorization", ann_bearer.as_str())];
    let r = http::post(
        &api,
        "/api/v1/canned-replies",
        &ann_auth,
        &json!({"shortcut":"/x","body":"mine","site_wide":true}).to_string(),
    );
    assert_eq!(r.status, 403, "agents keep only their own");
    let list = json_of(&http::get(&api, "/api/v1/canned-replies", &ann_auth));
    let reply = list["replies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["shortcut"] == "/returns")
        .expect("the site-wide reply")
        .clone();
    // Ann may not change the site's reply; its supervisor may.
    let path = format!("/api/v1/canned-replies/{}", reply["id"].as_str().unwrap());
    let patch = json!({"shortcut": "/free-returns"}).to_string();
    let r = http::request("PATCH", &api, &path, &ann_auth, Some(&patch));
    assert_eq!(r.status, 403);
    let r = http::request("PATCH", &api, &path, &auth, Some(&patch));
    assert_eq!(json_of(&r)["shortcut"], "/free-returns", "{}", r.text());
    let r = http::post(
        &api,
        &format!(
            "/api/v1/canned-replies/{}/render",
            reply["id"].as_str().unwrap()
        ),
        &ann_auth,
        &json!({"visitor": issued["visitor"]}).to_string(),
    );
    let text = json_of(&r)["body"].as_str().unwrap().to_owned();
    assert_eq!(
        text,
        "Hi Li Wei, your gold plan includes free returns. - ann"
    );
    let vip_conv = assigned["conv"].as_str().unwrap().to_owned();
    ann.msg("a1", &text, Some(&vip_conv)).await;
    let got = phone.expect("msg").await;
    assert_eq!(got["body"], text.as_str());
    // The site's back end with an API key of its own: it identifies customers and nothing
    // else, and a revoked key opens nothing.
    let r = http::post(
        &api,
        "/api/v1/api-keys",
        &auth,
        &json!({"name":"shop backend","scopes":["visitors:identify"]}).to_string(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let made = json_of(&r);
    let key = made["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("sbk_"));
    let key_auth = format!("Bearer {key}");
    let with_key = [("Authorization", key_auth.as_str())];
    let r = http::post(
        &api,
        "/api/v1/visitors",
        &with_key,
        &json!({"external_id":"cust-42","vip":true}).to_string(),
    );
    assert_eq!(json_of(&r)["visitor"], issued["visitor"], "{}", r.text());
    let r = http::get(&api, "/api/v1/agents", &with_key);
    assert_eq!(
        (r.status, json_of(&r)["code"].clone()),
        (403, json!("forbidden"))
    );
    let r = http::get(&api, "/api/v1/api-keys", &with_key);
    assert_eq!(r.status, 403, "keys do not manage keys");
    let listed = http::get(&api, "/api/v1/api-keys", &auth);
    assert!(
        !listed.text().contains(&key[22..]),
        "no secret listed: {}",
        listed.text()
    );
    assert_eq!(
        json_of(&listed)["keys"][0]["scopes"],
        json!(["visitors:identify"])
    );
    let path = format!("/api/v1/api-keys/{}", made["id"].as_str().unwrap());
    assert_eq!(
        http::request("DELETE", &api, &path, &auth, None).status,
        204
    );
    assert_eq!(
        http::request("DELETE", &api, &path, &auth, None).status,
        404
    );
    let r = http::post(&api, "/api/v1/visitors", &with_key, &profile.to_string());
    assert_eq!(r.status, 401, "revoked");
    // A visitor cannot mint its own: agents may not identify customers.
    let r = http::post(
        &api,
        "/api/v1/visitors",
        &[("Authorization", ann_bearer.as_str())],
        &profile.to_string(),
    );
    assert_eq!(r.status, 403);
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}
