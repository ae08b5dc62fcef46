//! Connections: slow or greedy clients cannot hold sockets for ever or crowd out others
//! (header-read, body-read and idle timeouts, the header cap, per-address and global caps).
//! The tests talk raw HTTP/1.1 over sockets bound to 127.0.0.2 (the greedy client) and
//! 127.0.0.3 (another client, which must keep being served).

use std::{
    net::{IpAddr, SocketAddr},
    num::NonZeroUsize,
    time::{Duration, Instant},
};

use portcullis::config::ConnectionSettings;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpSocket, TcpStream},
};

use crate::helpers::*;

const GREEDY: &str = "127.0.0.2";
const OTHER: &str = "127.0.0.3";
/// How long a test waits for something that must happen; generous for a busy machine.
const PATIENCE: Duration = Duration::from_secs(10);

async fn spawn_with(configure: impl FnOnce(&mut ConnectionSettings)) -> TestApp {
    spawn_app_configured(|settings| {
        settings.connections = ConnectionSettings {
            header_read_timeout: Duration::from_secs(1),
            body_read_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            ..ConnectionSettings::default()
        };
        configure(&mut settings.connections);
    })
    .await
}

async fn connect_from(ip: &str, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(ip.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    socket.connect(server).await.unwrap()
}

/// A response read off a raw socket.
#[derive(Debug)]
struct Raw {
    status_line: String,
    /// Lower-cased names.
    headers: Vec<(String, String)>,
    body: String,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response (head, then `Content-Length` bytes); `None` if the connection closes
/// first or nothing complete comes within `wait`.
async fn read_response(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    wait: Duration,
) -> Option<Raw> {
    let mut data = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).into_owned();
            let mut lines = head.split("\r\n");
            let status_line = lines.next().unwrap().to_owned();
            let headers: Vec<(String, String)> = lines
                .map(|line| {
                    let (name, value) = line.split_once(':').unwrap();
                    (name.trim().to_ascii_lowercase(), value.trim().to_owned())
                })
                .collect();
            let length: usize = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .map_or(0, |(_, v)| v.parse().unwrap());
            if data.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&data[end + 4..end + 4 + length]).into_owned();
                return Some(Raw {
                    status_line,
                    headers,
                    body,
                });
            }
        }
        let mut buf = [0u8; 4096];
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(n)) => data.extend_from_slice(&buf[..n]),
        }
    }
}

