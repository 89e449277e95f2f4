//! Explain: why a delivery went out as it did, or why an alert sent nothing.
//!
//! An [`Explanation`] is a chain of [`Step`]s, each with a `kind`, a time, one line of
//! words (`title`) and its structured fields: the event → the subscription → the alert
//! transition → the policy rules (each with its verdict) → the decision (at once, digest
//! at T, held until T, silenced by S, muted, no policy) → the delivery (contact point,
//! channel, status, attempts) → the provider's answer.
//!
//! The decision is the planner's own ([`Planner::decide`], the function that plans the
//! outbox rows), asked again at the transition's time: there is no second copy of the
//! rules here. It reads the policies, contact points and silences of today, so a policy
//! changed since explains what it would decide now; every policy step says so.
//!
//! **Invariant:** a delivery or alert the caller may not see answers exactly like an
//! unknown id (`NotFound`).

use jiff::Timestamp;
use serde::Serialize;
use tellify_engine::alerts::{Alert, HistoryEntry, Transition};
use tellify_engine::policy::RuleVerdict;
use tellify_engine::render::Transition as Notified;
use tellify_model::Severity;
use tellify_store::{DeliveryAttempt, DeliveryItem, DeliveryQuery, DeliveryRecord};

use super::error::{require, ServiceError, ServiceResult};
use super::Services;
use crate::auth::{Principal, Scope};
use crate::notify::planner::Decision;

/// Most deliveries of one alert looked at.
const MAX_DELIVERIES: usize = 200;

/// The chain of one delivery or one alert.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Explanation {
    /// One line: what happened in the end.
    pub summary: String,
    pub steps: Vec<Step>,
}

/// One link of the chain.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Step {
    /// When it happened (or will), when that is known.
    pub at: Option<Timestamp>,
    /// One line of words.
    pub title: String,
    /// `kind` and the fields of that kind.
    #[serde(flatten)]
    pub detail: StepDetail,
}

/// The structured fields of a [`Step`], by `kind`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StepDetail {
    /// The event that fired the alert.
    Event {
        event_id: String,
        event_type: Option<String>,
        severity: Severity,
        message: Option<String>,
    },
    /// The subscription the alert belongs to.
    Subscription {
        subscription_id: String,
        title: String,
        handler_kind: String,
        /// The policy it names (`default` when none).
        policy: String,
    },
    /// The alert's transition.
    Transition {
        alert_id: String,
        group_key: String,
        /// `fired`, `severity_raised`, `resolved`, ..., or `repeat` for a reminder.
        transition: String,
        severity: Severity,
    },
    /// The planner's decision for one person, rule by rule.
    Policy { user: String, decision: Decision },
    /// What was decided for this contact point (or for nobody).
    Decision {
        /// `now`, `digest`, `held`, `silenced`, `muted`, `no_policy`, `no_rule`,
        /// `no_contact_point`, `unknown_person`.
        outcome: &'static str,
        /// When it is due, for `now`, `digest` and `held`.
        due: Option<Timestamp>,
        silence_id: Option<String>,
    },
    /// The delivery that carried it.
    Delivery {
        delivery_id: String,
        contact_point: String,
        channel: String,
        status: String,
        attempts: Vec<DeliveryAttempt>,
        created: Timestamp,
        sent_at: Option<Timestamp>,
    },
    /// The provider's answer to the last attempt.
    Answer {
        ok: bool,
        /// The provider's receipt, or the error.
        detail: String,
    },
}

