//! The notification planner: given an alert change, who hears about it, on which contact
//! points, and when. It answers from an in-memory directory of users, policies, contact
//! points and silences, because it runs inside the processing transaction; the directory
//! is rebuilt from the store whenever one of those changes.

use std::collections::{HashMap, HashSet};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use jiff::tz::TimeZone;
use jiff::Timestamp;
use tellify_engine::alerts::Alert;
use tellify_engine::filter::{EventContext, Filter};
use tellify_engine::policy::{due_at, Policy, PolicyLimits, RuleVerdict};
use tellify_engine::render::Transition;
use tellify_model::{StoredEvent, StoredSource};
use tellify_store::{
    NewNotification, NotificationPlanner, NotifyDirectory, Plan, RepeatSchedule, Store, StoreResult,
};

/// One user as the planner sees them.
struct Person {
    zone: TimeZone,
    policies: HashMap<String, Policy>,
    /// Contact point name → id.
    contacts: HashMap<String, String>,
    silences: Vec<ActiveSilence>,
}

struct ActiveSilence {
    id: String,
    filter: Filter,
    starts: Timestamp,
    ends: Timestamp,
}

#[derive(Default)]
struct Directory {
    people: HashMap<String, Person>,
    groups: HashMap<String, Vec<String>>,
    subscription_policies: HashMap<String, String>,
}

impl Person {
    fn build(
        limits: &PolicyLimits,
        user: &tellify_store::User,
        policies: Vec<tellify_store::PolicyRecord>,
        contact_points: Vec<tellify_store::ContactPoint>,
        silences: Vec<tellify_store::Silence>,
    ) -> Person {
        let zone = TimeZone::get(&user.timezone).unwrap_or_else(|error| {
            tracing::warn!(user = %user.name, %error, "unknown time zone; using UTC");
            TimeZone::UTC
        });
        let mut person = Person {
            zone,
            policies: HashMap::new(),
            contacts: HashMap::new(),
            silences: Vec::new(),
        };
        // Parsed once when the store read them; only today's floors are applied here.
        for record in policies {
            person
                .policies
                .insert(record.name, record.policy.raise_to_floors(limits));
        }
        for point in contact_points {
            person.contacts.insert(point.name, point.id);
        }
        for silence in silences {
            match Filter::compile(&silence.filter) {
                Ok(filter) => person.silences.push(ActiveSilence {
                    id: silence.id.clone(),
                    filter,
                    starts: silence.starts,
                    ends: silence.ends,
                }),
                Err(error) => {
                    tracing::error!(silence = %silence.id, %error, "stored silence filter no longer compiles; skipped");
                }
            }
        }
        person
    }
}

impl Directory {
    fn build(limits: &PolicyLimits, source: NotifyDirectory) -> Directory {
        let mut policies: HashMap<String, Vec<tellify_store::PolicyRecord>> = HashMap::new();
        for record in source.policies {
            policies
                .entry(record.user_id.clone())
                .or_default()
                .push(record);
        }
        let mut contact_points: HashMap<String, Vec<tellify_store::ContactPoint>> = HashMap::new();
        for point in source.contact_points {
            contact_points
                .entry(point.user_id.clone())
                .or_default()
                .push(point);
        }
        let mut silences: HashMap<String, Vec<tellify_store::Silence>> = HashMap::new();
        for silence in source.silences {
            silences
                .entry(silence.user_id.clone())
                .or_default()
                .push(silence);
        }
        let mut people = HashMap::new();
        for user in source.users {
            let person = Person::build(
                limits,
                &user,
                policies.remove(&user.id).unwrap_or_default(),
                contact_points.remove(&user.id).unwrap_or_default(),
                silences.remove(&user.id).unwrap_or_default(),
            );
            people.insert(user.id, person);
        }
        Directory {
            people,
            groups: source.groups.into_iter().collect(),
            subscription_policies: source.subscription_policies.into_iter().collect(),
        }
    }
}

