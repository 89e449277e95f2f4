//! "When will I be told" (`/notifications/week?policy=NAME`): a policy's coming 7 days per
//! severity, which channel is used when and what waits for a digest.
//!
//! Each severity gets a strip (one 24 h bar per local day, drawn as inline SVG whose
//! geometry is in percent, so it scales with the page and needs no inline style, which the
//! CSP forbids) above a table with the same stretches in words. The strip is a picture of
//! the table: it is hidden from screen readers, and each segment says what it is by its
//! pattern and its label as well as its colour.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::rule_words;
use tellify_engine::policy::Segment;

use crate::services::{notify, schedule, AppState};
use crate::web::format::severity_icon;
use crate::web::{render, Layout, Viewer, WebError};

/// One stretch of a severity's week, as shown: local times, and what happens then.
pub struct Stretch {
    pub from: String,
    pub to: String,
    pub from_iso: String,
    /// `nothing` when no rule applies, else e.g. `sms now; email digest every 1h`.
    pub what: String,
    pub nothing: bool,
    pub held: bool,
}

/// One severity's week.
pub struct SeverityRow {
    pub severity: &'static str,
    pub icon: &'static str,
    pub stretches: Vec<Stretch>,
    /// The same stretches cut into local days, for the strip.
    pub days: Vec<StripDay>,
}

/// One local day of a severity's strip: a 24 h bar.
pub struct StripDay {
    /// `Mon 23`, in the reader's zone.
    pub label: String,
    /// `2026-11-23`.
    pub date: String,
    pub segments: Vec<StripSegment>,
}

/// A stretch within one day, placed on the 24 h bar by its local wall-clock times.
pub struct StripSegment {
    /// Left edge and width as a percentage of the day (`37.5%`).
    pub x: String,
    pub width: String,
    /// `now` (someone is told at once), `held` (only digests or holds), `nothing`.
    pub kind: &'static str,
    /// What the bar shows: `➜ mail`, `‖ mail`, `➜ sms ‖ mail`, `✗ nobody`.
    pub label: String,
    /// Local `09:00` and `18:00` (`24:00` for the end of the day).
    pub from: String,
    pub to: String,
    /// The whole story, shown on hover: `09:00–18:00: rule 1: mail at once`.
    pub title: String,
}

/// What one stretch means: its words for the table, its strip label and its kind.
struct Meaning {
    what: String,
    label: String,
    held: bool,
    kind: &'static str,
}

const MINUTES_PER_DAY: i32 = 24 * 60;

/// `"now"`, `{"digest": "1h"}` or `{"hold_until": "08:00"}` in words.
fn mode_words(mode: &serde_json::Value) -> (String, bool) {
    if let Some(every) = mode.get("digest").and_then(|v| v.as_str()) {
        return (format!("in a digest every {every}"), true);
    }
    if let Some(until) = mode.get("hold_until").and_then(|v| v.as_str()) {
        return (format!("held until {until}"), true);
    }
    ("at once".to_string(), false)
}

fn meaning(segment: &Segment) -> Meaning {
    if segment.nothing {
        return Meaning {
            what: "nobody is told".to_string(),
            label: "✗ nobody".to_string(),
            held: false,
            kind: "nothing",
        };
    }
    let mut held = false;
    let mut now = false;
    let mut words = Vec::new();
    let mut labels = Vec::new();
    for applied in &segment.applies {
        let (mode, is_held) = mode_words(&applied.mode);
        held |= is_held;
        now |= !is_held;
        let contact_points = applied.contact_points.join(", ");
        words.push(format!(
            "rule {}: {} {}",
            applied.rule + 1,
            contact_points,
            mode
        ));
        labels.push(format!(
            "{} {}",
            if is_held { "‖" } else { "➜" },
            contact_points
        ));
    }
    Meaning {
        what: words.join("; "),
        label: labels.join(" "),
        held,
        kind: if now { "now" } else { "held" },
    }
}

fn severity_rows(view: &schedule::WeekView) -> Vec<SeverityRow> {
    let zone = jiff::tz::TimeZone::get(&view.zone).unwrap_or(jiff::tz::TimeZone::UTC);
    let local = |t: jiff::Timestamp| {
        t.to_zoned(zone.clone())
            .strftime("%a %d %b %H:%M")
            .to_string()
    };
    let days = local_days(&zone, view.start, view.days);
    view.severities
        .iter()
        .rev()
        .map(|week| {
            let meanings: Vec<Meaning> = week.segments.iter().map(meaning).collect();
            let stretches = week
                .segments
                .iter()
                .zip(&meanings)
                .map(|(segment, meaning)| Stretch {
                    from: local(segment.from),
                    to: local(segment.to),
                    from_iso: segment.from.to_string(),
                    what: meaning.what.clone(),
                    nothing: segment.nothing,
                    held: meaning.held,
                })
                .collect();
            SeverityRow {
                severity: week.severity.as_str(),
                icon: severity_icon(week.severity),
                stretches,
                days: days
                    .iter()
                    .map(|day| strip_day(&zone, day, &week.segments, &meanings))
                    .collect(),
            }
        })
        .collect()
}