/// The chain behind one delivery of the caller's (any, for an admin).
pub async fn delivery(
    services: &Services,
    principal: &Principal,
    delivery_id: &str,
) -> ServiceResult<Explanation> {
    require(principal, Scope::User)?;
    let Some((delivery, attempts, items)) = services.store.delivery(delivery_id).await? else {
        return Err(ServiceError::NotFound("delivery"));
    };
    if delivery.user_id != principal.user.id && !principal.is_admin() {
        return Err(ServiceError::NotFound("delivery"));
    }
    let user = user_name(services, &delivery.user_id).await?;
    let mut steps = Vec::new();
    let mut decided = Vec::new();
    for item in &items {
        let at = transition_time(services, item, delivery.created).await?;
        if let Some(event_step) = event_step(services, &item.alert).await? {
            steps.push(event_step);
        }
        steps.push(subscription_step(services, &item.alert).await?);
        steps.push(Step {
            at: Some(at),
            title: format!(
                "the alert {} ({}) {}",
                item.alert.title,
                item.alert.group_key,
                transition_words(&item.transition)
            ),
            detail: StepDetail::Transition {
                alert_id: item.alert_id.clone(),
                group_key: item.alert.group_key.clone(),
                transition: item.transition.clone(),
                severity: item.alert.severity,
            },
        });
        let Ok(notified) = item.transition.parse::<Notified>() else {
            continue;
        };
        let decision = services.notifier.planner_decisions().decide(
            &delivery.user_id,
            &item.alert,
            notified,
            at,
        );
        steps.push(policy_step(&user, at, decision.clone()));
        let step = decision_step(&decision, Some(&delivery.contact_point_id), at);
        decided.push(step.title.clone());
        steps.push(step);
    }
    let last = attempts.last().cloned();
    steps.push(Step {
        at: Some(delivery.created),
        title: format!(
            "delivery to {} ({}): {} after {} attempt(s)",
            delivery.contact_point,
            delivery.kind,
            delivery.status.as_str(),
            delivery.attempts
        ),
        detail: StepDetail::Delivery {
            delivery_id: delivery.id.clone(),
            contact_point: delivery.contact_point.clone(),
            channel: delivery.kind.clone(),
            status: delivery.status.as_str().to_string(),
            attempts,
            created: delivery.created,
            sent_at: delivery.sent_at,
        },
    });
    let answer = match &last {
        Some(attempt) => Some((attempt.at, attempt.ok, attempt.detail.clone())),
        None => delivery
            .last_error
            .clone()
            .map(|error| (delivery.next_attempt, false, error)),
    };
    if let Some((at, ok, detail)) = answer {
        let detail = if ok {
            delivery.receipt.clone().unwrap_or(detail)
        } else {
            detail
        };
        steps.push(Step {
            at: Some(at),
            title: if ok {
                format!("the provider accepted it: {detail}")
            } else {
                format!("the provider refused it: {detail}")
            },
            detail: StepDetail::Answer { ok, detail },
        });
    }
    let summary = format!(
        "{} alert change(s) to {} ({}): {}; {}",
        items.len(),
        delivery.contact_point,
        delivery.kind,
        if decided.is_empty() {
            "sent".to_string()
        } else {
            decided.join("; ")
        },
        delivery.status.as_str()
    );
    Ok(Explanation { summary, steps })
}

