//! Subscription parameters for every handler kind of the engine's registry, then the
//! handler run as the worker runs it.
//!
//! Input: line 1 names the kind (an unknown name is tried as given, then mapped onto one
//! of the known kinds), line 2 is the `params` JSON, and every further line is
//! `<seconds> <event JSON>`: the worker's clock moves to base + seconds (within a
//! century) and offers the event, or just ticks when the JSON is not an event. The
//! event's own `time` is the producer's and stays unbounded. For the `metric` kind the
//! events are the poller's results for the subscription's query.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tellify_engine::Registry;
use tellify_fuzz::{
    check_state_round_trip, offer, poll_result, realistic_now, split_first_line, stored_event,
    tick_if_due, timed_lines,
};

fuzz_target!(|data: &[u8]| {
    let Some((kind, rest)) = split_first_line(data) else {
        return;
    };
    let (params, events) = rest.split_once('\n').unwrap_or((rest, ""));
    let Ok(params) = serde_json::from_str::<serde_json::Value>(params) else {
        return;
    };
    let registry = Registry::builtin();
    let names: Vec<&str> = registry.kinds().map(|kind| kind.name()).collect();
    let kind = if names.contains(&kind) {
        kind
    } else {
        // The unknown name must be refused with the kind's path, not a panic.
        let errors = registry
            .build(kind, &params)
            .err()
            .expect("an unknown kind is refused");
        assert!(errors.iter().any(|error| error.path == "kind"));
        names[kind.len() % names.len()]
    };
    let mut handler = match registry.build(kind, &params) {
        Ok(handler) => handler,
        Err(errors) => {
            assert!(!errors.is_empty(), "refused without a reason");
            return;
        }
    };
    let _ = handler.dispatch_hints();
    check_state_round_trip(handler.as_mut());
    for (offset, value) in timed_lines(events).take(32) {
        let now = realistic_now(offset);
        let event = match (kind, value) {
            // The `metric` kind hears only the poller's results.
            ("metric", Some(value)) => poll_result(&params, value, now),
            (_, Some(value)) => stored_event(value, now),
            (_, None) => None,
        };
        match event {
            Some(event) => {
                offer(handler.as_mut(), &event, now);
            }
            None => {
                let mut out = Default::default();
                tick_if_due(handler.as_mut(), now, &mut out);
            }
        }
    }
});