/// The planner the worker hands to every processing commit.
///
/// Updates are per user where they can be, so a site with many people does not reread
/// everyone's settings whenever one person changes theirs.
#[derive(Default)]
pub struct Planner {
    directory: RwLock<Directory>,
    /// Held from each refresh's store read to its write, so refreshes run one at a time.
    /// Without it a slower refresh could overwrite a newer one with what it read earlier:
    /// with several nodes, a local change and other nodes' announcements refresh at once,
    /// and a user's new policy or contact point was lost until their next change.
    refreshing: tokio::sync::Mutex<()>,
    /// The operator's floors for `repeat` and `digest`, applied to stored policies too.
    limits: PolicyLimits,
}

impl Planner {
    pub fn new(limits: PolicyLimits) -> Planner {
        Planner {
            directory: RwLock::default(),
            refreshing: tokio::sync::Mutex::default(),
            limits,
        }
    }

    /// Rebuilds the whole directory from the store.
    pub async fn reload(&self, store: &dyn Store) -> StoreResult<()> {
        let _refreshing = self.refreshing.lock().await;
        let directory = Directory::build(&self.limits, store.notify_directory().await?);
        *self.write() = directory;
        Ok(())
    }

    /// Rereads one user's time zone, policies, contact points and silences (or forgets
    /// the user when they are gone).
    pub async fn reload_user(&self, store: &dyn Store, user_id: &str) -> StoreResult<()> {
        let _refreshing = self.refreshing.lock().await;
        let Some(user) = store.user_by_id(user_id).await? else {
            self.write().people.remove(user_id);
            return Ok(());
        };
        let person = Person::build(
            &self.limits,
            &user,
            store.list_policies(user_id).await?,
            store.list_contact_points(user_id).await?,
            store.list_silences(user_id).await?,
        );
        self.write().people.insert(user.id, person);
        Ok(())
    }

    /// The time zone `user_id` reads their messages in: their own, or UTC for someone
    /// the directory does not know (gone since, or with a zone this host lacks).
    pub fn zone_of(&self, user_id: &str) -> TimeZone {
        self.read()
            .people
            .get(user_id)
            .map(|person| person.zone.clone())
            .unwrap_or(TimeZone::UTC)
    }

