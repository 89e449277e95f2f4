//! Connection hygiene: idle, slow-header and slow-body connections are closed, a cap on
//! open connections is answered 503, and the API stays responsive meanwhile. Timeouts are
//! set to a second or a few, and every time bound in an assertion is generous.

use std::time::Duration;

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{eventually, spawn_app_with, TestApp};

/// Far longer than any timeout these tests set: a connection not closed by then never is.
const GENEROUS: Duration = Duration::from_secs(15);

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.app.address).await.expect("connect")
}

/// Reads until the server closes the connection (or `GENEROUS` passes, which fails),
/// returning what it sent.
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let read = tokio::time::timeout(GENEROUS, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server did not close the connection");
    String::from_utf8_lossy(&received).into_owned()
}

/// Sends a whole request and reads one whole response (head and `content-length` body),
/// leaving the connection open.
async fn exchange(stream: &mut TcpStream, request: &str) -> String {
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    tokio::time::timeout(GENEROUS, async {
        loop {
            let n = stream.read(&mut buffer).await.expect("read");
            assert!(n > 0, "closed before a whole response");
            received.extend_from_slice(&buffer[..n]);
            let text = String::from_utf8_lossy(&received).into_owned();
            let Some(end) = text.find("\r\n\r\n") else {
                continue;
            };
            let length = text[..end]
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if received.len() >= end + 4 + length {
                return text;
            }
        }
    })
    .await
    .expect("a response in time")
}

/// An authenticated request through a fresh client, which must answer 200 in time.
async fn api_answers(app: &TestApp) {
    let client = reqwest::Client::new();
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        client
            .get(app.url("/api/v1/users/me"))
            .bearer_auth(&app.admin)
            .send(),
    )
    .await
    .expect("the API answers promptly")
    .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_api_answers_while_2000_idle_and_slow_connections_are_open_and_they_are_closed() {
    // The client ends of 2,000 connections live in this process as well as the server's.
    tellify::server::raise_open_file_limit();
    let app = spawn_app_with(|settings| {
        settings.http.idle_timeout_secs = 3;
        settings.http.header_read_timeout_secs = 3;
        settings.http.body_timeout_secs = 3;
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..2000 {
        idle.push(connect(&app).await);
    }
    // Kept alive after a request, a connection is idle again.
    let mut kept_alive = connect(&app).await;
    let answer = exchange(
        &mut kept_alive,
        "GET /healthz HTTP/1.1\r\nHost: tellify\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let mut slow_headers = Vec::new();
    for _ in 0..20 {
        let mut stream = connect(&app).await;
        stream
            .write_all(b"GET /api/v1/alerts HTTP/1.1\r\nHost: tellify\r\nX-Slow: ")
            .await
            .expect("write");
        slow_headers.push(stream);
    }
    let mut slow_bodies = Vec::new();
    for _ in 0..20 {
        let mut stream = connect(&app).await;
        let head = format!(
            "POST /api/v1/events HTTP/1.1\r\nHost: tellify\r\nAuthorization: Bearer {}\r\n\
             Content-Type: text/plain\r\nContent-Length: 1000\r\n\r\nok:",
            app.admin
        );
        stream.write_all(head.as_bytes()).await.expect("write");
        slow_bodies.push(stream);
    }

    api_answers(&app).await;

    // Then the server closes them all: the idle ones and the slow heads unanswered, the
    // slow bodies with a 408.
    for mut stream in slow_bodies {
        let answer = read_until_closed(&mut stream).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("http.body_timeout_secs"), "{answer}");
    }
    for mut stream in slow_headers {
        assert_eq!(read_until_closed(&mut stream).await, "");
    }
    assert_eq!(read_until_closed(&mut kept_alive).await, "");
    let closed = futures_util::future::join_all(idle.iter_mut().map(read_until_closed)).await;
    assert!(closed.iter().all(String::is_empty));
    let stored = app.app.state.store.last_seq().await.expect("last seq");
    assert_eq!(stored, 0, "no half-sent event was stored");
    api_answers(&app).await;
}

#[tokio::test]
async fn a_slow_header_is_cut_at_the_header_timeout_but_an_idle_connection_waits() {
    let app = spawn_app_with(|settings| {
        settings.http.header_read_timeout_secs = 1;
        settings.http.idle_timeout_secs = 60;
    })
    .await;
    let mut idle = connect(&app).await;
    let mut slow = connect(&app).await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: tellify\r\n")
        .await
        .expect("write");
    // Cut well before the idle timeout of a minute: it is the header timeout.
    assert_eq!(read_until_closed(&mut slow).await, "");

    // Past the header timeout, the connection that sent nothing is still open and served,
    // and stays open (kept alive) for the next request.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let first = exchange(&mut idle, "GET /healthz HTTP/1.1\r\nHost: tellify\r\n\r\n").await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    let second = exchange(&mut idle, "GET /healthz HTTP/1.1\r\nHost: tellify\r\n\r\n").await;
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
}

#[tokio::test]
async fn connections_beyond_the_cap_are_answered_503_and_closed() {
    let app = spawn_app_with(|settings| {
        settings.http.max_connections = 4;
    })
    .await;
    // Four kept-alive connections, each known to be accepted: it answered a request.
    let mut open = Vec::new();
    for _ in 0..4 {
        let mut stream = connect(&app).await;
        let answer = exchange(
            &mut stream,
            "GET /healthz HTTP/1.1\r\nHost: tellify\r\n\r\n",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        open.push(stream);
    }
    let mut fifth = connect(&app).await;
    fifth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: tellify\r\n\r\n")
        .await
        .expect("write");
    let answer = read_until_closed(&mut fifth).await;
    assert!(
        answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{answer}"
    );
    let head = answer.to_ascii_lowercase();
    assert!(head.contains("\r\nretry-after: 1\r\n"), "{answer}");
    assert!(head.contains("\r\nconnection: close\r\n"), "{answer}");
    assert!(answer.contains("too many connections"), "{answer}");

    // A connection that closes frees its place.
    drop(open.pop());
    eventually("a freed place", || async {
        let mut stream = connect(&app).await;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: tellify\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let answer = read_until_closed(&mut stream).await;
        answer.starts_with("HTTP/1.1 200").then_some(())
    })
    .await;
}
