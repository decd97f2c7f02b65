//! Integration tests: the real `cortex` binary against a real server on loopback.

mod harness;

mod auth;
mod bad_input;
mod batch;
mod bazaar;
mod cli_misc;
mod config_errors;
mod gateway;
mod honest_answers;
mod lifecycle;
mod limits;
mod local_daemon;
mod permissions;
mod realtime;
mod redelivery;
mod requirements;
mod scaling;
mod shim;
mod spec_errors;
mod splitter;
