//! The pure core of tellify: filters, the dispatch index, handler kinds and the alert
//! lifecycle. Nothing here does IO, reads a clock or mints an id: `now` and an id source are
//! always passed in, so every behaviour can be tested with a made-up timeline.

pub mod alerts;
pub mod dispatch;
pub mod filter;
pub mod handlers;
pub mod matchers;
pub mod policy;
pub mod render;
pub mod validation;

pub use alerts::{Action, Alert, AlertState, HistoryEntry, IdSource, Transition};
pub use dispatch::{DispatchHints, DispatchIndex, IndexValue};
pub use filter::{
    BudgetExceeded, EvaluationFailed, EvaluationMeter, EventContext, Filter, FilterError,
    FilterErrorKind,
};
pub use handlers::{AlertOutput, Handler, HandlerKind, Outputs, Registry};
pub use validation::ParamError;
