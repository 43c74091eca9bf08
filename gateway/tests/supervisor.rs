//! A supervisor watches a conversation it is not in, live, and whispers to its agent; the
//! visitor never sees the whisper. Real gateway, bridge (accounts, login) and clients.

use serde_json::json;
use switchboard_test_support::{free_addr, temp_dir, Client, Gateway};

#[tokio::test(flavor = "multi_thread")]
async fn a_supervisor_watches_live_and_whispers_to_the_agent_only() {
    let dir = temp_dir("supervisor");
    let api = free_addr();
    let gw = Gateway::builder().data_dir(&dir).bridge_http(&api).start();
    switchboard_test_support::accounts::create_agent(
        &dir,
        "sue",
        "supervisor",
        "supervising since 2020",
    );
    let issued = switchboard_test_support::accounts::login(&api, "sue", "supervising since 2020");
    assert_eq!(issued["role"], "supervisor");
    let token = issued["token"].as_str().unwrap();

    let mut ann = gw.agent("ann").await;
    let mut v = gw.visitor().await;
    v.msg("m1", "where is my parcel?", None).await;
    let conv = ann.assigned().await["conv"].as_str().unwrap().to_owned();
    ann.expect("resumed").await;
    // Sue watches: the transcript so far (a page of history first, as the console reads
    // a long one), then live.
    let mut sue = Client::connect(&gw.url(&format!("/ws/agent?token={token}&client=web")))
        .await
        .unwrap();
    assert_eq!(sue.welcome["id"], "sue");
    sue.send(json!({"type":"history","conv":conv,"limit":10}))
        .await;
    let page = sue.expect("history").await;
    assert_eq!(page["messages"][0]["body"], "where is my parcel?", "{page}");
    sue.send(json!({"type":"resume","conv":conv,"last_seq":0}))
        .await;
    assert_eq!(sue.expect("msg").await["body"], "where is my parcel?");
    sue.expect("resumed").await;
    v.msg("m2", "it has been a week", Some(&conv)).await;
    assert_eq!(sue.expect("msg").await["body"], "it has been a week");
    // She whispers: ann hears it, the visitor does not.
    sue.send(json!({"type":"whisper","conv":conv,"body":"offer a refund"}))
        .await;
    let w = ann.expect("whisper").await;
    assert_eq!(
        (w["from"].as_str(), w["body"].as_str()),
        (Some("sue"), Some("offer a refund"))
    );
    ann.msg("a1", "I can refund you today.", Some(&conv)).await;
    let next = v.expect_any(&["msg", "whisper"]).await;
    assert_eq!(
        (next["type"].as_str(), next["from"].as_str()),
        (Some("msg"), Some("ann"))
    );
    // Watching is not taking part: she cannot write to the visitor.
    sue.msg("s1", "hello from the supervisor", Some(&conv))
        .await;
    assert_eq!(sue.expect("error").await["code"], "not_in_conversation");
    // An ordinary agent cannot watch others' conversations, nor a visitor whisper.
    let mut bob = gw.agent("bob").await;
    bob.send(json!({"type":"resume","conv":conv,"last_seq":0}))
        .await;
    assert_eq!(bob.expect("error").await["code"], "not_in_conversation");
    bob.send(json!({"type":"history","conv":conv})).await;
    assert_eq!(bob.expect("error").await["code"], "not_in_conversation");
    v.send(json!({"type":"whisper","conv":conv,"body":"psst"}))
        .await;
    assert_eq!(v.expect("error").await["code"], "forbidden");
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}
