//! The Alerta-compatible API: a `POST {prefix}/alert` body goes through the API's checks,
//! Alerta's duplicate and correlation rules and the answer, then an `alerta`
//! subscription. The same body is posted a second time, continuing the first (a
//! duplicate), and once more continuing an `alerta` event whose fields are the body
//! itself, as any user can store through `POST /api/v1/events`: the stored state an
//! alert continues is not always what the Alerta API wrote.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use tellify::api::alerta::post_alert_offline;
use tellify_engine::handlers::alerta::{AlertaAlert, EVENT_TYPE};
use tellify_engine::Registry;
use tellify_fuzz::{base_time, input_to_stored, offer, realistic_end, stored_event, tick_if_due};
use tellify_model::Limits;

fuzz_target!(|data: &[u8]| {
    let now = base_time();
    let limits = Limits::default();
    let Ok((first, answer)) = post_alert_offline(data, None, "e1", now, &limits) else {
        return;
    };
    let first = input_to_stored(first, now).expect("an accepted alert passes the limits");
    let previous =
        AlertaAlert::from_event(&first).expect("the event the API writes reads back as an alert");
    let Ok((second, again)) = post_alert_offline(data, Some(&previous), "e2", now, &limits) else {
        panic!("a body accepted once is refused when it continues itself");
    };
    assert_eq!(
        again["id"], answer["id"],
        "a duplicate keeps the alert's id"
    );
    let second = input_to_stored(second, now).expect("an accepted alert passes the limits");

    let mut handler = Registry::builtin()
        .build("alerta", &json!({}))
        .expect("valid parameters");
    offer(handler.as_mut(), &first, now);
    offer(handler.as_mut(), &second, now);

    // An `alerta` event stored directly, with the body as its fields.
    if let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(data) {
        let raw = json!({"type": EVENT_TYPE, "fields": fields});
        if let Some(raw) = stored_event(raw, now) {
            offer(handler.as_mut(), &raw, now);
            if let Some(stored) = AlertaAlert::from_event(&raw) {
                let _ = post_alert_offline(data, Some(&stored), "e3", now, &limits);
            }
        }
    }
    let mut out = Default::default();
    tick_if_due(handler.as_mut(), realistic_end(), &mut out);
});
