//! Which services a push updates, and the walk through them: one list of every service.

use super::api::{Service, SwarmApi};
use crate::config::MatchSettings;
use crate::domain::{ImageRef, TargetKind, UnitRef};
use crate::platform::{BoxFuture, Candidate, Plan, Prefetched, Scan, ScanError, ScanSummary};

/// What a push means for one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    /// It does not run the pushed image and tag.
    NotRunning,
    /// It runs them but is not to be updated: why.
    Skip(String),
    /// Update it.
    Update,
}

/// Judges `service` for a push of `pushed`. Its image matches on its tag, whether or not
/// Swarm pinned it to a digest; one pinned by digest alone never does.
pub(super) fn judge(service: &Service, pushed: &ImageRef, rule: &MatchSettings) -> Verdict {
    let runs = service
        .image()
        .and_then(|image| ImageRef::parse(image).ok())
        .is_some_and(|image| image.tag_is_updated_by(pushed));
    if !runs {
        return Verdict::NotRunning;
    }
    match opted_in(service, rule) {
        Ok(()) => Verdict::Update,
        Err(reason) => Verdict::Skip(reason),
    }
}

/// Whether `service` is opted in: its label `"true"` is, `"false"` is not, and without
/// the label the default decides. `Err` says why not.
pub(super) fn opted_in(service: &Service, rule: &MatchSettings) -> Result<(), String> {
    match service.label(&rule.label_name) {
        None if rule.default_opt_in => Ok(()),
        None => Err(format!(
            "no {}=true label, and SWARM_AUTOREDEPLOY_DEFAULT is false",
            rule.label_name
        )),
        Some(value) if value.trim().eq_ignore_ascii_case("true") => Ok(()),
        Some(value) => Err(format!(
            "labelled {}={}",
            rule.label_name,
            crate::domain::excerpt(value)
        )),
    }
}

/// One walk.
pub(super) struct ServiceScan {
    api: SwarmApi,
    image: ImageRef,
    rule: MatchSettings,
    summary: ScanSummary,
    done: bool,
}

impl ServiceScan {
    pub fn new(api: SwarmApi, image: &ImageRef, rule: MatchSettings) -> Self {
        Self {
            api,
            image: image.clone(),
            rule,
            summary: ScanSummary::default(),
            done: false,
        }
    }
}

impl Scan for ServiceScan {
    fn next_batch(&mut self) -> BoxFuture<'_, Result<Option<Vec<Candidate>>, ScanError>> {
        Box::pin(async move {
            if self.done {
                return Ok(None);
            }
            self.done = true;
            match self.api.is_manager().await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(engine = %self.api.client().address(), "the Docker Engine is not a Swarm manager; no service to update");
                    return Ok(Some(Vec::new()));
                }
                Err(error) if error.is_transient() => {
                    return Err(ScanError::Later(error.to_string()));
                }
                Err(error) => return Err(ScanError::Failed(error.to_string())),
            }
            let services = match self.api.services().await {
                Ok(services) => services,
                Err(error) if error.is_transient() => {
                    return Err(ScanError::Later(error.to_string()));
                }
                Err(error) => return Err(ScanError::Failed(error.to_string())),
            };
            self.summary.pages = 1;
            self.summary.listed = services.len();
            let candidates = services
                .iter()
                .filter_map(|service| {
                    let plan = match judge(service, &self.image, &self.rule) {
                        Verdict::NotRunning => return None,
                        Verdict::Skip(reason) => Plan::Skip(reason),
                        // An update reads the service afresh, for its current version.
                        Verdict::Update => Plan::Deploy(Prefetched {
                            copy: Box::new(()),
                            asked_at: tokio::time::Instant::now(),
                        }),
                    };
                    Some(Candidate {
                        unit: UnitRef {
                            target: TargetKind::Swarm,
                            id: service.id.clone(),
                        },
                        name: service.name().to_owned(),
                        plan,
                    })
                })
                .collect();
            Ok(Some(candidates))
        })
    }

    fn summary(&self) -> ScanSummary {
        self.summary.clone()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn service(image: &str, label: Option<&str>) -> Service {
        let labels = label.map_or(json!({}), |value| json!({ "deployer.allowUpdates": value }));
        serde_json::from_value(json!({
            "ID": "s1",
            "Version": { "Index": 12 },
            "Spec": { "Name": "web", "Labels": labels,
                      "TaskTemplate": { "ContainerSpec": { "Image": image } } }
        }))
        .unwrap()
    }

    fn rule() -> MatchSettings {
        MatchSettings {
            default_opt_in: false,
            label_name: "deployer.allowUpdates".into(),
        }
    }

    const DIGEST: &str = "sha256:0123456789012345678901234567890123456789012345678901234567890123";

    #[test]
    fn a_pinned_service_matches_on_its_tag_and_a_digest_alone_never_does() {
        let pushed = ImageRef::parse("localhost:5000/myorg/app:latest").unwrap();
        let pinned = format!("localhost:5000/myorg/app:latest@{DIGEST}");
        assert_eq!(
            judge(&service(&pinned, Some("true")), &pushed, &rule()),
            Verdict::Update
        );
        assert_eq!(
            judge(
                &service("localhost:5000/myorg/app", Some("true")),
                &pushed,
                &rule()
            ),
            Verdict::Update
        );
        let by_digest = format!("localhost:5000/myorg/app@{DIGEST}");
        assert_eq!(
            judge(&service(&by_digest, Some("true")), &pushed, &rule()),
            Verdict::NotRunning
        );
        assert_eq!(
            judge(
                &service("localhost:5000/myorg/app:other", Some("true")),
                &pushed,
                &rule()
            ),
            Verdict::NotRunning
        );
    }

    #[test]
    fn only_services_labelled_true_are_updated_by_default() {
        let pushed = ImageRef::parse("myorg/app:1").unwrap();
        assert!(matches!(
            judge(&service("myorg/app:1", None), &pushed, &rule()),
            Verdict::Skip(_)
        ));
        assert!(matches!(
            judge(&service("myorg/app:1", Some("false")), &pushed, &rule()),
            Verdict::Skip(_)
        ));
        assert_eq!(
            judge(&service("myorg/app:1", Some("TRUE")), &pushed, &rule()),
            Verdict::Update
        );
    }

    #[test]
    fn the_recorded_service_is_read() {
        let recorded: Service = serde_json::from_str(include_str!(
            "../../../fixtures/docker/swarm-service-inspect-before-update.json"
        ))
        .map(|services: Vec<Service>| services.into_iter().next().unwrap())
        .unwrap();
        assert_eq!(recorded.name(), "web");
        assert_eq!(recorded.label("deployer.allowUpdates"), Some("true"));
        let pushed = ImageRef::parse("localhost:5000/myorg/app:latest").unwrap();
        assert_eq!(judge(&recorded, &pushed, &rule()), Verdict::Update);
    }
}