/// The local days of the view: each day's start and end as instants (a day with a
/// change of offset is 23 or 25 hours long).
fn local_days(
    zone: &jiff::tz::TimeZone,
    start: jiff::Timestamp,
    days: u32,
) -> Vec<(jiff::Zoned, jiff::Timestamp)> {
    let mut result = Vec::new();
    let mut day = start.to_zoned(zone.clone());
    for _ in 0..days {
        let Ok(next) = day
            .date()
            .tomorrow()
            .and_then(|date| date.to_zoned(zone.clone()))
        else {
            break;
        };
        let end = next.timestamp();
        result.push((day, end));
        day = next;
    }
    result
}

/// One day's bar: the stretches that overlap it, placed by local wall-clock minutes so
/// they line up with the 0–24 h scale. Around a change of offset the wall clock repeats
/// or skips an hour; a segment that would go backwards there is left out, and the table
/// below still lists it.
fn strip_day(
    zone: &jiff::tz::TimeZone,
    day: &(jiff::Zoned, jiff::Timestamp),
    segments: &[Segment],
    meanings: &[Meaning],
) -> StripDay {
    let (start, end) = (day.0.timestamp(), day.1);
    let minutes = |instant: jiff::Timestamp| {
        if instant >= end {
            return MINUTES_PER_DAY;
        }
        let time = instant.to_zoned(zone.clone()).time();
        i32::from(time.hour()) * 60 + i32::from(time.minute())
    };
    let mut placed = Vec::new();
    let mut reached = 0;
    for (segment, meaning) in segments.iter().zip(meanings) {
        if segment.to <= start || segment.from >= end {
            continue;
        }
        let from = minutes(segment.from.max(start)).max(reached);
        let to = minutes(segment.to.min(end));
        if to <= from {
            continue;
        }
        reached = to;
        let (from_text, to_text) = (clock_text(from), clock_text(to));
        placed.push(StripSegment {
            x: percent(from),
            width: percent(to - from),
            kind: meaning.kind,
            label: meaning.label.clone(),
            title: format!("{from_text}–{to_text}: {}", meaning.what),
            from: from_text,
            to: to_text,
        });
    }
    StripDay {
        label: day.0.strftime("%a %d").to_string(),
        date: day.0.date().to_string(),
        segments: placed,
    }
}

/// Minutes of the day as a percentage of it, with at most three decimals (`37.5%`).
fn percent(minutes: i32) -> String {
    let text = format!(
        "{:.3}",
        f64::from(minutes) * 100.0 / f64::from(MINUTES_PER_DAY)
    );
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

/// Minutes of the day as `HH:MM`, `24:00` at the end.
fn clock_text(minutes: i32) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

#[derive(Deserialize, Default)]
pub struct WeekQuery {
    #[serde(default)]
    policy: String,
}

#[derive(Template)]
#[template(path = "notifications_week.html")]
struct WeekPage {
    layout: Layout,
    policy: String,
    rules: Vec<String>,
    timezone: String,
    severities: Vec<SeverityRow>,
}

pub async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(query): Query<WeekQuery>,
) -> Result<Response, WebError> {
    let name = if query.policy.is_empty() {
        "default"
    } else {
        query.policy.as_str()
    };
    let record = notify::policy(&state, &viewer.principal, None, name).await?;
    let view = schedule::week(&state, &viewer.principal, None, name).await?;
    render(&WeekPage {
        severities: severity_rows(&view),
        layout: Layout::new(
            format!("When will I be told: {}", record.name),
            "notifications",
            &viewer,
        ),
        rules: record.policy.rules.iter().map(rule_words).collect(),
        policy: record.name,
        timezone: viewer.principal.user.timezone.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_are_short_and_exact_where_they_can_be() {
        assert_eq!(percent(0), "0%");
        assert_eq!(percent(9 * 60), "37.5%");
        assert_eq!(percent(MINUTES_PER_DAY), "100%");
        assert_eq!(percent(1), "0.069%");
        assert_eq!(clock_text(MINUTES_PER_DAY), "24:00");
        assert_eq!(clock_text(9 * 60 + 5), "09:05");
    }

    #[test]
    fn a_day_with_a_change_of_offset_still_spans_the_whole_bar() {
        // Berlin leaves summer time on Sunday 25 October 2026: a 25 hour day.
        let zone = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
        let start: jiff::Timestamp = "2026-10-24T22:00:00Z".parse().unwrap();
        let days = local_days(&zone, start, 2);
        assert_eq!(days.len(), 2);
        assert_eq!(days[0].1.to_string(), "2026-10-25T23:00:00Z");
        let segment = Segment {
            from: start,
            to: days[1].1,
            local_from: String::new(),
            local_to: String::new(),
            nothing: true,
            applies: Vec::new(),
        };
        let meanings = vec![meaning(&segment)];
        let day = strip_day(&zone, &days[0], &[segment], &meanings);
        assert_eq!(day.label, "Sun 25");
        assert_eq!(day.segments.len(), 1);
        assert_eq!(day.segments[0].x, "0%");
        assert_eq!(day.segments[0].width, "100%");
        assert_eq!(day.segments[0].kind, "nothing");
        assert_eq!(day.segments[0].title, "00:00–24:00: nobody is told");
    }
}
