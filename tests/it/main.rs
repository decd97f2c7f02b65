//! Integration tests: the real `cortex` binary against a real server on loopback.

mod harness;

mod auth;
mod bad_input;
mod batch;
mod batch_compat;
mod bazaar;
mod bazaar_clients;
mod cli_misc;
mod cli_trust;
mod config_errors;
mod fetch_safety;
mod gateway;
mod honest_answers;
mod lifecycle;
mod limits;
mod local_daemon;
mod log_caps;
mod metrics;
mod nothing_lost;
mod permissions;
mod predict_cmd;
mod realtime;
mod redelivery;
mod requirements;
mod resources;
mod sandbox;
mod scaling;
mod secrets;
mod shim;
mod spec_errors;
mod splitter;
mod unpack_limits;
mod wait;
mod worker_caps;
