//! Our own backend side of vhost-user (see [`handler`]): the request handler, the vring worker
//! threads, and inflight tracking.

pub mod handler;
pub mod inflight;
pub mod worker;

pub use handler::{Handler, TrackInflight};
pub use inflight::Inflight;
pub use worker::WorkerEpoll;
