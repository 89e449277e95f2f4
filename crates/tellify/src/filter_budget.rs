//! The run-time budget of filter evaluations, on the real clock.
//!
//! The engine never reads a clock, and the cel interpreter cannot be interrupted, so the
//! budget is kept from outside: the engine calls an [`EvaluationMeter`] before and after
//! each evaluation, and this one reads a monotonic clock. An evaluation that took longer
//! than `engine.filter_budget_ms` counts as not matching and is reported through
//! [`tellify_engine::EventContext::take_over_budget`], so the worker can mark that one
//! subscription failing. The static cost bound checked when a filter is compiled keeps
//! this rare: the run-time budget is the second line, for a machine slower than the bound
//! was calibrated on.
//!
//! The worker wires it up as:
//!
//! ```ignore
//! let context = EventContext::new(event).with_meter(&self.filter_meter);
//! loaded.handler.on_event(event, &context, now, &mut outputs);
//! if let Some(over_budget) = context.take_over_budget() { /* mark `id` failing */ }
//! ```

use std::time::{Duration, Instant};

use tellify_engine::EvaluationMeter;

use crate::config::EngineSettings;

/// Times evaluations on the monotonic clock against a fixed budget.
#[derive(Clone, Debug)]
pub struct WallClockMeter {
    origin: Instant,
    budget: Duration,
}

impl WallClockMeter {
    pub fn new(budget: Duration) -> WallClockMeter {
        WallClockMeter {
            origin: Instant::now(),
            budget,
        }
    }

    /// The budget `engine.filter_budget_ms` sets.
    pub fn from_settings(settings: &EngineSettings) -> WallClockMeter {
        WallClockMeter::new(Duration::from_millis(settings.filter_budget_ms))
    }
}

impl EvaluationMeter for WallClockMeter {
    fn now_nanos(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn budget_nanos(&self) -> u64 {
        u64::try_from(self.budget.as_nanos()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tellify_engine::{EventContext, Filter};
    use tellify_model::{EventInput, StoredEvent};

    fn event_with_lists() -> StoredEvent {
        let numbers: Vec<i64> = (0..100).collect();
        let input = EventInput {
            fields: serde_json::json!({"xs": numbers, "ys": numbers})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            ..Default::default()
        };
        StoredEvent::from_input(input, None, jiff::Timestamp::UNIX_EPOCH, 0)
    }

    #[test]
    fn an_evaluation_longer_than_the_budget_is_reported_and_does_not_match() {
        // Thousands of interpreter steps take far longer than a nanosecond on any machine.
        let filter = Filter::compile("xs.all(a, a in ys)").unwrap();
        let event = event_with_lists();
        let strict = WallClockMeter::new(Duration::from_nanos(1));
        let context = EventContext::new(&event).with_meter(&strict);
        let error = filter.evaluate(&context).unwrap_err();
        assert!(error.elapsed_nanos > 1, "{error:?}");
        assert_eq!(error.budget_nanos, 1);
        assert!(!filter.matches(&context));
        assert!(context.take_over_budget().is_some());
        let generous = WallClockMeter::from_settings(&EngineSettings {
            filter_budget_ms: 60_000,
            ..EngineSettings::default()
        });
        let context = EventContext::new(&event).with_meter(&generous);
        assert_eq!(filter.evaluate(&context), Ok(true));
        assert!(context.take_over_budget().is_none());
    }
}
