//! Cost budgets for user-supplied filters, and the bounded event search (issue 8,
//! finding 6: one user's filter stalled everyone).

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{problem, spawn_app, spawn_app_with};

/// The shape of the filter from the finding: three nested `all()` over a list, 0.4 s per
/// event on a 100-item list.
fn nested_all_filter() -> String {
    let mut filter =
        String::from("xs.all(a, xs.all(b, xs.all(c, a + b + c >= 0 && a * b * c >= 0 && ");
    while filter.len() < 700 {
        filter.push_str("(a - b + c) * (b - c + a) >= -1000000 && ");
    }
    filter.push_str("true)))");
    filter
}

fn paths(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["path"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_nested_comprehension_filter_is_refused_wherever_a_filter_is_written() {
    let app = spawn_app().await;
    let ann = app.user("ann").await;
    let filter = nested_all_filter();
    let response = app
        .post(
            &ann,
            "/api/v1/subscriptions",
            json!({"kind": "match", "title": "lists", "params": {"filter": filter}}),
        )
        .await;
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(paths(&body), vec!["params.filter"], "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("nested comprehensions: at most 2 levels"),
        "{body}"
    );

    // An update may not bring it in either.
    let id = app
        .subscribe(
            &ann,
            json!({"kind": "match", "title": "lists", "params": {"filter": "xs.exists(x, x > 1)"}}),
        )
        .await;
    let response = app
        .client
        .put(app.url(&format!("/api/v1/subscriptions/{id}")))
        .bearer_auth(&ann)
        .json(&json!({"params": {"filter": filter}}))
        .send()
        .await
        .unwrap();
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(paths(&body), vec!["params.filter"], "{body}");

    // Nor a silence, nor a search.
    let response = app
        .post(
            &ann,
            "/api/v1/silences",
            json!({"filter": filter, "ends": "1h"}),
        )
        .await;
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(paths(&body), vec!["filter"], "{body}");
    let search = format!("/api/v1/events?filter={}", url_escape(&filter));
    let (status, body) = problem(app.get(&ann, &search).await).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["field"], "filter", "{body}");
    assert!(body["detail"]
        .as_str()
        .unwrap_or_default()
        .contains("nested comprehensions"));
}

#[tokio::test]
async fn ingest_refuses_a_list_longer_than_the_limit_naming_the_field() {
    let app = spawn_app().await;
    let items: Vec<u32> = (0..101).collect();
    let response = app
        .post(
            &app.admin,
            "/api/v1/events",
            json!({"type": "lists", "fields": {"xs": items}}),
        )
        .await;
    let (status, body) = problem(response).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let text = body.to_string();
    assert!(text.contains("fields.xs"), "{body}");
    assert!(
        text.contains("has 101 items, more than the limit of 100"),
        "{body}"
    );
    let response = app
        .post(
            &app.admin,
            "/api/v1/events",
            json!({"type": "lists", "fields": {"xs": (0..100).collect::<Vec<u32>>()}}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
}

async fn ingest_numbered(app: &crate::helpers::TestApp, count: usize, rare_every: usize) {
    let events: Vec<Value> = (0..count)
        .map(|n| {
            let kind = if n % rare_every == 0 {
                "rare"
            } else {
                "common"
            };
            json!({"type": kind, "fields": {"n": n, "xs": [n % 7, n % 11, n % 13]}})
        })
        .collect();
    let response = app.post(&app.admin, "/api/v1/events", json!(events)).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    app.settle().await;
}

fn numbers(page: &Value) -> Vec<u64> {
    page["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|e| e["fields"]["n"].as_u64())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_search_stops_at_its_row_budget_and_resumes_from_its_cursor() {
    let app = spawn_app_with(|settings| settings.search.max_rows_examined = 40).await;
    ingest_numbered(&app, 150, 50).await;
    let filter = url_escape("xs.exists(x, x == 5) && n >= 0");
    let mut found = Vec::new();
    let mut cursor: Option<String> = None;
    let mut requests = 0;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/api/v1/events?filter={filter}&limit=1000&cursor={cursor}"),
            None => format!("/api/v1/events?filter={filter}&limit=1000"),
        };
        let page = app.get_json(&app.admin, &path).await;
        requests += 1;
        assert!(page["examined"].as_u64().unwrap() <= 40, "{page}");
        found.extend(numbers(&page));
        match page["next"].as_str() {
            Some(next) => {
                assert_eq!(page["partial"], true, "{page}");
                cursor = Some(next.to_string());
            }
            None => break,
        }
        assert!(requests < 20, "the cursor moves on");
    }
    assert!(requests >= 4, "150 events at 40 a request: {requests}");
    let expected: Vec<u64> = (0..150u64)
        .rev()
        .filter(|n| n % 7 == 5 || n % 11 == 5 || n % 13 == 5)
        .collect();
    assert_eq!(found, expected, "every match once, newest first");
}

#[tokio::test]
async fn a_search_by_type_looks_only_at_events_of_that_type() {
    let app = spawn_app_with(|settings| settings.search.max_rows_examined = 40).await;
    ingest_numbered(&app, 150, 50).await;
    // Three events of 150 are `rare`: the type index finds them without the 40-row budget
    // running out, and the field equality narrows them in the store.
    let filter = url_escape(r#"event.type == "rare""#);
    let page = app
        .get_json(&app.admin, &format!("/api/v1/events?filter={filter}"))
        .await;
    assert_eq!(numbers(&page), vec![100, 50, 0], "{page}");
    assert_eq!(page["examined"], 3, "{page}");
    assert_eq!(page["partial"], false);
    assert!(page["next"].is_null());
    let filter = url_escape(r#"event.type == "rare" && n == 50"#);
    let page = app
        .get_json(&app.admin, &format!("/api/v1/events?filter={filter}"))
        .await;
    assert_eq!(numbers(&page), vec![50], "{page}");
    assert_eq!(page["examined"], 3, "{page}");
}

fn url_escape(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// The before/after figures of docs/security-cel.md, by hand:
/// `cargo test -p tellify --test api measure_search -- --ignored --nocapture`.
#[tokio::test]
#[ignore]
async fn measure_search_with_and_without_the_budget() {
    for (label, time_budget_ms) in [
        ("unbounded (as on main)", 600_000),
        ("default budget", 1000),
    ] {
        let app = spawn_app_with(|settings| {
            settings.search.time_budget_ms = time_budget_ms;
            settings.ingest.max_backlog_events = 0;
        })
        .await;
        for batch in 0..4 {
            let events: Vec<Value> = (0..5000)
                .map(|i| {
                    let n = batch * 5000 + i;
                    let xs: Vec<u64> = (0..50).map(|k| (n + k) % 97).collect();
                    json!({"type": "load", "fields": {"n": n, "xs": xs}})
                })
                .collect();
            let response = app.post(&app.admin, "/api/v1/events", json!(events)).await;
            assert_eq!(response.status(), StatusCode::ACCEPTED);
        }
        app.settle().await;
        // Matches nothing, so the search looks at every event it may, each in full.
        let filter =
            url_escape("xs.exists(a, [3, 5, 7, 11, 13, 17, 19, 23].exists(b, a * b == 100000))");
        let started = std::time::Instant::now();
        let page = app
            .get_json(&app.admin, &format!("/api/v1/events?filter={filter}"))
            .await;
        println!(
            "{label}: {:.2} s, examined {}, partial {}, next {}",
            started.elapsed().as_secs_f64(),
            page["examined"],
            page["partial"],
            page["next"]
        );
    }
}
