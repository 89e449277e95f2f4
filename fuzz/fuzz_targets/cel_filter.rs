//! CEL filters (subscriptions, silences, `GET /api/v1/events?filter=`): compile the first
//! line, then evaluate it against every event on the following lines (`EventInput` JSON).
//!
//! Both run on a thread with the 2 MiB stack of a tokio worker, where the server compiles
//! and evaluates filters, so a deeply nested expression that would overflow the server's
//! stack (and abort the whole process) is found here too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tellify_engine::{EventContext, Filter};
use tellify_fuzz::{base_time, split_first_line, stored_event};

/// The stack size of a tokio worker thread.
const SERVER_STACK_BYTES: usize = 2 * 1024 * 1024;

fuzz_target!(|data: &[u8]| {
    let Some((source, events)) = split_first_line(data) else {
        return;
    };
    let source = source.to_string();
    let events: Vec<_> = events
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .filter_map(|value| stored_event(value, base_time()))
        .collect();
    let worker = std::thread::Builder::new()
        .stack_size(SERVER_STACK_BYTES)
        .spawn(move || {
            let Ok(filter) = Filter::compile(&source) else {
                return;
            };
            assert_eq!(filter.source(), source);
            for event in &events {
                let context = EventContext::new(event);
                let first = filter.matches(&context);
                // The CEL context is built once and shared: a second look agrees.
                assert_eq!(
                    first,
                    filter.matches(&context),
                    "evaluation is not repeatable"
                );
            }
        })
        .expect("spawn a worker thread");
    if let Err(panic) = worker.join() {
        std::panic::resume_unwind(panic);
    }
});
