//! My subscriptions: the list with each one's state (alerts firing, last fired, on or
//! off), a subscription's page (its parameters in words, its open alerts, its failures),
//! create and edit with a form generated from the kind's parameter schema ([`form`]),
//! switch on and off, delete after a confirming page, and the preview of a subscription
//! as written in the form over past events. Every change goes through
//! `services::subscriptions`, the functions the JSON API calls.

mod form;

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use serde_json::{json, Value};
use tellify_engine::{HandlerKind, ParamError};
use tellify_store::{Subscription, SubscriptionAlerts};

use self::form::{FormValues, Row};
use super::alerts::Row as AlertRow;
use super::format::{severity_icon, url_encode, Clock};
use super::{render, render_status, see_other, CsrfForm, Layout, Viewer, WebError};
use crate::services::alerts::{self, AlertFilter, StateFilter};
use crate::services::sessions::SignedIn;
use crate::services::subscriptions::{self, NewSubscription, SubscriptionChanges};
use crate::services::{people, preview, AppState, ServiceError};

/// Most open alerts shown on a subscription's page.
const OPEN_ALERTS: usize = 200;

/// This area's routes, merged into [`super::routes`].
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/subscriptions", get(list))
        .route("/subscriptions/new", get(new_form).post(create))
        .route("/subscriptions/preview", post(preview))
        .route("/subscriptions/{id}", get(detail))
        .route("/subscriptions/{id}/edit", get(edit_form).post(update))
        .route("/subscriptions/{id}/enabled", post(set_enabled))
        .route(
            "/subscriptions/{id}/delete",
            get(confirm_delete).post(delete),
        )
}

/// What a finished action says, from its code (never text from the URL).
fn notice(done: &str) -> Option<String> {
    let text = match done {
        "created" => "Subscription created.",
        "saved" => "Subscription saved.",
        "enabled" => "Subscription switched on.",
        "disabled" => "Subscription switched off.",
        "deleted" => "Subscription deleted.",
        _ => return None,
    };
    Some(text.to_string())
}

#[derive(Default, Deserialize)]
pub struct DoneQuery {
    #[serde(default)]
    done: String,
}

/// One subscription as a row of the list.
pub struct ListRow {
    pub id: String,
    pub title: String,
    pub kind: String,
    pub enabled: bool,
    pub firing: usize,
    pub last_fired: Option<(String, String)>,
    /// "failing: ..." or "switched off after failing: ...".
    pub failing: Option<String>,
    pub group: String,
}

#[derive(Template)]
#[template(path = "subscriptions_list.html")]
struct ListPage {
    layout: Layout,
    rows: Vec<ListRow>,
    csrf: String,
}

/// My subscriptions, with their state.
pub async fn list(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(query): Query<DoneQuery>,
) -> Result<Response, WebError> {
    let principal = &viewer.principal;
    let clock = Clock::new(&principal.user.timezone, state.clock.now());
    let mut subscriptions = subscriptions::list(&state, principal).await?;
    subscriptions.sort_by_key(|s| s.title.to_lowercase());
    let states: HashMap<String, SubscriptionAlerts> =
        alerts::subscription_states(&state, principal)
            .await?
            .into_iter()
            .map(|summary| (summary.subscription_id.clone(), summary))
            .collect();
    let groups = group_names(&state, &viewer).await?;
    let rows = subscriptions
        .iter()
        .map(|subscription| ListRow {
            id: subscription.id.clone(),
            title: subscription.title.clone(),
            kind: kind_title(&state, &subscription.kind),
            enabled: subscription.enabled,
            firing: states
                .get(&subscription.id)
                .map_or(0, |summary| summary.firing as usize),
            last_fired: states
                .get(&subscription.id)
                .and_then(|summary| summary.last_fired)
                .map(|at| (clock.at(at), clock.iso(at))),
            failing: failing(subscription),
            group: subscription
                .owner_group
                .as_ref()
                .and_then(|id| groups.get(id).cloned())
                .unwrap_or_default(),
        })
        .collect();
    render(&ListPage {
        layout: Layout::new("My subscriptions", "subscriptions", &viewer)
            .with_notice(notice(&query.done)),
        rows,
        csrf: viewer.csrf.clone(),
    })
}

