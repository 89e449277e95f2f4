//! The alert lifecycle as a pure state machine.
//!
//! One alert exists per (subscription, group key); it goes firing → resolved and back, and
//! keeps its history. Handler outputs move it with [`apply_output`]; people move it with
//! [`apply_action`]. Both return the history entries to record, each with its typed
//! [`Transition`]; which transitions notify is [`Transition::notifies`], which
//! answers with the notification's own [`crate::render::Transition`].
//!
//! Nothing here mints an id or reads a clock: a new alert's id comes from the caller's
//! [`IdSource`] (the worker passes `tellify_model::new_id`), `now` is passed in.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tellify_model::{Fields, Severity};

use crate::handlers::AlertOutput;
use crate::render::Transition as Notified;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Firing,
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

/// What a subscription contributes to its alerts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertOrigin {
    pub subscription_id: String,
    pub owner_user: Option<String>,
    pub owner_group: Option<String>,
    pub kind: String,
    pub title: String,
    pub latching: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub id: String,
    pub subscription_id: String,
    pub group_key: String,
    pub state: AlertState,
    pub severity: Severity,
    pub previous_severity: Option<Severity>,
    pub message: String,
    /// How many times the condition was seen in this firing episode.
    pub count: u64,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub resolved_at: Option<Timestamp>,
    pub acked: bool,
    pub acked_by: Option<String>,
    pub acked_at: Option<Timestamp>,
    pub ack_expires: Option<Timestamp>,
    pub ack_note: Option<String>,
    pub shelved_until: Option<Timestamp>,
    /// Shelved until the alert resolves.
    pub shelved_oneshot: bool,
    pub shelved_by: Option<String>,
    pub shelve_reason: Option<String>,
    /// The condition has cleared but the subscription latches: firing until acknowledged.
    pub latched: bool,
    pub cleared: bool,
    pub latching: bool,
    pub kind: String,
    pub title: String,
    pub owner_user: Option<String>,
    pub owner_group: Option<String>,
    /// The id of the last event that fired it, if any.
    pub event_id: Option<String>,
    /// Context from the last firing (the group's values, the measured value, ...).
    pub fields: Fields,
}

/// One recorded transition of an alert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub at: Timestamp,
    /// The user who acted, or `tellify` for the engine.
    pub actor: String,
    pub action: Transition,
    pub detail: serde_json::Value,
}

/// What happened to an alert: the `action` of a history entry. Stored and shown as its
/// snake_case name ([`Transition::as_str`]), which never changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    Fired,
    SeverityRaised,
    SeverityLowered,
    /// An acknowledgement ended because the severity rose.
    Unacked,
    /// The condition cleared but the alert latches until acknowledged.
    Latched,
    Resolved,
    Acked,
    Shelved,
    Unshelved,
    Cleared,
}

impl Transition {
    pub const ALL: [Transition; 10] = [
        Transition::Fired,
        Transition::SeverityRaised,
        Transition::SeverityLowered,
        Transition::Unacked,
        Transition::Latched,
        Transition::Resolved,
        Transition::Acked,
        Transition::Shelved,
        Transition::Unshelved,
        Transition::Cleared,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Fired => "fired",
            Transition::SeverityRaised => "severity_raised",
            Transition::SeverityLowered => "severity_lowered",
            Transition::Unacked => "unacked",
            Transition::Latched => "latched",
            Transition::Resolved => "resolved",
            Transition::Acked => "acked",
            Transition::Shelved => "shelved",
            Transition::Unshelved => "unshelved",
            Transition::Cleared => "cleared",
        }
    }

    /// The notification this transition calls for when the engine made it, if any:
    /// people's own actions (and latching, unacking, unshelving) notify nobody.
    pub fn notifies(self) -> Option<Notified> {
        match self {
            Transition::Fired => Some(Notified::Fired),
            Transition::SeverityRaised | Transition::SeverityLowered => Some(Notified::Escalated),
            Transition::Resolved => Some(Notified::Resolved),
            _ => None,
        }
    }
}

