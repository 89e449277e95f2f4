//! A user's notification policy: which contact points hear about an alert, when, and how
//! (at once, gathered into a digest, or held until a time of day).
//!
//! A policy is the public JSON body of `PUT /api/v1/policies/{name}`, so [`Policy::parse`]
//! reports every failure with its path rather than stopping at the first one. Every time in
//! a policy is a wall-clock time in the user's zone: a 09:00–18:00 window stays nine
//! wall-clock hours on the days the clocks change, and a hold until 06:00 still ends at
//! breakfast after a short or long night.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp, Zoned};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tellify_model::{DurationRange, Severity, MAX_DURATION};

use crate::validation::ParamError;

/// The most rules one policy may hold; a policy is read by people, and a longer list is
/// more likely a mistake than a need.
pub const MAX_RULES: usize = 100;

/// An ordered list of rules; the first rule that applies wins unless it says `continue`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub rules: Vec<Rule>,
}

/// One line of a policy: when it applies, to which severities, and where and how to notify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// `None` means always.
    pub when: Option<Window>,
    pub min_severity: Severity,
    pub contact_points: Vec<String>,
    pub mode: Mode,
    /// How often to notify again while the alert keeps firing; `None` means once.
    pub repeat: Option<SignedDuration>,
    pub notify_resolved: bool,
    /// Keep looking at later rules after this one applied (`continue` in JSON).
    pub continue_: bool,
}

/// A weekly time window in local wall-clock time.
///
/// With `from < to` it covers `[from, to)` on each listed day. With `from > to` it spans
/// midnight: `[from, 24:00)` on a listed day and `[00:00, to)` of the day after. With
/// `from == to` it covers the 24 hours that start at `from` on a listed day. A `to` of
/// 24:00 is stored as 00:00, which these rules already read as "until midnight". No days
/// means every day; `outside` inverts the window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    pub days: Vec<Weekday>,
    pub from: Time,
    pub to: Time,
    pub outside: bool,
}

/// When a notification goes out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// At once.
    Now,
    /// Gathered and sent at the end of each period of this length (see [`due_at`]).
    Digest(SignedDuration),
    /// Held until the next time the local clock shows this time.
    HoldUntil(Time),
}

/// The ranges of a policy's intervals. A `repeat` or `digest` of a nanosecond would make
/// the notifier call a webhook thousands of times a second and fill the store, so each has
/// a floor (the operator's `notify.min_repeat` and `notify.min_digest`, default one minute)
/// and a ceiling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyLimits {
    pub repeat: DurationRange,
    pub digest: DurationRange,
}

impl PolicyLimits {
    /// The longest `repeat`: a monthly reminder.
    pub const MAX_REPEAT: SignedDuration = SignedDuration::from_hours(24 * 31);
    /// The longest `digest` period: a weekly digest.
    pub const MAX_DIGEST: SignedDuration = SignedDuration::from_hours(24 * 7);

    /// The widest limits a policy may ever have been saved under: floors of one second,
    /// ceilings of [`MAX_DURATION`]. Stored policies are read with these, so a floor an
    /// operator raised later never refuses one (see [`Policy::raise_to_floors`]).
    pub fn widest() -> PolicyLimits {
        let range = DurationRange::new(SignedDuration::from_secs(1), MAX_DURATION);
        PolicyLimits {
            repeat: range,
            digest: range,
        }
    }

    /// Limits with these floors (each clamped to at least one second and at most the
    /// ceiling).
    pub fn with_floors(min_repeat: SignedDuration, min_digest: SignedDuration) -> PolicyLimits {
        let floor = |min: SignedDuration, max: SignedDuration| {
            DurationRange::new(min.clamp(SignedDuration::from_secs(1), max), max)
        };
        PolicyLimits {
            repeat: floor(min_repeat, Self::MAX_REPEAT),
            digest: floor(min_digest, Self::MAX_DIGEST),
        }
    }
}

impl Default for PolicyLimits {
    /// Floors of one minute.
    fn default() -> PolicyLimits {
        PolicyLimits::with_floors(SignedDuration::from_mins(1), SignedDuration::from_mins(1))
    }
}

impl Policy {
    /// Parses and validates a policy under the default [`PolicyLimits`].
    pub fn parse(value: &Value) -> Result<Policy, Vec<ParamError>> {
        Policy::parse_with(value, &PolicyLimits::default())
    }

    /// Parses and validates a policy, returning every failure with its path, such as
    /// `rules[1].when.from: invalid time `25:00` (use HH:MM)` or `rules[0].colour: unknown
    /// key`, so a user can fix the whole document in one round.
    pub fn parse_with(value: &Value, limits: &PolicyLimits) -> Result<Policy, Vec<ParamError>> {
        let mut errors = Vec::new();
        let rules = parse_rules(value, limits, &mut errors);
        if errors.is_empty() {
            Ok(Policy { rules })
        } else {
            Err(errors)
        }
    }

    /// Parses a stored policy, which was valid when it was saved: intervals below today's
    /// floors (an operator may have raised them since) are raised to the floor instead of
    /// refusing the whole policy, so one person's old policy never stops their
    /// notifications, nor the server.
    pub fn parse_stored(value: &Value, limits: &PolicyLimits) -> Result<Policy, Vec<ParamError>> {
        let policy = Policy::parse_with(value, &PolicyLimits::widest())?;
        Ok(policy.raise_to_floors(limits))
    }

    /// The policy with every `repeat` and digest period moved into `limits`: how a policy
    /// read with [`PolicyLimits::widest`] meets the operator's floors of today without
    /// being parsed again.
    pub fn raise_to_floors(mut self, limits: &PolicyLimits) -> Policy {
        for rule in &mut self.rules {
            if let Some(repeat) = &mut rule.repeat {
                *repeat = (*repeat).clamp(limits.repeat.min, limits.repeat.max);
            }
            if let Mode::Digest(period) = &mut rule.mode {
                *period = (*period).clamp(limits.digest.min, limits.digest.max);
            }
        }
        self
    }

    /// The policy in its public JSON shape, with every default written out so a user
    /// reading it back sees what applies.
    pub fn to_json(&self) -> Value {
        let rules: Vec<Value> = self.rules.iter().map(Rule::to_json).collect();
        json!({ "rules": rules })
    }

    /// Every contact point name the policy uses (deduplicated, sorted), so callers can
    /// check that each one exists before saving the policy.
    pub fn contact_point_names(&self) -> Vec<String> {
        let names: BTreeSet<&String> = self
            .rules
            .iter()
            .flat_map(|rule| rule.contact_points.iter())
            .collect();
        names.into_iter().cloned().collect()
    }

    /// The rules that apply to an alert of `severity` at `now` in `zone`, with their
    /// indexes. Rules are tried in order; the first one that applies ends the search unless
    /// it has `continue` set, which lets a rule add a contact point without hiding the
    /// rules below it.
    pub fn select(
        &self,
        zone: &TimeZone,
        severity: Severity,
        now: Timestamp,
    ) -> Vec<(usize, &Rule)> {
        self.rules
            .iter()
            .enumerate()
            .zip(self.evaluate(zone, severity, now))
            .filter(|(_, verdict)| *verdict == RuleVerdict::Selected)
            .map(|(rule, _)| rule)
            .collect()
    }

    /// How each rule stands for an alert of `severity` at `now` in `zone`, in rule order:
    /// the one decision [`Policy::select`] keeps the selected rules of, with the reason
    /// for every other rule (for "why was I not told").
    pub fn evaluate(
        &self,
        zone: &TimeZone,
        severity: Severity,
        now: Timestamp,
    ) -> Vec<RuleVerdict> {
        let zoned = now.to_zoned(zone.clone());
        let mut verdicts = Vec::with_capacity(self.rules.len());
        let mut stopped = false;
        for rule in &self.rules {
            if stopped {
                verdicts.push(RuleVerdict::NotReached);
                continue;
            }
            let verdict = rule.check(&zoned, severity);
            verdicts.push(verdict);
            stopped = verdict == RuleVerdict::Selected && !rule.continue_;
        }
        verdicts
    }

    /// What applies, for each severity, over `days` local days from `start` in `zone`: the
    /// stretches `[from, to)` in which the same rules are selected, found by
    /// [`Policy::select`] at the start of each stretch. A stretch can only change where a
    /// rule's window starts or ends, at a local midnight, or at a change of the zone's
    /// offset, so those instants (a wall time in a DST gap standing for the gap's end, one
    /// in a fold for both of its instants) are the only places it is asked.
    pub fn week(&self, zone: &TimeZone, start: Timestamp, days: u32) -> Week {
        let start_zoned = start.to_zoned(zone.clone());
        let end = start_zoned
            .checked_add(jiff::Span::new().days(i64::from(days)))
            .map(|zoned| zoned.timestamp())
            .unwrap_or(start);
        let mut cuts: BTreeSet<Timestamp> = BTreeSet::new();
        cuts.insert(start);
        cuts.insert(end);
        let mut date = start_zoned.date().yesterday().unwrap_or(start_zoned.date());
        let last = end.to_zoned(zone.clone()).date();
        while date <= last {
            let mut local_times = vec![Time::midnight()];
            for rule in &self.rules {
                if let Some(window) = &rule.when {
                    local_times.push(window.from);
                    local_times.push(window.to);
                }
            }
            for time in local_times {
                cuts.extend(instants_at(zone, date.to_datetime(time)));
            }
            let Ok(next) = date.tomorrow() else {
                break;
            };
            date = next;
        }
        for transition in zone.following(start) {
            if transition.timestamp() >= end {
                break;
            }
            cuts.insert(transition.timestamp());
        }
        let cuts: Vec<Timestamp> = cuts
            .into_iter()
            .filter(|cut| start <= *cut && *cut <= end)
            .collect();
        let severities = Severity::ALL
            .into_iter()
            .map(|severity| SeverityWeek {
                severity,
                segments: self.segments(zone, severity, &cuts),
            })
            .collect();
        Week {
            zone: zone.iana_name().unwrap_or("UTC").to_string(),
            start,
            end,
            severities,
        }
    }

