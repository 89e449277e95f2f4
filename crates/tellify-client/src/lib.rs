//! The producer library: sends events to a tellify server.
