//! Leaving a message while nobody is online: the visitor is told so in the site's words,
//! its messages are stored and listed for agents, and the first agent to come gets the
//! conversation and answers. Real gateway, bridge and clients.

use serde_json::Value;
use switchboard_test_support::{free_addr, http, Gateway};

#[tokio::test(flavor = "multi_thread")]
async fn a_message_left_offline_is_listed_and_answered_when_an_agent_comes() {
    let api = free_addr();
    let gw = Gateway::builder()
        .bridge_http(&api)
        .args(&["--config", &config_with_offline_text()])
        .start();
    let mut v = gw.visitor().await;
    v.msg("m1", "are you there?", None).await;
    let conv = v.expect("ack").await["conv"].as_str().unwrap().to_owned();
    let q = v.expect("queued").await;
    assert_eq!(q["offline"], true);
    assert_eq!(q["offline_text"], "Back at 9. Leave us a message!");
    v.msg("m2", "my order 1042 never came", Some(&conv)).await;
    assert_eq!(
        v.expect("ack").await["seq"],
        2,
        "stored while nobody is online"
    );
    // Agents find it waiting.
    let bearer = format!("Bearer {}", gw.token("sue"));
    let r = http::get(
        &api,
        "/api/v1/conversations?status=waiting",
        &[("Authorization", bearer.as_str())],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let page: Value = serde_json::from_slice(&r.body).unwrap();
    assert!(
        page["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == conv.as_str() && c["agent"].is_null()),
        "{page}"
    );
    // The first agent to come online gets it, reads both, answers.
    let mut ann = gw.agent("ann").await;
    assert_eq!(ann.assigned().await["conv"], conv.as_str());
    assert_eq!(ann.expect("msg").await["body"], "are you there?");
    assert_eq!(ann.expect("msg").await["body"], "my order 1042 never came");
    ann.msg("a1", "Sorry for the wait: it ships today.", Some(&conv))
        .await;
    assert_eq!(v.expect("msg").await["from"], "ann");
    // Now online: nobody else is told "offline".
    let mut w = gw.visitor().await;
    w.msg("m1", "hello", None).await;
    let f = w.expect_any(&["agent_joined", "queued"]).await;
    assert!(f.get("offline").is_none() || f["offline"] == false, "{f}");
}

fn config_with_offline_text() -> String {
    let path = std::env::temp_dir().join(format!(
        "sb-offline-{}-{}.toml",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::write(&path, "offline_text = \"Back at 9. Leave us a message!\"\n").unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_away_takes_nothing_new_and_all_its_devices_show_it() {
    let gw = Gateway::start(&[]);
    let mut desk = gw.agent("ann").await;
    let mut phone = gw.agent("ann").await;
    desk.send(serde_json::json!({"type":"presence","status":"away"}))
        .await;
    for device in [&mut desk, &mut phone] {
        assert_eq!(device.expect("presence").await["status"], "away");
    }
    // Ann is the only agent and away: the visitor leaves a message, with its contact.
    let mut v = gw.visitor().await;
    v.send(serde_json::json!({"type":"presence","status":"away"}))
        .await;
    assert_eq!(v.expect("error").await["code"], "forbidden");
    v.send(serde_json::json!({"type":"context","page":"https://shop.example/","name":"Li Lei","email":"li@example.com"}))
        .await;
    v.msg("m1", "call me back please", None).await;
    v.expect("ack").await;
    let q = v.expect("queued").await;
    assert_eq!(q["offline"], true, "{q}");
    // A third device, connecting while away, is told so at once.
    let mut tablet = gw.agent("ann").await;
    assert_eq!(tablet.expect("presence").await["status"], "away");
    // Back from the phone: every device hears it, and the waiting visitor is hers, with the
    // name and e-mail it typed.
    phone
        .send(serde_json::json!({"type":"presence","status":"online"}))
        .await;
    for device in [&mut desk, &mut phone, &mut tablet] {
        assert_eq!(device.expect("presence").await["status"], "online");
    }
    let a = desk.assigned().await;
    assert_eq!(a["context"]["name"], "Li Lei", "{a}");
    assert_eq!(a["context"]["email"], "li@example.com", "{a}");
    assert_eq!(a["context"]["page"], "https://shop.example/", "{a}");
}
