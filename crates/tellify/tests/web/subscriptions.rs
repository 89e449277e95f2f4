//! My subscriptions: the list, the form generated from each kind's schema, create, edit,
//! switch off, delete, field errors, CEL positions, another user's id, and the preview.

use reqwest::StatusCode;
use serde_json::{json, Value};
use tellify_engine::Registry;

use super::{an_early_alert_then_many, location, password_of, person, Browser};
use crate::helpers::{spawn_app, TestApp};

/// The form's control ids for every leaf property of a schema (`f-params-warn-value`).
fn leaves(schema: &Value, prefix: &str, out: &mut Vec<String>) {
    for (name, property) in schema["properties"].as_object().expect("properties") {
        let path = format!("{prefix}.{name}");
        if property.get("properties").is_some() {
            leaves(property, &path, out);
        } else {
            out.push(path);
        }
    }
}

fn control_id(path: &str) -> String {
    format!("f-{}", path.replace(['.', '_'], "-"))
}

/// The text of the element with `id` up to its closing `</p>` (an error paragraph).
fn paragraph<'a>(page: &'a str, id: &str) -> &'a str {
    let at = page
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no element #{id} in {page}"));
    let rest = &page[at..];
    &rest[..rest.find("</p>").unwrap_or(rest.len())]
}

async fn disk_subscription(app: &TestApp, token: &str) -> String {
    app.subscribe(
        token,
        json!({"kind": "threshold", "title": "disk", "params": {"field": "usage", "warn": 90, "critical": 97, "group_by": ["fs"]}}),
    )
    .await
}

const THRESHOLD_FORM: &[(&str, &str)] = &[
    ("kind", "threshold"),
    ("title", "Disk space"),
    ("params.filter", "fs != \"/boot\""),
    ("params.field", "usage"),
    ("params.warn", "90"),
    ("params.critical", "97.5"),
    ("params.group_by", "fs\r\nhost\r\n"),
    ("params.hysteresis", ""),
    ("policy", ""),
    ("group", ""),
    ("enabled", "true"),
];

#[tokio::test]
async fn the_form_of_every_kind_has_a_labelled_control_per_schema_property() {
    let app = spawn_app().await;
    person(&app, "ann").await;
    let mut browser = Browser::signed_in(&app, "ann", &password_of("ann")).await;
    let chooser = browser.page("/subscriptions/new").await;
    let registry = Registry::builtin();
    for kind in registry.kinds() {
        assert!(
            chooser.contains(&format!("/subscriptions/new?kind={}", kind.name())),
            "the chooser offers {}",
            kind.name()
        );
        let page = browser
            .page(&format!("/subscriptions/new?kind={}", kind.name()))
            .await;
        let schema = kind.param_schema();
        let mut paths = Vec::new();
        leaves(&schema, "params", &mut paths);
        assert!(!paths.is_empty() || kind.name() == "alerta");
        for path in paths {
            let id = control_id(&path);
            assert!(
                page.contains(&format!("<label for=\"{id}\"")),
                "{}: no label for {path}",
                kind.name()
            );
            assert!(
                page.contains(&format!("id=\"{id}\" name=\"{path}\"")),
                "{}: no control named {path}",
                kind.name()
            );
        }
    }
    // Each parameter type has its control.
    let count = browser.page("/subscriptions/new?kind=count").await;
    assert!(
        count.contains("<textarea id=\"f-params-filter\""),
        "CEL in a textarea"
    );
    assert!(
        count.contains("<textarea id=\"f-params-group-by\""),
        "one group per line"
    );
    assert!(count.contains(
        "type=\"number\" id=\"f-params-limit\" name=\"params.limit\" value=\"\" step=\"1\""
    ));
    assert!(
        count.contains("<select id=\"f-params-severity\""),
        "an enum is a select"
    );
    assert!(
        count.contains("id=\"f-params-window\" name=\"params.window\" value=\"\" pattern=\""),
        "a duration has the pattern"
    );
    assert!(
        count.contains("<legend>Emit"),
        "a nested object is a fieldset"
    );
    let metric = browser.page("/subscriptions/new?kind=metric").await;
    assert!(metric.contains("name=\"params.warn.value\""));
    assert!(metric.contains("<option value=\"http-json\">http-json</option>"));
}

