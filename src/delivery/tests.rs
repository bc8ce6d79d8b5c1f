use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::PANIC_HEADER;
use crate::app;
use crate::config::{self, Config, Endpoint};
use crate::signature::Key;
use crate::sources::Source;

fn ask(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    reply
}

#[test]
fn a_handler_panic_is_a_500_and_the_pool_serves_on() {
    let endpoint = Endpoint::new(
        0,
        Source::DockerHub,
        Key::new(b"panic-test-key-0123456789".to_vec()),
        "k".into(),
        None,
    );
    let route = endpoint.route();
    let config = Config {
        api: "http://127.0.0.1:9/api/flux".into(),
        endpoints: vec![endpoint],
        downstreams: vec![config::DownstreamConfig::fluxd(
            config::DEFAULT_DOWNSTREAM,
            "http://127.0.0.1:9/api/flux",
        )],
    };
    let mut options = crate::cli::defaults();
    options.server.listen = "127.0.0.1:0".into();
    options.server.threads = 1;
    options.server.max_connections = 16;
    options.delivery.notify_timeout = Duration::from_millis(300);
    options.delivery.redeliver_for = Duration::ZERO;
    crate::log::set_sink(|line| eprint!("{line}"));
    let server = app::start(&config, &options).unwrap();
    let panic_request = format!(
        "POST {route} HTTP/1.1\r\nHost: x\r\n{PANIC_HEADER}: 1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    // Twice with one handler thread: the second panic proves the first did not kill it.
    for _ in 0..2 {
        let reply = ask(server.addr(), &panic_request);
        assert!(reply.starts_with("HTTP/1.1 500 "), "{reply}");
        assert!(reply.ends_with("Internal server error"), "{reply}");
    }
    // And a normal delivery still reaches a handler (fluxd is down here: 502, not a hang).
    let body = r#"{"repository":{"repo_name":"a/b"}}"#;
    let normal = format!(
        "POST {route} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let reply = ask(server.addr(), &normal);
    assert!(reply.starts_with("HTTP/1.1 502 "), "{reply}");
    server.stop();
}
