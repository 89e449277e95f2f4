//! `/events/chart`: a numeric field over time, one line per group key (disk usage per
//! filesystem), drawn on the server as inline SVG: axes labelled in my zone, one polyline
//! per key, a legend naming each key in text and telling series apart by dash pattern and
//! marker as well as colour, and the same numbers as a table for screen readers.
//!
//! Bounded: the store buckets the newest [`MAX_EVENTS`] events of the range itself
//! ([`tellify_store::Store::chart_events`]), so no event is decoded here. A chart with a CEL
//! filter or a text match, which the store cannot apply, reads at most
//! [`MAX_FILTERED_EVENTS`] events through the budgeted search and buckets them with
//! [`build`]. Either way at most [`MAX_SERIES`] keys (those with the most events) and
//! [`MAX_POINTS`] points per key (the mean of each time bucket). The page says whenever
//! something was cut.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use jiff::Timestamp;
use tellify_model::StoredEvent;
use tellify_store::{ChartAggregate, ChartQuery};

use super::{local_input, parse_search, value_text, FormErrors, SearchQuery};
use crate::services::{events, AppState};
use crate::web::format::Clock;
use crate::web::{render_status, Layout, Viewer, WebError};

/// Most events the store looks at for a chart (newest first): about 1.7 µs each on this
/// project's 2-core machine, so a chart stays well under 50 ms of server time.
pub const MAX_EVENTS: usize = 10_000;
/// Most events a chart with a filter or a text match reads through the search: each is
/// decoded and checked here, several times slower than the store's bucketing.
pub const MAX_FILTERED_EVENTS: usize = 5_000;
/// Most lines in one chart.
pub const MAX_SERIES: usize = 20;
/// Most points on one line: time buckets across the range.
pub const MAX_POINTS: usize = 500;

/// One line: a group key and its points, oldest first.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub key: String,
    /// (time, mean of the bucket's values)
    pub points: Vec<(Timestamp, f64)>,
    /// Events behind the points.
    pub events: usize,
}

/// What the events held, bucketed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChartData {
    pub series: Vec<Series>,
    /// Keys left out beyond [`MAX_SERIES`].
    pub series_cut: usize,
    /// Events whose field is a number.
    pub numeric: usize,
    /// Events that have the field, but not as a number.
    pub not_numeric: usize,
    /// Several events fell into one bucket somewhere (points are means).
    pub downsampled: bool,
}

/// Groups `events` by `group` (a field, or `host` / `component` when no field has that
/// name; empty: one line) and buckets `field`'s numbers over `[since, until]` into at
/// most `max_points` buckets, each a point at its events' mean time and value: what the
/// store's `chart_events` does, for the events a filtered chart read through the search.
pub fn build(
    events: &[&StoredEvent],
    field: &str,
    group: &str,
    since: Timestamp,
    until: Timestamp,
    max_series: usize,
    max_points: usize,
) -> ChartData {
    let mut data = ChartData::default();
    let span = (until.as_millisecond() - since.as_millisecond()).max(1);
    let buckets = max_points.max(1) as i64;
    // key → bucket → (sum of times, sum of values, count)
    let mut grouped: BTreeMap<String, BTreeMap<i64, (i128, f64, usize)>> = BTreeMap::new();
    for event in events {
        let Some(value) = event.fields.get(field) else {
            continue;
        };
        let Some(number) = value.as_f64().filter(|n| n.is_finite()) else {
            data.not_numeric += 1;
            continue;
        };
        data.numeric += 1;
        let key = group_key(event, group);
        let offset = (event.time.as_millisecond() - since.as_millisecond()).clamp(0, span);
        let bucket = (offset as i128 * buckets as i128 / span as i128).min(buckets as i128 - 1);
        let slot = grouped
            .entry(key)
            .or_default()
            .entry(bucket as i64)
            .or_insert((0, 0.0, 0));
        slot.0 += event.time.as_millisecond() as i128;
        slot.1 += number;
        slot.2 += 1;
    }
    let mut series: Vec<Series> = grouped
        .into_iter()
        .map(|(key, buckets)| {
            let mut events = 0;
            let points = buckets
                .into_values()
                .filter_map(|(times, values, count)| {
                    events += count;
                    let time = Timestamp::from_millisecond((times / count as i128) as i64).ok()?;
                    Some((time, values / count as f64))
                })
                .collect();
            Series {
                key,
                points,
                events,
            }
        })
        .collect();
    data.downsampled = series.iter().any(|s| s.events > s.points.len());
    if series.len() > max_series {
        // Keep the keys with the most events; show them in key order.
        series.sort_by(|a, b| b.events.cmp(&a.events).then(a.key.cmp(&b.key)));
        data.series_cut = series.len() - max_series;
        series.truncate(max_series);
        series.sort_by(|a, b| a.key.cmp(&b.key));
    }
    data.series = series;
    data
}

