//! Integration tests: the real server on port 0 against a fake Rancher v1 server.

mod crash;
mod fake_rancher;
mod fake_rancher_behaviour;
mod helpers;
mod log_capture;

mod flaky_proxy;
mod health;
mod limits;
mod logging;
mod matching;
mod migration;
mod oversized_answers;
mod paging;
mod rancher_tls;
mod real_fixtures;
mod reliability;
mod scheduling;
mod tls_proxy;
mod upgrade;
mod webhook;
