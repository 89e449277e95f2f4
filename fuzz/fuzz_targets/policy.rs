//! Notification policies (`PUT /api/v1/policies/{name}`) and the times they compute.
//!
//! Input: line 1 is the user's time zone (an IANA name, as users set it; anything else
//! picks one of a few zones with odd rules), line 2 is `now` in Unix seconds (any instant
//! jiff can hold, to reach the edges of the range), line 3 is a window in the one-line
//! command-line form, and the rest is the policy JSON.
//!
//! Checked beyond "no panic": a parsed policy reads back from its JSON unchanged, a window
//! reads back from its one-line form, and nothing is due before `now`.
#![no_main]

use jiff::tz::TimeZone;
use libfuzzer_sys::fuzz_target;
use tellify_engine::policy::{due_at, parse_window_text, Policy, Window};
use tellify_fuzz::any_time;
use tellify_model::Severity;

const ODD_ZONES: [&str; 6] = [
    "UTC",
    "Europe/Berlin",
    "America/Sao_Paulo",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "America/St_Johns",
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.splitn(4, '\n');
    let zone_name = lines.next().unwrap_or("");
    let now_line = lines.next().unwrap_or("");
    let window_text = lines.next().unwrap_or("");
    let policy_text = lines.next().unwrap_or("");

    let zone = TimeZone::get(zone_name).unwrap_or_else(|_| {
        let name = ODD_ZONES[zone_name.len() % ODD_ZONES.len()];
        TimeZone::get(name).unwrap_or(TimeZone::UTC)
    });
    let now = any_time(now_line.trim().parse::<i64>().unwrap_or(0));

    if let Ok(window) = parse_window_text(window_text) {
        check_window_round_trip(&window);
        let _ = window.contains(&now.to_zoned(zone.clone()));
    }

    let Ok(value) = serde_json::from_str::<serde_json::Value>(policy_text) else {
        return;
    };
    let policy = match Policy::parse(&value) {
        Ok(policy) => policy,
        Err(errors) => {
            assert!(!errors.is_empty(), "refused without a reason");
            return;
        }
    };
    let again = Policy::parse(&policy.to_json())
        .unwrap_or_else(|errors| panic!("a policy's own JSON is refused: {errors:?}"));
    assert_eq!(again, policy, "the JSON round trip changed the policy");
    let _ = policy.contact_point_names();
    for severity in [Severity::Info, Severity::Warning, Severity::Critical] {
        let _ = policy.select(&zone, severity, now);
    }
    for rule in &policy.rules {
        if let Some(window) = &rule.when {
            check_window_round_trip(window);
        }
        let due = due_at(&rule.mode, &zone, now);
        assert!(due >= now, "due at {due}, before now {now}");
    }
});

fn check_window_round_trip(window: &Window) {
    let line = window.to_string();
    let again = parse_window_text(&line)
        .unwrap_or_else(|error| panic!("a window's own text `{line}` is refused: {error}"));
    assert_eq!(
        again.to_json(),
        window.to_json(),
        "the text round trip through `{line}` changed the window"
    );
}