/// For one alert the caller may see: each transition that notifies, and either the
/// deliveries that carried it or why nothing was sent.
pub async fn alert(
    services: &Services,
    principal: &Principal,
    alert_id: &str,
) -> ServiceResult<Explanation> {
    require(principal, Scope::User)?;
    let alert = super::alerts::visible(services, principal, alert_id).await?;
    let history = services.store.alert_history(alert_id).await?;
    let records = deliveries_of(services, principal, alert_id).await?;
    let people: Vec<String> = if principal.is_admin() {
        services.notifier.planner_decisions().recipients(&alert)
    } else {
        vec![principal.user.id.clone()]
    };
    let mut steps = Vec::new();
    if let Some(event_step) = event_step(services, &alert).await? {
        steps.push(event_step);
    }
    steps.push(subscription_step(services, &alert).await?);
    let mut sent = 0;
    let mut unsent = 0;
    let notifying: Vec<(usize, &HistoryEntry, Notified)> = history
        .iter()
        .enumerate()
        .filter_map(|(index, entry)| entry.action.notifies().map(|n| (index, entry, n)))
        .collect();
    for (position, (index, entry, notified)) in notifying.iter().enumerate() {
        let until = notifying
            .iter()
            .skip(position + 1)
            .find(|(_, _, other)| other == notified)
            .map(|(_, later, _)| later.at);
        let snapshot = as_it_was(&alert, &history[..*index], entry);
        steps.push(Step {
            at: Some(entry.at),
            title: format!(
                "the alert {} ({}) {}",
                alert.title,
                alert.group_key,
                transition_words(notified.as_str())
            ),
            detail: StepDetail::Transition {
                alert_id: alert.id.clone(),
                group_key: alert.group_key.clone(),
                transition: entry.action.as_str().to_string(),
                severity: snapshot.severity,
            },
        });
        let carried: Vec<&DeliveryRecord> = records
            .iter()
            .filter(|(delivery, _, items)| {
                delivery.created >= entry.at
                    && until.is_none_or(|until| delivery.created < until)
                    && items.iter().any(|item| {
                        item.alert_id == alert.id && item.transition == notified.as_str()
                    })
            })
            .collect();
        for (delivery, attempts, _) in &carried {
            sent += 1;
            steps.push(Step {
                at: Some(delivery.created),
                title: format!(
                    "delivery to {} ({}): {} after {} attempt(s){}",
                    delivery.contact_point,
                    delivery.kind,
                    delivery.status.as_str(),
                    delivery.attempts,
                    delivery
                        .last_error
                        .as_deref()
                        .map(|error| format!(", last error: {error}"))
                        .unwrap_or_default()
                ),
                detail: StepDetail::Delivery {
                    delivery_id: delivery.id.clone(),
                    contact_point: delivery.contact_point.clone(),
                    channel: delivery.kind.clone(),
                    status: delivery.status.as_str().to_string(),
                    attempts: attempts.clone(),
                    created: delivery.created,
                    sent_at: delivery.sent_at,
                },
            });
        }
        for user_id in &people {
            let mine = carried
                .iter()
                .any(|(delivery, _, _)| &delivery.user_id == user_id);
            if mine {
                continue;
            }
            // Nothing went out to this person for this change: say why, from the
            // planner's own decision.
            let decision = services
                .notifier
                .planner_decisions()
                .decide(user_id, &snapshot, *notified, entry.at);
            let user = user_name(services, user_id).await?;
            steps.push(policy_step(&user, entry.at, decision.clone()));
            let step = decision_step(&decision, None, entry.at);
            if !matches!(
                step.detail,
                StepDetail::Decision {
                    outcome: "now" | "digest" | "held",
                    ..
                }
            ) {
                unsent += 1;
            }
            steps.push(step);
        }
    }
    let summary = if notifying.is_empty() {
        "no transition of this alert notifies anyone yet".to_string()
    } else {
        format!(
            "{} notifying transition(s): {sent} delivery(ies), {unsent} time(s) nothing was sent",
            notifying.len()
        )
    };
    Ok(Explanation { summary, steps })
}

/// The deliveries that carried changes of the alert: the caller's own (everyone's, for
/// an admin), each with its attempts and items.
async fn deliveries_of(
    services: &Services,
    principal: &Principal,
    alert_id: &str,
) -> ServiceResult<Vec<DeliveryRecord>> {
    let listed = services
        .store
        .list_deliveries(DeliveryQuery {
            user_id: (!principal.is_admin()).then(|| principal.user.id.clone()),
            status: None,
            alert_id: Some(alert_id.to_string()),
            before_id: None,
            limit: MAX_DELIVERIES,
        })
        .await?;
    let mut records = Vec::with_capacity(listed.len());
    for delivery in listed {
        if let Some(record) = services.store.delivery(&delivery.id).await? {
            records.push(record);
        }
    }
    Ok(records)
}