#[tokio::test]
async fn a_threshold_subscription_is_created_through_the_form() {
    let app = spawn_app().await;
    let ann = person(&app, "ann").await;
    let mut browser = Browser::signed_in(&app, "ann", &password_of("ann")).await;
    browser.page("/subscriptions/new?kind=threshold").await;
    let response = browser.post("/subscriptions/new", THRESHOLD_FORM).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let to = location(&response).await;
    let id = to
        .strip_prefix("/subscriptions/")
        .and_then(|rest| rest.strip_suffix("?done=created"))
        .unwrap_or_else(|| panic!("went to {to}"))
        .to_string();
    let saved = app
        .get_json(&ann, &format!("/api/v1/subscriptions/{id}"))
        .await;
    assert_eq!(saved["kind"], json!("threshold"));
    assert_eq!(saved["title"], json!("Disk space"));
    assert_eq!(
        saved["params"],
        json!({"filter": "fs != \"/boot\"", "field": "usage", "warn": 90, "critical": 97.5, "group_by": ["fs", "host"]})
    );
    assert_eq!(saved["enabled"], json!(true));
    assert_eq!(saved["latching"], json!(false));
    let page = browser.page(&to).await;
    assert!(page.contains("Subscription created."));
    assert!(page.contains("fs, host"), "parameters in words: {page}");

    // The list shows it with its state once it fires.
    app.send_lines(&ann, "usage:98 fs:/home host:a").await;
    let list = browser.page("/subscriptions").await;
    assert!(list.contains("Disk space"));
    assert!(list.contains("1 firing"), "{list}");
    assert!(list.contains("10:00 CET"), "last fired in my zone: {list}");
}

#[tokio::test]
async fn an_invalid_submit_shows_each_error_next_to_its_field_and_keeps_what_was_typed() {
    let app = spawn_app().await;
    let ann = person(&app, "ann").await;
    let mut browser = Browser::signed_in(&app, "ann", &password_of("ann")).await;
    browser.page("/subscriptions/new?kind=threshold").await;
    let mut fields: Vec<(&str, &str)> = THRESHOLD_FORM.to_vec();
    for (name, value) in fields.iter_mut() {
        match *name {
            "title" => *value = " ",
            "params.warn" => *value = "95",
            "params.critical" => *value = "90",
            _ => {}
        }
    }
    fields.push(("policy", "nights"));
    let response = browser.post("/subscriptions/new", &fields).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = response.text().await.unwrap();
    assert!(page.contains("id=\"form-errors\""));
    assert!(paragraph(&page, "f-title-error").contains("must not be empty"));
    assert!(
        paragraph(&page, "f-params-critical-error").contains("must be greater than warn (95)"),
        "{page}"
    );
    assert!(paragraph(&page, "f-policy-error").contains("no policy named `nights`"));
    assert!(page.contains("aria-describedby=\"f-params-critical-hint f-params-critical-error\""));
    // What was typed stays.
    assert!(page.contains("name=\"params.warn\" value=\"95\""));
    assert!(page.contains("name=\"params.critical\" value=\"90\""));
    assert!(page.contains("fs\nhost</textarea>"));
    assert!(
        page.contains("fs != &#34;/boot&#34;</textarea>")
            || page.contains("fs != &quot;/boot&quot;</textarea>"),
        "{page}"
    );
    let listed = app.get_json(&ann, "/api/v1/subscriptions").await;
    assert_eq!(listed["items"], json!([]), "nothing was created");

    // A required field left empty is named at its own field, a limit in words.
    let response = browser
        .post(
            "/subscriptions/new",
            &[
                ("kind", "threshold"),
                ("title", "x"),
                ("params.warn", "1"),
                ("params.hysteresis", "-1"),
            ],
        )
        .await;
    let page = response.text().await.unwrap();
    assert!(
        paragraph(&page, "f-params-field-error").contains("is required"),
        "{page}"
    );
    assert!(paragraph(&page, "f-params-hysteresis-error").contains("must be at least 0"));
}