    /// Records which policy a subscription notifies with (`None`: `default`); waits for a
    /// whole-directory refresh in progress, which would otherwise overwrite it.
    pub async fn set_subscription_policy(&self, subscription_id: &str, policy: Option<&str>) {
        let _refreshing = self.refreshing.lock().await;
        let mut directory = self.write();
        match policy {
            Some(name) => {
                directory
                    .subscription_policies
                    .insert(subscription_id.to_string(), name.to_string());
            }
            None => {
                directory.subscription_policies.remove(subscription_id);
            }
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Directory> {
        self.directory
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Directory> {
        self.directory
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The alert as an event, so silences use the same filter language as subscriptions:
/// the alert's fields are top-level names, and `title`, `subscription`, `group_key` and
/// `kind` are added unless a field already has that name.
pub fn alert_as_event(alert: &Alert) -> StoredEvent {
    let mut fields = alert.fields.clone();
    for (name, value) in [
        ("title", &alert.title),
        ("subscription", &alert.subscription_id),
        ("group_key", &alert.group_key),
        ("kind", &alert.kind),
    ] {
        if !fields.contains_key(name) {
            fields.insert(name.to_string(), serde_json::Value::String(value.clone()));
        }
    }
    StoredEvent {
        id: alert.id.clone(),
        seq: 0,
        time: alert.last_seen,
        received: alert.last_seen,
        event_type: Some(alert.kind.clone()),
        severity: alert.severity,
        message: Some(alert.message.clone()),
        source: StoredSource::default(),
        idempotency_key: None,
        fields,
        depth: 0,
    }
}

/// The first of the person's silences active at `now` that matches the alert.
fn silenced_by<'a>(person: &'a Person, alert: &Alert, now: Timestamp) -> Option<&'a str> {
    let active: Vec<&ActiveSilence> = person
        .silences
        .iter()
        .filter(|silence| silence.starts <= now && now < silence.ends)
        .collect();
    if active.is_empty() {
        return None;
    }
    let event = alert_as_event(alert);
    let context = EventContext::new(&event);
    active
        .iter()
        .find(|silence| silence.filter.matches(&context))
        .map(|silence| silence.id.as_str())
}

/// What a person's settings decide about one alert change: the planner's one decision.
/// [`NotificationPlanner::plan`] turns it into outbox rows; the explain service
/// (`services::explain`) into words, so "why was I (not) told" can never disagree with
/// what was done.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Decision {
    /// The planner does not know this person (removed since).
    UnknownPerson,
    /// The person has neither the policy the subscription names nor `default`.
    NoPolicy { policy: String },
    /// The alert was acknowledged or shelved at the time; only resolves notify then.
    Muted { acked: bool, shelved: bool },
    /// One of the person's silences matched the alert.
    Silenced { silence_id: String },
    /// The policy's rules were looked at, each with its verdict.
    Rules {
        policy: String,
        /// The person's zone, in which the rules' times are read.
        zone: String,
        rules: Vec<RuleDecision>,
        /// The shortest `repeat` of the rules that applied, when one does.
        repeat_every_ms: Option<i64>,
    },
}

/// One rule of a [`Decision::Rules`].
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RuleDecision {
    /// Its index in the policy, from 0.
    pub index: usize,
    pub verdict: RuleVerdict,
    /// Why a rule that matched still sent nothing for this change, if so.
    pub skipped: Option<String>,
    /// The rule as the policy holds it (`when`, `min_severity`, `contact_points`, ...).
    pub rule: serde_json::Value,
    /// Where it sends, and when; empty for a rule that did not match or was skipped.
    pub targets: Vec<Target>,
}

/// One contact point a matching rule names.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Target {
    pub contact_point: String,
    /// `None` when the person has no contact point of that name (deleted since).
    pub contact_point_id: Option<String>,
    /// When the notification is due: now, the end of the digest period, or the hold's end.
    pub due: Timestamp,
    /// `"now"`, `{"digest": ...}` or `{"hold_until": ...}`.
    pub mode: serde_json::Value,
    /// An earlier rule already sends this change to the same contact point.
    pub duplicate: bool,
}

impl Decision {
    /// The notifications it plans: each target with a contact point, once.
    fn targets(&self) -> impl Iterator<Item = &Target> {
        let rules = match self {
            Decision::Rules { rules, .. } => rules.as_slice(),
            _ => &[],
        };
        rules
            .iter()
            .flat_map(|rule| rule.targets.iter())
            .filter(|target| target.contact_point_id.is_some() && !target.duplicate)
    }
}

impl Planner {
    /// Who hears about changes of `alert`: its owner, or every member of its group.
    pub fn recipients(&self, alert: &Alert) -> Vec<String> {
        let directory = self.read();
        recipients(&directory, alert)
    }

