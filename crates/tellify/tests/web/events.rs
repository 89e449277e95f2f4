//! The event pages: search, the live tail, an event's page, the chart.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::{password_of, person, Browser};
use crate::helpers::spawn_app;
use crate::helpers::TestApp;

/// Sends one event (JSON) and returns its id.
async fn send(app: &TestApp, token: &str, event: Value) -> String {
    let response = app.post(token, "/api/v1/events", event).await;
    let status = response.status();
    let body: Value = response.json().await.expect("json");
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body["ids"][0].as_str().expect("id").to_string()
}

/// Reads SSE frames until one named `name` arrives; returns its data.
async fn next_frame(
    stream: &mut (impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buffer: &mut String,
    name: &str,
) -> String {
    loop {
        if let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer[..end].to_string();
            buffer.replace_range(..end + 2, "");
            if frame.lines().any(|line| line == format!("event: {name}")) {
                return frame
                    .lines()
                    .filter_map(|line| line.strip_prefix("data: ").or(line.strip_prefix("data:")))
                    .collect::<Vec<_>>()
                    .join("\n");
            }
            continue;
        }
        let chunk = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .unwrap_or_else(|_| panic!("an `{name}` frame within 5 s"))
            .expect("stream open")
            .expect("chunk");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn search_finds_events_sent_with_the_api_within_the_range_and_filter() {
    let app = spawn_app().await;
    let ann = person(&app, "ann").await;
    // The test clock is 09:00 UTC (10:00 in ann's Berlin); the default range is the last hour.
    let hot = send(&app, &ann, json!({"time": "2026-11-23T08:30:00Z", "type": "disk", "message": "home filling", "fields": {"usage": 95, "fs": "/home"}})).await;
    let cool = send(&app, &ann, json!({"time": "2026-11-23T08:40:00Z", "type": "disk", "message": "home fine", "fields": {"usage": 20, "fs": "/home"}})).await;
    let old = send(&app, &ann, json!({"time": "2026-11-23T07:00:00Z", "type": "disk", "message": "old and hot", "fields": {"usage": 99, "fs": "/"}})).await;
    let other = send(&app, &ann, json!({"time": "2026-11-23T08:50:00Z", "type": "login", "message": "ann signed in", "fields": {"usage": 99}})).await;
    let mut browser = Browser::signed_in(&app, "ann", &password_of("ann")).await;

    let page = browser.page("/events").await;
    for id in [&hot, &cool, &other] {
        assert!(page.contains(&format!("data-event=\"{id}\"")), "{page}");
    }
    assert!(!page.contains(&old), "older than an hour");
    assert!(
        page.contains("value=\"2026-11-23T09:00\""),
        "the range in my zone: {page}"
    );
    assert!(page.contains("09:30 CET"), "times in my zone");

    let filtered = browser.page("/events?filter=usage%20%3E%2090").await;
    assert!(filtered.contains(&hot) && filtered.contains(&other));
    assert!(!filtered.contains(&cool) && !filtered.contains(&old));

    let typed = browser
        .page("/events?filter=usage%20%3E%2090&type=disk")
        .await;
    assert!(typed.contains(&hot) && !typed.contains(&other));

    let text = browser.page("/events?text=FILLING").await;
    assert!(text.contains(&hot) && !text.contains(&cool));

    // A range in my zone: from 07:30 Berlin (06:30 UTC) to 09:35 Berlin (08:35 UTC).
    let ranged = browser
        .page("/events?from=2026-11-23T07%3A30&to=2026-11-23T09%3A35")
        .await;
    assert!(ranged.contains(&old) && ranged.contains(&hot));
    assert!(!ranged.contains(&cool) && !ranged.contains(&other));

    // The API searches by the same rules (type and text included).
    let api = app
        .get_json(&ann, "/api/v1/events?since=1h&type=disk&text=filling")
        .await;
    let ids: Vec<&str> = api["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [hot.as_str()]);
}

#[tokio::test]
async fn a_bad_filter_shows_its_error_and_position_next_to_the_field() {
    let app = spawn_app().await;
    person(&app, "ann").await;
    let mut browser = Browser::signed_in(&app, "ann", &password_of("ann")).await;
    let response = browser.get("/events?filter=usage%20%3E&from=soon").await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = response.text().await.unwrap();
    assert!(
        page.contains("aria-describedby=\"f-filter-error\""),
        "{page}"
    );
    let error_at = page
        .find("id=\"f-filter-error\"")
        .expect("the filter's error");
    let field_at = page.find("id=\"filter\"").expect("the filter field");
    assert!(
        error_at > field_at && error_at - field_at < 600,
        "next to the field"
    );
    assert!(page[error_at..].contains("(line 1, column"), "{page}");
    assert!(
        page.contains("value=\"usage &#62;\""),
        "what was typed stays: {page}"
    );
    assert!(page.contains("id=\"f-from-error\""), "every field's error");
    // The chart says the same about the same filter.
    let chart = browser
        .get("/events/chart?field=usage&filter=usage%20%3E")
        .await;
    assert_eq!(chart.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(chart
        .text()
        .await
        .unwrap()
        .contains("id=\"f-filter-error\""));
}

#[tokio::test]
async fn the_tail_delivers_a_new_matching_event_and_not_a_non_matching_one() {
    let app = spawn_app().await;
    let ann = person(&app, "ann").await;
    let mut browser = Browser::signed_in(&app, "ann", &password_of("ann")).await;
    let page = browser.page("/events?live=1&filter=usage%20%3E%2090").await;
    assert!(page.contains("data-tail=\"/events/tail?after="), "{page}");
    assert!(page.contains("/events.js\""), "the tail's script");

    let response = browser.get("/events/tail?filter=usage%20%3E%2090").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    next_frame(&mut stream, &mut buffer, "ready").await;
    let low = send(
        &app,
        &ann,
        json!({"message": "low", "fields": {"usage": 10}}),
    )
    .await;
    let high = send(
        &app,
        &ann,
        json!({"message": "high <b>x</b>", "fields": {"usage": 95}}),
    )
    .await;
    let row = next_frame(&mut stream, &mut buffer, "row").await;
    assert!(row.contains(&format!("data-event=\"{high}\"")), "{row}");
    assert!(row.contains("high &#60;b&#62;x"), "escaped: {row}");
    assert!(!row.contains(&low));
    assert!(
        !buffer.contains(&low),
        "the non-matching event is never sent"
    );

    // A reconnect from a position gets what it missed, filtered the same way.
    let response = browser
        .get("/events/tail?after=0&filter=usage%20%3E%2090")
        .await;
    let mut stream = response.bytes_stream();
    let mut buffer = String::new();
    let replayed = next_frame(&mut stream, &mut buffer, "row").await;
    assert!(replayed.contains(&high) && !replayed.contains(&low));

    let bad = browser.get("/events/tail?filter=usage%20%3E").await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_events_page_escapes_script_in_every_field_and_unknown_ids_are_not_found() {
    let app = spawn_app().await;
    let ann = person(&app, "ann").await;
    app.subscribe(
        &ann,
        json!({"kind": "threshold", "title": "disk", "params": {"field": "usage", "warn": 90, "critical": 97, "group_by": ["fs"]}}),
    )
    .await;
    let id = send(
        &app,
        &ann,
        json!({
            "message": "<script>alert('m')</script>",
            "source": {"host": "<script>alert('h')</script>", "component": "<script>alert('c')</script>"},
            "fields": {"usage": 98, "fs": "<script>alert('f')</script>", "<script>alert('n')</script>": "<img src=x onerror=alert(2)>"}
        }),
    )
    .await;
    app.settle().await;
    let mut browser = Browser::signed_in(&app, "ann", &password_of("ann")).await;
    let detail = browser.page(&format!("/events/{id}")).await;
    for page in [
        detail.clone(),
        browser.page("/events").await,
        browser.page("/events/chart?field=usage&group=fs").await,
    ] {
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(!page.contains("<img src=x"), "{page}");
    }
    assert!(
        detail.contains("&#60;script&#62;alert(&#39;h&#39;)"),
        "{detail}"
    );
    assert!(detail.contains("Envelope") && detail.contains("As JSON"));
    assert!(detail.contains("/alerts/"), "the alert it fired: {detail}");
    assert!(detail.contains("Search similar events"));

    let missing = browser.get("/events/01JZZZZZZZZZZZZZZZZZZZZZZZ").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

/// The `points` of each `<polyline data-series="…">` in the page's SVG.
fn series_of(page: &str) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    for part in page.split("<polyline ").skip(1) {
        let attribute = |name: &str| {
            let at = part.find(&format!("{name}=\"")).expect(name) + name.len() + 2;
            part[at..at + part[at..].find('"').unwrap()].to_string()
        };
        let points = attribute("points");
        for point in points.split_whitespace() {
            let (x, y) = point.split_once(',').expect("x,y");
            assert!(
                x.parse::<f64>().is_ok() && y.parse::<f64>().is_ok(),
                "{point}"
            );
        }
        found.push((attribute("data-series"), points.split_whitespace().count()));
    }
    found
}

#[tokio::test]
async fn the_chart_draws_one_series_per_group_key_and_says_when_a_field_is_not_numeric() {
    let app = spawn_app().await;
    let ann = person(&app, "ann").await;
    for (minute, fs, usage) in [
        (10, "/", 50),
        (20, "/", 55),
        (30, "/", 61),
        (15, "/home", 80),
        (45, "/home", 91),
    ] {
        send(&app, &ann, json!({"time": format!("2026-11-23T08:{minute}:00Z"), "type": "disk", "fields": {"usage": usage, "fs": fs}})).await;
    }
    send(
        &app,
        &ann,
        json!({"time": "2026-11-23T08:50:00Z", "type": "login", "fields": {"user": "ann"}}),
    )
    .await;
    let mut browser = Browser::signed_in(&app, "ann", &password_of("ann")).await;
    let page = browser.page("/events/chart?field=usage&group=fs").await;
    let mut series = series_of(&page);
    series.sort();
    assert_eq!(
        series,
        [("/".to_string(), 3), ("/home".to_string(), 2)],
        "{page}"
    );
    assert!(
        page.contains("<details class=\"chart-data\">"),
        "a table fallback"
    );
    assert!(
        page.contains("stroke-dasharray"),
        "series differ by dash too"
    );
    assert!(page.contains("10:00 CET"), "axis labels in my zone: {page}");

    let filtered = browser
        .page("/events/chart?field=usage&group=fs&filter=fs%20%3D%3D%20%22%2Fhome%22")
        .await;
    assert_eq!(series_of(&filtered), [("/home".to_string(), 2)]);

    let text = browser.page("/events/chart?field=fs").await;
    assert!(series_of(&text).is_empty());
    assert!(text.contains("is not a number"), "{text}");
    let missing = browser.page("/events/chart?field=nope").await;
    assert!(missing.contains("has a field"), "{missing}");
}

/// The "From" field shows the start of the range as the reader's wall-clock time, and
/// what it shows reads back as the same instant: in Tokyo (UTC+9, no DST, so nothing
/// can look like UTC by chance) the default "one hour ago" at 09:00 UTC is 17:00.
#[tokio::test]
async fn the_from_field_shows_and_reads_my_local_time() {
    let app = spawn_app().await;
    let ann = person(&app, "ann").await;
    let mut browser = Browser::signed_in(&app, "ann", &password_of("ann")).await;
    browser.page("/account").await;
    let response = browser
        .post(
            "/account/profile",
            &[("display_name", ""), ("timezone", "Asia/Tokyo")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    // 17:30 and 16:30 in Tokyo.
    let recent = send(
        &app,
        &ann,
        json!({"time": "2026-11-23T08:30:00Z", "type": "disk", "message": "recent"}),
    )
    .await;
    let earlier = send(
        &app,
        &ann,
        json!({"time": "2026-11-23T07:30:00Z", "type": "disk", "message": "earlier"}),
    )
    .await;

    let page = browser.page("/events").await;
    assert!(
        page.contains("From <span class=\"hint\">(Asia/Tokyo)</span>"),
        "{page}"
    );
    assert!(
        page.contains("id=\"f-from\" name=\"from\" value=\"2026-11-23T17:00\""),
        "an hour before 18:00 in Tokyo, not 08:00 UTC: {page}"
    );
    assert!(page.contains(&recent) && !page.contains(&earlier), "{page}");

    // Sending the shown value back selects the same range, and it is shown unchanged.
    let again = browser.page("/events?from=2026-11-23T17%3A00").await;
    assert!(again.contains("value=\"2026-11-23T17:00\""), "{again}");
    assert!(
        again.contains(&recent) && !again.contains(&earlier),
        "{again}"
    );
    // An hour earlier, read in Tokyo too, takes in the earlier event.
    let wider = browser.page("/events?from=2026-11-23T16%3A00").await;
    assert!(
        wider.contains(&recent) && wider.contains(&earlier),
        "{wider}"
    );
    let later = browser.page("/events?from=2026-11-23T17%3A45").await;
    assert!(
        !later.contains(&recent),
        "17:45 Tokyo is after 08:30 UTC: {later}"
    );

    // An event's "similar events" link spans an hour either side, in Tokyo time.
    let detail = browser.page(&format!("/events/{recent}")).await;
    assert!(
        detail.contains("from=2026-11-23T16%3A30&#38;to=2026-11-23T18%3A30"),
        "{detail}"
    );
}