/// The alert as it stood at `entry`: its severity then, and acknowledged or shelved only
/// if the history says so before that moment.
fn as_it_was(alert: &Alert, before: &[HistoryEntry], entry: &HistoryEntry) -> Alert {
    let mut snapshot = alert.clone();
    if let Some(severity) = entry
        .detail
        .get("severity")
        .and_then(|value| serde_json::from_value::<Severity>(value.clone()).ok())
    {
        snapshot.severity = severity;
    }
    let last_ack = before
        .iter()
        .rev()
        .find(|earlier| matches!(earlier.action, Transition::Acked | Transition::Unacked));
    if !last_ack.is_some_and(|earlier| earlier.action == Transition::Acked) {
        snapshot.acked = false;
    }
    let last_shelve = before
        .iter()
        .rev()
        .find(|earlier| matches!(earlier.action, Transition::Shelved | Transition::Unshelved));
    if !last_shelve.is_some_and(|earlier| earlier.action == Transition::Shelved) {
        snapshot.shelved_until = None;
        snapshot.shelved_oneshot = false;
    }
    snapshot
}

/// When the transition an item carries happened: its history entry (the latest of that
/// kind before the delivery), or the delivery's creation for a reminder.
async fn transition_time(
    services: &Services,
    item: &DeliveryItem,
    created: Timestamp,
) -> ServiceResult<Timestamp> {
    let history = services.store.alert_history(&item.alert_id).await?;
    let found = history
        .iter()
        .rev()
        .filter(|entry| entry.at <= created)
        .find(|entry| {
            entry
                .action
                .notifies()
                .is_some_and(|notified| notified.as_str() == item.transition)
        })
        .map(|entry| entry.at);
    Ok(found.unwrap_or(created))
}

async fn event_step(services: &Services, alert: &Alert) -> ServiceResult<Option<Step>> {
    let Some(event_id) = &alert.event_id else {
        return Ok(None);
    };
    let Some(event) = services.store.event(event_id).await? else {
        return Ok(None);
    };
    Ok(Some(Step {
        at: Some(event.time),
        title: format!(
            "event {}{}: {}",
            event.event_type.as_deref().unwrap_or("(no type)"),
            event
                .source
                .producer
                .as_deref()
                .map(|producer| format!(" from {producer}"))
                .unwrap_or_default(),
            event.message.as_deref().unwrap_or(event.severity.as_str())
        ),
        detail: StepDetail::Event {
            event_id: event.id.clone(),
            event_type: event.event_type.clone(),
            severity: event.severity,
            message: event.message.clone(),
        },
    }))
}

async fn subscription_step(services: &Services, alert: &Alert) -> ServiceResult<Step> {
    let subscription = services.store.subscription(&alert.subscription_id).await?;
    let (title, kind, policy, at) = match &subscription {
        Some(subscription) => (
            subscription.title.clone(),
            subscription.kind.clone(),
            subscription
                .policy
                .clone()
                .unwrap_or_else(|| "default".to_string()),
            Some(subscription.created),
        ),
        None => (
            alert.title.clone(),
            alert.kind.clone(),
            "default".to_string(),
            None,
        ),
    };
    Ok(Step {
        at,
        title: format!("subscription {title} ({kind}), notifying through the policy `{policy}`"),
        detail: StepDetail::Subscription {
            subscription_id: alert.subscription_id.clone(),
            title,
            handler_kind: kind,
            policy,
        },
    })
}

fn policy_step(user: &str, at: Timestamp, decision: Decision) -> Step {
    let title = match &decision {
        Decision::UnknownPerson => format!("{user} is not known to the planner (removed?)"),
        Decision::NoPolicy { policy } => {
            format!("{user} has no policy `{policy}` and no `default`")
        }
        Decision::Muted { acked, shelved } => format!(
            "the alert was {} at the time",
            match (acked, shelved) {
                (true, true) => "acknowledged and shelved",
                (true, false) => "acknowledged",
                _ => "shelved",
            }
        ),
        Decision::Silenced { silence_id } => format!("silenced by {user}'s silence {silence_id}"),
        Decision::Rules { policy, rules, .. } => {
            let words: Vec<String> = rules
                .iter()
                .map(|rule| {
                    let mut text = format!("rule {}: {}", rule.index + 1, rule.verdict.describe());
                    if let Some(skipped) = &rule.skipped {
                        text.push_str(&format!(", but {skipped}"));
                    }
                    text
                })
                .collect();
            format!(
                "{user}'s policy `{policy}` (as it reads today): {}",
                words.join("; ")
            )
        }
    };
    Step {
        at: Some(at),
        title,
        detail: StepDetail::Policy {
            user: user.to_string(),
            decision,
        },
    }
}