    /// What `user_id`'s settings decide about `transition` of `alert` at `now`, as the
    /// planner decides it today (with today's policies, contact points and silences).
    pub fn decide(
        &self,
        user_id: &str,
        alert: &Alert,
        transition: Transition,
        now: Timestamp,
    ) -> Decision {
        let directory = self.read();
        decide(&directory, user_id, alert, transition, now)
    }
}

fn recipients(directory: &Directory, alert: &Alert) -> Vec<String> {
    match &alert.owner_group {
        Some(group) => directory.groups.get(group).cloned().unwrap_or_default(),
        None => alert.owner_user.iter().cloned().collect(),
    }
}

fn decide(
    directory: &Directory,
    user_id: &str,
    alert: &Alert,
    transition: Transition,
    now: Timestamp,
) -> Decision {
    let policy_name = directory
        .subscription_policies
        .get(&alert.subscription_id)
        .map(String::as_str)
        .unwrap_or("default");
    let Some(person) = directory.people.get(user_id) else {
        return Decision::UnknownPerson;
    };
    let (used_name, policy) = match person.policies.get(policy_name) {
        Some(policy) => (policy_name, policy),
        None => match person.policies.get("default") {
            Some(policy) => ("default", policy),
            None => {
                return Decision::NoPolicy {
                    policy: policy_name.to_string(),
                }
            }
        },
    };
    if transition != Transition::Resolved && (alert.is_acked(now) || alert.is_shelved(now)) {
        return Decision::Muted {
            acked: alert.is_acked(now),
            shelved: alert.is_shelved(now),
        };
    }
    if let Some(silence_id) = silenced_by(person, alert, now) {
        return Decision::Silenced {
            silence_id: silence_id.to_string(),
        };
    }
    let verdicts = policy.evaluate(&person.zone, alert.severity, now);
    let mut used: HashSet<String> = HashSet::new();
    let mut repeat_every: Option<jiff::SignedDuration> = None;
    let mut rules = Vec::with_capacity(policy.rules.len());
    for ((index, rule), verdict) in policy.rules.iter().enumerate().zip(verdicts) {
        let mut decided = RuleDecision {
            index,
            verdict,
            skipped: None,
            rule: rule.to_json(),
            targets: Vec::new(),
        };
        if verdict != RuleVerdict::Selected {
            rules.push(decided);
            continue;
        }
        if transition == Transition::Resolved && !rule.notify_resolved {
            decided.skipped = Some("the rule does not notify resolves (`notify_resolved`)".into());
            rules.push(decided);
            continue;
        }
        if transition == Transition::Repeat && rule.repeat.is_none() {
            decided.skipped = Some("the rule does not repeat (`repeat`)".into());
            rules.push(decided);
            continue;
        }
        if transition != Transition::Resolved {
            if let Some(every) = rule.repeat {
                repeat_every = Some(repeat_every.map_or(every, |other| other.min(every)));
            }
        }
        let due = due_at(&rule.mode, &person.zone, now);
        for name in &rule.contact_points {
            let contact_point_id = person.contacts.get(name).cloned();
            let duplicate = match &contact_point_id {
                Some(id) => !used.insert(id.clone()),
                None => false,
            };
            decided.targets.push(Target {
                contact_point: name.clone(),
                contact_point_id,
                due,
                mode: rule.mode.to_json(),
                duplicate,
            });
        }
        rules.push(decided);
    }
    Decision::Rules {
        policy: used_name.to_string(),
        zone: person.zone.iana_name().unwrap_or("UTC").to_string(),
        rules,
        repeat_every_ms: repeat_every.map(|every| every.as_millis() as i64),
    }
}

impl NotificationPlanner for Planner {
    fn plan(&self, alert: &Alert, transition: Transition, occurrence: i64, now: Timestamp) -> Plan {
        let directory = self.read();
        let mut plan = Plan::default();
        for user_id in recipients(&directory, alert) {
            let decision = decide(&directory, &user_id, alert, transition, now);
            for target in decision.targets() {
                let Some(contact_point_id) = &target.contact_point_id else {
                    continue;
                };
                plan.notifications.push(NewNotification {
                    user_id: user_id.clone(),
                    contact_point_id: contact_point_id.clone(),
                    alert_id: alert.id.clone(),
                    transition: transition.as_str().to_string(),
                    idempotency_key: format!(
                        "{user_id}:{}:{transition}:{occurrence}:{contact_point_id}",
                        alert.id
                    ),
                    due_at: target.due,
                    alert: alert.clone(),
                });
            }
            if let Decision::Rules {
                repeat_every_ms: Some(every_ms),
                ..
            } = decision
            {
                let every = jiff::SignedDuration::from_millis(every_ms);
                if let Ok(next_at) = now.checked_add(every) {
                    plan.repeats.push(RepeatSchedule {
                        alert_id: alert.id.clone(),
                        user_id: user_id.clone(),
                        next_at,
                        every_ms,
                    });
                }
            }
        }
        plan
    }
}
