//! The dashboard in a real browser: Debian's headless Chromium driven through
//! `chromedriver` (WebDriver, `fantoccini`) against the real server of
//! `crate::helpers::spawn_app` (on-disk store, worker, notifier, injected clock).
//!
//! `scripts/test` installs `chromium` and `chromium-driver` when missing; without them these
//! tests fail and say so. Each page a test visits can be checked with axe-core (vendored,
//! `axe-4.14.1.min.js`, MPL-2.0: no serious or critical violation, in the light and the dark
//! theme) and photographed at 360 px and 1280 px (and dark at 1280 px) into
//! `$DASHBOARD_SCREENSHOTS` (default `target/screenshots`), which the test command prints; a
//! page that scrolls sideways at either width fails.

mod admin;
mod alerts;
mod events;
mod links;
mod notifications;
mod subscriptions;

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::helpers::TestApp;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
const AXE: &str = include_str!("axe-4.14.1.min.js");

/// One chromedriver with one headless Chromium, stopped when dropped: chromedriver runs in
/// a process group of its own, which its Chromium (browser, zygotes, renderers) inherits,
/// and the whole group is killed. Killing chromedriver alone left some 30 Chromium
/// processes behind per test, running until the machine stopped.
pub struct Browser {
    pub client: Client,
    pub base: String,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let group = i32::try_from(self.driver.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw);
        if let Some(group) = group {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

impl Browser {
    /// Starts chromedriver and a headless Chromium (1280 × 900) pointed at `app`.
    pub async fn start(app: &TestApp) -> Browser {
        assert!(
            std::path::Path::new(CHROMEDRIVER).exists() && std::path::Path::new(CHROMIUM).exists(),
            "the browser tests need Debian's chromium and chromium-driver; scripts/test installs them"
        );
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().expect("profile dir");
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-extensions",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }
        });
        let capabilities = match capabilities {
            Value::Object(map) => map,
            _ => unreachable!(),
        };
        let url = format!("http://127.0.0.1:{port}");
        let mut last_error = String::new();
        for _ in 0..100 {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => {
                    return Browser {
                        client,
                        base: app.base.clone(),
                        driver,
                        _profile: profile,
                    }
                }
                Err(error) => last_error = error.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not start a session: {last_error}");
    }

    pub async fn open(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap_or_else(|e| panic!("open {path}: {e}"));
    }

    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.expect("url");
        let mut path = url.path().to_string();
        if let Some(query) = url.query() {
            path.push('?');
            path.push_str(query);
        }
        path
    }

