//! The run-time budget of filter evaluations, in the CPU time of the evaluating thread.
//!
//! The engine never reads a clock, and the cel interpreter cannot be interrupted, so the
//! budget is kept from outside: the engine calls an [`EvaluationMeter`] before and after
//! each evaluation, and this one reads the calling thread's CPU clock
//! (`CLOCK_THREAD_CPUTIME_ID`). An evaluation that used more than
//! `engine.filter_budget_ms` of CPU counts as not matching and is reported through
//! [`tellify_engine::EventContext::take_over_budget`], so the worker can mark that one
//! subscription failing. The static cost bound checked when a filter is compiled keeps
//! this rare: the run-time budget is the second line, for a machine slower than the bound
//! was calibrated on.
//!
//! CPU time, not the wall clock: an evaluation runs on one thread from start to end (the
//! interpreter does not yield), so its thread's CPU time is exactly the work the filter
//! made. On the wall clock, a worker thread preempted in the middle of a cheap filter (a
//! loaded machine, a busy neighbour) was charged for the time it did not run, and an event
//! that should have fired an alert silently did not: the alert storm benchmark lost a few
//! notifications in 100,000 that way with the load average at 8 on 2 cores.
//!
//! The worker wires it up as:
//!
//! ```ignore
//! let context = EventContext::new(event).with_meter(&self.filter_meter);
//! loaded.handler.on_event(event, &context, now, &mut outputs);
//! if let Some(over_budget) = context.take_over_budget() { /* mark `id` failing */ }
//! ```

use std::time::Duration;

use rustix::time::{clock_gettime, ClockId};
use tellify_engine::EvaluationMeter;

use crate::config::EngineSettings;

/// Times evaluations on the calling thread's CPU clock against a fixed budget.
#[derive(Clone, Debug)]
pub struct ThreadCpuMeter {
    budget: Duration,
}

impl ThreadCpuMeter {
    pub fn new(budget: Duration) -> ThreadCpuMeter {
        ThreadCpuMeter { budget }
    }

    /// The budget `engine.filter_budget_ms` sets.
    pub fn from_settings(settings: &EngineSettings) -> ThreadCpuMeter {
        ThreadCpuMeter::new(Duration::from_millis(settings.filter_budget_ms))
    }
}

impl EvaluationMeter for ThreadCpuMeter {
    /// The CPU time this thread has used. Both readings of one evaluation come from the
    /// same thread, so their difference is the evaluation's own CPU time.
    fn now_nanos(&self) -> u64 {
        let used = clock_gettime(ClockId::ThreadCPUTime);
        let seconds = u64::try_from(used.tv_sec).unwrap_or(0);
        let nanos = u64::try_from(used.tv_nsec).unwrap_or(0);
        seconds.saturating_mul(1_000_000_000).saturating_add(nanos)
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
        let strict = ThreadCpuMeter::new(Duration::from_nanos(1));
        let context = EventContext::new(&event).with_meter(&strict);
        let error = filter.evaluate(&context).unwrap_err();
        assert!(error.elapsed_nanos > 1, "{error:?}");
        assert_eq!(error.budget_nanos, 1);
        assert!(!filter.matches(&context));
        assert!(context.take_over_budget().is_some());
        let generous = ThreadCpuMeter::from_settings(&EngineSettings {
            filter_budget_ms: 60_000,
            ..EngineSettings::default()
        });
        let context = EventContext::new(&event).with_meter(&generous);
        assert_eq!(filter.evaluate(&context), Ok(true));
        assert!(context.take_over_budget().is_none());
    }

    #[test]
    fn time_the_thread_does_not_run_is_not_charged_to_the_filter() {
        // A thread that is not running (here: asleep, as a preempted worker is) uses no
        // CPU, so a budget of 5 ms is not spent by 30 ms of waiting. On the wall clock it was.
        let meter = ThreadCpuMeter::new(Duration::from_millis(5));
        let before = meter.now_nanos();
        std::thread::sleep(Duration::from_millis(30));
        let after = meter.now_nanos();
        assert!(
            after - before < meter.budget_nanos(),
            "asleep for 30 ms, charged {} ns",
            after - before
        );
        // Work done on the thread is charged.
        let started = meter.now_nanos();
        let mut sum = 0u64;
        for step in 0..5_000_000u64 {
            sum = sum.wrapping_add(std::hint::black_box(step));
        }
        std::hint::black_box(sum);
        assert!(meter.now_nanos() > started, "work was not charged");
    }
}
