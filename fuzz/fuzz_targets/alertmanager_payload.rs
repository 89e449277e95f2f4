//! The Alertmanager-compatible API: a `POST /api/v2/alerts` body (`postableAlerts`)
//! becomes events, which an `alertmanager` subscription then tracks until they resolve;
//! and the same input read as an amtool matcher list (`?filter=`, silences), whose CEL form
//! must read back as the same matchers and select the labels it names.
//!
//! The alerts arrive at a realistic `now`; their `startsAt` and `endsAt` are the
//! sender's and unbounded. After them the clock jumps a century ahead, which resolves
//! every alert that is still firing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};
use tellify::ingest::alertmanager::alerts_to_events;
use tellify::ingest::NoCheck;
use tellify_engine::matchers::{cel_to_matchers, matchers_to_cel, parse_matcher_list};
use tellify_engine::{EventContext, Filter, Registry};
use tellify_fuzz::{base_time, input_to_stored, offer, realistic_end, stored_event, tick_if_due};
use tellify_model::Limits;

fuzz_target!(|data: &[u8]| {
    alerts(data);
    if let Ok(text) = std::str::from_utf8(data) {
        matchers(text);
    }
});

fn alerts(body: &[u8]) {
    let now = base_time();
    let Ok(events) = alerts_to_events(body, now, 64, &Limits::default(), &NoCheck) else {
        return;
    };
    let registry = Registry::builtin();
    for params in [json!({}), json!({"resolve_timeout": "1m"})] {
        let mut handler = registry
            .build("alertmanager", &params)
            .expect("valid parameters");
        for event in &events {
            let stored = input_to_stored(event.clone(), now)
                .expect("an accepted alert passes the limits it was checked against");
            offer(handler.as_mut(), &stored, now);
        }
        let mut out = Default::default();
        tick_if_due(handler.as_mut(), realistic_end(), &mut out);
        assert!(
            handler
                .next_deadline()
                .is_none_or(|deadline| deadline > realistic_end()),
            "an alert is still tracked after its deadline passed"
        );
    }
}

fn matchers(text: &str) {
    let Ok(matchers) = parse_matcher_list(text) else {
        return;
    };
    if matchers.is_empty() {
        return;
    }
    let cel = matchers_to_cel(&matchers);
    assert_eq!(
        cel_to_matchers(&cel).as_ref(),
        Some(&matchers),
        "matchers do not read back from `{cel}`"
    );
    let Ok(filter) = Filter::compile(&cel) else {
        return;
    };
    // Plain equality matchers on distinct names select an alert with exactly those labels.
    let mut labels = Map::new();
    for matcher in &matchers {
        if matcher.is_regex || !matcher.is_equal || labels.contains_key(&matcher.name) {
            return;
        }
        labels.insert(matcher.name.clone(), Value::String(matcher.value.clone()));
    }
    let event = json!({"type": "alertmanager", "fields": labels});
    let Some(stored) = stored_event(event, base_time()) else {
        return;
    };
    assert!(
        filter.matches(&EventContext::new(&stored)),
        "`{cel}` does not select the labels it names"
    );
}