fn kind_title(state: &AppState, kind: &str) -> String {
    state
        .registry
        .get(kind)
        .map(|k| k.title().to_string())
        .unwrap_or_else(|| kind.to_string())
}

fn failing(subscription: &Subscription) -> Option<String> {
    let health = subscription.health.as_ref()?;
    Some(if health.disabled {
        format!("switched off after failing: {}", health.last_error)
    } else {
        format!("failing: {}", health.last_error)
    })
}

/// The names of the groups the viewer may see, by id.
async fn group_names(
    state: &AppState,
    viewer: &SignedIn,
) -> Result<HashMap<String, String>, WebError> {
    Ok(people::list_groups(state, &viewer.principal)
        .await?
        .into_iter()
        .map(|group| (group.id, group.name))
        .collect())
}

// ---------------------------------------------------------------------------------------
// The form

/// A handler kind, offered on the "new subscription" page.
pub struct KindChoice {
    pub name: String,
    pub title: String,
    pub description: String,
}

#[derive(Template)]
#[template(path = "subscriptions_kinds.html")]
struct KindsPage {
    layout: Layout,
    kinds: Vec<KindChoice>,
}

/// One choice of a select outside the parameters.
pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

/// Errors of the form's own fields (not parameters).
#[derive(Default)]
pub struct TopErrors {
    pub title: Vec<String>,
    pub policy: Vec<String>,
    pub group: Vec<String>,
    /// Errors with no field to stand next to, with their path.
    pub general: Vec<String>,
}

/// The preview's window inputs and its outcome.
#[derive(Default)]
pub struct PreviewPart {
    /// `datetime-local` values in the viewer's zone.
    pub from: String,
    pub to: String,
    pub from_errors: Vec<String>,
    pub to_errors: Vec<String>,
    pub result: Option<PreviewView>,
    /// The preview could not run (the form has errors), in words.
    pub problem: Option<String>,
}

/// A preview's outcome as shown.
pub struct PreviewView {
    pub window: String,
    pub events_scanned: u64,
    pub events_matched: u64,
    pub alerts: usize,
    pub errors: u64,
    /// "stopped after 200000 events" and the like.
    pub truncated: Option<String>,
    pub rows: Vec<PreviewRow>,
}

/// One transition the preview found.
pub struct PreviewRow {
    pub at: String,
    pub at_iso: String,
    pub group_key: String,
    pub severity: &'static str,
    pub icon: &'static str,
    pub transition: String,
    pub notifies: bool,
    pub summary: String,
    pub event_id: Option<String>,
}

#[derive(Template)]
#[template(path = "subscriptions_form.html")]
pub struct FormPage {
    layout: Layout,
    /// Where the form posts (`/subscriptions/new` or `/subscriptions/{id}/edit`).
    action: String,
    /// The subscription being edited.
    id: Option<String>,
    kind: String,
    kind_title: String,
    kind_description: String,
    required_fields: String,
    title: String,
    policies: Vec<Choice>,
    /// The group choices when creating; empty when editing (a group cannot change).
    groups: Vec<Choice>,
    /// The group's name when editing.
    group_name: String,
    latching: bool,
    enabled: bool,
    rows: Vec<Row>,
    errors: TopErrors,
    preview: PreviewPart,
    /// The viewer's zone, which the preview's window is read in.
    timezone: String,
    csrf: String,
}

impl FormPage {
    fn has_errors(&self) -> bool {
        !self.errors.title.is_empty()
            || !self.errors.policy.is_empty()
            || !self.errors.group.is_empty()
            || !self.errors.general.is_empty()
            || self
                .rows
                .iter()
                .filter_map(|row| row.field.as_ref())
                .any(|field| !field.errors.is_empty())
    }
}

#[derive(Default, Deserialize)]
pub struct NewQuery {
    #[serde(default)]
    kind: String,
}