#[tokio::test]
async fn a_filter_error_shows_its_line_and_column_with_a_caret() {
    let app = spawn_app().await;
    person(&app, "ann").await;
    let mut browser = Browser::signed_in(&app, "ann", &password_of("ann")).await;
    browser.page("/subscriptions/new?kind=match").await;
    let response = browser
        .post(
            "/subscriptions/new",
            &[
                ("kind", "match"),
                ("title", "logins"),
                ("params.filter", "type == \"login\" &&\r\n  user = \"root\""),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = response.text().await.unwrap();
    let error = paragraph(&page, "f-params-filter-error");
    assert!(error.contains("line 2, column 8"), "{error}");
    assert!(error.contains("did you mean"), "{error}");
    assert!(
        page.contains("<pre class=\"caret\" aria-label=\"line 2, column 8\">  user = &#34;root&#34;\n       ^</pre>")
            || page.contains("<pre class=\"caret\" aria-label=\"line 2, column 8\">  user = &quot;root&quot;\n       ^</pre>"),
        "{page}"
    );
}

#[tokio::test]
async fn edit_switch_off_and_delete_after_confirming() {
    let app = spawn_app().await;
    let ann = person(&app, "ann").await;
    let id = disk_subscription(&app, &ann).await;
    let mut browser = Browser::signed_in(&app, "ann", &password_of("ann")).await;

    let edit = browser.page(&format!("/subscriptions/{id}/edit")).await;
    assert!(edit.contains("name=\"params.critical\" value=\"97\""));
    assert!(edit.contains("name=\"title\" value=\"disk\""));
    assert!(edit.contains("fs</textarea>"));
    let response = browser
        .post(
            &format!("/subscriptions/{id}/edit"),
            &[
                ("title", "disk (all)"),
                ("params.field", "usage"),
                ("params.warn", "80"),
                ("params.critical", "95"),
                ("params.group_by", "fs"),
                ("latching", "true"),
                ("enabled", "true"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        location(&response).await,
        format!("/subscriptions/{id}?done=saved")
    );
    let saved = app
        .get_json(&ann, &format!("/api/v1/subscriptions/{id}"))
        .await;
    assert_eq!(saved["title"], json!("disk (all)"));
    assert_eq!(
        saved["params"],
        json!({"field": "usage", "warn": 80, "critical": 95, "group_by": ["fs"]})
    );
    assert_eq!(saved["latching"], json!(true));

    browser.page(&format!("/subscriptions/{id}")).await;
    let response = browser
        .post(
            &format!("/subscriptions/{id}/enabled"),
            &[("enabled", "false"), ("back", "/subscriptions")],
        )
        .await;
    assert_eq!(location(&response).await, "/subscriptions?done=disabled");
    let saved = app
        .get_json(&ann, &format!("/api/v1/subscriptions/{id}"))
        .await;
    assert_eq!(saved["enabled"], json!(false));
    let page = browser.page(&format!("/subscriptions/{id}")).await;
    assert!(page.contains("<dd id=\"subscription-state\">off</dd>"));

    let confirm = browser.page(&format!("/subscriptions/{id}/delete")).await;
    assert!(confirm.contains("Delete disk (all)?"));
    assert_eq!(
        app.get(&ann, &format!("/api/v1/subscriptions/{id}"))
            .await
            .status(),
        StatusCode::OK,
        "the confirming page deletes nothing"
    );
    let response = browser
        .post(&format!("/subscriptions/{id}/delete"), &[])
        .await;
    assert_eq!(location(&response).await, "/subscriptions?done=deleted");
    assert_eq!(
        app.get(&ann, &format!("/api/v1/subscriptions/{id}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn another_users_subscription_is_not_found_exactly_like_a_missing_one() {
    let app = spawn_app().await;
    let ann = person(&app, "ann").await;
    person(&app, "bob").await;
    let id = disk_subscription(&app, &ann).await;
    let missing = "01JZZZZZZZZZZZZZZZZZZZZZZZ";
    let mut bob = Browser::signed_in(&app, "bob", &password_of("bob")).await;
    for path in ["", "/edit", "/delete"] {
        let theirs = bob.get(&format!("/subscriptions/{id}{path}")).await;
        let unknown = bob.get(&format!("/subscriptions/{missing}{path}")).await;
        assert_eq!(theirs.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(
            theirs.text().await.unwrap(),
            unknown.text().await.unwrap(),
            "{path}"
        );
    }
    let posts: [(&str, &[(&str, &str)]); 3] = [
        ("/enabled", &[("enabled", "false")]),
        ("/delete", &[]),
        (
            "/edit",
            &[
                ("title", "mine now"),
                ("params.field", "usage"),
                ("params.warn", "1"),
            ],
        ),
    ];
    for (path, fields) in posts {
        let theirs = bob
            .post(&format!("/subscriptions/{id}{path}"), fields)
            .await;
        let unknown = bob
            .post(&format!("/subscriptions/{missing}{path}"), fields)
            .await;
        assert_eq!(theirs.status(), StatusCode::NOT_FOUND, "POST {path}");
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND, "POST {path}");
        assert_eq!(theirs.text().await.unwrap(), unknown.text().await.unwrap());
    }
    let preview = bob
        .post(
            "/subscriptions/preview",
            &[
                ("_id", id.as_str()),
                ("title", "x"),
                ("params.field", "usage"),
            ],
        )
        .await;
    assert_eq!(preview.status(), StatusCode::NOT_FOUND);
    let saved = app
        .get_json(&ann, &format!("/api/v1/subscriptions/{id}"))
        .await;
    assert_eq!(saved["title"], json!("disk"), "bob changed nothing");
    assert_eq!(saved["enabled"], json!(true));
    assert!(!bob.page("/subscriptions").await.contains(&id));
}

#[tokio::test]
async fn the_preview_shows_what_the_form_would_have_fired_and_saves_nothing() {
    let app = spawn_app().await;
    let ann = person(&app, "ann").await;
    app.send_lines(
        &ann,
        "usage:95 fs:/home\nusage:98 fs:/var\nusage:10 fs:/tmp",
    )
    .await;
    app.advance(jiff::SignedDuration::from_mins(1)).await;
    let mut browser = Browser::signed_in(&app, "ann", &password_of("ann")).await;
    browser.page("/subscriptions/new?kind=threshold").await;
    let mut fields: Vec<(&str, &str)> = THRESHOLD_FORM.to_vec();
    fields.retain(|(name, _)| *name != "params.filter" && *name != "params.group_by");
    fields.push(("params.group_by", "fs"));
    let response = browser.post("/subscriptions/preview", &fields).await;
    let status = response.status();
    let page = response.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{page}");
    let preview = &page[page.find("id=\"preview\"").expect("a preview section")..];
    assert!(
        preview.contains("/home") && preview.contains("/var"),
        "{preview}"
    );
    assert!(!preview.contains("/tmp"), "below warn fires nothing");
    assert!(preview.contains("fired"));
    assert!(preview.contains("warning") && preview.contains("critical"));
    assert!(preview.contains("10:00"), "times in my zone: {preview}");
    assert!(preview.contains("Nothing was saved."));
    assert!(
        page.contains("name=\"params.warn\" value=\"90\""),
        "the form stays as written"
    );
    let listed = app.get_json(&ann, "/api/v1/subscriptions").await;
    assert_eq!(listed["items"], json!([]), "nothing was saved");
    assert!(app.alerts(&ann, "").await.is_empty(), "no alert was made");
}

/// The table row of the subscription titled `title`.
fn list_row<'a>(page: &'a str, title: &str) -> &'a str {
    let at = page
        .find(&format!(">{title}</a>"))
        .unwrap_or_else(|| panic!("no row {title} in {page}"));
    let rest = &page[at..];
    &rest[..rest.find("</tr>").unwrap_or(rest.len())]
}

#[tokio::test]
async fn the_list_counts_every_firing_alert_however_many_newer_ones_there_are() {
    let app = spawn_app().await;
    let ann = person(&app, "ann").await;
    an_early_alert_then_many(&app, &ann, 2001).await;
    let mut browser = Browser::signed_in(&app, "ann", &password_of("ann")).await;
    let page = browser.page("/subscriptions").await;
    let early = list_row(&page, "early");
    assert!(early.contains(">1 firing</a>"), "{early}");
    assert!(!early.contains("never"), "it fired: {early}");
    assert!(
        early.contains("datetime=\"2026-11-23T09:00:00Z\""),
        "{early}"
    );
    let busy = list_row(&page, "busy");
    assert!(busy.contains(">2001 firing</a>"), "{busy}");
    // Bob sees none of it.
    person(&app, "bob").await;
    let mut bob = Browser::signed_in(&app, "bob", &password_of("bob")).await;
    assert!(!bob.page("/subscriptions").await.contains("firing</a>"));
}
