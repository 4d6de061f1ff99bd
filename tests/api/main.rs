//! Integration tests: the real server on port 0 against a fake Rancher v1 server.

#[path = "../support/mod.rs"]
mod support;

mod containers;
mod containers_crash;
mod containers_startup;
mod crash;
mod fake_rancher_behaviour;
mod helpers;
mod log_capture;

mod health;
mod limits;
mod logging;
mod matching;
mod migration;
mod notifications;
mod oversized_answers;
mod paging;
mod polling;
mod rancher_tls;
mod real_fixtures;
mod registries;
mod registry_credentials;
mod reliability;
mod scheduling;
mod swarm;
mod upgrade;
mod webhook;