/// The kinds to choose from, or the form of the chosen kind.
pub async fn new_form(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(query): Query<NewQuery>,
) -> Result<Response, WebError> {
    if query.kind.is_empty() {
        let kinds = state
            .registry
            .kinds()
            .map(|kind| KindChoice {
                name: kind.name().to_string(),
                title: kind.title().to_string(),
                description: kind.description().to_string(),
            })
            .collect();
        return render(&KindsPage {
            layout: Layout::new("New subscription", "subscriptions", &viewer),
            kinds,
        });
    }
    let kind = known_kind(&state, &query.kind)?;
    let submitted = Submitted {
        kind: kind.name().to_string(),
        enabled: true,
        ..Default::default()
    };
    let page = form_page(&state, &viewer, kind, None, &submitted, &Value::Null).await?;
    render(&page)
}

fn known_kind<'a>(state: &'a AppState, name: &str) -> Result<&'a dyn HandlerKind, WebError> {
    state
        .registry
        .get(name)
        .ok_or_else(|| WebError::BadRequest(format!("there is no subscription kind `{name}`")))
}

/// What a submitted subscription form holds besides its parameters.
#[derive(Default)]
struct Submitted {
    kind: String,
    title: String,
    policy: String,
    group: String,
    latching: bool,
    enabled: bool,
    /// The subscription being edited (the preview's form carries it).
    id: String,
    from: String,
    to: String,
    values: FormValues,
}

impl Submitted {
    fn read(pairs: Vec<(String, String)>) -> Submitted {
        let values: FormValues = pairs.into_iter().collect();
        let text = |name: &str| values.get(name).cloned().unwrap_or_default();
        Submitted {
            kind: text("kind"),
            title: text("title"),
            policy: text("policy").trim().to_string(),
            group: text("group").trim().to_string(),
            latching: form::is_on(&text("latching")),
            enabled: form::is_on(&text("enabled")),
            id: text("_id"),
            from: text("_from"),
            to: text("_to"),
            values,
        }
    }

    /// The body `POST /api/v1/subscriptions` would take for this form.
    fn body(&self, params: &Value) -> Value {
        let mut body = json!({
            "kind": self.kind,
            "title": self.title,
            "params": params,
            "latching": self.latching,
            "enabled": self.enabled,
        });
        if !self.group.is_empty() {
            body["group"] = json!(self.group);
        }
        if !self.policy.is_empty() {
            body["policy"] = json!(self.policy);
        }
        body
    }
}

/// The form page for `kind`, showing `submitted` and the parameters `params`.
async fn form_page(
    state: &AppState,
    viewer: &SignedIn,
    kind: &dyn HandlerKind,
    editing: Option<&Subscription>,
    submitted: &Submitted,
    params: &Value,
) -> Result<FormPage, WebError> {
    let principal = &viewer.principal;
    let mut policies = vec![Choice {
        value: String::new(),
        label: "default".to_string(),
        selected: submitted.policy.is_empty() || submitted.policy == "default",
    }];
    // A person's own policies: the subscription's owner is the one who creates it.
    let owner = editing.map_or(principal.user.id.as_str(), |s| s.owner_user.as_str());
    for policy in state.store.list_policies(owner).await? {
        if policy.name == "default" {
            continue;
        }
        policies.push(Choice {
            selected: policy.name == submitted.policy,
            label: policy.name.clone(),
            value: policy.name,
        });
    }
    let group_names = group_names(state, viewer).await?;
    let (groups, group_name) = match editing {
        Some(subscription) => (
            Vec::new(),
            subscription
                .owner_group
                .as_ref()
                .and_then(|id| group_names.get(id).cloned())
                .unwrap_or_default(),
        ),
        None => {
            let mut names: Vec<&String> = group_names.values().collect();
            names.sort();
            let mut groups = vec![Choice {
                value: String::new(),
                label: "only me".to_string(),
                selected: submitted.group.is_empty(),
            }];
            for name in names {
                groups.push(Choice {
                    value: name.clone(),
                    label: name.clone(),
                    selected: *name == submitted.group,
                });
            }
            (groups, String::new())
        }
    };
    let clock = Clock::new(&principal.user.timezone, state.clock.now());
    let (action, heading) = match editing {
        Some(subscription) => (
            format!("/subscriptions/{}/edit", url_encode(&subscription.id)),
            format!("Edit {}", subscription.title),
        ),
        None => (
            "/subscriptions/new".to_string(),
            format!("New {} subscription", kind.title()),
        ),
    };
    let now = clock.now();
    Ok(FormPage {
        layout: Layout::new(heading, "subscriptions", viewer),
        action,
        id: editing.map(|s| s.id.clone()),
        kind: kind.name().to_string(),
        kind_title: kind.title().to_string(),
        kind_description: kind.description().to_string(),
        required_fields: kind.required_fields().to_string(),
        title: submitted.title.clone(),
        policies,
        groups,
        group_name,
        latching: submitted.latching,
        enabled: submitted.enabled,
        rows: form::rows(&kind.param_schema(), params),
        errors: TopErrors::default(),
        preview: PreviewPart {
            from: or_default(&submitted.from, || {
                local_input(&clock, now - SignedDuration::from_hours(24))
            }),
            to: or_default(&submitted.to, || local_input(&clock, now)),
            ..Default::default()
        },
        timezone: principal.user.timezone.clone(),
        csrf: viewer.csrf.clone(),
    })
}