/// The store's buckets as the page draws them: a point per bucket at its events' mean
/// time and value.
fn from_store(aggregate: ChartAggregate) -> ChartData {
    let series: Vec<Series> = aggregate
        .series
        .into_iter()
        .map(|line| Series {
            points: line
                .buckets
                .iter()
                .map(|bucket| (bucket.mean_time, bucket.sum / bucket.count.max(1) as f64))
                .collect(),
            events: line.events as usize,
            key: line.key,
        })
        .collect();
    ChartData {
        downsampled: series.iter().any(|s| s.events > s.points.len()),
        series,
        series_cut: aggregate.series_cut,
        numeric: aggregate.numeric as usize,
        not_numeric: aggregate.not_numeric as usize,
    }
}

/// The group key of an event: a field's value as text, else `host` / `component` from
/// its source, else `(none)`.
fn group_key(event: &StoredEvent, group: &str) -> String {
    if group.is_empty() {
        return "all".to_string();
    }
    if let Some(value) = event.fields.get(group) {
        return value_text(value);
    }
    let envelope = match group {
        "host" => event.source.host.clone(),
        "component" => event.source.component.clone(),
        "type" => event.event_type.clone(),
        "severity" => Some(event.severity.as_str().to_string()),
        _ => None,
    };
    envelope.unwrap_or_else(|| "(none)".to_string())
}

// ---- drawing ----

const WIDTH: f64 = 800.0;
const HEIGHT: f64 = 320.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 44.0;
/// Colours that read on light and dark backgrounds; never the only difference.
const COLOURS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
];
/// Dash patterns; with [`Marker`]s (5 × 4 combinations) no two of 20 series look alike.
const DASHES: [&str; 5] = ["", "8 4", "2 3", "10 3 2 3", "4 4"];
/// Markers drawn on at most this many points of a line (evenly spread).
const MARKERS_PER_LINE: usize = 40;

#[derive(Clone, Copy)]
enum Marker {
    Circle,
    Square,
    Triangle,
    Diamond,
}

const MARKERS: [Marker; 4] = [
    Marker::Circle,
    Marker::Square,
    Marker::Triangle,
    Marker::Diamond,
];

impl Marker {
    fn name(self) -> &'static str {
        match self {
            Marker::Circle => "circle",
            Marker::Square => "square",
            Marker::Triangle => "triangle",
            Marker::Diamond => "diamond",
        }
    }

    /// A path that draws the marker centred on (x, y).
    fn path(self, x: f64, y: f64) -> String {
        match self {
            Marker::Circle => format!(
                "M{:.1},{:.1}a3.5,3.5 0 1,0 7,0a3.5,3.5 0 1,0 -7,0",
                x - 3.5,
                y
            ),
            Marker::Square => format!("M{:.1},{:.1}h7v7h-7z", x - 3.5, y - 3.5),
            Marker::Triangle => format!("M{x:.1},{:.1}l4,7h-8z", y - 4.0),
            Marker::Diamond => format!("M{x:.1},{:.1}l4,4l-4,4l-4,-4z", y - 4.0),
        }
    }
}

/// One line as drawn.
pub struct DrawnSeries {
    pub key: String,
    pub colour: &'static str,
    pub dash: &'static str,
    pub marker: &'static str,
    /// The polyline's `points`.
    pub points: String,
    pub point_count: usize,
    /// The markers, one path.
    pub markers: String,
    /// The legend's sample: a short line and one marker.
    pub sample_markers: String,
    pub events: usize,
    /// (time in my zone, value) for the table.
    pub rows: Vec<(String, String)>,
}

