//! `dashboard`: how fast the dashboard's pages answer with many alerts and events stored
//! (issue 11: under 50 ms of server time with 10,000 alerts and 1,000,000 events).
//!
//! Setup goes through the HTTP API only, as any client would: a user `dash` with a
//! password and no contact points, a token for them, their `match` subscription `bench`
//! (`kind == "hit"`, grouped by `n`), `--dashboard-alerts` events `kind:hit n:<i>` (one
//! alert each) and `kind:noise` events, 1,000 per request, until the log holds
//! `--dashboard-events`. It then waits for the worker (`/healthz` lag 0) and counts the
//! user's alerts through the API. A second run against the same server adds only what is
//! missing.
//!
//! Then it signs in through the sign-in form (`POST /login`, `Sec-Fetch-Site:
//! same-origin`), keeps the `tellify_session` cookie, and asks every page of [`PAGES`]
//! `--page-requests` times in a row (at most `--page-seconds` per page). A page whose first
//! answer is not 200 is reported with its status and skipped. The figures per page are
//! the server's own time, from the `Server-Timing: app;dur=<ms>` header of every
//! dashboard answer, and the client's time to the whole body. `/admin` is asked as the
//! `admin` user (`--admin-password`). Last, `/live?view=alerts` is opened
//! `--live-connects` times: milliseconds until its first `event: snapshot` arrives.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::StreamExt;
use reqwest::header::{CONTENT_TYPE, COOKIE, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tellify_client::SseParser;

use crate::drain::{wait_for_drain, DrainReport};
use crate::report::{milliseconds, Percentiles};
use crate::target::{call, expect_success, truncate, Target};
use crate::Args;

/// The user who owns the alerts the pages show.
pub(crate) const DASH_USER: &str = "dash";
/// Their password (the sign-in form checks at least 10 characters).
pub(crate) const DASH_PASSWORD: &str = "dash-bench-password-0123";
/// Their one subscription.
pub(crate) const DASH_TITLE: &str = "bench";
/// The bootstrap administrator, for `/admin`.
pub(crate) const ADMIN_USER: &str = "admin";
/// Events per ingest request while seeding.
pub(crate) const SEED_BATCH: usize = 1_000;
/// Ingest requests in flight while seeding.
pub(crate) const SEED_CONNECTIONS: usize = 4;

/// The pages measured, in order; `{alert}`, `{subscription}` and `{event}` are replaced
/// by an id of the seeded data. `admin` pages are asked with the admin's session.
pub(crate) const PAGES: &[(&str, Who)] = &[
    ("/", Who::User),
    ("/?state=all", Who::User),
    ("/?group=severity", Who::User),
    ("/alerts/{alert}", Who::User),
    ("/alerts/{alert}/explain", Who::User),
    ("/acks", Who::User),
    ("/subscriptions", Who::User),
    ("/subscriptions/{subscription}", Who::User),
    ("/notifications", Who::User),
    ("/notifications/week", Who::User),
    ("/deliveries", Who::User),
    ("/events", Who::User),
    ("/events/{event}", Who::User),
    ("/events/chart?field=n&group=kind", Who::User),
    ("/admin", Who::Admin),
    ("/admin/users", Who::Admin),
];

/// Whose session asks for a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Who {
    User,
    Admin,
}

/// What the dashboard run measured.
pub(crate) struct DashboardReport {
    pub(crate) seed: SeedReport,
    pub(crate) pages: Vec<PageReport>,
    pub(crate) live: Option<PageReport>,
}

pub(crate) struct SeedReport {
    pub(crate) alerts: usize,
    pub(crate) events_in_log: i64,
    pub(crate) events_sent: usize,
    pub(crate) seconds: f64,
    pub(crate) drain: DrainReport,
}

/// One page: its answers' statuses and timings.
pub(crate) struct PageReport {
    pub(crate) path: String,
    /// The status of the first answer; a page that did not answer 200 was not measured.
    pub(crate) status: u16,
    /// Answers other than 200 after the first.
    pub(crate) errors: usize,
    /// `Server-Timing: app;dur=` of each 200 answer (ms).
    pub(crate) server_ms: Percentiles,
    /// Request sent to the whole body read (ms); for `/live`, to the first snapshot.
    pub(crate) client_ms: Percentiles,
    /// Size of the last body, in bytes.
    pub(crate) bytes: usize,
    pub(crate) note: Option<String>,
}

