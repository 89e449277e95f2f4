//! What the dashboard's summary pages ask of the store: a chart's buckets, each
//! subscription's alert state, and the alerts a person holds acknowledged or shelved.
//! Each is one aggregate or index lookup in the store, so a page's cost follows what it
//! shows, not how many events or alerts are stored.

use jiff::Timestamp;

/// A numeric field of the events in a time range, bucketed per group key (see
/// [`crate::Store::chart_events`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChartQuery {
    /// Start of the range, inclusive.
    pub since: Timestamp,
    /// End of the range, exclusive.
    pub until: Timestamp,
    /// The numeric field, a top-level field name.
    pub field: String,
    /// What keys a line: a top-level field's value as text (a string as it is, anything
    /// else as JSON); when an event has no such field, `host` and `component` fall back to
    /// its source, `type` and `severity` to its envelope, anything else to `(none)`. Empty:
    /// one line, keyed `all`.
    pub group: String,
    /// Only events of this type.
    pub event_type: Option<String>,
    /// Equal slices of `[since, until)`; an event falls into the slice of its time.
    pub buckets: usize,
    /// Most lines: the keys with the most events (ties: the smaller key) are kept.
    pub max_series: usize,
    /// Most events looked at, newest first: what bounds the query's time, however many
    /// events the range holds.
    pub max_examined: usize,
}

/// One time bucket of one line.
#[derive(Clone, Debug, PartialEq)]
pub struct ChartBucket {
    /// Which slice of the range (0 is the oldest).
    pub bucket: usize,
    /// Events in it.
    pub count: u64,
    /// The sum of their values.
    pub sum: f64,
    /// The mean of their times.
    pub mean_time: Timestamp,
}

/// One line of a chart.
#[derive(Clone, Debug, PartialEq)]
pub struct ChartSeries {
    pub key: String,
    /// Its buckets, oldest first; buckets without events are absent.
    pub buckets: Vec<ChartBucket>,
    /// Events behind the line.
    pub events: u64,
}

/// What [`crate::Store::chart_events`] found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChartAggregate {
    /// The lines kept, in key order.
    pub series: Vec<ChartSeries>,
    /// How many keys were left out beyond `max_series`.
    pub series_cut: usize,
    /// Events whose field is a number (in every line, kept or not).
    pub numeric: u64,
    /// Events that have the field, but not as a number.
    pub not_numeric: u64,
    /// Events looked at.
    pub examined: usize,
    /// When the budget stopped the look back: the time of the oldest event looked at. The
    /// aggregate covers only the events from about then to the end of the range.
    pub cut_at: Option<Timestamp>,
}

/// Per line key, per bucket: the count, the sum of the values and the sum of the times
/// (ms) of its events, as a backend gathered them.
pub(crate) type ChartLines =
    std::collections::BTreeMap<String, std::collections::BTreeMap<usize, (u64, f64, f64)>>;

impl ChartAggregate {
    /// Makes the lines `aggregate` counted into its series: each bucket's mean time, each
    /// line's total, and only the `max_series` keys with the most events, in key order.
    pub(crate) fn with_lines(
        mut self,
        lines: ChartLines,
        max_series: usize,
    ) -> Result<ChartAggregate, jiff::Error> {
        let mut series = Vec::with_capacity(lines.len());
        for (key, slots) in lines {
            let mut buckets = Vec::with_capacity(slots.len());
            for (bucket, (count, sum, times)) in slots {
                let mean = (times / count.max(1) as f64).round() as i64;
                buckets.push(ChartBucket {
                    bucket,
                    count,
                    sum,
                    mean_time: Timestamp::from_millisecond(mean)?,
                });
            }
            series.push(ChartSeries {
                key,
                events: buckets.iter().map(|bucket| bucket.count).sum(),
                buckets,
            });
        }
        if series.len() > max_series {
            // Keep the keys with the most events; answer them in key order.
            series.sort_by(|a, b| b.events.cmp(&a.events).then(a.key.cmp(&b.key)));
            self.series_cut = series.len() - max_series;
            series.truncate(max_series);
            series.sort_by(|a, b| a.key.cmp(&b.key));
        }
        self.series = series;
        Ok(self)
    }
}

/// How one subscription's alerts stand (see [`crate::Store::subscription_alerts`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionAlerts {
    pub subscription_id: String,
    /// Its alerts that fire and were not cleared.
    pub firing: u64,
    /// The newest `last_seen` among all its alerts.
    pub last_fired: Option<Timestamp>,
}