    pub async fn sign_in(&self, name: &str, password: &str) {
        self.open("/login").await;
        self.fill("#name", name).await;
        self.fill("#password", password).await;
        self.click("form[action='/login'] button[type=submit]")
            .await;
        self.wait_for("nav[aria-label=Main]").await;
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let element = self.wait_for(css).await;
        element.clear().await.ok();
        element
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    pub async fn click(&self, css: &str) {
        self.wait_for(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Sends keys to the page (as a person at the keyboard: to the focused element).
    pub async fn keys(&self, keys: &str) {
        let body = self.client.find(Locator::Css("body")).await.expect("body");
        body.send_keys(keys).await.expect("keys");
    }

    /// Waits up to 10 s for an element.
    pub async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}` on {}: {e}", self.base))
    }

    /// Waits up to 10 s until `script` (a JS expression) is truthy.
    pub async fn wait_until(&self, what: &str, script: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let value = self
                .client
                .execute(&format!("return !!({script});"), vec![])
                .await
                .expect("script runs");
            if value == json!(true) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                let html = self.html("main").await;
                panic!("timed out waiting until {what}; the page's main:\n{html}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script `{script}`: {e}"))
    }

    /// The outer HTML of the first element matching `css` (empty when none).
    pub async fn html(&self, css: &str) -> String {
        let value = self
            .client
            .execute(
                "var e = document.querySelector(arguments[0]); return e ? e.outerHTML : '';",
                vec![json!(css)],
            )
            .await
            .unwrap_or(Value::Null);
        value.as_str().unwrap_or_default().to_string()
    }

    pub async fn text(&self, css: &str) -> String {
        let value = self
            .client
            .execute(
                "var e = document.querySelector(arguments[0]); return e ? e.innerText : '';",
                vec![json!(css)],
            )
            .await
            .unwrap_or(Value::Null);
        value.as_str().unwrap_or_default().to_string()
    }

    /// The text of every cell of every body row of the first table matching `css`, row by
    /// row, as a person reads it.
    pub async fn table(&self, css: &str) -> Vec<Vec<String>> {
        let value = self
            .eval(&format!(
                "var t = document.querySelector({}); if (!t) return [];\
                 return Array.from(t.querySelectorAll('tbody tr')).map(function (r) {{\
                   return Array.from(r.cells).map(function (c) {{ return c.innerText.trim(); }}); }});",
                json!(css)
            ))
            .await;
        serde_json::from_value(value).unwrap_or_default()
    }

    /// The HTTP status the current page was answered with (Navigation Timing).
    pub async fn status(&self) -> u64 {
        self.eval("return performance.getEntriesByType('navigation')[0].responseStatus;")
            .await
            .as_u64()
            .unwrap_or_default()
    }

    /// The value of the form control matching `css`, as the browser holds it.
    pub async fn value(&self, css: &str) -> String {
        let value = self
            .client
            .execute(
                "var e = document.querySelector(arguments[0]); return e ? e.value : null;",
                vec![json!(css)],
            )
            .await
            .unwrap_or(Value::Null);
        value
            .as_str()
            .unwrap_or_else(|| panic!("no form control `{css}`"))
            .to_string()
    }

    /// Runs axe-core on the current page and fails on any serious or critical violation,
    /// naming the rule and the elements.
    pub async fn check_accessibility(&self, page: &str) {
        let result = self
            .client
            .execute_async(
                &format!(
                    "{AXE}\n;var done = arguments[arguments.length - 1];\
                     axe.run(document, {{resultTypes: ['violations']}})\
                     .then(function (r) {{ done(r.violations.map(function (v) {{\
                       return {{id: v.id, impact: v.impact, help: v.help,\
                         nodes: v.nodes.slice(0, 5).map(function (n) {{ return n.html; }})}};\
                     }})); }}, function (e) {{ done([{{id: 'axe-failed', impact: 'critical', help: String(e), nodes: []}}]); }});"
                ),
                vec![],
            )
            .await
            .expect("axe runs");
        let bad: Vec<&Value> = result
            .as_array()
            .expect("violations")
            .iter()
            .filter(|v| matches!(v["impact"].as_str(), Some("serious") | Some("critical")))
            .collect();
        assert!(
            bad.is_empty(),
            "accessibility violations on {page}:\n{}",
            serde_json::to_string_pretty(&bad).unwrap_or_default()
        );
    }

    /// Saves `<name>-360.png` and `<name>-1280.png` of the current page, and fails when the
    /// page itself scrolls sideways at either width (a wide table scrolls in its own box),
    /// naming the elements that stick out.
    pub async fn screenshots(&self, name: &str) {
        let folder = screenshot_dir();
        std::fs::create_dir_all(&folder).expect("screenshot dir");
        for width in [360u32, 1280] {
            self.client
                .set_window_size(width, 900)
                .await
                .expect("window size");
            tokio::time::sleep(Duration::from_millis(100)).await;
            let png = self.client.screenshot().await.expect("screenshot");
            std::fs::write(folder.join(format!("{name}-{width}.png")), png).expect("write png");
            // Layout may still settle just after a resize: poll for up to 2 s.
            let mut wider = json!([]);
            for _ in 0..20 {
                wider = self
                    .eval(
                        "var w = document.documentElement.clientWidth;\
                         if (document.documentElement.scrollWidth <= w) return [];\
                         function clipped(e) {\
                           for (var p = e.parentElement; p && p !== document.body; p = p.parentElement)\
                             if (getComputedStyle(p).overflowX !== 'visible') return true;\
                           return false;\
                         }\
                         function out_of(rect) { return rect.right + window.scrollX > w + 1; }\
                         var out = Array.from(document.querySelectorAll('body *')).filter(function (e) {\
                           return out_of(e.getBoundingClientRect()) && !clipped(e);\
                         }).map(function (e) { return e.outerHTML.slice(0, 160); });\
                         var walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);\
                         var range = document.createRange();\
                         for (var t = walk.nextNode(); t; t = walk.nextNode()) {\
                           range.selectNodeContents(t);\
                           if (out_of(range.getBoundingClientRect()) && !clipped(t))\
                             out.push('text in ' + t.parentElement.outerHTML.slice(0, 160));\
                         }\
                         out = out.slice(-5);\
                         return out.length ? out : ['the page is ' + document.documentElement.scrollWidth + ' px wide'];",
                    )
                    .await;
                if wider == json!([]) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert_eq!(
                wider,
                json!([]),
                "{name} scrolls sideways at {width} px; these stick out"
            );
        }
        self.client
            .set_window_size(1280, 900)
            .await
            .expect("window size");
    }

    /// axe and both screenshots, for a page the test is on; then axe again, and a
    /// screenshot `<name>-dark-1280.png`, with the system asking for the dark theme.
    pub async fn look_at(&self, name: &str) {
        self.check_accessibility(name).await;
        self.screenshots(name).await;
        self.color_scheme("dark").await;
        self.check_accessibility(&format!("{name} (dark theme)"))
            .await;
        let png = self.client.screenshot().await.expect("screenshot");
        std::fs::write(screenshot_dir().join(format!("{name}-dark-1280.png")), png)
            .expect("write png");
        self.color_scheme("light").await;
    }

    /// Makes the page see `prefers-color-scheme: scheme`, as a system setting would.
    pub async fn color_scheme(&self, scheme: &str) {
        self.client
            .issue_cmd(Cdp {
                cmd: "Emulation.setEmulatedMedia",
                params: json!({"features": [{"name": "prefers-color-scheme", "value": scheme}]}),
            })
            .await
            .unwrap_or_else(|e| panic!("prefers-color-scheme {scheme}: {e}"));
        let applied = self
            .eval(&format!(
                "return matchMedia('(prefers-color-scheme: {scheme})').matches;"
            ))
            .await;
        assert_eq!(applied, json!(true), "prefers-color-scheme {scheme}");
    }
}

/// A Chrome DevTools Protocol command, through chromedriver's `goog/cdp/execute`.
#[derive(Debug)]
struct Cdp {
    cmd: &'static str,
    params: Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base: &reqwest::Url,
        session: Option<&str>,
    ) -> Result<reqwest::Url, <reqwest::Url as std::str::FromStr>::Err> {
        base.join(&format!(
            "session/{}/goog/cdp/execute",
            session.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &reqwest::Url) -> (reqwest::Method, Option<String>) {
        (
            reqwest::Method::POST,
            Some(json!({"cmd": self.cmd, "params": self.params}).to_string()),
        )
    }
}

/// Where screenshots go: `$DASHBOARD_SCREENSHOTS`, else `target/screenshots`.
pub fn screenshot_dir() -> PathBuf {
    std::env::var_os("DASHBOARD_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots")
        })
}

/// Adds a contact point through the API.
pub async fn contact(app: &TestApp, token: &str, name: &str, kind: &str, address: &str) {
    let response = app
        .post(
            token,
            "/api/v1/contact-points",
            json!({"name": name, "kind": kind, "address": address}),
        )
        .await;
    assert_eq!(
        response.status(),
        reqwest::StatusCode::CREATED,
        "contact point {name}"
    );
}

/// Puts a notification policy through the API.
pub async fn policy(app: &TestApp, token: &str, name: &str, rules: Value) {
    let response = app
        .client
        .put(app.url(&format!("/api/v1/policies/{name}")))
        .bearer_auth(token)
        .json(&json!({ "rules": rules }))
        .send()
        .await
        .expect("request");
    assert!(response.status().is_success(), "policy {name}");
}