    fn segments(&self, zone: &TimeZone, severity: Severity, cuts: &[Timestamp]) -> Vec<Segment> {
        let mut segments: Vec<Segment> = Vec::new();
        for pair in cuts.windows(2) {
            let (from, to) = (pair[0], pair[1]);
            let applies: Vec<Applied> = self
                .select(zone, severity, from)
                .into_iter()
                .map(|(index, rule)| Applied {
                    rule: index,
                    contact_points: rule.contact_points.clone(),
                    mode: rule.mode.to_json(),
                    repeat: rule.repeat.map(format_duration),
                    notify_resolved: rule.notify_resolved,
                })
                .collect();
            if let Some(previous) = segments.last_mut() {
                if previous.applies == applies {
                    previous.to = to;
                    previous.local_to = local_text(zone, to);
                    continue;
                }
            }
            segments.push(Segment {
                from,
                to,
                local_from: local_text(zone, from),
                local_to: local_text(zone, to),
                nothing: applies.is_empty(),
                applies,
            });
        }
        segments
    }
}

/// How one rule stood in a [`Policy::evaluate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleVerdict {
    /// The rule applies and was selected.
    Selected,
    /// The instant is outside the rule's schedule (`when`).
    OutsideSchedule,
    /// The alert's severity is below the rule's `min_severity`.
    BelowMinimum,
    /// An earlier rule applied without `continue`, so this one was not looked at.
    NotReached,
}

impl RuleVerdict {
    /// The verdict in words, for people.
    pub fn describe(self) -> &'static str {
        match self {
            RuleVerdict::Selected => "matched",
            RuleVerdict::OutsideSchedule => "outside its schedule at that time",
            RuleVerdict::BelowMinimum => "the severity was below its minimum",
            RuleVerdict::NotReached => "not looked at: an earlier rule matched without `continue`",
        }
    }
}

/// What a policy does over some days ([`Policy::week`]).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Week {
    /// The IANA name of the zone the days are counted in.
    pub zone: String,
    pub start: Timestamp,
    pub end: Timestamp,
    /// One entry per severity, `info` to `critical`.
    pub severities: Vec<SeverityWeek>,
}

/// The stretches of one severity, in order, covering `[start, end)` without gaps.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SeverityWeek {
    pub severity: Severity,
    pub segments: Vec<Segment>,
}

/// A stretch `[from, to)` in which the same rules apply.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Segment {
    pub from: Timestamp,
    pub to: Timestamp,
    /// `from` and `to` as the zone's wall-clock time, `2026-03-29T09:00`.
    pub local_from: String,
    pub local_to: String,
    /// No rule applies: an alert of this severity notifies nobody then.
    pub nothing: bool,
    /// The rules that apply, in order.
    pub applies: Vec<Applied>,
}

/// One rule that applies in a [`Segment`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Applied {
    /// The rule's index in the policy (from 0).
    pub rule: usize,
    pub contact_points: Vec<String>,
    /// `"now"`, `{"digest": "1h"}` or `{"hold_until": "08:00"}`, as in the policy.
    pub mode: Value,
    pub repeat: Option<String>,
    pub notify_resolved: bool,
}

fn local_text(zone: &TimeZone, instant: Timestamp) -> String {
    instant
        .to_zoned(zone.clone())
        .datetime()
        .strftime("%Y-%m-%dT%H:%M")
        .to_string()
}

impl Rule {
    /// Whether the rule applies to an alert of `severity` at the local time `zoned`.
    pub fn applies(&self, zoned: &Zoned, severity: Severity) -> bool {
        self.check(zoned, severity) == RuleVerdict::Selected
    }

    /// Whether the rule applies, and if not, the first reason why: its schedule, then
    /// its minimum severity.
    pub fn check(&self, zoned: &Zoned, severity: Severity) -> RuleVerdict {
        let in_window = match &self.when {
            Some(window) => window.contains(zoned),
            None => true,
        };
        if !in_window {
            RuleVerdict::OutsideSchedule
        } else if severity < self.min_severity {
            RuleVerdict::BelowMinimum
        } else {
            RuleVerdict::Selected
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "when": self.when.as_ref().map(Window::to_json),
            "min_severity": self.min_severity.as_str(),
            "contact_points": self.contact_points,
            "mode": self.mode.to_json(),
            "repeat": self.repeat.map(format_duration),
            "notify_resolved": self.notify_resolved,
            "continue": self.continue_,
        })
    }
}

impl Window {
    /// Whether the local wall-clock time of `zoned` falls in the window. Comparing
    /// wall-clock times rather than instants is what keeps windows right across DST.
    pub fn contains(&self, zoned: &Zoned) -> bool {
        self.contains_wall_clock(zoned.weekday(), zoned.time()) != self.outside
    }

    pub fn to_json(&self) -> Value {
        let days: Vec<&str> = normalized_days(&self.days)
            .into_iter()
            .map(day_name)
            .collect();
        json!({
            "days": days,
            "from": format_time(self.from),
            "to": format_end_time(self.to),
            "outside": self.outside,
        })
    }

    fn contains_wall_clock(&self, day: Weekday, time: Time) -> bool {
        let today = self.includes_day(day);
        if self.from < self.to {
            return today && self.from <= time && time < self.to;
        }
        // The window starts on a listed day and runs past midnight into the next one;
        // with `from == to` this is the 24 hours that start at `from`.
        let yesterday = self.includes_day(day.previous());
        (today && time >= self.from) || (yesterday && time < self.to)
    }

    fn includes_day(&self, day: Weekday) -> bool {
        self.days.is_empty() || self.days.contains(&day)
    }

    fn is_whole_day(&self) -> bool {
        self.from == self.to && self.from == Time::midnight()
    }
}

impl Mode {
    pub fn to_json(&self) -> Value {
        match self {
            Mode::Now => json!("now"),
            Mode::Digest(period) => json!({ "digest": format_duration(*period) }),
            Mode::HoldUntil(time) => json!({ "hold_until": format_time(*time) }),
        }
    }
}

/// When a notification created at `now` under `mode` is due.
///
/// A digest sends at the end of the current period, with periods of the digest's length
/// counted in absolute time from the start of the local day, so "every 15 minutes" lines
/// up with the clock; a period that would cross the next local midnight ends at that
/// midnight, which starts the count afresh each day. A hold ends at the next instant
/// strictly after `now` whose local time is the hold's time; on a day when that time falls
/// in a DST gap it ends at the first instant after the gap, and when the time occurs twice
/// the earlier occurrence still ahead of `now` wins.
pub fn due_at(mode: &Mode, zone: &TimeZone, now: Timestamp) -> Timestamp {
    // The fallbacks only happen at the edges of the representable range, where sending at
    // once is safer than never.
    match mode {
        Mode::Now => now,
        Mode::Digest(period) => digest_end(*period, zone, now).unwrap_or(now),
        Mode::HoldUntil(time) => hold_end(*time, zone, now).unwrap_or(now),
    }
}

/// Parses the one-line form of a window used on the command line: `mon-fri 09:00-18:00`,
/// `sat,sun`, `18:00-09:00` (every day), `not mon-fri 09:00-18:00` (outside), `always`.
pub fn parse_window_text(text: &str) -> Result<Window, String> {
    let mut window = Window {
        days: Vec::new(),
        from: Time::midnight(),
        to: Time::midnight(),
        outside: false,
    };
    let mut saw_days = false;
    let mut saw_times = false;
    let mut saw_always = false;
    for (index, token) in text.split_whitespace().enumerate() {
        let lower = token.to_ascii_lowercase();
        if index == 0 && lower == "not" {
            window.outside = true;
            continue;
        }
        if lower == "always" {
            saw_always = true;
            continue;
        }
        if token.contains(':') {
            if saw_times {
                return Err(format!(
                    "more than one time range in `{text}` (use one, such as 09:00-18:00)"
                ));
            }
            let (from, to) = parse_time_range(token)?;
            window.from = from;
            window.to = to;
            saw_times = true;
            continue;
        }
        for element in token.split(',').filter(|element| !element.is_empty()) {
            window.days.extend(parse_day_element(element)?);
        }
        saw_days = true;
    }
    if !saw_days && !saw_times && !saw_always {
        return Err(format!(
            "empty window `{text}` (use a form like `mon-fri 09:00-18:00`)"
        ));
    }
    if saw_always && (saw_days || saw_times) {
        return Err(format!(
            "`always` cannot be combined with days or times in `{text}`"
        ));
    }
    window.days = normalized_days(&window.days);
    Ok(window)
}

