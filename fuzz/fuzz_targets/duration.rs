//! Human durations (`90s`, `1h30m`, `2 days`), which users give for windows, intervals,
//! repeats, digests, expiries and `since`. A parsed duration must be positive and add to a
//! timestamp with checked arithmetic without a panic; then it goes through every place in
//! the engine that takes one from a user (the duration parameters of the handler kinds and
//! a policy's digest and repeat) with an event at a realistic `now`, as the worker does.
//!
//! Input: line 1 is the duration; line 2, optional, moves `now` by that many seconds
//! (within a century). One input tries one place, chosen by the length of line 1, so a
//! panic in one place does not hide the others from the fuzzer.
#![no_main]

use jiff::{SignedDuration, Timestamp};
use libfuzzer_sys::fuzz_target;
use serde_json::json;
use tellify_engine::policy::{due_at, Policy};
use tellify_engine::Registry;
use tellify_fuzz::{
    offer, poll_result, realistic_end, realistic_now, split_first_line, stored_event,
};
use tellify_model::parse_duration;

fuzz_target!(|data: &[u8]| {
    let Some((text, rest)) = split_first_line(data) else {
        return;
    };
    let now = realistic_now(rest.trim().parse::<i64>().unwrap_or(0));
    let Ok(duration) = parse_duration(text) else {
        return;
    };
    assert!(
        duration > SignedDuration::ZERO,
        "`{text}` parsed to {duration}"
    );
    for start in [Timestamp::MIN, Timestamp::UNIX_EPOCH, now, Timestamp::MAX] {
        let _ = start.checked_add(duration);
        let _ = start.checked_sub(duration);
    }

    let registry = Registry::builtin();
    let event_for = |kind: &str, params: &serde_json::Value, at| match kind {
        "metric" => poll_result(params, json!({"fields": {"ok": true, "value": 5}}), at),
        "alertmanager" => stored_event(
            json!({"type": kind, "fields": {"alertname": "a", "alertmanager": {"status": "firing"}}}),
            at,
        ),
        _ => stored_event(
            json!({"type": kind, "message": "fuzz", "fields": {"host": "a", "value": 1}}),
            at,
        ),
    };
    let subscriptions = [
        ("count", json!({"limit": 1, "window": text})),
        ("absence", json!({"interval": text})),
        ("alertmanager", json!({"resolve_timeout": text})),
        (
            "metric",
            json!({
                "backend": "prometheus", "url": "http://prometheus.example:9090",
                "query": "up", "interval": "1m", "repeat_interval": text,
                "warn": {"value": 1, "message": "warn"},
                "critical": {"value": 2, "message": "critical"},
            }),
        ),
    ];
    let site = text.len() % (subscriptions.len() + 1);
    if let Some((kind, params)) = subscriptions.into_iter().nth(site) {
        let Ok(mut handler) = registry.build(kind, &params) else {
            return;
        };
        let Some(event) = event_for(kind, &params, now) else {
            return;
        };
        offer(handler.as_mut(), &event, now);
        // A second event one duration later, if that is still a realistic time.
        if let Ok(later) = now.checked_add(duration) {
            if later <= realistic_end() {
                if let Some(event) = event_for(kind, &params, later) {
                    offer(handler.as_mut(), &event, later);
                }
            }
        }
    }

    if site < 4 {
        return;
    }
    let policy = json!({"rules": [{
        "contact_points": ["me"], "mode": {"digest": text}, "repeat": text,
    }]});
    if let Ok(policy) = Policy::parse(&policy) {
        for rule in &policy.rules {
            let due = due_at(&rule.mode, &jiff::tz::TimeZone::UTC, now);
            assert!(due >= now);
        }
    }
});
