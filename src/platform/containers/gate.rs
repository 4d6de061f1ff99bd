//! The health gate: what a new container must show before the old one is removed.
//!
//! A container with a health check (its image's or its own) must report `healthy` within
//! `DOCKER_UPGRADE_TIMEOUT_S`; one without must keep running, without a restart, for
//! `DOCKER_UPGRADE_STABLE_S`. Exiting, restarting or turning `unhealthy` fails at once.

use std::time::Duration;

use tokio::time::Instant;

use super::api::ContainerApi;
use super::wire::ContainerView;
use crate::config::GateSettings;
use crate::platform::engine::EngineError;
use crate::shutdown::ShutdownSignal;

/// Time between two looks at the new container.
const LOOK_EVERY: Duration = Duration::from_millis(500);

/// How the gate ended, when the engine could be asked.
#[derive(Debug)]
pub(super) enum Verdict {
    /// The container proved itself.
    Passed,
    /// It did not: why.
    Failed(String),
    /// The process is shutting down.
    Interrupted,
}

/// Watches the container `id` until it passes or fails the gate.
pub(super) async fn watch(
    api: &ContainerApi,
    id: &str,
    gate: GateSettings,
    shutdown: &ShutdownSignal,
) -> Result<Verdict, EngineError> {
    let began = Instant::now();
    let mut first: Option<(String, u64)> = None;
    loop {
        let Some(container) = api.inspect(id).await? else {
            return Ok(Verdict::Failed("the new container was removed".into()));
        };
        let container = container.view;
        let state = &container.state;
        if !state.running || state.restarting {
            return Ok(Verdict::Failed(stopped(&container)));
        }
        let run = (state.started_at.clone(), container.restart_count);
        match &first {
            // A new container starts with no restart: one counted already happened
            // while autoredeploy was not looking (it was restarted during the gate).
            None if container.restart_count > 0 => {
                return Ok(Verdict::Failed(format!(
                    "the new container restarted ({} restarts)",
                    container.restart_count
                )));
            }
            None => first = Some(run),
            Some(first) if *first != run => {
                return Ok(Verdict::Failed(format!(
                    "the new container restarted ({} restarts)",
                    container.restart_count
                )));
            }
            Some(_) => {}
        }
        let elapsed = began.elapsed();
        match &state.health {
            Some(health) => match health.status.as_str() {
                "healthy" => return Ok(Verdict::Passed),
                "unhealthy" => return Ok(Verdict::Failed(unhealthy(&container))),
                _ if elapsed >= gate.healthy_within => {
                    return Ok(Verdict::Failed(format!(
                        "the new container was not healthy within {} s (DOCKER_UPGRADE_TIMEOUT_S)",
                        gate.healthy_within.as_secs()
                    )));
                }
                _ => {}
            },
            None if elapsed >= gate.stable_for => return Ok(Verdict::Passed),
            None => {}
        }
        tokio::select! {
            () = tokio::time::sleep(LOOK_EVERY) => {}
            () = shutdown.triggered() => return Ok(Verdict::Interrupted),
        }
    }
}

/// Why a container is not running, as its state says.
pub(super) fn stopped(container: &ContainerView) -> String {
    let state = &container.state;
    if state.restarting {
        return format!(
            "the new container is restarting (it exited with code {})",
            state.exit_code
        );
    }
    let mut reason = format!("the new container exited with code {}", state.exit_code);
    if state.oom_killed {
        reason.push_str(", out of memory");
    }
    if !state.error.is_empty() {
        reason.push_str(": ");
        reason.push_str(&crate::domain::excerpt(&state.error));
    }
    reason
}

/// Why a container is `unhealthy`: its last probe's output.
fn unhealthy(container: &ContainerView) -> String {
    let last = container
        .state
        .health
        .as_ref()
        .and_then(|health| health.log.as_ref())
        .and_then(|log| log.last());
    match last {
        Some(probe) => format!(
            "the new container is unhealthy: its health check exited with code {}: {}",
            probe.exit_code,
            crate::domain::excerpt(probe.output.trim())
        ),
        None => "the new container is unhealthy".into(),
    }
}