impl fmt::Display for Window {
    /// The one-line form that [`parse_window_text`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if self.outside {
            parts.push("not".to_string());
        }
        let days = normalized_days(&self.days);
        if !days.is_empty() && days.len() < 7 {
            parts.push(format_days(&days));
        }
        if !self.is_whole_day() {
            parts.push(format!(
                "{}-{}",
                format_time(self.from),
                format_end_time(self.to)
            ));
        }
        if parts.len() == usize::from(self.outside) {
            parts.push("always".to_string());
        }
        f.write_str(&parts.join(" "))
    }
}

impl FromStr for Window {
    type Err = String;

    fn from_str(text: &str) -> Result<Window, String> {
        parse_window_text(text)
    }
}

impl Serialize for Policy {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Policy {
    /// Reads the public JSON shape through [`Policy::parse`], so stored and submitted
    /// policies obey the same rules.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Policy, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Policy::parse(&value).map_err(|errors| {
            let lines: Vec<String> = errors
                .iter()
                .map(|error| format!("{}: {}", error.path, error.message))
                .collect();
            serde::de::Error::custom(lines.join("; "))
        })
    }
}

impl Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

impl Serialize for Window {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

impl Serialize for Mode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

// ---- parsing the JSON shape ----

const POLICY_KEYS: [&str; 1] = ["rules"];
const RULE_KEYS: [&str; 7] = [
    "when",
    "min_severity",
    "contact_points",
    "mode",
    "repeat",
    "notify_resolved",
    "continue",
];
const WINDOW_KEYS: [&str; 4] = ["days", "from", "to", "outside"];
const MODE_KEYS: [&str; 2] = ["digest", "hold_until"];

fn parse_rules(value: &Value, limits: &PolicyLimits, errors: &mut Vec<ParamError>) -> Vec<Rule> {
    let Some(object) = value.as_object() else {
        errors.push(ParamError::new("policy", "expected an object with `rules`"));
        return Vec::new();
    };
    reject_unknown_keys(object, &POLICY_KEYS, "", errors);
    let items = match object.get("rules") {
        None | Some(Value::Null) => {
            errors.push(ParamError::new("rules", "at least one rule"));
            return Vec::new();
        }
        Some(Value::Array(items)) => items,
        Some(_) => {
            errors.push(ParamError::new("rules", "expected an array of rules"));
            return Vec::new();
        }
    };
    if items.is_empty() {
        errors.push(ParamError::new("rules", "at least one rule"));
    }
    if items.len() > MAX_RULES {
        errors.push(ParamError::new(
            "rules",
            format!("at most {MAX_RULES} rules (got {})", items.len()),
        ));
    }
    let mut rules = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        if let Some(rule) = parse_rule(item, &format!("rules[{index}]"), limits, errors) {
            rules.push(rule);
        }
    }
    rules
}

fn parse_rule(
    value: &Value,
    path: &str,
    limits: &PolicyLimits,
    errors: &mut Vec<ParamError>,
) -> Option<Rule> {
    let Some(object) = value.as_object() else {
        errors.push(ParamError::new(path, "expected an object"));
        return None;
    };
    let errors_before = errors.len();
    reject_unknown_keys(object, &RULE_KEYS, path, errors);

    let when = match object.get("when") {
        None | Some(Value::Null) => None,
        Some(window) => parse_window_json(window, &format!("{path}.when"), errors),
    };
    let min_severity = parse_severity(object.get("min_severity"), path, errors);
    let contact_points = parse_contact_points(object.get("contact_points"), path, errors);
    let mode = parse_mode(object.get("mode"), &format!("{path}.mode"), limits, errors);
    let repeat = match object.get("repeat") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => match limits.repeat.parse(text) {
            Ok(duration) => Some(duration),
            Err(error) => {
                errors.push(ParamError::new(format!("{path}.repeat"), error.to_string()));
                None
            }
        },
        Some(_) => {
            errors.push(ParamError::new(
                format!("{path}.repeat"),
                "expected a duration such as `1h`, or null",
            ));
            None
        }
    };
    let notify_resolved = parse_bool(
        object.get("notify_resolved"),
        path,
        "notify_resolved",
        errors,
    );
    let continue_ = parse_bool(object.get("continue"), path, "continue", errors);

    if errors.len() > errors_before {
        return None;
    }
    Some(Rule {
        when,
        min_severity,
        contact_points,
        mode,
        repeat,
        notify_resolved,
        continue_,
    })
}

fn reject_unknown_keys(
    object: &Map<String, Value>,
    known: &[&str],
    path: &str,
    errors: &mut Vec<ParamError>,
) {
    for key in object.keys() {
        if known.contains(&key.as_str()) {
            continue;
        }
        let key_path = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        errors.push(ParamError::new(key_path, "unknown key"));
    }
}

fn parse_severity(value: Option<&Value>, path: &str, errors: &mut Vec<ParamError>) -> Severity {
    let path = format!("{path}.min_severity");
    match value {
        None | Some(Value::Null) => Severity::Info,
        Some(Value::String(text)) => match text.parse::<Severity>() {
            Ok(severity) => severity,
            Err(message) => {
                errors.push(ParamError::new(path, message));
                Severity::Info
            }
        },
        Some(_) => {
            errors.push(ParamError::new(path, "expected info, warning or critical"));
            Severity::Info
        }
    }
}

fn parse_contact_points(
    value: Option<&Value>,
    path: &str,
    errors: &mut Vec<ParamError>,
) -> Vec<String> {
    let path = format!("{path}.contact_points");
    let items = match value {
        None | Some(Value::Null) => {
            errors.push(ParamError::new(path, "name at least one contact point"));
            return Vec::new();
        }
        Some(Value::Array(items)) => items,
        Some(_) => {
            errors.push(ParamError::new(
                path,
                "expected an array of contact point names",
            ));
            return Vec::new();
        }
    };
    if items.is_empty() {
        errors.push(ParamError::new(path, "name at least one contact point"));
        return Vec::new();
    }
    let mut names = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        match item.as_str().map(str::trim) {
            Some(name) if !name.is_empty() => names.push(name.to_string()),
            _ => errors.push(ParamError::new(
                format!("{path}[{index}]"),
                "expected a contact point name",
            )),
        }
    }
    names
}

fn parse_bool(value: Option<&Value>, path: &str, key: &str, errors: &mut Vec<ParamError>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::Bool(flag)) => *flag,
        Some(_) => {
            errors.push(ParamError::new(
                format!("{path}.{key}"),
                "expected true or false",
            ));
            false
        }
    }
}

fn parse_mode(
    value: Option<&Value>,
    path: &str,
    limits: &PolicyLimits,
    errors: &mut Vec<ParamError>,
) -> Mode {
    let usage = "use \"now\", {\"digest\": \"15m\"} or {\"hold_until\": \"06:00\"}";
    let object = match value {
        None | Some(Value::Null) => return Mode::Now,
        Some(Value::String(text)) if text.eq_ignore_ascii_case("now") => return Mode::Now,
        Some(Value::String(text)) => {
            errors.push(ParamError::new(
                path,
                format!("unknown mode `{text}` ({usage})"),
            ));
            return Mode::Now;
        }
        Some(Value::Object(object)) => object,
        Some(_) => {
            errors.push(ParamError::new(path, format!("expected a mode ({usage})")));
            return Mode::Now;
        }
    };
    reject_unknown_keys(object, &MODE_KEYS, path, errors);
    match (object.get("digest"), object.get("hold_until")) {
        (Some(_), Some(_)) => {
            errors.push(ParamError::new(
                path,
                "give only one of digest and hold_until",
            ));
            Mode::Now
        }
        (Some(digest), None) => {
            let digest_path = format!("{path}.digest");
            let Some(text) = digest.as_str() else {
                errors.push(ParamError::new(
                    digest_path,
                    "expected a duration such as `15m`",
                ));
                return Mode::Now;
            };
            match limits.digest.parse(text) {
                Ok(period) => Mode::Digest(period),
                Err(error) => {
                    errors.push(ParamError::new(digest_path, error.to_string()));
                    Mode::Now
                }
            }
        }
        (None, Some(hold_until)) => {
            let hold_path = format!("{path}.hold_until");
            let Some(text) = hold_until.as_str() else {
                errors.push(ParamError::new(
                    hold_path,
                    "expected a time such as `06:00`",
                ));
                return Mode::Now;
            };
            match parse_time(text, false) {
                Ok(time) => Mode::HoldUntil(time),
                Err(message) => {
                    errors.push(ParamError::new(hold_path, message));
                    Mode::Now
                }
            }
        }
        (None, None) => {
            // Unknown keys were reported already; name the missing choice only when the
            // object is otherwise empty, so one typo yields one error.
            if object.is_empty() {
                errors.push(ParamError::new(
                    path,
                    format!("give digest or hold_until ({usage})"),
                ));
            }
            Mode::Now
        }
    }
}

