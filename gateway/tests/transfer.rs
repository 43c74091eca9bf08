//! An agent hands a conversation to another, with a note: real gateway, bridge and clients.
//! The visitor is told, the new agent gets the transcript and the note, the old one is out.

use serde_json::json;
use switchboard_test_support::Gateway;

#[tokio::test(flavor = "multi_thread")]
async fn a_conversation_goes_to_another_agent_with_its_transcript_and_a_note() {
    let gw = Gateway::start(&[]);
    let mut ann = gw.agent("ann").await;
    let mut v = gw.visitor().await;
    v.msg("m1", "my invoice is wrong", None).await;
    let conv = ann.assigned().await["conv"].as_str().unwrap().to_owned();
    assert_eq!(ann.expect("msg").await["body"], "my invoice is wrong");
    assert_eq!(v.expect("agent_joined").await["agent"], "ann");
    let mut bob = gw.agent("bob").await;
    // To someone who is not online: refused, and nothing changes.
    ann.send(json!({"type":"transfer","conv":conv,"to":"zoe"}))
        .await;
    assert_eq!(ann.expect("error").await["code"], "forbidden");
    // The visitor cannot transfer.
    v.send(json!({"type":"transfer","conv":conv,"to":"bob"}))
        .await;
    assert_eq!(v.expect("error").await["code"], "forbidden");
    // To bob, with a note.
    ann.send(json!({"type":"transfer","conv":conv,"to":"bob","note":"billing question"}))
        .await;
    let assigned = bob.assigned().await;
    assert_eq!(assigned["conv"], conv.as_str());
    assert_eq!(assigned["reason"], "transferred by ann: billing question");
    assert_eq!(
        bob.expect("msg").await["body"],
        "my invoice is wrong",
        "the transcript"
    );
    let t = v.expect("transferred").await;
    assert_eq!(
        (t["from"].as_str(), t["to"].as_str()),
        (Some("ann"), Some("bob"))
    );
    assert!(t.get("note").is_none(), "the note is for agents");
    assert_eq!(v.expect("agent_joined").await["agent"], "bob");
    assert_eq!(ann.expect("transferred").await["to"], "bob");
    // From now on bob hears the visitor, and ann is out.
    bob.expect("resumed").await;
    v.msg("m2", "thanks", Some(&conv)).await;
    assert_eq!(bob.expect("msg").await["body"], "thanks");
    ann.msg("a1", "still here?", Some(&conv)).await;
    assert_eq!(ann.expect("error").await["code"], "not_in_conversation");
    bob.msg("b1", "fixed it", Some(&conv)).await;
    assert_eq!(v.expect("msg").await["from"], "bob");
}