fn or_default(given: &str, default: impl FnOnce() -> String) -> String {
    if given.trim().is_empty() {
        default()
    } else {
        given.to_string()
    }
}

/// A time as a `datetime-local` value in the viewer's zone.
fn local_input(clock: &Clock, time: Timestamp) -> String {
    clock.local(time).strftime("%Y-%m-%dT%H:%M").to_string()
}

/// A `datetime-local` value read in the viewer's zone.
fn parse_local(clock: &Clock, text: &str) -> Result<Timestamp, String> {
    let civil: jiff::civil::DateTime = text
        .trim()
        .parse()
        .map_err(|_| format!("`{}` is not a date and time", text.trim()))?;
    civil
        .to_zoned(clock.zone().clone())
        .map(|zoned| zoned.timestamp())
        .map_err(|error| error.to_string())
}

/// Puts the service's errors next to their fields.
fn show_errors(page: &mut FormPage, kind: &dyn HandlerKind, errors: &[ParamError]) {
    let others = form::place_errors(&mut page.rows, &kind.param_schema(), errors);
    for (path, messages) in others {
        let target = match path.as_str() {
            "title" => &mut page.errors.title,
            "policy" => &mut page.errors.policy,
            "group" => &mut page.errors.group,
            _ => {
                for message in messages {
                    page.errors.general.push(format!("{path}: {message}"));
                }
                continue;
            }
        };
        target.extend(messages);
    }
}

