//! The `key:value` text form (`text/plain` ingest, `tellify send`): parse a line, then
//! treat the result as ingest does (limits, storing). Round trip: an accepted event
//! serialises to JSON that reads back as the same event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tellify_fuzz::{base_time, input_to_stored};
use tellify_model::{parse_kv_line, EventInput};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for line in text.lines() {
        let Ok(event) = parse_kv_line(line) else {
            continue;
        };
        let json = serde_json::to_string(&event).expect("an event serialises");
        let again: EventInput = serde_json::from_str(&json)
            .unwrap_or_else(|error| panic!("parsed event does not read back: {error}\n{json}"));
        assert_eq!(again, event, "json round trip changed the event");
        let _ = input_to_stored(event, base_time());
    }
});
