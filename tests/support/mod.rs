//! Support code shared by the integration tests (`tests/api`) and the end-to-end bench
//! (`benches/end_to_end.rs`): a fake Rancher v1 server and the proxies put in front of it,
//! and a real Docker Engine and registry with test images.
//!
//! Both pull it in with `#[path = ".../tests/support/mod.rs"] mod support;`. Having no
//! `main.rs`, this folder is no test target of its own.

// The tests use it, the bench does not.
#[allow(dead_code)]
pub mod engine;
#[allow(dead_code)]
pub mod engine_proxy;
#[allow(dead_code)]
pub mod engine_tls;
pub mod fake_rancher;
pub mod flaky_proxy;
#[allow(dead_code)]
pub mod receiver;
pub mod tls_proxy;