fn parse_window_json(value: &Value, path: &str, errors: &mut Vec<ParamError>) -> Option<Window> {
    let Some(object) = value.as_object() else {
        errors.push(ParamError::new(
            path,
            "expected an object with days, from, to and outside, or null for always",
        ));
        return None;
    };
    let errors_before = errors.len();
    reject_unknown_keys(object, &WINDOW_KEYS, path, errors);

    let mut days = Vec::new();
    match object.get("days") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (index, item) in items.iter().enumerate() {
                let day_path = format!("{path}.days[{index}]");
                let Some(text) = item.as_str() else {
                    errors.push(ParamError::new(
                        day_path,
                        "expected a day such as `mon` or a range such as `mon-fri`",
                    ));
                    continue;
                };
                match parse_day_element(text) {
                    Ok(parsed) => days.extend(parsed),
                    Err(message) => errors.push(ParamError::new(day_path, message)),
                }
            }
        }
        Some(_) => errors.push(ParamError::new(
            format!("{path}.days"),
            "expected an array of days such as [\"mon-fri\"]",
        )),
    }
    // An absent bound means the edge of the day, so `{"days": ["sat", "sun"]}` is the
    // whole weekend.
    let from = parse_time_field(object.get("from"), &format!("{path}.from"), false, errors);
    let to = parse_time_field(object.get("to"), &format!("{path}.to"), true, errors);
    let outside = parse_bool(object.get("outside"), path, "outside", errors);

    if errors.len() > errors_before {
        return None;
    }
    Some(Window {
        days: normalized_days(&days),
        from,
        to,
        outside,
    })
}

fn parse_time_field(
    value: Option<&Value>,
    path: &str,
    end_of_window: bool,
    errors: &mut Vec<ParamError>,
) -> Time {
    match value {
        None | Some(Value::Null) => Time::midnight(),
        Some(Value::String(text)) => match parse_time(text, end_of_window) {
            Ok(time) => time,
            Err(message) => {
                errors.push(ParamError::new(path, message));
                Time::midnight()
            }
        },
        Some(_) => {
            errors.push(ParamError::new(path, "expected a time such as `09:00`"));
            Time::midnight()
        }
    }
}

// ---- times, days and durations as text ----

/// Parses `HH:MM` or `HH:MM:SS`. `24:00` is the end of the day, allowed only at the end of
/// a window, and is returned as midnight (see [`Window`]).
fn parse_time(text: &str, end_of_window: bool) -> Result<Time, String> {
    let invalid = || format!("invalid time `{text}` (use HH:MM)");
    let parts: Vec<&str> = text.trim().split(':').collect();
    if parts.len() < 2 || parts.len() > 3 {
        return Err(invalid());
    }
    let mut numbers = [0i8; 3];
    for (index, part) in parts.iter().enumerate() {
        let width_ok = if index == 0 {
            (1..=2).contains(&part.len())
        } else {
            part.len() == 2
        };
        if !width_ok || !part.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(invalid());
        }
        numbers[index] = part.parse::<i8>().map_err(|_| invalid())?;
    }
    let [hour, minute, second] = numbers;
    if hour == 24 && minute == 0 && second == 0 {
        if end_of_window {
            return Ok(Time::midnight());
        }
        return Err(format!(
            "invalid time `{text}` (24:00 is allowed only as the end of a window)"
        ));
    }
    Time::new(hour, minute, second, 0).map_err(|_| invalid())
}

fn parse_time_range(text: &str) -> Result<(Time, Time), String> {
    let Some((from, to)) = text.split_once('-') else {
        return Err(format!("invalid time range `{text}` (use HH:MM-HH:MM)"));
    };
    Ok((parse_time(from, false)?, parse_time(to, true)?))
}

fn format_time(time: Time) -> String {
    if time.second() == 0 && time.subsec_nanosecond() == 0 {
        format!("{:02}:{:02}", time.hour(), time.minute())
    } else {
        format!(
            "{:02}:{:02}:{:02}",
            time.hour(),
            time.minute(),
            time.second()
        )
    }
}

/// The end of a window, where midnight reads better as the end of the day.
fn format_end_time(time: Time) -> String {
    if time == Time::midnight() {
        "24:00".to_string()
    } else {
        format_time(time)
    }
}

/// One element of a day list: a day (`mon`, `Monday`) or a range (`mon-fri`, `fri-mon`
/// wrapping over the weekend).
fn parse_day_element(text: &str) -> Result<Vec<Weekday>, String> {
    let Some((first, last)) = text.split_once('-') else {
        return Ok(vec![parse_day(text)?]);
    };
    let first = parse_day(first)?;
    let last = parse_day(last)?;
    let mut days = vec![first];
    let mut day = first;
    while day != last {
        day = day.next();
        days.push(day);
    }
    Ok(days)
}

fn parse_day(text: &str) -> Result<Weekday, String> {
    let day = match text.trim().to_ascii_lowercase().as_str() {
        "mon" | "monday" => Weekday::Monday,
        "tue" | "tues" | "tuesday" => Weekday::Tuesday,
        "wed" | "wednesday" => Weekday::Wednesday,
        "thu" | "thur" | "thurs" | "thursday" => Weekday::Thursday,
        "fri" | "friday" => Weekday::Friday,
        "sat" | "saturday" => Weekday::Saturday,
        "sun" | "sunday" => Weekday::Sunday,
        _ => return Err(format!("unknown day `{}` (use mon..sun)", text.trim())),
    };
    Ok(day)
}

fn day_name(day: Weekday) -> &'static str {
    match day {
        Weekday::Monday => "mon",
        Weekday::Tuesday => "tue",
        Weekday::Wednesday => "wed",
        Weekday::Thursday => "thu",
        Weekday::Friday => "fri",
        Weekday::Saturday => "sat",
        Weekday::Sunday => "sun",
    }
}

/// Days in Monday-to-Sunday order without repeats, so equal windows compare equal.
/// Days sorted from Monday without repeats; all seven become none, the one spelling of
/// "every day", so a window reads back the same from its JSON and from its one-line form.
fn normalized_days(days: &[Weekday]) -> Vec<Weekday> {
    let mut sorted = days.to_vec();
    sorted.sort_by_key(|day| day.to_monday_zero_offset());
    sorted.dedup();
    if sorted.len() == 7 {
        sorted.clear();
    }
    sorted
}

/// `mon-fri`, `sat,sun`, `mon,wed-fri`: runs of three or more days become ranges.
fn format_days(days: &[Weekday]) -> String {
    let mut runs: Vec<(Weekday, Weekday, usize)> = Vec::new();
    for &day in days {
        match runs.last_mut() {
            Some((_, last, length)) if last.next() == day => {
                *last = day;
                *length += 1;
            }
            _ => runs.push((day, day, 1)),
        }
    }
    let mut parts = Vec::new();
    for (first, last, length) in runs {
        match length {
            1 => parts.push(day_name(first).to_string()),
            2 => {
                parts.push(day_name(first).to_string());
                parts.push(day_name(last).to_string());
            }
            _ => parts.push(format!("{}-{}", day_name(first), day_name(last))),
        }
    }
    parts.join(",")
}

/// A compact duration that `parse_duration` reads back: `15m`, `1h30m`, `48h`.
fn format_duration(duration: SignedDuration) -> String {
    if duration.subsec_nanos() != 0 || !duration.is_positive() {
        return format!("{duration:#}");
    }
    let total = duration.as_secs();
    let (hours, minutes, seconds) = (total / 3600, total / 60 % 60, total % 60);
    let mut text = String::new();
    if hours > 0 {
        text.push_str(&format!("{hours}h"));
    }
    if minutes > 0 {
        text.push_str(&format!("{minutes}m"));
    }
    if seconds > 0 {
        text.push_str(&format!("{seconds}s"));
    }
    text
}

// ---- when notifications are due ----

fn digest_end(period: SignedDuration, zone: &TimeZone, now: Timestamp) -> Option<Timestamp> {
    if !period.is_positive() {
        return None;
    }
    let zoned = now.to_zoned(zone.clone());
    let day_start = zoned.start_of_day().ok()?.timestamp();
    let next_midnight = zoned.tomorrow().ok()?.start_of_day().ok()?.timestamp();
    let elapsed = now.duration_since(day_start).as_nanos();
    let length = period.as_nanos();
    let period_end = (elapsed / length + 1) * length;
    if period_end >= next_midnight.duration_since(day_start).as_nanos() {
        return Some(next_midnight);
    }
    let offset = SignedDuration::from_nanos(i64::try_from(period_end).ok()?);
    day_start.checked_add(offset).ok()
}

fn hold_end(time: Time, zone: &TimeZone, now: Timestamp) -> Option<Timestamp> {
    let mut date: Date = now.to_zoned(zone.clone()).date();
    // Today's occurrence may have passed; tomorrow's is then ahead, so three days is
    // plenty even when a zone skips a whole day.
    for _ in 0..3 {
        for candidate in instants_at(zone, date.to_datetime(time)) {
            if candidate > now {
                return Some(candidate);
            }
        }
        date = date.tomorrow().ok()?;
    }
    None
}