impl DashboardReport {
    pub(crate) fn summary_line(&self) -> String {
        let mut lines = vec![format!(
            "dashboard user={DASH_USER} alerts={} events in log={} (sent {} in {:.1} s, {})",
            self.seed.alerts,
            self.seed.events_in_log,
            self.seed.events_sent,
            self.seed.seconds,
            self.seed.drain.summary()
        )];
        lines.push(format!(
            "{:<44} {:>6} {:>5}  {:>26}  {:>26}  {:>7}",
            "page", "status", "n", "server p50 / p99 / max ms", "client p50 / p99 / max ms", "KiB"
        ));
        for page in self.pages.iter().chain(self.live.iter()) {
            lines.push(page.line());
        }
        lines.join("\n")
    }

    pub(crate) fn to_json(&self) -> Value {
        json!({
            "mode": "dashboard",
            "seed": {
                "user": DASH_USER,
                "alerts": self.seed.alerts,
                "events_in_log": self.seed.events_in_log,
                "events_sent": self.seed.events_sent,
                "seconds": self.seed.seconds,
                "drain": self.seed.drain.to_json(),
            },
            "pages": self.pages.iter().map(PageReport::to_json).collect::<Vec<_>>(),
            "live": self.live.as_ref().map(PageReport::to_json),
        })
    }
}

impl PageReport {
    fn skipped(path: String, status: u16, note: Option<String>) -> PageReport {
        PageReport {
            path,
            status,
            errors: 0,
            server_ms: Percentiles::default(),
            client_ms: Percentiles::default(),
            bytes: 0,
            note,
        }
    }

    fn line(&self) -> String {
        let triple = |p: &Percentiles| {
            format!(
                "{} / {} / {}",
                milliseconds(p.p50),
                milliseconds(p.p99),
                milliseconds(p.max)
            )
        };
        let mut line = format!(
            "{:<44} {:>6} {:>5}  {:>26}  {:>26}  {:>7.1}",
            truncate(&self.path, 44),
            self.status,
            self.client_ms.count,
            triple(&self.server_ms),
            triple(&self.client_ms),
            self.bytes as f64 / 1024.0
        );
        if self.errors > 0 {
            line.push_str(&format!(" errors={}", self.errors));
        }
        if let Some(note) = &self.note {
            line.push_str(&format!(" ({note})"));
        }
        line
    }

    fn to_json(&self) -> Value {
        json!({
            "path": self.path,
            "status": self.status,
            "errors": self.errors,
            "server_ms": self.server_ms.to_json(),
            "client_ms": self.client_ms.to_json(),
            "bytes": self.bytes,
            "note": self.note,
        })
    }
}

/// The ids the pages' paths need.
struct Seeded {
    report: SeedReport,
    subscription: String,
    alert: Option<String>,
    event: Option<String>,
}

pub(crate) async fn run_dashboard(
    client: &reqwest::Client,
    target: &Target,
    args: &Args,
) -> anyhow::Result<DashboardReport> {
    let seeded = seed(client, target, args).await?;
    // Pages are asked without following redirects: a 303 to `/login` is a failed sign-in,
    // not a page.
    let pages_client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .context("cannot build the HTTP client")?;
    let user_cookie = sign_in(&pages_client, target, DASH_USER, DASH_PASSWORD)
        .await
        .context("signing in as the dashboard user")?;
    let admin_cookie = match &args.admin_password {
        Some(password) => sign_in(&pages_client, target, ADMIN_USER, password)
            .await
            .map_err(|error| format!("{error:#}")),
        None => Err("no --admin-password".to_string()),
    };
    let mut pages = Vec::new();
    for (template, who) in PAGES {
        let path = template
            .replace("{subscription}", &seeded.subscription)
            .replace("{alert}", seeded.alert.as_deref().unwrap_or("none"))
            .replace("{event}", seeded.event.as_deref().unwrap_or("none"));
        let cookie = match who {
            Who::User => &user_cookie,
            Who::Admin => match &admin_cookie {
                Ok(cookie) => cookie,
                Err(error) => {
                    pages.push(PageReport::skipped(
                        path,
                        0,
                        Some(format!("admin not signed in: {}", truncate(error, 120))),
                    ));
                    continue;
                }
            },
        };
        pages.push(measure_page(&pages_client, target, &path, cookie, args).await);
    }
    let live = measure_live(target, &user_cookie, args).await;
    Ok(DashboardReport {
        seed: seeded.report,
        pages,
        live: Some(live),
    })
}