/// What the decision meant for one contact point (`None`: for the person at all).
fn decision_step(decision: &Decision, contact_point_id: Option<&str>, at: Timestamp) -> Step {
    let step = |outcome: &'static str,
                due: Option<Timestamp>,
                silence_id: Option<String>,
                title: String| Step {
        at: due.or(Some(at)),
        title,
        detail: StepDetail::Decision {
            outcome,
            due,
            silence_id,
        },
    };
    let rules = match decision {
        Decision::UnknownPerson => {
            return step(
                "unknown_person",
                None,
                None,
                "nothing sent: nobody to tell".into(),
            )
        }
        Decision::NoPolicy { policy } => {
            return step(
                "no_policy",
                None,
                None,
                format!("nothing sent: no policy `{policy}` and no `default`"),
            )
        }
        Decision::Muted { .. } => {
            return step(
                "muted",
                None,
                None,
                "nothing sent: acknowledged or shelved alerts do not notify".into(),
            )
        }
        Decision::Silenced { silence_id } => {
            return step(
                "silenced",
                None,
                Some(silence_id.clone()),
                format!("nothing sent: silenced by {silence_id}"),
            )
        }
        Decision::Rules { rules, .. } => rules,
    };
    let targets: Vec<(usize, &crate::notify::planner::Target)> = rules
        .iter()
        // Numbered from 1 in words, as the policy editor and the week view number them.
        .flat_map(|rule| {
            rule.targets
                .iter()
                .map(move |target| (rule.index + 1, target))
        })
        .filter(|(_, target)| match contact_point_id {
            Some(id) => target.contact_point_id.as_deref() == Some(id),
            None => true,
        })
        .collect();
    let usable = targets
        .iter()
        .find(|(_, target)| target.contact_point_id.is_some() && !target.duplicate);
    if let Some((index, target)) = usable {
        let (outcome, title) = if target.mode == serde_json::json!("now") {
            (
                "now",
                format!("rule {index}: sent at once to {}", target.contact_point),
            )
        } else if target.mode.get("digest").is_some() {
            (
                "digest",
                format!(
                    "rule {index}: held for the digest to {} due at {}",
                    target.contact_point, target.due
                ),
            )
        } else {
            (
                "held",
                format!(
                    "rule {index}: held for {} until {}",
                    target.contact_point, target.due
                ),
            )
        };
        return step(outcome, Some(target.due), None, title);
    }
    if let Some((index, target)) = targets.first() {
        return step(
            "no_contact_point",
            None,
            None,
            format!(
                "nothing sent: rule {index} names the contact point `{}`, which does not exist (deleted?)",
                target.contact_point
            ),
        );
    }
    let matched = rules
        .iter()
        .any(|rule| rule.verdict == RuleVerdict::Selected);
    let why = if matched {
        "the rules that matched do not send this change"
    } else {
        "no rule matched at that time"
    };
    step("no_rule", None, None, format!("nothing sent: {why}"))
}

fn transition_words(transition: &str) -> &'static str {
    match transition {
        "fired" => "fired",
        "escalated" => "changed severity",
        "resolved" => "resolved",
        "repeat" => "was still firing (reminder)",
        _ => "changed",
    }
}

async fn user_name(services: &Services, user_id: &str) -> ServiceResult<String> {
    Ok(services
        .store
        .user_by_id(user_id)
        .await?
        .map(|user| user.name)
        .unwrap_or_else(|| "removed-user".to_string()))
}
