//! `docs/protocol.md` and the JSON Schemas stay true: every example in the document and every
//! frame a real gateway sends validates against the schemas, and every error and close code
//! in the code is documented.

use serde_json::{json, Value};
use switchboard_protocol::{CloseCode, ErrorCode};
use switchboard_test_support::{Client, Gateway};

const DOC: &str = include_str!("../../docs/protocol.md");
const SERVER_SCHEMA: &str = include_str!("../../docs/schema/server.json");
const CLIENT_SCHEMA: &str = include_str!("../../docs/schema/client.json");

fn validator(schema: &str) -> jsonschema::Validator {
    jsonschema::validator_for(&serde_json::from_str::<Value>(schema).unwrap())
        .expect("a valid schema")
}

fn assert_valid(v: &jsonschema::Validator, frame: &Value) {
    let errors: Vec<String> = v.iter_errors(frame).map(|e| e.to_string()).collect();
    assert!(
        errors.is_empty(),
        "{frame} does not match its schema: {errors:?}"
    );
}

/// (direction, json) for every ```json client / ```json server block.
fn examples() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut lines = DOC.lines();
    while let Some(line) = lines.next() {
        if let Some(dir) = line.strip_prefix("```json ") {
            let body: Vec<&str> = lines
                .by_ref()
                .take_while(|l| !l.starts_with("```"))
                .collect();
            let v: Value = serde_json::from_str(&body.join("\n"))
                .unwrap_or_else(|e| panic!("bad example: {e}: {body:?}"));
            out.push((dir.trim().to_string(), v));
        }
    }
    out
}

#[test]
fn every_example_in_the_document_matches_its_schema() {
    let (server, client) = (validator(SERVER_SCHEMA), validator(CLIENT_SCHEMA));
    let examples = examples();
    assert!(
        examples.len() >= 18,
        "found only {} examples",
        examples.len()
    );
    let mut server_types = std::collections::BTreeSet::new();
    for (dir, v) in &examples {
        match dir.as_str() {
            "server" => {
                assert_valid(&server, v);
                server_types.insert(v["type"].as_str().unwrap().to_string());
                // And our own decoder reads it back.
                switchboard_protocol::server::decode_server_frame(&v.to_string()).unwrap();
            }
            "client" => {
                assert_valid(&client, v);
                switchboard_protocol::decode_client_frame(&v.to_string()).unwrap();
            }
            other => panic!("unknown example direction {other}"),
        }
    }
    assert_eq!(
        server_types.len(),
        19,
        "every server frame type has an example: {server_types:?}"
    );
}

#[test]
fn schemas_reject_what_the_protocol_forbids() {
    let (server, client) = (validator(SERVER_SCHEMA), validator(CLIENT_SCHEMA));
    for bad in [
        json!({"type":"msg","cid":"1"}),
        json!({"type":"close"}),
        json!({"type":"resume","conv":"c0000000000000001"}),
        json!({"type":"launch"}),
        json!({"type":"msg","cid":"","body":"x"}),
    ] {
        assert!(!client.is_valid(&bad), "{bad}");
    }
    for bad in [
        json!({"type":"ack","cid":"1","conv":"c1","seq":1}),
        json!({"type":"msg","conv":"c0000000000000001","seq":0,"from":"x","cid":"1","body":"b","ts":1}),
        json!({"type":"error","code":"nope","message":"m","cid":null}),
        json!({"type":"welcome","id":"ann","role":"agent","token":"sb1.v.x","client":"web","server":"switchboard","protocol":1,"shard":0,"idle_timeout_s":60}),
    ] {
        assert!(!server.is_valid(&bad), "{bad}");
    }
}

#[test]
fn every_code_in_the_code_is_documented() {
    for code in ErrorCode::ALL {
        assert!(
            DOC.contains(&format!("| `{}` |", code.as_str())),
            "error code {} is not in protocol.md",
            code.as_str()
        );
        assert!(
            SERVER_SCHEMA.contains(&format!("\"{}\"", code.as_str())),
            "error code {} is not in server.json",
            code.as_str()
        );
    }
    for code in CloseCode::ALL {
        let row = format!("| {} | `{}` |", code.code(), code.reason());
        assert!(
            DOC.contains(&row),
            "close code row `{row}` is not in protocol.md"
        );
    }
}

/// A whole conversation against the real gateway, recording every frame received, each
/// checked against the server schema; every server frame type must occur.
#[tokio::test]
async fn every_frame_a_real_gateway_sends_matches_the_schema() {
    let server = validator(SERVER_SCHEMA);
    let gw = Gateway::start(&["--agent-capacity", "1"]);
    let mut seen = std::collections::BTreeSet::new();
    // Receives until a frame of type `ty`, validating and recording every frame on the way
    // (the order of frames from different sources, such as `queued` before the dispatcher
    // has heard of the agent, is not fixed).
    async fn next_of(
        c: &mut Client,
        ty: &str,
        server: &jsonschema::Validator,
        seen: &mut std::collections::BTreeSet<String>,
    ) -> Value {
        let v = c.expect(ty).await;
        assert_valid(server, &v);
        seen.insert(ty.to_string());
        v
    }
    let mut agent = gw.agent("ann").await;
    let mut v1 = gw.visitor().await;
    for w in [&agent.welcome, &v1.welcome] {
        assert_valid(&server, w);
        seen.insert("welcome".to_string());
    }
    v1.msg("m1", "hello", None).await;
    let ack = next_of(&mut v1, "ack", &server, &mut seen).await;
    let conv = ack["conv"].as_str().unwrap().to_string();
    next_of(&mut agent, "assigned", &server, &mut seen).await;
    agent
        .send(json!({"type":"resume","conv":conv,"last_seq":0}))
        .await;
    next_of(&mut agent, "msg", &server, &mut seen).await;
    next_of(&mut v1, "agent_joined", &server, &mut seen).await;
    // Capacity 1: the second visitor waits.
    let mut v2 = gw.visitor().await;
    v2.msg("m1", "me too", None).await;
    next_of(&mut v2, "queued", &server, &mut seen).await;
    v1.send(json!({"type":"typing"})).await;
    next_of(&mut agent, "typing", &server, &mut seen).await;
    agent.send(json!({"type":"read","conv":conv,"seq":1})).await;
    next_of(&mut v1, "read", &server, &mut seen).await;
    v1.send_text("{oops").await;
    next_of(&mut v1, "error", &server, &mut seen).await;
    v1.send(json!({"type":"resume","conv":conv,"last_seq":0}))
        .await;
    next_of(&mut v1, "resumed", &server, &mut seen).await;
    agent.send(json!({"type":"presence","status":"away"})).await;
    let p = next_of(&mut agent, "presence", &server, &mut seen).await;
    assert_eq!(p["status"], "away");
    agent.send(json!({"type":"close","conv":conv})).await;
    next_of(&mut v1, "closed", &server, &mut seen).await;
    v1.send(json!({"type":"history","conv":conv,"limit":5}))
        .await;
    let h = next_of(&mut v1, "history", &server, &mut seen).await;
    assert_eq!(h["messages"][0]["body"], "hello");
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        [
            "ack",
            "agent_joined",
            "assigned",
            "closed",
            "error",
            "history",
            "msg",
            "presence",
            "queued",
            "read",
            "resumed",
            "typing",
            "welcome"
        ]
    );
}