/// The user, their token and subscription, the events; then the wait for the worker.
async fn seed(client: &reqwest::Client, target: &Target, args: &Args) -> anyhow::Result<Seeded> {
    let started = Instant::now();
    let admin = |request: reqwest::RequestBuilder| {
        request.header(reqwest::header::AUTHORIZATION, &target.authorization)
    };
    let (status, body) = call(
        admin(client.post(target.url("/api/v1/users"))).json(&json!({
            "name": DASH_USER,
            "timezone": "UTC",
            "password": DASH_PASSWORD,
        })),
    )
    .await?;
    if status == StatusCode::CONFLICT {
        // Left from an earlier run: make sure the password is the one this run signs in with.
        let (status, body) = call(
            admin(client.put(target.url(&format!("/api/v1/users/{DASH_USER}/password"))))
                .json(&json!({"password": DASH_PASSWORD})),
        )
        .await?;
        expect_success("set the dashboard user's password", status, &body)?;
    } else {
        expect_success("create the dashboard user", status, &body)?;
    }
    let (status, body) = call(
        admin(client.post(target.url("/api/v1/tokens"))).json(&json!({
            "name": "bench-dashboard",
            "scopes": ["user"],
            "user": DASH_USER,
        })),
    )
    .await?;
    expect_success("create the dashboard user's token", status, &body)?;
    let token = body
        .get("token")
        .and_then(Value::as_str)
        .context("token answer has no `token`")?;
    let user_target = target.with_token(token)?;
    let (subscription, created) = ensure_dash_subscription(client, &user_target).await?;

    let mut events_sent = 0;
    let mut event = None;
    if created {
        let hits: Vec<Value> = (0..args.dashboard_alerts)
            .map(|n| json!({"type": "dash", "fields": {"kind": "hit", "n": n}}))
            .collect();
        for chunk in hits.chunks(SEED_BATCH) {
            let ids = post_batch(client, target, chunk).await?;
            event = event.or_else(|| ids.first().cloned());
            events_sent += chunk.len();
        }
    }
    let in_log = target.health(client).await?.events;
    let noise = usize::try_from(args.dashboard_events as i64 - in_log).unwrap_or(0);
    let batches = noise.div_ceil(SEED_BATCH);
    let results: Vec<anyhow::Result<usize>> = futures_util::stream::iter(0..batches)
        .map(|batch| {
            let first = batch * SEED_BATCH;
            let count = SEED_BATCH.min(noise - first);
            let events: Vec<Value> = (first..first + count)
                .map(|i| {
                    json!({
                        "type": "dash",
                        "fields": {"kind": "noise", "n": i % 1000, "host": format!("h{}", i % 50)},
                    })
                })
                .collect();
            async move { post_batch(client, target, &events).await.map(|_| count) }
        })
        .buffer_unordered(SEED_CONNECTIONS)
        .collect()
        .await;
    for result in results {
        events_sent += result?;
    }
    let drain = wait_for_drain(target, Duration::from_secs(args.drain_timeout)).await?;
    if drain.drained_after.is_none() {
        bail!("the worker did not catch up: {}", drain.summary());
    }
    let (alerts, alert) = count_alerts(client, &user_target).await?;
    if event.is_none() {
        // Only `/events/{id}` needs it: a failed search skips that page, not the run.
        event = first_event_id(client, target).await.ok().flatten();
    }
    Ok(Seeded {
        report: SeedReport {
            alerts,
            events_in_log: drain.events_in_log,
            events_sent,
            seconds: started.elapsed().as_secs_f64(),
            drain,
        },
        subscription,
        alert,
        event,
    })
}

/// The id of the user's `bench` subscription, and whether this run created it.
async fn ensure_dash_subscription(
    client: &reqwest::Client,
    user: &Target,
) -> anyhow::Result<(String, bool)> {
    let (status, body) = call(
        client
            .get(user.url("/api/v1/subscriptions"))
            .header(reqwest::header::AUTHORIZATION, &user.authorization),
    )
    .await?;
    expect_success("list subscriptions", status, &body)?;
    let existing = body["items"].as_array().and_then(|items| {
        items
            .iter()
            .find(|item| item["title"] == DASH_TITLE)
            .and_then(|item| item["id"].as_str())
    });
    if let Some(id) = existing {
        return Ok((id.to_string(), false));
    }
    let (status, body) = call(
        client
            .post(user.url("/api/v1/subscriptions"))
            .header(reqwest::header::AUTHORIZATION, &user.authorization)
            .json(&json!({
                "kind": "match",
                "title": DASH_TITLE,
                "params": {"filter": "kind == \"hit\"", "group_by": ["n"]},
            })),
    )
    .await?;
    expect_success("create the dashboard subscription", status, &body)?;
    let id = body["id"]
        .as_str()
        .context("subscription answer has no `id`")?;
    Ok((id.to_string(), true))
}

