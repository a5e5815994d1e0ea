//! flexhook: Twilio Conversations webhooks in, exactly one Flex interaction out.
//!
//! A webhook's journey, one module per step: `routes` → `signature` → `event` → `intake`
//! (or `lifecycle`, for TaskRouter's events) → `store` → `worker` → `jobs` (one module per
//! kind of job: `routing`, then `twilio`).
#![forbid(unsafe_code)]

pub mod cli;
pub mod clock;
pub mod config;
pub mod domain;
pub(crate) mod event;
/// Entry points of the fuzz targets in `fuzz/` and of `tests/fuzz_corpus.rs`.
pub mod fuzzing;
pub(crate) mod intake;
pub mod jobs;
pub(crate) mod known_agents;
pub(crate) mod lifecycle;
pub mod metrics;
pub(crate) mod ngrok;
pub mod reconcile;
pub(crate) mod routes;
pub mod routing;
pub mod signature;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod twilio;
pub(crate) mod worker;