/// Creates a subscription from the form; on errors, the form again with each error next
/// to its field and everything as typed.
pub async fn create(
    State(state): State<AppState>,
    CsrfForm { viewer, form }: CsrfForm<Vec<(String, String)>>,
) -> Result<Response, WebError> {
    let submitted = Submitted::read(form);
    let kind = known_kind(&state, &submitted.kind)?;
    let params = form::params_from_form(&kind.param_schema(), &submitted.values);
    let request = NewSubscription {
        kind: kind.name().to_string(),
        title: submitted.title.clone(),
        params: params.clone(),
        group: (!submitted.group.is_empty()).then(|| submitted.group.clone()),
        latching: submitted.latching,
        enabled: submitted.enabled,
        policy: (!submitted.policy.is_empty()).then(|| submitted.policy.clone()),
    };
    match subscriptions::create(&state, &viewer.principal, request).await {
        Ok(created) => Ok(see_other(&format!(
            "/subscriptions/{}?done=created",
            url_encode(&created.id)
        ))),
        Err(ServiceError::Invalid(errors)) => {
            let mut page = form_page(&state, &viewer, kind, None, &submitted, &params).await?;
            show_errors(&mut page, kind, &errors);
            render_status(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(other) => Err(other.into()),
    }
}

/// The form of a subscription, filled with what it has.
pub async fn edit_form(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let subscription = subscriptions::visible(&state, &viewer.principal, &id).await?;
    let kind = known_kind(&state, &subscription.kind)?;
    let submitted = Submitted {
        kind: subscription.kind.clone(),
        title: subscription.title.clone(),
        policy: subscription.policy.clone().unwrap_or_default(),
        latching: subscription.latching,
        enabled: subscription.enabled,
        id: subscription.id.clone(),
        ..Default::default()
    };
    let page = form_page(
        &state,
        &viewer,
        kind,
        Some(&subscription),
        &submitted,
        &subscription.params,
    )
    .await?;
    render(&page)
}

/// Saves the edited form.
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm { viewer, form }: CsrfForm<Vec<(String, String)>>,
) -> Result<Response, WebError> {
    let subscription = subscriptions::visible(&state, &viewer.principal, &id).await?;
    let kind = known_kind(&state, &subscription.kind)?;
    let mut submitted = Submitted::read(form);
    submitted.kind = subscription.kind.clone();
    let params = form::params_from_form(&kind.param_schema(), &submitted.values);
    let changes = SubscriptionChanges {
        title: Some(submitted.title.clone()),
        params: Some(params.clone()),
        latching: Some(submitted.latching),
        enabled: Some(submitted.enabled),
        policy: Some(submitted.policy.clone()),
    };
    match subscriptions::update(&state, &viewer.principal, &id, changes).await {
        Ok(saved) => Ok(see_other(&format!(
            "/subscriptions/{}?done=saved",
            url_encode(&saved.id)
        ))),
        Err(ServiceError::Invalid(errors)) => {
            let mut page = form_page(
                &state,
                &viewer,
                kind,
                Some(&subscription),
                &submitted,
                &params,
            )
            .await?;
            show_errors(&mut page, kind, &errors);
            render_status(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(other) => Err(other.into()),
    }
}

/// Runs the subscription as written in the form over past events and shows the form again
/// with what it would have fired; nothing is saved.
pub async fn preview(
    State(state): State<AppState>,
    CsrfForm { viewer, form }: CsrfForm<Vec<(String, String)>>,
) -> Result<Response, WebError> {
    let mut submitted = Submitted::read(form);
    let editing = if submitted.id.is_empty() {
        None
    } else {
        Some(subscriptions::visible(&state, &viewer.principal, &submitted.id).await?)
    };
    if let Some(subscription) = &editing {
        submitted.kind = subscription.kind.clone();
    }
    let kind = known_kind(&state, &submitted.kind)?;
    let params = form::params_from_form(&kind.param_schema(), &submitted.values);
    let mut page = form_page(&state, &viewer, kind, editing.as_ref(), &submitted, &params).await?;
    let clock = Clock::new(&viewer.principal.user.timezone, state.clock.now());
    let from = parse_local(&clock, &page.preview.from);
    let to = parse_local(&clock, &page.preview.to);
    if let Err(problem) = &from {
        page.preview.from_errors.push(problem.clone());
    }
    if let Err(problem) = &to {
        page.preview.to_errors.push(problem.clone());
    }
    let (Ok(from), Ok(to)) = (from, to) else {
        page.preview.problem = Some("The preview needs a window: see its fields.".to_string());
        return render_status(StatusCode::UNPROCESSABLE_ENTITY, &page);
    };
    let body = submitted.body(&params);
    match run_preview(&state, &viewer, body, from, to, &clock).await? {
        Ok(view) => {
            page.preview.result = Some(view);
            render(&page)
        }
        Err(errors) => {
            show_errors(&mut page, kind, &errors);
            for error in &errors {
                match error.path.as_str() {
                    "from" => page.preview.from_errors.push(error.message.clone()),
                    "to" => page.preview.to_errors.push(error.message.clone()),
                    _ => {}
                }
            }
            page.errors
                .general
                .retain(|line| !line.starts_with("from: ") && !line.starts_with("to: "));
            page.preview.problem =
                Some("The preview did not run: correct the fields marked below.".to_string());
            render_status(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
    }
}

/// Calls the preview service; field errors come back as `Err` for the form.
async fn run_preview(
    state: &AppState,
    viewer: &SignedIn,
    subscription: Value,
    from: Timestamp,
    to: Timestamp,
    clock: &Clock,
) -> Result<Result<PreviewView, Vec<ParamError>>, WebError> {
    let request = preview::PreviewRequest {
        subscription,
        from: Some(from),
        to: Some(to),
    };
    let result = match preview::preview(state, &viewer.principal, request).await {
        Ok(result) => result,
        Err(ServiceError::Invalid(errors)) => return Ok(Err(errors)),
        Err(other) => return Err(other.into()),
    };
    let truncated = result.truncated.then(|| match result.truncated_reason {
        Some(preview::TruncatedReason::Events) => format!(
            "it stopped after looking at {} events",
            result.events_scanned
        ),
        Some(preview::TruncatedReason::Time) => "it ran out of time".to_string(),
        None => "it stopped early".to_string(),
    });
    let rows = result
        .fired
        .iter()
        .map(|firing| PreviewRow {
            at: clock.full(firing.at),
            at_iso: clock.iso(firing.at),
            group_key: firing.group_key.clone(),
            severity: firing.severity.as_str(),
            icon: severity_icon(firing.severity),
            transition: firing.transition.as_str().replace('_', " "),
            notifies: firing.notifies,
            summary: firing.summary.clone(),
            event_id: firing.event_id.clone(),
        })
        .collect();
    Ok(Ok(PreviewView {
        window: format!("{} to {}", clock.full(result.from), clock.full(result.to)),
        events_scanned: result.events_scanned,
        events_matched: result.events_matched,
        alerts: result.alerts,
        errors: result.errors,
        truncated,
        rows,
    }))
}

// ---------------------------------------------------------------------------------------
// A subscription's page, switching on and off, deleting

#[derive(Template)]
#[template(path = "subscriptions_detail.html")]
struct DetailPage {
    layout: Layout,
    id: String,
    title: String,
    kind_title: String,
    enabled: bool,
    latching: bool,
    policy: String,
    group: String,
    created: String,
    /// The parameters in words: (label, value, hint).
    params: Vec<(String, String, String)>,
    alerts: Vec<AlertRow>,
    failing: Option<String>,
    filter_errors: Option<String>,
    csrf: String,
}

/// A subscription's page.
pub async fn detail(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(query): Query<DoneQuery>,
) -> Result<Response, WebError> {
    let principal = &viewer.principal;
    let subscription = subscriptions::visible(&state, principal, &id).await?;
    let clock = Clock::new(&principal.user.timezone, state.clock.now());
    let open = alerts::list(
        &state,
        principal,
        AlertFilter {
            state: StateFilter::Open,
            subscription: Some(subscription.id.clone()),
            limit: OPEN_ALERTS,
            ..Default::default()
        },
    )
    .await?;
    let params = match state.registry.get(&subscription.kind) {
        Some(kind) => params_in_words(&kind.param_schema(), &subscription.params),
        None => vec![(
            "Parameters".to_string(),
            subscription.params.to_string(),
            String::new(),
        )],
    };
    let groups = group_names(&state, &viewer).await?;
    let filter_errors = subscription.filter_errors.as_ref().map(|errors| {
        format!(
            "its filter failed on {} event{}, last at {}: {}",
            errors.count,
            if errors.count == 1 { "" } else { "s" },
            clock.at(errors.last_at),
            errors.last_error
        )
    });
    render(&DetailPage {
        layout: Layout::new(subscription.title.clone(), "subscriptions", &viewer)
            .with_notice(notice(&query.done)),
        id: subscription.id.clone(),
        title: subscription.title.clone(),
        kind_title: kind_title(&state, &subscription.kind),
        enabled: subscription.enabled,
        latching: subscription.latching,
        policy: subscription
            .policy
            .clone()
            .unwrap_or_else(|| "default".to_string()),
        group: subscription
            .owner_group
            .as_ref()
            .and_then(|id| groups.get(id).cloned())
            .unwrap_or_default(),
        created: clock.full(subscription.created),
        params,
        alerts: open
            .items
            .iter()
            .map(|alert| AlertRow::new(alert, &clock))
            .collect(),
        failing: failing(&subscription),
        filter_errors,
        csrf: viewer.csrf.clone(),
    })
}

/// The parameters that are set, as (label, value, hint); a nested object's label names
/// its parent (`Warn › Value`).
fn params_in_words(schema: &Value, params: &Value) -> Vec<(String, String, String)> {
    let mut words = Vec::new();
    let mut legends: Vec<String> = Vec::new();
    for row in form::rows(schema, params) {
        if let Some(fieldset) = row.open {
            legends.push(fieldset.legend);
        }
        if row.close {
            legends.pop();
        }
        let Some(field) = row.field else { continue };
        if field.value.is_empty() && !field.is_checkbox() {
            continue;
        }
        let mut label = legends.clone();
        label.push(field.label.clone());
        let value = if field.is_checkbox() {
            let word = if field.checked { "yes" } else { "no" };
            word.to_string()
        } else {
            field.value.replace('\n', ", ")
        };
        let description = schema_description(schema, &field.name);
        words.push((label.join(" › "), value, description));
    }
    words
}

/// The description of the property at `path` (`params.warn.value`).
fn schema_description(schema: &Value, path: &str) -> String {
    let mut node = schema;
    for segment in path.split('.').skip(1) {
        node = &node["properties"][segment];
    }
    node.get("description")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

#[derive(Deserialize)]
pub struct EnabledForm {
    /// `true` or `false`.
    #[serde(default)]
    enabled: String,
    /// Where to go back to (a local path).
    #[serde(default)]
    back: String,
}

/// Switches a subscription on or off, from the list or its page.
pub async fn set_enabled(
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm { viewer, form }: CsrfForm<EnabledForm>,
) -> Result<Response, WebError> {
    let enabled = form::is_on(&form.enabled);
    subscriptions::set_enabled(&state, &viewer.principal, &id, enabled).await?;
    let done = if enabled { "enabled" } else { "disabled" };
    let back = if form.back.is_empty() {
        format!("/subscriptions/{}", url_encode(&id))
    } else {
        super::format::safe_next(Some(form.back.as_str()))
    };
    let separator = if back.contains('?') { '&' } else { '?' };
    Ok(see_other(&format!("{back}{separator}done={done}")))
}

#[derive(Template)]
#[template(path = "subscriptions_delete.html")]
struct DeletePage {
    layout: Layout,
    id: String,
    title: String,
    open_alerts: usize,
    csrf: String,
}

/// Asks before deleting.
pub async fn confirm_delete(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let subscription = subscriptions::visible(&state, &viewer.principal, &id).await?;
    let open = alerts::list(
        &state,
        &viewer.principal,
        AlertFilter {
            state: StateFilter::Open,
            subscription: Some(subscription.id.clone()),
            limit: OPEN_ALERTS,
            ..Default::default()
        },
    )
    .await?;
    render(&DeletePage {
        layout: Layout::new(
            format!("Delete {}", subscription.title),
            "subscriptions",
            &viewer,
        ),
        id: subscription.id,
        title: subscription.title,
        open_alerts: open.items.len(),
        csrf: viewer.csrf.clone(),
    })
}

#[derive(Deserialize)]
pub struct DeleteForm {}

/// Deletes after the confirming page.
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    CsrfForm { viewer, form: _ }: CsrfForm<DeleteForm>,
) -> Result<Response, WebError> {
    subscriptions::delete(&state, &viewer.principal, &id).await?;
    Ok(see_other("/subscriptions?done=deleted"))
}
