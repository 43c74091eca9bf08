//! A flood from one source address while another is served: thousands of connections from
//! 127.0.0.3 that never finish their handshake (and more, faster than allowed), with the
//! default per-source limits; a visitor and an agent from 127.0.0.2 chat throughout (and the
//! test reads the metrics from 127.0.0.1). The flood is capped and counted, the other
//! addresses are served, and once the flood is gone 127.0.0.3 is served again.
//! `bench/flood.py` measures the second address's latency.

use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::time::Duration;
use switchboard_test_support::{eventually, Client, Gateway};

const FLOODER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
const NEIGHBOUR: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// Connections the flooder opens (bounded: far under this process's open-files limit).
const FLOOD: usize = 3000;

#[tokio::test(flavor = "multi_thread")]
async fn one_address_flooding_is_capped_while_another_is_served() {
    let gw = Gateway::start(&[]);
    let url = |path: &str| gw.url(path);
    let token = gw.token("ann");
    let mut agent = Client::connect_from(&url(&format!("/ws/agent?token={token}")), NEIGHBOUR)
        .await
        .unwrap();

    // The flood: TCP connections that send nothing (a slow-handshake attack), as fast as
    // they go. The gateway keeps its share of unfinished ones and closes the rest at once.
    let addr = gw.addr;
    let flood = std::thread::spawn(move || {
        let mut held = Vec::with_capacity(FLOOD);
        for _ in 0..FLOOD {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                .expect("a socket");
            s.bind(&std::net::SocketAddr::new(FLOODER, 0).into())
                .expect("bind");
            if s.connect(&addr.into()).is_ok() {
                held.push(TcpStream::from(s));
            }
        }
        held
    });
    // Meanwhile the neighbour chats.
    let mut v = Client::connect_from(&url("/ws/visitor"), NEIGHBOUR)
        .await
        .unwrap();
    v.msg("m0", "hello during the flood", None).await;
    let conv = v.expect("ack").await["conv"].as_str().unwrap().to_owned();
    assert_eq!(agent.assigned().await["conv"], conv.as_str());
    let held = flood.join().unwrap();
    for i in 1..=20 {
        v.msg(&format!("m{i}"), "still here", Some(&conv)).await;
        assert_eq!(v.expect("ack").await["seq"], i + 1);
    }
    agent.expect("msg").await;

    // Capped and counted: the gateway closed what was over the limits.
    let refused = eventually(
        "the flood refused at accept",
        Duration::from_secs(10),
        || {
            gw.metric("chat_source_refused_total", &["unfinished"])
                + gw.metric("chat_source_refused_total", &["rate"])
        },
        |n| *n >= (FLOOD - 1000) as f64,
    );
    eprintln!("flood of {FLOOD} from {FLOODER}: {refused} refused at accept");

    // While the flood holds its share, a real client from the flooder is refused too…
    let refused_client = Client::connect_from(&url("/ws/visitor"), FLOODER).await;
    assert!(refused_client.is_err(), "the flooding address still got in");
    // …and once it lets go (and its burst refills), served again.
    drop(held);
    let mut back = None;
    for _ in 0..100 {
        if let Ok(c) = Client::connect_from(&url("/ws/visitor"), FLOODER).await {
            back = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut back = back.expect("the address is served again once the flood is gone");
    back.msg("b1", "I am back", None).await;
    assert_eq!(back.expect("ack").await["seq"], 1);
}