impl std::str::FromStr for Transition {
    type Err = UnknownTransition;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Transition::ALL
            .into_iter()
            .find(|transition| transition.as_str() == text)
            .ok_or_else(|| UnknownTransition(text.to_string()))
    }
}

impl std::fmt::Display for Transition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for Transition {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Transition {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A stored history action that names no [`Transition`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown alert transition `{0}`")]
pub struct UnknownTransition(pub String);

/// Where new ids come from. The engine never mints one: the caller passes a source (the
/// worker `tellify_model::new_id`, a test a counter). Any `Fn() -> String` is one.
pub trait IdSource {
    fn next_id(&self) -> String;
}

impl<F: Fn() -> String> IdSource for F {
    fn next_id(&self) -> String {
        self()
    }
}

pub const ENGINE_ACTOR: &str = "tellify";

/// Something a person does to an alert.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Ack {
        note: Option<String>,
        expires: Option<Timestamp>,
    },
    Shelve {
        until: Option<Timestamp>,
        oneshot: bool,
        reason: Option<String>,
    },
    Unshelve,
    Clear,
}

/// Why an action cannot apply now.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
}

impl Alert {
    /// The alert as it stands at `now`: an expired acknowledgement or shelve no longer
    /// shows.
    pub fn at(mut self, now: Timestamp) -> Alert {
        if self.acked && self.ack_expires.is_some_and(|expiry| expiry <= now) {
            self.acked = false;
        }
        if self.shelved_until.is_some_and(|until| until <= now) {
            self.shelved_until = None;
        }
        self
    }

    pub fn is_shelved(&self, now: Timestamp) -> bool {
        self.standing().is_shelved(now)
    }

    pub fn is_acked(&self, now: Timestamp) -> bool {
        self.standing().is_acked(now)
    }

    /// Whether it is cleared, acknowledged or shelved, and until when.
    pub fn standing(&self) -> AlertStanding {
        AlertStanding {
            cleared: self.cleared,
            acked: self.acked,
            ack_expires: self.ack_expires,
            shelved_until: self.shelved_until,
            shelved_oneshot: self.shelved_oneshot,
        }
    }
}

/// The part of an alert that says whether a person still wants to hear about it: cleared,
/// acknowledged, shelved. It reads from an alert's stored JSON with every other key
/// skipped, which the outbox's ganging does for thousands of alerts on the store's writer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct AlertStanding {
    pub cleared: bool,
    pub acked: bool,
    pub ack_expires: Option<Timestamp>,
    pub shelved_until: Option<Timestamp>,
    pub shelved_oneshot: bool,
}

impl AlertStanding {
    pub fn is_acked(&self, now: Timestamp) -> bool {
        self.acked && self.ack_expires.is_none_or(|expiry| expiry > now)
    }

    pub fn is_shelved(&self, now: Timestamp) -> bool {
        self.shelved_oneshot || self.shelved_until.is_some_and(|until| until > now)
    }
}

fn entry(
    now: Timestamp,
    actor: &str,
    action: Transition,
    detail: serde_json::Value,
) -> HistoryEntry {
    HistoryEntry {
        at: now,
        actor: actor.to_string(),
        action,
        detail,
    }
}

