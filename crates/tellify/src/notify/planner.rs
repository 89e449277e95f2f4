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
use tellify_engine::policy::{due_at, Policy, PolicyLimits};
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
    /// The operator's floors for `repeat` and `digest`, applied to stored policies too.
    limits: PolicyLimits,
}

impl Planner {
    pub fn new(limits: PolicyLimits) -> Planner {
        Planner {
            directory: RwLock::default(),
            limits,
        }
    }

    /// Rebuilds the whole directory from the store.
    pub async fn reload(&self, store: &dyn Store) -> StoreResult<()> {
        let directory = Directory::build(&self.limits, store.notify_directory().await?);
        *self.write() = directory;
        Ok(())
    }

    /// Rereads one user's time zone, policies, contact points and silences (or forgets
    /// the user when they are gone).
    pub async fn reload_user(&self, store: &dyn Store, user_id: &str) -> StoreResult<()> {
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

    /// Records which policy a subscription notifies with (`None`: `default`).
    pub fn set_subscription_policy(&self, subscription_id: &str, policy: Option<&str>) {
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

fn silenced(person: &Person, alert: &Alert, now: Timestamp) -> bool {
    let active: Vec<&ActiveSilence> = person
        .silences
        .iter()
        .filter(|silence| silence.starts <= now && now < silence.ends)
        .collect();
    if active.is_empty() {
        return false;
    }
    let event = alert_as_event(alert);
    let context = EventContext::new(&event);
    active
        .iter()
        .any(|silence| silence.filter.matches(&context))
}

impl NotificationPlanner for Planner {
    fn plan(&self, alert: &Alert, transition: Transition, occurrence: i64, now: Timestamp) -> Plan {
        let directory = self.read();
        let recipients: Vec<String> = match &alert.owner_group {
            Some(group) => directory.groups.get(group).cloned().unwrap_or_default(),
            None => alert.owner_user.iter().cloned().collect(),
        };
        let policy_name = directory
            .subscription_policies
            .get(&alert.subscription_id)
            .map(String::as_str)
            .unwrap_or("default");
        let mut plan = Plan::default();
        for user_id in recipients {
            let Some(person) = directory.people.get(&user_id) else {
                continue;
            };
            let Some(policy) = person
                .policies
                .get(policy_name)
                .or_else(|| person.policies.get("default"))
            else {
                continue;
            };
            if transition != Transition::Resolved && (alert.is_acked(now) || alert.is_shelved(now))
            {
                continue;
            }
            if silenced(person, alert, now) {
                continue;
            }
            let mut used: HashSet<&str> = HashSet::new();
            let mut repeat_every: Option<jiff::SignedDuration> = None;
            for (_, rule) in policy.select(&person.zone, alert.severity, now) {
                if transition == Transition::Resolved && !rule.notify_resolved {
                    continue;
                }
                if transition == Transition::Repeat && rule.repeat.is_none() {
                    continue;
                }
                if transition != Transition::Resolved {
                    if let Some(every) = rule.repeat {
                        repeat_every = Some(repeat_every.map_or(every, |other| other.min(every)));
                    }
                }
                let due = due_at(&rule.mode, &person.zone, now);
                for name in &rule.contact_points {
                    let Some(contact_point_id) = person.contacts.get(name) else {
                        continue;
                    };
                    if !used.insert(contact_point_id.as_str()) {
                        continue;
                    }
                    plan.notifications.push(NewNotification {
                        user_id: user_id.clone(),
                        contact_point_id: contact_point_id.clone(),
                        alert_id: alert.id.clone(),
                        transition: transition.as_str().to_string(),
                        idempotency_key: format!(
                            "{user_id}:{}:{transition}:{occurrence}:{contact_point_id}",
                            alert.id
                        ),
                        due_at: due,
                        alert: alert.clone(),
                    });
                }
            }
            if let Some(every) = repeat_every {
                if let Ok(next_at) = now.checked_add(every) {
                    plan.repeats.push(RepeatSchedule {
                        alert_id: alert.id.clone(),
                        user_id: user_id.clone(),
                        next_at,
                        every_ms: every.as_millis() as i64,
                    });
                }
            }
        }
        plan
    }
}
