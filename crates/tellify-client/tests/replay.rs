//! The client against a tiny HTTP server of its own: events sent while nothing listens
//! are spooled, later ones queue behind them, and the background replay delivers them
//! all, in order, once the server appears.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tellify_client::{Client, EventInput, SendOutcome, SpoolReason};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

fn event(n: usize) -> EventInput {
    let mut event = EventInput::default();
    event.fields.insert("n".to_string(), n.into());
    event
}

/// Answers every `POST` with 202 and records each NDJSON line's `fields.n`.
async fn serve(listener: TcpListener, received: Arc<Mutex<Vec<u64>>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let received = received.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stream);
            loop {
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if line == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':') {
                        if name.eq_ignore_ascii_case("content-length") {
                            length = value.trim().parse().unwrap();
                        }
                    }
                }
                let mut body = vec![0u8; length];
                reader.read_exact(&mut body).await.unwrap();
                let mut ids = Vec::new();
                for line in String::from_utf8(body).unwrap().lines() {
                    let event: Value = serde_json::from_str(line).unwrap();
                    assert!(event["idempotency_key"].is_string());
                    received
                        .lock()
                        .unwrap()
                        .push(event["fields"]["n"].as_u64().unwrap());
                    ids.push(format!("id{}", ids.len()));
                }
                let answer = serde_json::json!({"ids": ids, "duplicates": 0}).to_string();
                let response = format!(
                    "HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\n\r\n{answer}",
                    answer.len()
                );
                reader
                    .get_mut()
                    .write_all(response.as_bytes())
                    .await
                    .unwrap();
            }
        });
    }
}

#[tokio::test]
async fn spooled_events_are_replayed_in_order_once_the_server_appears() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = Client::builder(format!("http://127.0.0.1:{port}"), "tfy_test")
        .spool(dir.path())
        .replay_batch(3)
        .build()
        .unwrap();

    let first = client
        .send_batch((0..5).map(event).collect())
        .await
        .unwrap();
    assert!(
        matches!(
            first,
            SendOutcome::Spooled {
                events: 5,
                reason: SpoolReason::Unavailable(_)
            }
        ),
        "{first:?}"
    );
    let second = client.send(event(5)).await.unwrap();
    assert_eq!(
        second,
        SendOutcome::Spooled {
            events: 1,
            reason: SpoolReason::Behind { pending: 5 }
        },
        "a later event waits behind the spooled ones"
    );

    let replay = client.spawn_replay().unwrap();
    let received: Arc<Mutex<Vec<u64>>> = Arc::default();
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    tokio::spawn(serve(listener, received.clone()));

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = client.spool_status().await.unwrap().unwrap();
        if status.pending_events == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "not replayed: {status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(*received.lock().unwrap(), vec![0, 1, 2, 3, 4, 5]);

    // With the spool empty, a send goes straight to the server.
    let direct = client.send(event(6)).await.unwrap();
    assert!(matches!(direct, SendOutcome::Sent(_)), "{direct:?}");
    replay.shutdown().await;
    assert_eq!(*received.lock().unwrap(), vec![0, 1, 2, 3, 4, 5, 6]);
}

#[tokio::test]
async fn without_a_spool_an_unreachable_server_is_the_callers_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client = Client::builder(format!("127.0.0.1:{port}"), "tfy_test")
        .build()
        .unwrap();
    let error = client.send(event(0)).await.unwrap_err();
    assert!(error.is_retryable());
    assert!(
        error
            .to_string()
            .starts_with("cannot reach the tellify server at http://127.0.0.1:"),
        "{error}"
    );
}
