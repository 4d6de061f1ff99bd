//! Integration tests: the real server on port 0 against a fake Rancher v1 server.

mod crash;
mod fake_rancher;
mod fake_rancher_behaviour;
mod helpers;

mod flaky_proxy;
mod health;
mod limits;
mod logging;
mod matching;
mod paging;
mod real_fixtures;
mod reliability;
mod upgrade;
mod webhook;
