//! Wire types shared by the server, the CLI and producers: events, severities, ids,
//! durations and the `key:value` text form.
//!
//! Everything here parses at the edge: once a value has one of these types it is valid.

pub mod duration;
pub mod event;
pub mod id;
pub mod kv;
pub mod severity;

pub use duration::{
    earlier, format_duration, later, parse_duration, DurationError, DurationRange,
    DURATION_PATTERN, MAX_DURATION,
};
pub use event::{
    EventInput, FieldProblem, Fields, Limits, Source, StoredEvent, StoredSource,
    MAX_LIST_ITEMS_CEILING,
};
pub use id::new_id;
pub use kv::{parse_kv_line, parse_kv_line_reporting, InputWarning, KvError, KvLine};
pub use severity::Severity;
