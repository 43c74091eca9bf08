//! Routing by team: a visitor who enters through a team's entry (`?team=`) reaches that
//! team's agents, and an agent transfers a conversation to another team. Accounts, teams and
//! logins through the API; real gateway, bridge and clients.

use serde_json::{json, Value};
use switchboard_test_support::{free_addr, http, temp_dir, Client, Gateway};

#[tokio::test(flavor = "multi_thread")]
async fn conversations_reach_their_team_and_move_to_another() {
    let dir = temp_dir("teams");
    let api = free_addr();
    let gw = Gateway::builder()
        .data_dir(&dir)
        .bridge_http(&api)
        .args(&["--agent-capacity", "2"])
        .start();
    let bearer = switchboard_test_support::accounts::admin_bearer(&dir, &api);
    let login = |agent: &str, password: &str| {
        switchboard_test_support::accounts::login(&api, agent, password)
    };
    for (id, team) in [("bea", "billing"), ("sam", "sales")] {
        let r = http::post(
            &api,
            "/api/v1/agents",
            &[("Authorization", bearer.as_str())],
            &json!({"id": id, "password": format!("{id} passphrase"), "teams": [team]}).to_string(),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        assert_eq!(
            serde_json::from_slice::<Value>(&r.body).unwrap()["teams"],
            json!([team])
        );
    }
    let r = http::post(
        &api,
        "/api/v1/agents",
        &[("Authorization", bearer.as_str())],
        &json!({"id": "x", "password": "x passphrase", "teams": ["Not A Team"]}).to_string(),
    );
    assert_eq!(r.status, 400);
    let agent = |token: &Value| {
        let url = gw.url(&format!(
            "/ws/agent?client=web&token={}",
            token["token"].as_str().unwrap()
        ));
        async move { Client::connect(&url).await.unwrap() }
    };
    // Bea comes first: without teams she would get everything first.
    let mut bea = agent(&login("bea", "bea passphrase")).await;
    let mut sam = agent(&login("sam", "sam passphrase")).await;
    // The API lists the teams with their members and who is online.
    let teams = switchboard_test_support::eventually(
        "both online in their teams",
        switchboard_test_support::TIMEOUT,
        || {
            let r = http::get(&api, "/api/v1/teams", &[("Authorization", bearer.as_str())]);
            serde_json::from_slice::<Value>(&r.body).unwrap()
        },
        |t| {
            t["teams"]
                .as_array()
                .is_some_and(|a| a.iter().all(|x| x["online"] == 1))
        },
    );
    assert_eq!(
        teams["teams"],
        json!([
            {"name": "billing", "members": [{"id": "bea", "online": true}], "online": 1},
            {"name": "sales", "members": [{"id": "sam", "online": true}], "online": 1}
        ])
    );
    // A visitor through the sales entry reaches sam.
    let mut v1 = Client::connect(&gw.url("/ws/visitor?client=web&team=sales"))
        .await
        .unwrap();
    v1.msg("m1", "a quote for 40 seats?", None).await;
    let a = sam.assigned().await;
    assert_eq!(a["labels"]["team"], "sales");
    let conv = a["conv"].as_str().unwrap().to_owned();
    // It is a billing question after all: sam hands it to the billing team.
    sam.send(json!({"type":"transfer","conv":conv,"team":"billing","note":"invoice address"}))
        .await;
    let b = bea.assigned().await;
    assert_eq!(b["conv"], conv.as_str());
    assert_eq!(b["reason"], "transferred by sam: invoice address");
    assert_eq!(bea.expect("msg").await["body"], "a quote for 40 seats?");
    assert_eq!(v1.expect("transferred").await["from"], "sam");
    // A bad team name is refused at the door.
    assert!(Client::connect(&gw.url("/ws/visitor?client=web&team=NO!"))
        .await
        .is_err());
    // Another sales visitor: sam again, though bea has room too.
    let mut v2 = Client::connect(&gw.url("/ws/visitor?client=web&team=sales"))
        .await
        .unwrap();
    v2.msg("m1", "pricing?", None).await;
    assert_eq!(v2.expect("agent_joined").await["agent"], "sam");
    drop(gw);
    let _ = std::fs::remove_dir_all(&dir);
}
