//! Helpers shared by the fuzz targets: a fixed "now", turning fuzzed JSON into stored
//! events the way ingest does, and driving a handler through events and ticks the way the
//! worker does.
//!
//! The targets read line-based text so that a seed stays readable and a mutation of one
//! line (the parameters, one event, the clock) leaves the others intact.

use jiff::{SignedDuration, Timestamp};
use serde_json::Value;
use tellify_engine::{EventContext, Handler, Outputs};
use tellify_model::{EventInput, Limits, StoredEvent};

/// The clock of every target: 2026-12-06T00:00:00Z.
pub fn base_time() -> Timestamp {
    Timestamp::from_second(1_796_515_200).expect("a valid constant")
}

/// The worker's clock runs from the server's start; a server is not expected to run for
/// more than a century, so offsets beyond that are folded back into it. This keeps `now`
/// realistic, while times a producer chose (an event's `time`) stay unbounded.
pub fn realistic_now(offset_seconds: i64) -> Timestamp {
    let offset = offset_seconds % CENTURY;
    base_time()
        .checked_add(SignedDuration::from_secs(offset))
        .expect("a century from 2026 is representable")
}

/// The latest [`realistic_now`].
pub fn realistic_end() -> Timestamp {
    realistic_now(CENTURY - 1)
}

const CENTURY: i64 = 100 * 365 * 86_400;

/// Any instant jiff can hold, chosen by `seconds` (clamped to the representable range).
pub fn any_time(seconds: i64) -> Timestamp {
    let clamped = seconds.clamp(Timestamp::MIN.as_second(), Timestamp::MAX.as_second());
    Timestamp::from_second(clamped).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// An event as ingest would store it: `value` must read as an [`EventInput`] and pass the
/// default limits, else `None` (ingest would have refused it).
pub fn stored_event(value: Value, received: Timestamp) -> Option<StoredEvent> {
    let input: EventInput = serde_json::from_value(value).ok()?;
    input_to_stored(input, received)
}

/// [`stored_event`] from an already-decoded input.
pub fn input_to_stored(input: EventInput, received: Timestamp) -> Option<StoredEvent> {
    input.validate(&Limits::default()).ok()?;
    Some(StoredEvent::from_input(input, None, received, 0))
}

/// A `tellify.metric` poll result as the server's poller appends it for the `metric`
/// subscription with these parameters: the poller is the only producer the `metric` kind
/// listens to, so events from the ingest API cannot reach it. `value` supplies the
/// result's fields (`ok`, `value`, `labels`, `error`); its `time` stays the fuzzer's.
pub fn poll_result(params: &Value, value: Value, received: Timestamp) -> Option<StoredEvent> {
    use tellify_engine::handlers::metric::{PollSpec, POLLER_PRODUCER, RESULT_EVENT_TYPE};
    let spec = PollSpec::from_params(params).ok()?;
    let mut input: EventInput = serde_json::from_value(value).ok()?;
    input.event_type = Some(RESULT_EVENT_TYPE.to_string());
    input
        .fields
        .insert("poll_key".to_string(), Value::String(spec.key));
    input.validate(&Limits::default()).ok()?;
    Some(StoredEvent::from_input(
        input,
        Some(POLLER_PRODUCER.to_string()),
        received,
        0,
    ))
}

/// Offers `event` to `handler` as the worker does, then ticks it if a deadline has come,
/// and checks that its state survives a save and load.
pub fn offer(handler: &mut dyn Handler, event: &StoredEvent, now: Timestamp) -> Outputs {
    let mut out = Outputs::default();
    let context = EventContext::new(event);
    handler.on_event(event, &context, now, &mut out);
    tick_if_due(handler, now, &mut out);
    check_state_round_trip(handler);
    out
}

/// Calls `on_tick` when the handler's deadline is at or before `now`, as the worker does.
pub fn tick_if_due(handler: &mut dyn Handler, now: Timestamp, out: &mut Outputs) {
    if handler
        .next_deadline()
        .is_some_and(|deadline| deadline <= now)
    {
        handler.on_tick(now, out);
    }
}

/// Saved state must load again: the worker saves after every batch and loads at start.
pub fn check_state_round_trip(handler: &mut dyn Handler) {
    let saved = handler.save_state();
    if let Err(error) = handler.load_state(&saved) {
        panic!("state saved by the handler does not load again: {error}\nstate: {saved}");
    }
}

/// Splits `data` at the first `\n`: (first line, rest). Invalid UTF-8 gives `None`.
pub fn split_first_line(data: &[u8]) -> Option<(&str, &str)> {
    let text = std::str::from_utf8(data).ok()?;
    Some(text.split_once('\n').unwrap_or((text, "")))
}

/// Reads `<seconds> <json>` lines: a clock offset and a JSON value.
pub fn timed_lines(text: &str) -> impl Iterator<Item = (i64, Option<Value>)> + '_ {
    text.lines().map(|line| {
        let (offset, json) = line.split_once(' ').unwrap_or((line, ""));
        let offset = offset.trim().parse::<i64>().unwrap_or(0);
        (offset, serde_json::from_str(json).ok())
    })
}
