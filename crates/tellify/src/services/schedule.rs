//! "When will I be told": a policy laid out over the next seven days, per severity, in
//! its owner's zone ([`tellify_engine::policy::Policy::week`], which asks the policy's own
//! rule matching at every place the answer can change).

use jiff::tz::TimeZone;
use serde::Serialize;
use tellify_engine::policy::{PolicyLimits, SeverityWeek};

use super::error::{ServiceError, ServiceResult};
use super::notify::subject;
use super::Services;
use crate::auth::Principal;

/// How many days the view covers.
pub const DAYS: u32 = 7;

/// A policy's next seven days.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WeekView {
    /// The policy's owner.
    pub user: String,
    pub policy: String,
    /// The owner's IANA zone, in which the days and every `local_*` time are counted.
    pub zone: String,
    /// The start of today in that zone, and seven local days later.
    pub start: jiff::Timestamp,
    pub end: jiff::Timestamp,
    pub days: u32,
    /// One entry per severity (`info`, `warning`, `critical`), each a list of stretches
    /// that together cover `[start, end)`: the rules that apply with their contact points
    /// and mode, or `nothing: true`.
    pub severities: Vec<SeverityWeek>,
}

/// The week of the caller's policy `name` (an admin may name another `user`).
pub async fn week(
    services: &Services,
    principal: &Principal,
    user: Option<&str>,
    name: &str,
) -> ServiceResult<WeekView> {
    let owner = subject(services, principal, user).await?;
    let record = services
        .store
        .policy(&owner.id, name)
        .await?
        .ok_or(ServiceError::NotFound("policy"))?;
    // The floors the planner applies to stored policies apply here too.
    let limits = services
        .settings
        .notify
        .policy_limits()
        .unwrap_or_else(|_| PolicyLimits::default());
    let policy = record.policy.raise_to_floors(&limits);
    let zone = TimeZone::get(&owner.timezone).unwrap_or(TimeZone::UTC);
    let start = services
        .clock
        .now()
        .to_zoned(zone.clone())
        .start_of_day()
        .map_err(|_| ServiceError::Internal("the start of today is out of range".to_string()))?
        .timestamp();
    let week = policy.week(&zone, start, DAYS);
    Ok(WeekView {
        user: owner.name,
        policy: record.name,
        zone: week.zone,
        start: week.start,
        end: week.end,
        days: DAYS,
        severities: week.severities,
    })
}