/// Applies a handler output. Returns the new alert and its history entries, or `None`
/// when nothing changes (resolving an alert that is not firing). A new alert takes its id
/// from `ids`.
pub fn apply_output(
    current: Option<Alert>,
    output: &AlertOutput,
    origin: &AlertOrigin,
    now: Timestamp,
    ids: &dyn IdSource,
) -> Option<(Alert, Vec<HistoryEntry>)> {
    match output {
        AlertOutput::Fire {
            group_key,
            severity,
            message,
            fields,
            event_id,
        } => Some(fire(
            current, group_key, *severity, message, fields, event_id, origin, now, ids,
        )),
        AlertOutput::Resolve { message, .. } => {
            let mut alert = current?;
            if alert.state != AlertState::Firing || alert.latched {
                return None;
            }
            let mut history = Vec::new();
            if alert.latching && !alert.is_acked(now) {
                alert.latched = true;
                history.push(entry(
                    now,
                    ENGINE_ACTOR,
                    Transition::Latched,
                    serde_json::json!({"message": message}),
                ));
                return Some((alert, history));
            }
            resolve(
                &mut alert,
                now,
                ENGINE_ACTOR,
                message.as_deref(),
                &mut history,
            );
            Some((alert, history))
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn fire(
    current: Option<Alert>,
    group_key: &str,
    severity: Severity,
    message: &str,
    fields: &Fields,
    event_id: &Option<String>,
    origin: &AlertOrigin,
    now: Timestamp,
    ids: &dyn IdSource,
) -> (Alert, Vec<HistoryEntry>) {
    let mut history = Vec::new();
    let mut detail = serde_json::json!({"severity": severity, "message": message});
    // The event behind the change, for "what made this fire" on the alert's page.
    if let Some(event_id) = event_id {
        detail["event_id"] = serde_json::Value::String(event_id.clone());
    }
    let mut alert = match current {
        Some(alert) if alert.state == AlertState::Firing => alert,
        Some(mut alert) => {
            alert.state = AlertState::Firing;
            alert.count = 0;
            alert.first_seen = now;
            alert.previous_severity = Some(alert.severity);
            alert.severity = severity;
            alert.resolved_at = None;
            alert.cleared = false;
            alert.acked = false;
            alert.ack_expires = None;
            alert.latched = false;
            history.push(entry(now, ENGINE_ACTOR, Transition::Fired, detail.clone()));
            alert
        }
        None => {
            history.push(entry(now, ENGINE_ACTOR, Transition::Fired, detail.clone()));
            Alert {
                id: ids.next_id(),
                subscription_id: origin.subscription_id.clone(),
                group_key: group_key.to_string(),
                state: AlertState::Firing,
                severity,
                previous_severity: None,
                message: message.to_string(),
                count: 0,
                first_seen: now,
                last_seen: now,
                resolved_at: None,
                acked: false,
                acked_by: None,
                acked_at: None,
                ack_expires: None,
                ack_note: None,
                shelved_until: None,
                shelved_oneshot: false,
                shelved_by: None,
                shelve_reason: None,
                latched: false,
                cleared: false,
                latching: origin.latching,
                kind: origin.kind.clone(),
                title: origin.title.clone(),
                owner_user: origin.owner_user.clone(),
                owner_group: origin.owner_group.clone(),
                event_id: None,
                fields: Fields::new(),
            }
        }
    };
    if alert.severity != severity {
        let raised = severity > alert.severity;
        alert.previous_severity = Some(alert.severity);
        alert.severity = severity;
        let action = if raised {
            Transition::SeverityRaised
        } else {
            Transition::SeverityLowered
        };
        history.push(entry(now, ENGINE_ACTOR, action, detail));
        if raised && alert.acked {
            alert.acked = false;
            history.push(entry(
                now,
                ENGINE_ACTOR,
                Transition::Unacked,
                serde_json::json!({"reason": "severity rose"}),
            ));
        }
    }
    if alert.latched {
        alert.latched = false;
    }
    alert.count += 1;
    alert.last_seen = now;
    alert.message = message.to_string();
    alert.fields = fields.clone();
    alert.latching = origin.latching;
    alert.title = origin.title.clone();
    if event_id.is_some() {
        alert.event_id = event_id.clone();
    }
    (alert, history)
}

fn resolve(
    alert: &mut Alert,
    now: Timestamp,
    actor: &str,
    message: Option<&str>,
    history: &mut Vec<HistoryEntry>,
) {
    alert.state = AlertState::Resolved;
    alert.resolved_at = Some(now);
    alert.latched = false;
    history.push(entry(
        now,
        actor,
        Transition::Resolved,
        serde_json::json!({"message": message}),
    ));
    if alert.shelved_oneshot {
        alert.shelved_oneshot = false;
        alert.shelved_by = None;
        alert.shelve_reason = None;
        history.push(entry(
            now,
            ENGINE_ACTOR,
            Transition::Unshelved,
            serde_json::json!({"reason": "one-shot shelve ends when the alert resolves"}),
        ));
    }
}

/// Applies a person's action to an alert, returning the history entries to record.
pub fn apply_action(
    alert: &mut Alert,
    action: &Action,
    actor: &str,
    now: Timestamp,
) -> Result<Vec<HistoryEntry>, ActionError> {
    let mut history = Vec::new();
    match action {
        Action::Ack { note, expires } => {
            if alert.state != AlertState::Firing {
                return Err(ActionError::Conflict(
                    "alert is not firing: nothing to acknowledge".to_string(),
                ));
            }
            if expires.is_some_and(|expiry| expiry <= now) {
                return Err(ActionError::Invalid(
                    "`expires` must be in the future".to_string(),
                ));
            }
            alert.acked = true;
            alert.acked_by = Some(actor.to_string());
            alert.acked_at = Some(now);
            alert.ack_expires = *expires;
            alert.ack_note = note.clone();
            history.push(entry(
                now,
                actor,
                Transition::Acked,
                serde_json::json!({"note": note, "expires": expires}),
            ));
            if alert.latched {
                resolve(
                    alert,
                    now,
                    actor,
                    Some("latched alert acknowledged"),
                    &mut history,
                );
            }
        }
        Action::Shelve {
            until,
            oneshot,
            reason,
        } => {
            match (until, oneshot) {
                (Some(_), true) => {
                    return Err(ActionError::Invalid(
                        "give either `until` or `oneshot`, not both".to_string(),
                    ))
                }
                (None, false) => {
                    return Err(ActionError::Invalid(
                        "give `until` (a time) or `oneshot: true`".to_string(),
                    ))
                }
                (Some(time), false) if *time <= now => {
                    return Err(ActionError::Invalid(
                        "`until` must be in the future".to_string(),
                    ))
                }
                _ => {}
            }
            if *oneshot && alert.state != AlertState::Firing {
                return Err(ActionError::Conflict(
                    "a one-shot shelve ends when the alert resolves; this alert is not firing"
                        .to_string(),
                ));
            }
            alert.shelved_until = *until;
            alert.shelved_oneshot = *oneshot;
            alert.shelved_by = Some(actor.to_string());
            alert.shelve_reason = reason.clone();
            history.push(entry(
                now,
                actor,
                Transition::Shelved,
                serde_json::json!({"until": until, "oneshot": oneshot, "reason": reason}),
            ));
        }
        Action::Unshelve => {
            if !alert.is_shelved(now) {
                return Err(ActionError::Conflict("alert is not shelved".to_string()));
            }
            alert.shelved_until = None;
            alert.shelved_oneshot = false;
            alert.shelved_by = None;
            alert.shelve_reason = None;
            history.push(entry(
                now,
                actor,
                Transition::Unshelved,
                serde_json::json!({}),
            ));
        }
        Action::Clear => {
            if alert.cleared {
                return Err(ActionError::Conflict(
                    "alert is already cleared".to_string(),
                ));
            }
            alert.state = AlertState::Resolved;
            alert.resolved_at = Some(now);
            alert.cleared = true;
            alert.latched = false;
            alert.acked = false;
            alert.shelved_oneshot = false;
            history.push(entry(
                now,
                actor,
                Transition::Cleared,
                serde_json::json!({}),
            ));
        }
    }
    Ok(history)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::SignedDuration;

    fn origin(latching: bool) -> AlertOrigin {
        AlertOrigin {
            subscription_id: "s1".into(),
            owner_user: Some("u1".into()),
            owner_group: None,
            kind: "threshold".into(),
            title: "disk".into(),
            latching,
        }
    }

    fn fire_output(severity: Severity) -> AlertOutput {
        AlertOutput::Fire {
            group_key: "/sarc".into(),
            severity,
            message: "high".into(),
            fields: Fields::new(),
            event_id: None,
        }
    }

    fn resolve_output() -> AlertOutput {
        AlertOutput::Resolve {
            group_key: "/sarc".into(),
            message: None,
        }
    }

    fn ids() -> String {
        "a1".to_string()
    }

    fn t(seconds: i64) -> Timestamp {
        Timestamp::UNIX_EPOCH + SignedDuration::from_secs(seconds)
    }

    #[test]
    fn transitions_keep_their_stored_names_and_say_which_notify() {
        for transition in Transition::ALL {
            let text = transition.as_str();
            assert_eq!(text.parse::<Transition>(), Ok(transition));
            assert_eq!(serde_json::json!(transition), serde_json::json!(text));
        }
        assert_eq!(
            "renamed".parse::<Transition>(),
            Err(UnknownTransition("renamed".into()))
        );
        let notifying: Vec<(Transition, Notified)> = Transition::ALL
            .into_iter()
            .filter_map(|transition| Some((transition, transition.notifies()?)))
            .collect();
        assert_eq!(
            notifying,
            vec![
                (Transition::Fired, Notified::Fired),
                (Transition::SeverityRaised, Notified::Escalated),
                (Transition::SeverityLowered, Notified::Escalated),
                (Transition::Resolved, Notified::Resolved),
            ]
        );
    }

    #[test]
    fn a_new_alert_takes_its_id_from_the_callers_source() {
        let counter = std::cell::Cell::new(0);
        let ids = || {
            counter.set(counter.get() + 1);
            format!("alert-{}", counter.get())
        };
        let o = origin(false);
        let (alert, _) =
            apply_output(None, &fire_output(Severity::Warning), &o, t(1), &ids).unwrap();
        assert_eq!(alert.id, "alert-1");
        let (again, _) =
            apply_output(Some(alert), &fire_output(Severity::Warning), &o, t(2), &ids).unwrap();
        assert_eq!((again.id.as_str(), counter.get()), ("alert-1", 1));
    }

    #[test]
    fn fire_repeat_raise_resolve_and_refire() {
        let o = origin(false);
        let (alert, history) =
            apply_output(None, &fire_output(Severity::Warning), &o, t(1), &ids).unwrap();
        assert_eq!(history[0].action, "fired");
        let (alert, history) =
            apply_output(Some(alert), &fire_output(Severity::Warning), &o, t(2), &ids).unwrap();
        assert!(history.is_empty());
        assert_eq!(alert.count, 2);
        let (alert, history) = apply_output(
            Some(alert),
            &fire_output(Severity::Critical),
            &o,
            t(3),
            &ids,
        )
        .unwrap();
        assert_eq!(history[0].action, "severity_raised");
        assert_eq!(alert.previous_severity, Some(Severity::Warning));
        let (alert, _) = apply_output(Some(alert), &resolve_output(), &o, t(4), &ids).unwrap();
        assert_eq!(alert.state, AlertState::Resolved);
        assert!(apply_output(Some(alert.clone()), &resolve_output(), &o, t(5), &ids).is_none());
        let (again, _) = apply_output(
            Some(alert.clone()),
            &fire_output(Severity::Warning),
            &o,
            t(6),
            &ids,
        )
        .unwrap();
        assert_eq!(again.id, alert.id);
        assert_eq!(
            (again.state, again.count, again.first_seen),
            (AlertState::Firing, 1, t(6))
        );
    }

    #[test]
    fn a_severity_rise_reopens_an_acknowledged_alert() {
        let o = origin(false);
        let (mut alert, _) =
            apply_output(None, &fire_output(Severity::Warning), &o, t(1), &ids).unwrap();
        apply_action(
            &mut alert,
            &Action::Ack {
                note: None,
                expires: None,
            },
            "ann",
            t(2),
        )
        .unwrap();
        assert!(alert.is_acked(t(3)));
        let (alert, history) = apply_output(
            Some(alert),
            &fire_output(Severity::Critical),
            &o,
            t(3),
            &ids,
        )
        .unwrap();
        assert!(!alert.acked);
        assert!(history.iter().any(|h| h.action == "unacked"));
    }

    #[test]
    fn latching_holds_until_acknowledged() {
        let o = origin(true);
        let (alert, _) =
            apply_output(None, &fire_output(Severity::Warning), &o, t(1), &ids).unwrap();
        let (mut alert, history) =
            apply_output(Some(alert), &resolve_output(), &o, t(2), &ids).unwrap();
        assert_eq!(alert.state, AlertState::Firing);
        assert!(alert.latched);
        assert_eq!(history[0].action, "latched");
        let history = apply_action(
            &mut alert,
            &Action::Ack {
                note: Some("seen".into()),
                expires: None,
            },
            "ann",
            t(3),
        )
        .unwrap();
        assert_eq!(alert.state, AlertState::Resolved);
        let actions: Vec<&str> = history.iter().map(|h| h.action.as_str()).collect();
        assert_eq!(actions, vec!["acked", "resolved"]);
    }

    #[test]
    fn shelves_expire_or_end_on_resolve() {
        let o = origin(false);
        let (mut alert, _) =
            apply_output(None, &fire_output(Severity::Warning), &o, t(1), &ids).unwrap();
        let bad = apply_action(
            &mut alert,
            &Action::Shelve {
                until: Some(t(0)),
                oneshot: false,
                reason: None,
            },
            "ann",
            t(1),
        );
        assert!(matches!(bad, Err(ActionError::Invalid(_))));
        apply_action(
            &mut alert,
            &Action::Shelve {
                until: Some(t(100)),
                oneshot: false,
                reason: Some("maint".into()),
            },
            "ann",
            t(1),
        )
        .unwrap();
        assert!(alert.is_shelved(t(50)));
        assert!(!alert.is_shelved(t(100)));
        assert_eq!(alert.clone().at(t(101)).shelved_until, None);
        apply_action(
            &mut alert,
            &Action::Shelve {
                until: None,
                oneshot: true,
                reason: None,
            },
            "ann",
            t(2),
        )
        .unwrap();
        let (alert, history) =
            apply_output(Some(alert), &resolve_output(), &o, t(3), &ids).unwrap();
        assert!(!alert.is_shelved(t(3)));
        assert_eq!(history.last().unwrap().action, "unshelved");
    }

    #[test]
    fn acks_expire_and_clear_dismisses() {
        let o = origin(false);
        let (mut alert, _) =
            apply_output(None, &fire_output(Severity::Warning), &o, t(1), &ids).unwrap();
        apply_action(
            &mut alert,
            &Action::Ack {
                note: None,
                expires: Some(t(10)),
            },
            "ann",
            t(2),
        )
        .unwrap();
        assert!(alert.is_acked(t(9)));
        assert!(!alert.clone().at(t(10)).acked);
        apply_action(&mut alert, &Action::Clear, "ann", t(11)).unwrap();
        assert_eq!((alert.state, alert.cleared), (AlertState::Resolved, true));
        assert!(matches!(
            apply_action(&mut alert, &Action::Clear, "ann", t(12)),
            Err(ActionError::Conflict(_))
        ));
        assert!(matches!(
            apply_action(
                &mut alert,
                &Action::Ack {
                    note: None,
                    expires: None
                },
                "ann",
                t(12)
            ),
            Err(ActionError::Conflict(_))
        ));
    }
}