pub struct Tick {
    pub position: f64,
    pub label: String,
}

/// The chart, laid out for the template.
pub struct Drawn {
    pub width: f64,
    pub height: f64,
    pub left: f64,
    pub right: f64,
    pub top: f64,
    pub bottom: f64,
    pub x_ticks: Vec<Tick>,
    pub y_ticks: Vec<Tick>,
    pub series: Vec<DrawnSeries>,
}

fn draw(data: &ChartData, since: Timestamp, until: Timestamp, clock: &Clock) -> Drawn {
    let plot_width = WIDTH - LEFT - RIGHT;
    let plot_height = HEIGHT - TOP - BOTTOM;
    let (mut low, mut high) = data
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|(_, v)| *v))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !low.is_finite() {
        (low, high) = (0.0, 1.0);
    }
    if (high - low).abs() < f64::EPSILON {
        (low, high) = (low - 1.0, high + 1.0);
    }
    let start = since.as_millisecond() as f64;
    let span = ((until.as_millisecond() - since.as_millisecond()).max(1)) as f64;
    let x = |time: Timestamp| LEFT + (time.as_millisecond() as f64 - start) / span * plot_width;
    let y = |value: f64| TOP + (1.0 - (value - low) / (high - low)) * plot_height;
    let x_ticks = (0..=4)
        .map(|i| {
            let millis = since.as_millisecond() + (span as i64) * i / 4;
            let time = Timestamp::from_millisecond(millis).unwrap_or(since);
            Tick {
                position: x(time),
                label: clock.at(time),
            }
        })
        .collect();
    let y_ticks = (0..=4)
        .map(|i| {
            let value = low + (high - low) * i as f64 / 4.0;
            Tick {
                position: y(value),
                label: number(value),
            }
        })
        .collect();
    let series = data
        .series
        .iter()
        .enumerate()
        .map(|(index, series)| {
            let marker = MARKERS[index % MARKERS.len()];
            let coordinates: Vec<(f64, f64)> =
                series.points.iter().map(|(t, v)| (x(*t), y(*v))).collect();
            let every = coordinates.len().div_ceil(MARKERS_PER_LINE).max(1);
            DrawnSeries {
                key: series.key.clone(),
                colour: COLOURS[index % COLOURS.len()],
                dash: DASHES[index % DASHES.len()],
                marker: marker.name(),
                points: coordinates
                    .iter()
                    .map(|(x, y)| format!("{x:.1},{y:.1}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                point_count: coordinates.len(),
                markers: coordinates
                    .iter()
                    .step_by(every)
                    .map(|(x, y)| marker.path(*x, *y))
                    .collect(),
                sample_markers: marker.path(20.0, 8.0),
                events: series.events,
                rows: series
                    .points
                    .iter()
                    .map(|(t, v)| (clock.full(*t), number(*v)))
                    .collect(),
            }
        })
        .collect();
    Drawn {
        width: WIDTH,
        height: HEIGHT,
        left: LEFT,
        right: WIDTH - RIGHT,
        top: TOP,
        bottom: HEIGHT - BOTTOM,
        x_ticks,
        y_ticks,
        series,
    }
}

/// A number with at most three decimals and no trailing zeros.
fn number(value: f64) -> String {
    let text = format!("{value:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_string()
    } else {
        text.to_string()
    }
}

// ---- the page ----

#[derive(Template)]
#[template(path = "events_chart.html")]
struct ChartPage {
    layout: Layout,
    query: SearchQuery,
    from: String,
    to: String,
    zone: String,
    errors: FormErrors,
    field_error: Option<String>,
    /// What the chart could not show, in words.
    notes: Vec<String>,
    /// Why there is no chart (no field, nothing numeric), when there is none.
    nothing: Option<String>,
    chart: Option<Drawn>,
    caption: String,
    current: &'static str,
    search_link: String,
    live_link: String,
    chart_link: String,
}

pub async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(query): Query<SearchQuery>,
) -> Result<Response, WebError> {
    let clock = Clock::new(&viewer.principal.user.timezone, state.clock.now());
    let mut parsed = parse_search(&query, &clock);
    let base = query.query_string();
    let field = query.field.trim().to_string();
    let group = query.group.trim().to_string();
    let joined = |path: &str, extra: &str| {
        let all = [base.as_str(), extra]
            .into_iter()
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join("&");
        if all.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{all}")
        }
    };
    let mut page = ChartPage {
        layout: Layout::new("Chart", "events", &viewer),
        from: if query.from.trim().is_empty() {
            local_input(&clock, parsed.since)
        } else {
            query.from.clone()
        },
        to: query.to.clone(),
        zone: viewer.principal.user.timezone.clone(),
        errors: FormErrors::default(),
        field_error: None,
        notes: Vec::new(),
        nothing: None,
        chart: None,
        caption: String::new(),
        current: "chart",
        search_link: joined("/events", ""),
        live_link: joined("/events", "live=1"),
        chart_link: joined("/events/chart", ""),
        query: query.clone(),
    };
    if field.is_empty() {
        page.nothing = Some(
            "Name a numeric field to chart (for example usage), and a field to group by.".into(),
        );
        return render_status(StatusCode::OK, &page);
    }
    if parsed.errors.any() {
        page.errors = std::mem::take(&mut parsed.errors);
        return render_status(StatusCode::UNPROCESSABLE_ENTITY, &page);
    }
    let filtered = parsed.request.filter.is_some() || parsed.request.text.is_some();
    let data = if filtered {
        parsed.request.limit = MAX_FILTERED_EVENTS;
        let found = events::search(&state, &viewer.principal, parsed.request).await?;
        let events: Vec<&StoredEvent> = found.items.iter().map(|listed| &listed.event).collect();
        if found.next.is_some() {
            let oldest = events
                .last()
                .map(|event| clock.full(event.time))
                .unwrap_or_default();
            page.notes.push(if found.partial {
                format!(
                    "The search stopped at its budget after looking at {} events: the chart covers only the events since {oldest}.",
                    found.examined
                )
            } else {
                format!("A chart with a filter or text reads at most {MAX_FILTERED_EVENTS} events: it covers only those since {oldest}.")
            });
        }
        build(
            &events,
            &field,
            &group,
            parsed.since,
            parsed.until,
            MAX_SERIES,
            MAX_POINTS,
        )
    } else {
        let aggregate = events::chart(
            &state,
            &viewer.principal,
            ChartQuery {
                since: parsed.since,
                until: parsed.until,
                field: field.clone(),
                group: group.clone(),
                event_type: parsed.request.event_type.clone(),
                buckets: MAX_POINTS,
                max_series: MAX_SERIES,
                max_examined: MAX_EVENTS,
            },
        )
        .await?;
        if let Some(cut_at) = aggregate.cut_at {
            page.notes.push(format!(
                "The chart reads at most {MAX_EVENTS} events: it covers only those since {}.",
                clock.full(cut_at)
            ));
        }
        from_store(aggregate)
    };
    if data.series_cut > 0 {
        page.notes.push(format!(
            "{} more groups were left out: a chart shows the {MAX_SERIES} with the most events.",
            data.series_cut
        ));
    }
    if data.downsampled {
        page.notes.push(format!(
            "Some points are the mean of several events: a line has at most {MAX_POINTS} points."
        ));
    }
    if data.numeric == 0 {
        page.field_error = Some(if data.not_numeric > 0 {
            format!(
                "`{field}` is not a number in the {} matching events that have it, so there is nothing to chart.",
                data.not_numeric
            )
        } else {
            format!("No matching event in this range has a field `{field}`.")
        });
        return render_status(StatusCode::OK, &page);
    }
    if data.not_numeric > 0 {
        page.notes.push(format!(
            "{} events where `{field}` is not a number were left out.",
            data.not_numeric
        ));
    }
    page.caption = if group.is_empty() {
        format!(
            "{field} from {} to {}",
            clock.full(parsed.since),
            clock.full(parsed.until)
        )
    } else {
        format!(
            "{field} per {group} from {} to {}",
            clock.full(parsed.since),
            clock.full(parsed.until)
        )
    };
    page.chart = Some(draw(&data, parsed.since, parsed.until, &clock));
    render_status(StatusCode::OK, &page)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(minute: i64, fields: serde_json::Value) -> StoredEvent {
        let time = Timestamp::from_second(1_800_000_000 + minute * 60).unwrap();
        StoredEvent {
            id: format!("e{minute}"),
            seq: minute,
            time,
            received: time,
            event_type: None,
            severity: tellify_model::Severity::Info,
            message: None,
            source: Default::default(),
            idempotency_key: None,
            fields: fields.as_object().cloned().unwrap_or_default(),
            depth: 0,
        }
    }

    fn range() -> (Timestamp, Timestamp) {
        (
            Timestamp::from_second(1_800_000_000).unwrap(),
            Timestamp::from_second(1_800_000_000 + 3600).unwrap(),
        )
    }

    #[test]
    fn one_series_per_group_key_with_a_point_per_bucket() {
        let events: Vec<StoredEvent> = (0..6)
            .map(|i| {
                event(
                    i * 5,
                    json!({"usage": i * 10, "fs": if i % 2 == 0 { "/" } else { "/home" }}),
                )
            })
            .chain([
                event(7, json!({"usage": "full", "fs": "/"})),
                event(8, json!({"other": 1})),
            ])
            .collect();
        let refs: Vec<&StoredEvent> = events.iter().collect();
        let (since, until) = range();
        let data = build(&refs, "usage", "fs", since, until, 20, 500);
        assert_eq!(data.numeric, 6);
        assert_eq!(data.not_numeric, 1);
        let keys: Vec<&str> = data.series.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(keys, ["/", "/home"]);
        assert_eq!(data.series[0].points.len(), 3);
        assert_eq!(data.series[0].points[1].1, 20.0);
        assert!(!data.downsampled);
    }

    #[test]
    fn points_are_bucket_means_and_series_beyond_the_cap_are_cut_and_counted() {
        let mut events = Vec::new();
        for key in 0..5 {
            for minute in 0..(key + 1) {
                events.push(event(minute, json!({"v": minute * 2, "k": key})));
            }
        }
        let refs: Vec<&StoredEvent> = events.iter().collect();
        let (since, until) = range();
        // Two buckets of 30 minutes: every event lands in the first.
        let data = build(&refs, "v", "k", since, until, 3, 2);
        assert_eq!(data.series_cut, 2);
        let keys: Vec<&str> = data.series.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(keys, ["2", "3", "4"], "the keys with the most events");
        assert!(data.downsampled);
        assert_eq!(data.series[2].points.len(), 1);
        assert_eq!(data.series[2].points[0].1, 4.0, "mean of 0, 2, 4, 6, 8");
    }

    #[test]
    fn the_stores_buckets_become_points_at_their_mean() {
        let (since, _) = range();
        let bucket =
            |bucket: usize, count: u64, sum: f64, minute: i64| tellify_store::ChartBucket {
                bucket,
                count,
                sum,
                mean_time: since + jiff::SignedDuration::from_mins(minute),
            };
        let data = from_store(ChartAggregate {
            series: vec![tellify_store::ChartSeries {
                key: "/".into(),
                buckets: vec![bucket(0, 1, 10.0, 1), bucket(3, 4, 10.0, 40)],
                events: 5,
            }],
            series_cut: 2,
            numeric: 9,
            not_numeric: 1,
            examined: 10,
            cut_at: None,
        });
        assert_eq!(
            data.series[0].points,
            [
                (since + jiff::SignedDuration::from_mins(1), 10.0),
                (since + jiff::SignedDuration::from_mins(40), 2.5)
            ]
        );
        assert!(data.downsampled, "a bucket of four events is a mean");
        assert_eq!((data.series_cut, data.numeric, data.not_numeric), (2, 9, 1));
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(number(90.0), "90");
        assert_eq!(number(2.5), "2.5");
        assert_eq!(number(1.0 / 3.0), "0.333");
        assert_eq!(number(-0.0001), "0");
    }
}