/// The instants whose local time in `zone` is `datetime`, earliest first: none exist in a
/// DST gap, so the gap's end stands in for them; two exist in a fold.
fn instants_at(zone: &TimeZone, datetime: DateTime) -> Vec<Timestamp> {
    match zone.to_ambiguous_timestamp(datetime).offset() {
        AmbiguousOffset::Unambiguous { offset } => {
            offset.to_timestamp(datetime).ok().into_iter().collect()
        }
        AmbiguousOffset::Gap { after, .. } => {
            // Read with the offset after the gap, the wall time lies before the
            // transition, so the next transition is the first instant after the gap.
            let Ok(before_transition) = after.to_timestamp(datetime) else {
                return Vec::new();
            };
            zone.following(before_transition)
                .next()
                .map(|transition| transition.timestamp())
                .into_iter()
                .collect()
        }
        AmbiguousOffset::Fold { before, after } => {
            let mut instants: Vec<Timestamp> = [before, after]
                .iter()
                .filter_map(|offset| offset.to_timestamp(datetime).ok())
                .collect();
            instants.sort();
            instants
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(name: &str) -> TimeZone {
        TimeZone::get(name).unwrap()
    }

    /// A local time with its offset, such as `2026-03-29T03:00+02:00[Europe/Berlin]`.
    fn zoned(text: &str) -> Zoned {
        text.parse().unwrap()
    }

    fn instant(text: &str) -> Timestamp {
        zoned(text).timestamp()
    }

    fn time(text: &str) -> Time {
        text.parse().unwrap()
    }

    fn window(text: &str) -> Window {
        parse_window_text(text).unwrap()
    }

    fn messages(errors: &[ParamError]) -> Vec<String> {
        errors
            .iter()
            .map(|error| format!("{}: {}", error.path, error.message))
            .collect()
    }

    /// The brief's use case: work hours to work email, critical alerts outside them to
    /// home email and phone.
    fn work_and_home() -> Policy {
        Policy::parse(&json!({"rules": [
            {"when": {"days": ["mon-fri"], "from": "09:00", "to": "18:00"},
             "min_severity": "warning", "contact_points": ["work-email"]},
            {"when": {"days": ["mon-fri"], "from": "09:00", "to": "18:00", "outside": true},
             "min_severity": "critical", "contact_points": ["home-email", "phone"]}
        ]}))
        .unwrap()
    }

    fn contacts(selected: &[(usize, &Rule)]) -> Vec<String> {
        selected
            .iter()
            .flat_map(|(_, rule)| rule.contact_points.iter().cloned())
            .collect()
    }

    #[test]
    fn a_minimal_rule_takes_the_defaults() {
        let policy =
            Policy::parse(&json!({"rules": [{"contact_points": ["work-email"]}]})).unwrap();
        assert_eq!(
            policy.rules,
            vec![Rule {
                when: None,
                min_severity: Severity::Info,
                contact_points: vec!["work-email".to_string()],
                mode: Mode::Now,
                repeat: None,
                notify_resolved: false,
                continue_: false,
            }]
        );
    }

    #[test]
    fn every_field_parses() {
        let policy = Policy::parse(&json!({"rules": [
            {"when": {"days": ["Mon-Wed", "FRI", "fri"], "from": "09:00:30", "to": "24:00", "outside": true},
             "min_severity": "warning", "contact_points": ["a", "b"],
             "mode": {"digest": "15m"}, "repeat": "1h30m", "notify_resolved": true, "continue": true},
            {"contact_points": ["c"], "mode": {"hold_until": "06:00"}, "min_severity": "crit", "when": null}
        ]}))
        .unwrap();
        let first = &policy.rules[0];
        assert_eq!(
            first.when,
            Some(Window {
                days: vec![
                    Weekday::Monday,
                    Weekday::Tuesday,
                    Weekday::Wednesday,
                    Weekday::Friday
                ],
                from: time("09:00:30"),
                to: Time::midnight(),
                outside: true,
            })
        );
        assert_eq!(first.min_severity, Severity::Warning);
        assert_eq!(first.mode, Mode::Digest(SignedDuration::from_mins(15)));
        assert_eq!(first.repeat, Some(SignedDuration::from_mins(90)));
        assert!(first.notify_resolved && first.continue_);
        let second = &policy.rules[1];
        assert_eq!(second.mode, Mode::HoldUntil(time("06:00")));
        assert_eq!(second.min_severity, Severity::Critical);
    }

    #[test]
    fn parse_collects_every_failure_with_its_path() {
        let errors = Policy::parse(&json!({
            "colour": "red",
            "rules": [
                {"contact_points": [], "colour": "blue"},
                {"when": {"days": ["mon", "tue", "wed", "funday", "mon-blursday"], "from": "25:00", "to": "9:7"},
                 "contact_points": ["a", ""]},
                {"contact_points": ["a"], "mode": {"digest": "soon"}, "repeat": "0s",
                 "min_severity": "loud", "continue": "yes"},
                {"contact_points": ["a"], "mode": "later"},
                {"contact_points": ["a"], "mode": {"digest": "5m", "hold_until": "06:00"}},
                {"contact_points": ["a"], "mode": {"hold_until": "24:00"}},
                "not a rule"
            ]
        }))
        .unwrap_err();
        let messages = messages(&errors);
        let expected = [
            "colour: unknown key",
            "rules[0].colour: unknown key",
            "rules[0].contact_points: name at least one contact point",
            "rules[1].when.days[3]: unknown day `funday` (use mon..sun)",
            "rules[1].when.days[4]: unknown day `blursday` (use mon..sun)",
            "rules[1].when.from: invalid time `25:00` (use HH:MM)",
            "rules[1].when.to: invalid time `9:7` (use HH:MM)",
            "rules[1].contact_points[1]: expected a contact point name",
            "rules[2].min_severity: unknown severity `loud` (expected info, warning or critical)",
            "rules[2].continue: expected true or false",
            "rules[5].mode.hold_until: invalid time `24:00` (24:00 is allowed only as the end of a window)",
            "rules[6]: expected an object",
        ];
        for line in expected {
            assert!(
                messages.contains(&line.to_string()),
                "missing {line:?} in {messages:#?}"
            );
        }
        let paths: Vec<&str> = errors.iter().map(|error| error.path.as_str()).collect();
        for path in [
            "rules[2].mode.digest",
            "rules[2].repeat",
            "rules[3].mode",
            "rules[4].mode",
        ] {
            assert!(paths.contains(&path), "missing {path} in {messages:#?}");
        }
        assert!(messages
            .iter()
            .any(|m| m.starts_with("rules[2].mode.digest: invalid duration `soon`")));
        assert_eq!(errors.len(), expected.len() + 4, "{messages:#?}");
    }

    #[test]
    fn a_policy_needs_rules_and_each_rule_contact_points() {
        for body in [json!({}), json!({"rules": []}), json!({"rules": null})] {
            let errors = Policy::parse(&body).unwrap_err();
            assert_eq!(messages(&errors), vec!["rules: at least one rule"]);
        }
        let errors = Policy::parse(&json!({"rules": [{}]})).unwrap_err();
        assert_eq!(
            messages(&errors),
            vec!["rules[0].contact_points: name at least one contact point"]
        );
        assert_eq!(
            Policy::parse(&json!([])).unwrap_err()[0].path,
            "policy".to_string()
        );
    }

    #[test]
    fn to_json_round_trips_and_is_the_serde_form() {
        let body = json!({"rules": [
            {"when": {"days": ["mon-fri"], "from": "09:00", "to": "18:00"},
             "min_severity": "warning", "contact_points": ["work-email"],
             "mode": {"digest": "15m"}, "repeat": "1h30m", "notify_resolved": true},
            {"when": {"days": ["sat", "sun"], "from": "18:00", "to": "24:00", "outside": true},
             "contact_points": ["phone"], "mode": {"hold_until": "06:00"}, "continue": true},
            {"contact_points": ["home-email"]}
        ]});
        let policy = Policy::parse(&body).unwrap();
        let written = policy.to_json();
        assert_eq!(
            written["rules"][0],
            json!({"when": {"days": ["mon", "tue", "wed", "thu", "fri"], "from": "09:00", "to": "18:00", "outside": false},
                   "min_severity": "warning", "contact_points": ["work-email"],
                   "mode": {"digest": "15m"}, "repeat": "1h30m", "notify_resolved": true, "continue": false})
        );
        assert_eq!(written["rules"][1]["when"]["to"], json!("24:00"));
        assert_eq!(written["rules"][2]["mode"], json!("now"));
        assert_eq!(written["rules"][2]["when"], Value::Null);
        assert_eq!(Policy::parse(&written).unwrap(), policy);
        assert_eq!(serde_json::to_value(&policy).unwrap(), written);
        let back: Policy = serde_json::from_value(written).unwrap();
        assert_eq!(back, policy);
        let broken: Result<Policy, _> = serde_json::from_value(json!({"rules": []}));
        assert!(broken
            .unwrap_err()
            .to_string()
            .contains("rules: at least one rule"));
    }

    #[test]
    fn contact_point_names_are_deduplicated_and_sorted() {
        let policy = Policy::parse(&json!({"rules": [
            {"contact_points": ["phone", "work-email"]},
            {"contact_points": ["home-email", "phone"]}
        ]}))
        .unwrap();
        assert_eq!(
            policy.contact_point_names(),
            vec!["home-email", "phone", "work-email"]
        );
    }

    #[test]
    fn the_first_applying_rule_wins_unless_it_continues() {
        let utc = TimeZone::UTC;
        let now = instant("2026-05-05T10:00+00:00[UTC]");
        let policy = Policy::parse(&json!({"rules": [
            {"min_severity": "critical", "contact_points": ["pager"]},
            {"contact_points": ["email"], "continue": true},
            {"contact_points": ["chat"]},
            {"contact_points": ["never"]}
        ]}))
        .unwrap();
        let selected = policy.select(&utc, Severity::Critical, now);
        assert_eq!(
            selected.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![0]
        );
        let selected = policy.select(&utc, Severity::Warning, now);
        assert_eq!(
            selected.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(contacts(&selected), vec!["email", "chat"]);
    }

    #[test]
    fn work_hours_and_critical_at_home() {
        let berlin = zone("Europe/Berlin");
        let policy = work_and_home();
        // 2026-05-05 is a Tuesday, 2026-05-09 a Saturday.
        let tuesday_morning = instant("2026-05-05T10:00+02:00[Europe/Berlin]");
        let tuesday_evening = instant("2026-05-05T20:00+02:00[Europe/Berlin]");
        let saturday = instant("2026-05-09T11:00+02:00[Europe/Berlin]");

        let pick = |severity, now| {
            let selected = policy.select(&berlin, severity, now);
            let indexes: Vec<usize> = selected.iter().map(|(i, _)| *i).collect();
            (indexes, contacts(&selected))
        };
        assert_eq!(
            pick(Severity::Warning, tuesday_morning),
            (vec![0], vec!["work-email".to_string()])
        );
        assert_eq!(
            pick(Severity::Critical, tuesday_morning),
            (vec![0], vec!["work-email".to_string()])
        );
        assert_eq!(pick(Severity::Info, tuesday_morning), (vec![], vec![]));
        assert_eq!(pick(Severity::Warning, tuesday_evening), (vec![], vec![]));
        let home = vec!["home-email".to_string(), "phone".to_string()];
        assert_eq!(
            pick(Severity::Critical, tuesday_evening),
            (vec![1], home.clone())
        );
        assert_eq!(pick(Severity::Warning, saturday), (vec![], vec![]));
        assert_eq!(pick(Severity::Critical, saturday), (vec![1], home));
    }

    #[test]
    fn select_reads_the_clock_of_the_zone() {
        let policy = work_and_home();
        // 08:30 UTC on a Tuesday is inside work hours in Berlin, before them in New York.
        let now = instant("2026-05-05T08:30+00:00[UTC]");
        assert_eq!(
            policy.select(&zone("Europe/Berlin"), Severity::Critical, now)[0].0,
            0
        );
        assert_eq!(
            policy.select(&zone("America/New_York"), Severity::Critical, now)[0].0,
            1
        );
    }

    #[test]
    fn windows_across_midnight_run_into_the_next_day() {
        let friday_night = Policy::parse(&json!({"rules": [{"contact_points": ["a"],
            "when": {"days": ["fri"], "from": "18:00", "to": "09:00"}}]}))
        .unwrap()
        .rules[0]
            .when
            .clone()
            .unwrap();
        // 2026-05-08 is a Friday.
        assert!(!friday_night.contains(&zoned("2026-05-08T17:59+00:00[UTC]")));
        assert!(friday_night.contains(&zoned("2026-05-08T18:00+00:00[UTC]")));
        assert!(friday_night.contains(&zoned("2026-05-08T23:59:59+00:00[UTC]")));
        assert!(friday_night.contains(&zoned("2026-05-09T00:00+00:00[UTC]")));
        assert!(friday_night.contains(&zoned("2026-05-09T08:59:59+00:00[UTC]")));
        assert!(!friday_night.contains(&zoned("2026-05-09T09:00+00:00[UTC]")));
        assert!(!friday_night.contains(&zoned("2026-05-09T20:00+00:00[UTC]")));
        assert!(!friday_night.contains(&zoned("2026-05-08T08:00+00:00[UTC]")));

        let whole_day = window("mon 12:00-12:00");
        assert!(whole_day.contains(&zoned("2026-05-04T12:00+00:00[UTC]")));
        assert!(whole_day.contains(&zoned("2026-05-05T11:59+00:00[UTC]")));
        assert!(!whole_day.contains(&zoned("2026-05-05T12:00+00:00[UTC]")));
        assert!(!whole_day.contains(&zoned("2026-05-04T11:59+00:00[UTC]")));

        let until_midnight = window("sun 18:00-24:00");
        assert!(until_midnight.contains(&zoned("2026-05-10T23:59+00:00[UTC]")));
        assert!(!until_midnight.contains(&zoned("2026-05-11T00:00+00:00[UTC]")));

        let weekend = window("sat,sun");
        assert!(weekend.contains(&zoned("2026-05-09T00:00+00:00[UTC]")));
        assert!(weekend.contains(&zoned("2026-05-10T23:59+00:00[UTC]")));
        assert!(!weekend.contains(&zoned("2026-05-11T00:00+00:00[UTC]")));
    }

    #[test]
    fn outside_inverts_the_window() {
        let evenings_and_weekends = window("not mon-fri 09:00-18:00");
        assert!(evenings_and_weekends.outside);
        assert!(!evenings_and_weekends.contains(&zoned("2026-05-05T10:00+00:00[UTC]")));
        assert!(evenings_and_weekends.contains(&zoned("2026-05-05T18:00+00:00[UTC]")));
        assert!(evenings_and_weekends.contains(&zoned("2026-05-05T08:59+00:00[UTC]")));
        assert!(evenings_and_weekends.contains(&zoned("2026-05-09T11:00+00:00[UTC]")));
    }

    /// How long, in real time, the window stays open from `start` on, probing each minute.
    fn open_minutes(window: &Window, start: &str, zone_name: &str) -> i64 {
        let tz = zone(zone_name);
        let mut now = instant(start);
        let mut minutes = 0;
        while window.contains(&now.to_zoned(tz.clone())) {
            minutes += 1;
            now += SignedDuration::from_mins(1);
            assert!(minutes < 3000, "window never closes");
        }
        minutes
    }

    #[test]
    fn windows_follow_the_wall_clock_across_dst_changes() {
        // Work hours stay nine wall-clock hours on every DST day.
        let work = window("09:00-18:00");
        for start in [
            "2026-03-29T09:00+02:00[Europe/Berlin]",
            "2026-10-25T09:00+01:00[Europe/Berlin]",
            "2026-03-08T09:00-04:00[America/New_York]",
            "2026-11-01T09:00-05:00[America/New_York]",
            "2026-04-05T09:00+10:00[Australia/Sydney]",
            "2026-10-04T09:00+11:00[Australia/Sydney]",
        ] {
            let zone_name = start.split('[').nth(1).unwrap().trim_end_matches(']');
            assert_eq!(open_minutes(&work, start, zone_name), 9 * 60, "{start}");
        }
        // A night window over the DST change is an hour shorter or longer in real time.
        let night = window("22:00-06:00");
        let cases = [
            ("2026-03-28T22:00+01:00[Europe/Berlin]", 7 * 60),
            ("2026-10-24T22:00+02:00[Europe/Berlin]", 9 * 60),
            ("2026-03-07T22:00-05:00[America/New_York]", 7 * 60),
            ("2026-10-31T22:00-04:00[America/New_York]", 9 * 60),
            ("2026-04-04T22:00+11:00[Australia/Sydney]", 9 * 60),
            ("2026-10-03T22:00+10:00[Australia/Sydney]", 7 * 60),
        ];
        for (start, minutes) in cases {
            let zone_name = start.split('[').nth(1).unwrap().trim_end_matches(']');
            assert_eq!(open_minutes(&night, start, zone_name), minutes, "{start}");
        }
        // Both 02:30s of a fall-back night are inside a 02:00-03:00 window.
        let small_hours = window("sun 02:00-03:00");
        assert!(small_hours.contains(&zoned("2026-10-25T02:30+02:00[Europe/Berlin]")));
        assert!(small_hours.contains(&zoned("2026-10-25T02:30+01:00[Europe/Berlin]")));
        assert!(small_hours.contains(&zoned("2026-04-05T02:30+11:00[Australia/Sydney]")));
        assert!(small_hours.contains(&zoned("2026-04-05T02:30+10:00[Australia/Sydney]")));
        // On a spring-forward night the window from 02:00 never opens: 01:59 jumps to 03:00.
        assert!(!small_hours.contains(&zoned("2026-03-08T01:59-05:00[America/New_York]")));
        assert!(!small_hours.contains(&zoned("2026-03-08T03:00-04:00[America/New_York]")));
    }

    #[test]
    fn hold_until_ends_at_the_local_time_after_a_dst_night() {
        let hold = Mode::HoldUntil(time("06:00"));
        let cases = [
            (
                "Europe/Berlin",
                "2026-03-28T23:00+01:00[Europe/Berlin]",
                "2026-03-29T06:00+02:00[Europe/Berlin]",
            ),
            (
                "Europe/Berlin",
                "2026-10-24T23:00+02:00[Europe/Berlin]",
                "2026-10-25T06:00+01:00[Europe/Berlin]",
            ),
            (
                "America/New_York",
                "2026-03-07T23:00-05:00[America/New_York]",
                "2026-03-08T06:00-04:00[America/New_York]",
            ),
            (
                "America/New_York",
                "2026-10-31T23:00-04:00[America/New_York]",
                "2026-11-01T06:00-05:00[America/New_York]",
            ),
            (
                "Australia/Sydney",
                "2026-04-04T23:00+11:00[Australia/Sydney]",
                "2026-04-05T06:00+10:00[Australia/Sydney]",
            ),
            (
                "Australia/Sydney",
                "2026-10-03T23:00+10:00[Australia/Sydney]",
                "2026-10-04T06:00+11:00[Australia/Sydney]",
            ),
        ];
        for (zone_name, now, expected) in cases {
            assert_eq!(
                due_at(&hold, &zone(zone_name), instant(now)),
                instant(expected),
                "{now}"
            );
        }
        // Strictly after now: at 06:00 the hold runs to tomorrow's 06:00.
        let berlin = zone("Europe/Berlin");
        assert_eq!(
            due_at(
                &hold,
                &berlin,
                instant("2026-05-05T06:00+02:00[Europe/Berlin]")
            ),
            instant("2026-05-06T06:00+02:00[Europe/Berlin]")
        );
        assert_eq!(
            due_at(
                &hold,
                &berlin,
                instant("2026-05-05T05:59+02:00[Europe/Berlin]")
            ),
            instant("2026-05-05T06:00+02:00[Europe/Berlin]")
        );
    }

    #[test]
    fn hold_until_a_time_in_the_gap_lands_after_the_gap() {
        let hold = Mode::HoldUntil(time("02:30"));
        let cases = [
            (
                "Europe/Berlin",
                "2026-03-29T00:30+01:00[Europe/Berlin]",
                "2026-03-29T03:00+02:00[Europe/Berlin]",
            ),
            (
                "America/New_York",
                "2026-03-08T00:00-05:00[America/New_York]",
                "2026-03-08T03:00-04:00[America/New_York]",
            ),
            (
                "Australia/Sydney",
                "2026-10-04T00:00+10:00[Australia/Sydney]",
                "2026-10-04T03:00+11:00[Australia/Sydney]",
            ),
            // Once the gap is behind us, the next 02:30 is tomorrow's.
            (
                "Europe/Berlin",
                "2026-03-29T03:00+02:00[Europe/Berlin]",
                "2026-03-30T02:30+02:00[Europe/Berlin]",
            ),
        ];
        for (zone_name, now, expected) in cases {
            assert_eq!(
                due_at(&hold, &zone(zone_name), instant(now)),
                instant(expected),
                "{now}"
            );
        }
    }

    #[test]
    fn hold_until_an_ambiguous_time_takes_the_earlier_one_ahead() {
        let hold = Mode::HoldUntil(time("02:30"));
        let berlin = zone("Europe/Berlin");
        assert_eq!(
            due_at(
                &hold,
                &berlin,
                instant("2026-10-25T00:00+02:00[Europe/Berlin]")
            ),
            instant("2026-10-25T02:30+02:00[Europe/Berlin]")
        );
        // Between the two 02:30s, the second one is the next instant showing 02:30.
        assert_eq!(
            due_at(
                &hold,
                &berlin,
                instant("2026-10-25T02:45+02:00[Europe/Berlin]")
            ),
            instant("2026-10-25T02:30+01:00[Europe/Berlin]")
        );
        let sydney = zone("Australia/Sydney");
        assert_eq!(
            due_at(
                &hold,
                &sydney,
                instant("2026-04-05T00:00+11:00[Australia/Sydney]")
            ),
            instant("2026-04-05T02:30+11:00[Australia/Sydney]")
        );
    }

    #[test]
    fn digests_end_with_the_current_period_of_the_local_day() {
        let quarter = Mode::Digest(SignedDuration::from_mins(15));
        let berlin = zone("Europe/Berlin");
        assert_eq!(
            due_at(
                &quarter,
                &berlin,
                instant("2026-05-05T10:07+02:00[Europe/Berlin]")
            ),
            instant("2026-05-05T10:15+02:00[Europe/Berlin]")
        );
        // A notification made on a boundary waits for the whole next period.
        assert_eq!(
            due_at(
                &quarter,
                &berlin,
                instant("2026-05-05T10:15+02:00[Europe/Berlin]")
            ),
            instant("2026-05-05T10:30+02:00[Europe/Berlin]")
        );
        assert_eq!(
            due_at(
                &Mode::Now,
                &berlin,
                instant("2026-05-05T10:15+02:00[Europe/Berlin]")
            ),
            instant("2026-05-05T10:15+02:00[Europe/Berlin]")
        );

        let hourly = Mode::Digest(SignedDuration::from_hours(1));
        // Berlin springs forward: periods count real hours from 00:00 CET, so the third
        // period ends at 04:00 CEST.
        assert_eq!(
            due_at(
                &hourly,
                &berlin,
                instant("2026-03-29T03:10+02:00[Europe/Berlin]")
            ),
            instant("2026-03-29T04:00+02:00[Europe/Berlin]")
        );
        // A 23-hour day: 7-hour periods end at 08:00, 15:00 and 22:00 CEST, then midnight.
        let seven_hours = Mode::Digest(SignedDuration::from_hours(7));
        assert_eq!(
            due_at(
                &seven_hours,
                &berlin,
                instant("2026-03-29T21:00+02:00[Europe/Berlin]")
            ),
            instant("2026-03-29T22:00+02:00[Europe/Berlin]")
        );
        assert_eq!(
            due_at(
                &seven_hours,
                &berlin,
                instant("2026-03-29T22:00+02:00[Europe/Berlin]")
            ),
            instant("2026-03-30T00:00+02:00[Europe/Berlin]")
        );
        // Berlin falls back: a 25-hour day; hourly periods end on each real hour.
        assert_eq!(
            due_at(
                &hourly,
                &berlin,
                instant("2026-10-25T02:30+01:00[Europe/Berlin]")
            ),
            instant("2026-10-25T03:00+01:00[Europe/Berlin]")
        );

        // New York falls back: both 01:30s end their own hour.
        let new_york = zone("America/New_York");
        assert_eq!(
            due_at(
                &hourly,
                &new_york,
                instant("2026-11-01T01:30-04:00[America/New_York]")
            ),
            instant("2026-11-01T01:00-05:00[America/New_York]")
        );
        assert_eq!(
            due_at(
                &hourly,
                &new_york,
                instant("2026-11-01T01:30-05:00[America/New_York]")
            ),
            instant("2026-11-01T02:00-05:00[America/New_York]")
        );
        // New York springs forward: a 90-minute period from midnight ends at 01:30 EST,
        // the next one at 04:00 EDT.
        let ninety = Mode::Digest(SignedDuration::from_mins(90));
        assert_eq!(
            due_at(
                &ninety,
                &new_york,
                instant("2026-03-08T01:45-05:00[America/New_York]")
            ),
            instant("2026-03-08T04:00-04:00[America/New_York]")
        );

        // Sydney: a period that would cross midnight ends at midnight.
        let sydney = zone("Australia/Sydney");
        let twenty_five = Mode::Digest(SignedDuration::from_mins(25));
        assert_eq!(
            due_at(
                &twenty_five,
                &sydney,
                instant("2026-10-03T23:50+10:00[Australia/Sydney]")
            ),
            instant("2026-10-04T00:00+10:00[Australia/Sydney]")
        );
        assert_eq!(
            due_at(
                &hourly,
                &sydney,
                instant("2026-10-04T03:30+11:00[Australia/Sydney]")
            ),
            instant("2026-10-04T04:00+11:00[Australia/Sydney]")
        );
        assert_eq!(
            due_at(
                &hourly,
                &sydney,
                instant("2026-04-05T02:10+10:00[Australia/Sydney]")
            ),
            instant("2026-04-05T03:00+10:00[Australia/Sydney]")
        );
    }

    #[test]
    fn window_text_parses_and_prints_back() {
        let cases = [
            ("mon-fri 09:00-18:00", "mon-fri 09:00-18:00"),
            ("sat,sun", "sat,sun"),
            ("18:00-09:00", "18:00-09:00"),
            ("not mon-fri 09:00-18:00", "not mon-fri 09:00-18:00"),
            ("NOT Sat, Sun", "not sat,sun"),
            ("09:00-18:00 mon,wed-fri", "mon,wed-fri 09:00-18:00"),
            ("fri-mon 22:00-24:00", "mon,fri-sun 22:00-24:00"),
            ("mon-sun 08:00:30-17:00", "08:00:30-17:00"),
            ("always", "always"),
            ("mon-sun 00:00-24:00", "always"),
            ("mon-sun 09:00-18:00", "09:00-18:00"),
            ("not always", "not always"),
        ];
        for (text, printed) in cases {
            let parsed = window(text);
            assert_eq!(parsed.to_string(), printed, "{text}");
            let again: Window = printed.parse().unwrap();
            assert_eq!(
                again.to_json(),
                parsed.to_json(),
                "{text}: JSON after reading back"
            );
            assert!(
                (0..7 * 24).all(|hour| {
                    let probe = zoned("2026-05-04T00:30+00:00[UTC]")
                        .checked_add(SignedDuration::from_hours(hour))
                        .unwrap();
                    parsed.contains(&probe) == again.contains(&probe)
                }),
                "{text}"
            );
        }
        assert_eq!(
            window("mon-fri 09:00-18:00"),
            Window {
                days: vec![
                    Weekday::Monday,
                    Weekday::Tuesday,
                    Weekday::Wednesday,
                    Weekday::Thursday,
                    Weekday::Friday
                ],
                from: time("09:00"),
                to: time("18:00"),
                outside: false,
            }
        );
        for bad in [
            "",
            "not",
            "funday",
            "09:00",
            "25:00-26:00",
            "mon 09:00-10:00 11:00-12:00",
            "always mon",
        ] {
            assert!(parse_window_text(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_window_text("mon-fri 24:00-09:00").unwrap_err(),
            "invalid time `24:00` (24:00 is allowed only as the end of a window)"
        );
    }

    #[test]
    fn times_accept_hh_mm_and_hh_mm_ss_only() {
        assert_eq!(parse_time("09:00", false), Ok(time("09:00")));
        assert_eq!(parse_time("9:05", false), Ok(time("09:05")));
        assert_eq!(parse_time("23:59:59", false), Ok(time("23:59:59")));
        assert_eq!(parse_time("24:00", true), Ok(Time::midnight()));
        assert_eq!(parse_time("24:00:00", true), Ok(Time::midnight()));
        for bad in [
            "24:00",
            "24:01",
            "12",
            "12:60",
            "12:00:60",
            "-1:00",
            "12:0",
            "ab:cd",
            "12:00:00:00",
            "",
        ] {
            assert!(parse_time(bad, bad == "24:01").is_err(), "{bad}");
        }
    }

    #[test]
    fn repeat_and_digest_have_floors_and_ceilings_and_stored_policies_are_raised_to_them() {
        let policy = json!({"rules": [{"contact_points": ["a"], "repeat": "1ns", "mode": {"digest": "1s"}}]});
        let errors = Policy::parse(&policy).unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, vec!["rules[0].mode.digest", "rules[0].repeat"]);
        assert!(
            errors[1].message.contains("between 1m and 31d"),
            "{errors:?}"
        );
        let limits =
            PolicyLimits::with_floors(SignedDuration::from_mins(5), SignedDuration::from_mins(10));
        let too_often =
            json!({"rules": [{"contact_points": ["a"], "repeat": "2m", "mode": {"digest": "3m"}}]});
        assert!(Policy::parse_with(&too_often, &limits).is_err());
        // Saved before the operator raised the floors: raised, not refused.
        let stored = Policy::parse_stored(&too_often, &limits).unwrap();
        assert_eq!(stored.rules[0].repeat, Some(SignedDuration::from_mins(5)));
        assert_eq!(
            stored.rules[0].mode,
            Mode::Digest(SignedDuration::from_mins(10))
        );
    }

    #[test]
    fn durations_print_in_a_form_that_parses_back() {
        for minutes in [1, 15, 60, 90, 61, 24 * 60, 48 * 60 + 1] {
            let duration = SignedDuration::from_mins(minutes);
            let text = format_duration(duration);
            assert_eq!(
                tellify_model::parse_duration(&text).unwrap(),
                duration,
                "{text}"
            );
        }
        assert_eq!(format_duration(SignedDuration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(SignedDuration::from_mins(90)), "1h30m");
    }

    fn covers_without_gaps(week: &Week) {
        for severity in &week.severities {
            let segments = &severity.segments;
            assert_eq!(segments.first().unwrap().from, week.start);
            assert_eq!(segments.last().unwrap().to, week.end);
            for pair in segments.windows(2) {
                assert_eq!(pair[0].to, pair[1].from, "contiguous");
                assert_ne!(pair[0].applies, pair[1].applies, "merged when equal");
            }
        }
    }

    /// Work hours critical to SMS at once, outside them warning and up to an hourly email
    /// digest; the week of the spring change to summer time in Berlin.
    #[test]
    fn the_week_of_a_two_rule_policy_across_the_spring_change() {
        let policy = Policy::parse(&json!({"rules": [
            {"when": {"days": ["mon-fri"], "from": "09:00", "to": "18:00"},
             "min_severity": "critical", "contact_points": ["sms"]},
            {"when": {"days": ["mon-fri"], "from": "09:00", "to": "18:00", "outside": true},
             "min_severity": "warning", "contact_points": ["email"], "mode": {"digest": "1h"}}
        ]}))
        .unwrap();
        let berlin = zone("Europe/Berlin");
        let start = instant("2026-03-23T00:00+01:00[Europe/Berlin]");
        let week = policy.week(&berlin, start, 7);
        assert_eq!(week.zone, "Europe/Berlin");
        assert_eq!(week.end, instant("2026-03-30T00:00+02:00[Europe/Berlin]"));
        assert_eq!(
            week.end.duration_since(week.start),
            SignedDuration::from_hours(167),
            "the week is one hour short: the clocks went forward"
        );
        covers_without_gaps(&week);
        let info = &week.severities[0];
        assert_eq!(info.severity, Severity::Info);
        assert_eq!(info.segments.len(), 1);
        assert!(info.segments[0].nothing, "no rule takes info");

        let critical = &week.severities[2];
        assert_eq!(critical.severity, Severity::Critical);
        assert_eq!(critical.segments.len(), 11, "{:#?}", critical.segments);
        let monday_work = &critical.segments[1];
        assert_eq!(monday_work.local_from, "2026-03-23T09:00");
        assert_eq!(monday_work.local_to, "2026-03-23T18:00");
        assert_eq!(monday_work.applies[0].rule, 0);
        assert_eq!(
            monday_work.applies[0].contact_points,
            vec!["sms".to_string()]
        );
        assert_eq!(monday_work.applies[0].mode, json!("now"));
        let weekend = critical.segments.last().unwrap();
        assert_eq!(weekend.local_from, "2026-03-27T18:00");
        assert_eq!(weekend.local_to, "2026-03-30T00:00");
        assert_eq!(weekend.applies[0].rule, 1);
        assert_eq!(weekend.applies[0].mode, json!({"digest": "1h"}));
        assert_eq!(
            weekend.to.duration_since(weekend.from),
            SignedDuration::from_hours(53),
            "Friday 18:00 to Monday 00:00 across the change is 53 hours, not 54"
        );

        // Warning: nothing during work hours (the work rule wants critical), the digest
        // outside them.
        let warning = &week.severities[1];
        assert!(warning.segments[1].nothing);
        assert_eq!(warning.segments[1].local_from, "2026-03-23T09:00");
        assert_eq!(warning.segments[0].applies[0].rule, 1);
    }

    /// A rule across midnight in the week the clocks go back: the Saturday night stretch
    /// runs 22:00 to 06:00 local time, nine hours of real time.
    #[test]
    fn a_rule_across_midnight_in_the_autumn_change_week() {
        let policy = Policy::parse(&json!({"rules": [
            {"when": {"from": "22:00", "to": "06:00"}, "contact_points": ["phone"],
             "mode": {"hold_until": "07:00"}}
        ]}))
        .unwrap();
        let berlin = zone("Europe/Berlin");
        let start = instant("2026-10-19T00:00+02:00[Europe/Berlin]");
        let week = policy.week(&berlin, start, 7);
        covers_without_gaps(&week);
        let info = &week.severities[0];
        let night = info
            .segments
            .iter()
            .find(|segment| segment.local_from == "2026-10-24T22:00")
            .expect("Saturday night");
        assert_eq!(night.local_to, "2026-10-25T06:00");
        assert_eq!(
            night.to.duration_since(night.from),
            SignedDuration::from_hours(9)
        );
        assert_eq!(night.applies[0].mode, json!({"hold_until": "07:00"}));
        // Monday starts inside the night that began on Sunday.
        assert_eq!(info.segments[0].local_to, "2026-10-19T06:00");
        assert!(!info.segments[0].nothing);
        assert!(info.segments[1].nothing, "daytime: nothing");
        // 7 days and 8 nights: the first night cut at the start, the last at the end.
        assert_eq!(info.segments.len(), 15, "{:#?}", info.segments);
    }

    #[test]
    fn evaluate_gives_each_rule_its_reason() {
        let policy = work_and_home();
        let berlin = zone("Europe/Berlin");
        let tuesday_noon = instant("2026-11-24T12:00+01:00[Europe/Berlin]");
        assert_eq!(
            policy.evaluate(&berlin, Severity::Info, tuesday_noon),
            vec![RuleVerdict::BelowMinimum, RuleVerdict::OutsideSchedule]
        );
        assert_eq!(
            policy.evaluate(&berlin, Severity::Critical, tuesday_noon),
            vec![RuleVerdict::Selected, RuleVerdict::NotReached]
        );
    }
}