/// Posts events as one NDJSON request; answers their ids.
async fn post_batch(
    client: &reqwest::Client,
    target: &Target,
    events: &[Value],
) -> anyhow::Result<Vec<String>> {
    let mut body = String::new();
    for event in events {
        body.push_str(&event.to_string());
        body.push('\n');
    }
    let (status, answer) = call(
        client
            .post(target.url("/api/v1/events"))
            .header(reqwest::header::AUTHORIZATION, &target.authorization)
            .header(CONTENT_TYPE, "application/x-ndjson")
            .body(body),
    )
    .await?;
    expect_success("post events", status, &answer)?;
    Ok(answer["ids"]
        .as_array()
        .map(|ids| {
            ids.iter()
                .filter_map(|id| id.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

/// How many alerts the user sees (every state), and the id of the first.
async fn count_alerts(
    client: &reqwest::Client,
    user: &Target,
) -> anyhow::Result<(usize, Option<String>)> {
    let mut count = 0;
    let mut first = None;
    let mut cursor: Option<String> = None;
    loop {
        let mut request = client
            .get(user.url("/api/v1/alerts"))
            .header(reqwest::header::AUTHORIZATION, &user.authorization)
            .query(&[("limit", "1000"), ("state", "all")]);
        if let Some(cursor) = &cursor {
            request = request.query(&[("cursor", cursor.as_str())]);
        }
        let (status, body) = call(request).await?;
        expect_success("list alerts", status, &body)?;
        let items = body["items"]
            .as_array()
            .context("alert list has no `items`")?;
        count += items.len();
        if first.is_none() {
            first = items
                .first()
                .and_then(|item| item["id"].as_str())
                .map(str::to_string);
        }
        match body["next"].as_str() {
            Some(next) if !items.is_empty() => cursor = Some(next.to_string()),
            _ => return Ok((count, first)),
        }
    }
}

/// The id of the newest `kind:hit` event, for a second run that sent none.
async fn first_event_id(
    client: &reqwest::Client,
    target: &Target,
) -> anyhow::Result<Option<String>> {
    let (status, body) = call(
        client
            .get(target.url("/api/v1/events"))
            .header(reqwest::header::AUTHORIZATION, &target.authorization)
            .query(&[("filter", "kind == \"hit\""), ("limit", "1")]),
    )
    .await?;
    expect_success("search events", status, &body)?;
    Ok(body["items"][0]["id"].as_str().map(str::to_string))
}

/// Signs in through the form; answers the `Cookie` header value of the new session.
pub(crate) async fn sign_in(
    client: &reqwest::Client,
    target: &Target,
    name: &str,
    password: &str,
) -> anyhow::Result<String> {
    let response = client
        .post(target.url("/login"))
        .header("sec-fetch-site", "same-origin")
        .form(&[("name", name), ("password", password), ("next", "/")])
        .send()
        .await?;
    let status = response.status();
    let cookie = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| value.split(';').next())
        .find(|pair| pair.starts_with("tellify_session=") && pair.len() > "tellify_session=".len())
        .map(str::to_string);
    match cookie {
        Some(cookie) if status.is_redirection() => Ok(cookie),
        _ => {
            let text = response.text().await.unwrap_or_default();
            bail!(
                "sign-in as {name}: HTTP {status}, no session cookie: {}",
                truncate(&text, 200)
            )
        }
    }
}

/// `app;dur=12.34` (possibly among other metrics) → 12.34.
pub(crate) fn server_timing(value: &str) -> Option<f64> {
    value.split(',').find_map(|metric| {
        let mut parts = metric.trim().split(';');
        if parts.next()?.trim() != "app" {
            return None;
        }
        parts.find_map(|parameter| {
            parameter
                .trim()
                .strip_prefix("dur=")
                .and_then(|number| number.trim_matches('"').parse::<f64>().ok())
        })
    })
}

async fn measure_page(
    client: &reqwest::Client,
    target: &Target,
    path: &str,
    cookie: &str,
    args: &Args,
) -> PageReport {
    let url = target.url(path);
    let deadline = Instant::now() + Duration::from_secs(args.page_seconds);
    let mut server = Vec::new();
    let mut client_side = Vec::new();
    let mut first_status = None;
    let mut errors = 0;
    let mut bytes = 0;
    let mut missing_timing = 0;
    for _ in 0..args.page_requests.max(1) {
        let sent = Instant::now();
        let response = match client.get(&url).header(COOKIE, cookie).send().await {
            Ok(response) => response,
            Err(error) => {
                if first_status.is_none() {
                    return PageReport::skipped(path.to_string(), 0, Some(error.to_string()));
                }
                errors += 1;
                continue;
            }
        };
        let status = response.status();
        let timing = response
            .headers()
            .get("server-timing")
            .and_then(|value| value.to_str().ok())
            .and_then(server_timing);
        let body = response.bytes().await;
        let elapsed = sent.elapsed().as_secs_f64() * 1000.0;
        if first_status.is_none() {
            first_status = Some(status);
            if status != StatusCode::OK {
                let note = match status.as_u16() {
                    404 => "no such page yet".to_string(),
                    303 | 302 => "redirected (not signed in?)".to_string(),
                    _ => "not measured".to_string(),
                };
                return PageReport::skipped(path.to_string(), status.as_u16(), Some(note));
            }
        }
        match body {
            Ok(body) if status == StatusCode::OK => {
                bytes = body.len();
                client_side.push(elapsed);
                match timing {
                    Some(timing) => server.push(timing),
                    None => missing_timing += 1,
                }
            }
            _ => errors += 1,
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    PageReport {
        path: path.to_string(),
        status: first_status.map_or(0, |status| status.as_u16()),
        errors,
        server_ms: Percentiles::of(server),
        client_ms: Percentiles::of(client_side),
        bytes,
        note: (missing_timing > 0)
            .then(|| format!("{missing_timing} answers without Server-Timing")),
    }
}

/// Opens `/live?view=alerts` `--live-connects` times, one after the other: the time to
/// the first `snapshot` event, and the `Server-Timing` of the stream's head.
async fn measure_live(target: &Target, cookie: &str, args: &Args) -> PageReport {
    let path = "/live?view=alerts".to_string();
    let mut server = Vec::new();
    let mut client_side = Vec::new();
    let mut errors = 0;
    let mut bytes = 0;
    let mut first_status = None;
    for _ in 0..args.live_connects.max(1) {
        // A client per connection, so each stream is a new connection as a new tab's is.
        let client = match reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
        {
            Ok(client) => client,
            Err(error) => return PageReport::skipped(path, 0, Some(error.to_string())),
        };
        let sent = Instant::now();
        let response = match client
            .get(target.url(&path))
            .header(COOKIE, cookie)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .send()
            .await
        {
            Ok(response) => response,
            Err(error) => return PageReport::skipped(path, 0, Some(error.to_string())),
        };
        let status = response.status();
        if first_status.is_none() {
            first_status = Some(status);
            if status != StatusCode::OK {
                return PageReport::skipped(path, status.as_u16(), Some("not measured".into()));
            }
        }
        if let Some(timing) = response
            .headers()
            .get("server-timing")
            .and_then(|value| value.to_str().ok())
            .and_then(server_timing)
        {
            server.push(timing);
        }
        let mut chunks = response.bytes_stream();
        let mut parser = SseParser::default();
        let mut snapshot = None;
        let wait = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(Ok(chunk)) = chunks.next().await {
                if let Some(item) = parser
                    .push(&chunk)
                    .into_iter()
                    .find(|item| item.event == "snapshot")
                {
                    snapshot = Some(item.data.len());
                    return;
                }
            }
        })
        .await;
        match (wait, snapshot) {
            (Ok(()), Some(size)) => {
                client_side.push(sent.elapsed().as_secs_f64() * 1000.0);
                bytes = size;
            }
            _ => errors += 1,
        }
    }
    PageReport {
        path: format!("{path} (first snapshot)"),
        status: first_status.map_or(0, |status| status.as_u16()),
        errors,
        server_ms: Percentiles::of(server),
        client_ms: Percentiles::of(client_side),
        bytes,
        note: Some("server = time to the stream's head".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_timing_reads_the_app_metric() {
        assert_eq!(server_timing("app;dur=12.34"), Some(12.34));
        assert_eq!(server_timing("db;dur=3, app;desc=\"x\";dur=7"), Some(7.0));
        assert_eq!(server_timing("app;dur=\"1.5\""), Some(1.5));
        assert_eq!(server_timing("db;dur=3"), None);
        assert_eq!(server_timing("app"), None);
    }
}