/// Whether the server closes the connection within `wait` (end of stream or reset), reading
/// and discarding whatever it sends before.
async fn closed_within(stream: &mut (impl tokio::io::AsyncRead + Unpin), wait: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nHost: portcullis\r\n\r\n";

/// Sends `GET /health` on a keep-alive connection and checks the 200.
async fn assert_healthy(stream: &mut TcpStream) {
    stream.write_all(HEALTH).await.unwrap();
    let response = read_response(stream, PATIENCE)
        .await
        .expect("a response to GET /health");
    assert_eq!(response.status_line, "HTTP/1.1 200 OK");
    assert_eq!(response.body, r#"{"status":"ok"}"#);
}

/// Another client, on a fresh connection, is served.
async fn assert_other_client_served(app: &TestApp) {
    let mut stream = connect_from(OTHER, app.address).await;
    assert_healthy(&mut stream).await;
}

#[tokio::test]
async fn half_sent_headers_are_closed_after_the_header_timeout() {
    let app = spawn_with(|c| c.idle_timeout = Duration::from_secs(60)).await;
    let started = Instant::now();
    let mut half_sent = connect_from(GREEDY, app.address).await;
    half_sent
        .write_all(b"GET /health HTTP/1.1\r\nHost: portcullis\r\nX-Slow: ")
        .await
        .unwrap();
    let mut silent = connect_from(GREEDY, app.address).await;
    assert_other_client_served(&app).await;

    assert!(
        closed_within(&mut half_sent, PATIENCE).await,
        "half-sent headers are closed"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "not before the header timeout"
    );
    assert!(
        closed_within(&mut silent, PATIENCE).await,
        "a connection that sends nothing is closed too"
    );
    assert_other_client_served(&app).await;
}

#[tokio::test]
async fn a_trickled_body_gets_408_and_the_connection_is_closed() {
    let app = spawn_with(|c| c.header_read_timeout = Duration::from_secs(30)).await;
    let stream = connect_from(GREEDY, app.address).await;
    let (mut reader, mut writer) = stream.into_split();
    writer
        .write_all(
            b"POST /token HTTP/1.1\r\nHost: portcullis\r\n\
              Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nusername=",
        )
        .await
        .unwrap();
    // A byte every 200 ms: far slower than the body-read timeout allows.
    let trickle = tokio::spawn(async move {
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if writer.write_all(b"a").await.is_err() {
                break;
            }
        }
    });
    assert_other_client_served(&app).await;

    let response = read_response(&mut reader, PATIENCE)
        .await
        .expect("an answer once the body-read timeout passes");
    assert_eq!(response.status_line, "HTTP/1.1 408 Request Timeout");
    assert_eq!(
        response.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(response.header("connection"), Some("close"));
    assert_eq!(response.body, r#"{"detail":"Request timeout"}"#);
    let request_id = response.header("x-request-id").expect("the request's id");
    assert!(uuid::Uuid::parse_str(request_id).is_ok(), "{request_id}");
    trickle.abort();
    assert_other_client_served(&app).await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let app = spawn_with(|c| c.header_read_timeout = Duration::from_secs(30)).await;
    let mut idle = connect_from(GREEDY, app.address).await;
    assert_healthy(&mut idle).await;
    assert_other_client_served(&app).await;
    assert!(
        closed_within(&mut idle, PATIENCE).await,
        "an idle keep-alive connection is closed"
    );
    assert_other_client_served(&app).await;
}

/// hyper's own header-read timeout runs from the end of the previous response, so alone it
/// would close keep-alive connections after the (shorter) header timeout.
#[tokio::test]
async fn a_keep_alive_connection_may_stay_idle_longer_than_the_header_timeout() {
    let app = spawn_with(|c| c.idle_timeout = Duration::from_secs(8)).await;
    let mut keep_alive = connect_from(GREEDY, app.address).await;
    assert_healthy(&mut keep_alive).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_healthy(&mut keep_alive).await;
}

fn with_header_of(bytes: usize) -> Vec<u8> {
    format!(
        "GET /health HTTP/1.1\r\nHost: portcullis\r\nX-Filler: {}\r\n\r\n",
        "a".repeat(bytes)
    )
    .into_bytes()
}

#[tokio::test]
async fn a_request_head_over_16_kib_gets_431() {
    let app = spawn_with(|_| {}).await;
    for size in [17 * 1024, 20 * 1024] {
        let mut stream = connect_from(GREEDY, app.address).await;
        stream.write_all(&with_header_of(size)).await.unwrap();
        let response = read_response(&mut stream, PATIENCE)
            .await
            .expect("an answer to a large head");
        assert_eq!(
            response.status_line, "HTTP/1.1 431 Request Header Fields Too Large",
            "{size} bytes"
        );
        assert_eq!(
            response.header("content-type"),
            Some("application/json; charset=utf-8")
        );
        assert_eq!(
            response.body,
            r#"{"detail":"Request header fields too large"}"#
        );
        let request_id = response.header("x-request-id").expect("the request's id");
        assert!(uuid::Uuid::parse_str(request_id).is_ok(), "{request_id}");
        assert!(closed_within(&mut stream, PATIENCE).await, "then closed");
    }
    // Far beyond the cap (and hyper's buffer): refused and closed, not buffered.
    let stream = connect_from(GREEDY, app.address).await;
    let (mut reader, mut writer) = stream.into_split();
    let send = tokio::spawn(async move {
        let _ = writer.write_all(&with_header_of(1024 * 1024)).await;
        writer
    });
    if let Some(response) = read_response(&mut reader, PATIENCE).await {
        assert_eq!(
            response.status_line,
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
    }
    assert!(closed_within(&mut reader, PATIENCE).await);
    tokio::time::timeout(PATIENCE, send)
        .await
        .expect("the server stops reading the head")
        .unwrap();
    // Just under the cap is served.
    let mut stream = connect_from(GREEDY, app.address).await;
    stream.write_all(&with_header_of(15 * 1024)).await.unwrap();
    let response = read_response(&mut stream, PATIENCE).await.unwrap();
    assert_eq!(response.status_line, "HTTP/1.1 200 OK");
    assert_other_client_served(&app).await;
}

#[tokio::test]
async fn the_65th_connection_from_one_address_is_closed_at_once() {
    let app = spawn_with(|c| {
        c.max_connections_per_address = 64;
        c.idle_timeout = Duration::from_secs(60);
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..64 {
        let mut stream = connect_from(GREEDY, app.address).await;
        assert_healthy(&mut stream).await;
        held.push(stream);
    }
    let mut refused = connect_from(GREEDY, app.address).await;
    let _ = refused.write_all(HEALTH).await;
    assert!(
        read_response(&mut refused, Duration::from_secs(3))
            .await
            .is_none(),
        "no answer to the 65th connection"
    );
    assert!(closed_within(&mut refused, Duration::from_secs(1)).await);
    assert_other_client_served(&app).await;
    for stream in &mut held[..4] {
        assert_healthy(stream).await;
    }

    // Once one closes, the address may connect again.
    drop(held.pop());
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut again = connect_from(GREEDY, app.address).await;
        let _ = again.write_all(HEALTH).await;
        if let Some(response) = read_response(&mut again, Duration::from_secs(2)).await {
            assert_eq!(response.status_line, "HTTP/1.1 200 OK");
            break;
        }
        assert!(Instant::now() < deadline, "a freed slot is reused");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_client_that_pipelines_requests_and_never_reads_the_answers_is_closed() {
    // Arrange: one connection per address, so the greedy client's next connection is served
    // only once the server has let go of the first.
    let app = spawn_with(|c| {
        c.max_connections_per_address = 1;
        c.idle_timeout = Duration::from_secs(2);
    })
    .await;
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(1024).unwrap();
    socket
        .bind(SocketAddr::new(GREEDY.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    let mut stuck = socket.connect(app.address).await.unwrap();

    // Act: eight requests for the 1.6 MB Swagger UI page in one write, then nothing read: far
    // more than the socket buffers hold, so the server's writes stall.
    let docs = b"GET /docs HTTP/1.1\r\nHost: portcullis\r\n\r\n".repeat(8);
    stuck.write_all(&docs).await.unwrap();

    // Assert: the stalled connection is let go (its slot frees) after the idle timeout, and
    // another client is served meanwhile.
    assert_other_client_served(&app).await;
    let deadline = Instant::now() + PATIENCE + Duration::from_secs(2);
    loop {
        let mut again = connect_from(GREEDY, app.address).await;
        let _ = again.write_all(HEALTH).await;
        if let Some(response) = read_response(&mut again, Duration::from_secs(1)).await {
            assert_eq!(response.status_line, "HTTP/1.1 200 OK");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a connection that never reads its responses is closed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(stuck);
}

#[tokio::test]
async fn beyond_the_global_cap_connections_wait_until_one_frees() {
    let app = spawn_with(|c| {
        c.max_connections = NonZeroUsize::new(4);
        c.idle_timeout = Duration::from_secs(60);
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = connect_from(GREEDY, app.address).await;
        assert_healthy(&mut stream).await;
        held.push(stream);
    }
    let mut waiting = connect_from(OTHER, app.address).await;
    waiting.write_all(HEALTH).await.unwrap();
    assert!(
        read_response(&mut waiting, Duration::from_secs(2))
            .await
            .is_none(),
        "not served while the cap is reached"
    );
    for stream in &mut held {
        assert_healthy(stream).await;
    }
    drop(held.pop());
    let response = read_response(&mut waiting, PATIENCE)
        .await
        .expect("served once a connection closes");
    assert_eq!(response.status_line, "HTTP/1.1 200 OK");
    assert_eq!(response.body, r#"{"status":"ok"}"#);
}
