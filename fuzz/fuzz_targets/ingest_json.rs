//! `POST /api/v1/events` with `application/json` (one event or an array): the whole body
//! parser with its limits, then every accepted event stored and offered to a filter.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tellify::config::IngestSettings;
use tellify::ingest::parse_events;
use tellify_fuzz::{base_time, input_to_stored};
use tellify_model::Limits;

fuzz_target!(|data: &[u8]| {
    ingest(data, "application/json");
});

fn ingest(data: &[u8], content_type: &str) {
    let settings = IngestSettings {
        max_batch_events: 64,
        ..IngestSettings::default()
    };
    let Ok(events) = parse_events(content_type, data, &settings, &Limits::default()) else {
        return;
    };
    assert!(
        !events.is_empty(),
        "an accepted batch holds at least one event"
    );
    assert!(events.len() <= settings.max_batch_events);
    for event in events {
        let stored = input_to_stored(event, base_time());
        assert!(
            stored.is_some(),
            "an accepted event fails the limits it passed"
        );
    }
}
