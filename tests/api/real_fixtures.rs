//! Parses every recorded real document in `../shared/fixtures/real` (the `shared` folder
//! next to the repository's). Without that folder the test is skipped loudly, or fails under
//! CI.

use std::path::PathBuf;

use autoredeploy::config::{MatchSettings, UpgradeSettings};
use autoredeploy::domain::ImageRef;
use autoredeploy::intake::sources::dockerhub::parse_push;
use autoredeploy::platform::rancher::matching::{self, Targets, Verdict};
use autoredeploy::platform::rancher::request::upgrade_request;
use autoredeploy::platform::rancher::{LaunchConfigView, RancherError, Service, ServicePage};
use serde_json::Value;

use crate::helpers::skip_unless_ci;

/// The recorded real documents (`*.json`) of `shared/fixtures/real` in the folder that holds
/// this repository, sorted by name; `None` once the test has been skipped because the folder
/// is not there (under CI that fails instead).
fn real_fixtures() -> Option<Vec<(String, Vec<u8>)>> {
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/real");
    let entries = match std::fs::read_dir(&folder) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            skip_unless_ci(&format!(
                "the recorded real documents are missing: {} does not exist \
                 (shared/fixtures/real must sit next to the repository's folder)",
                folder.display()
            ));
            return None;
        }
        Err(error) => panic!("cannot read {}: {error}", folder.display()),
    };
    let mut files: Vec<(String, Vec<u8>)> = entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "{} holds no recorded document (*.json)",
        folder.display()
    );
    Some(files)
}

fn rule() -> MatchSettings {
    MatchSettings {
        default_opt_in: true,
        label_name: "tech.manas.service.autoredeploy".into(),
    }
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn every_real_document_is_understood() {
    let Some(files) = real_fixtures() else { return };
    for (name, bytes) in &files {
        match name.as_str() {
            n if n.starts_with("dockerhub-webhook-push") => check_push(n, bytes),
            "dockerhub-webhook-callback-success.json" => {
                assert!(parse_push(bytes).is_err(), "a callback is not a push");
            }
            n if n.ends_with("-services-collection.json") => check_collection(n, bytes),
            n if n.starts_with("rancher-v1-service-") => check_service(n, bytes),
            n if n.contains("-error-") => check_error(n, bytes),
            n if n.contains("-schema-") => check_schema(n, bytes),
            "rancher-v1-upgrade-request.json" => check_upgrade_request(bytes, &files),
            other => panic!("{other}: a real fixture without a parser test"),
        }
    }
}

fn check_push(name: &str, bytes: &[u8]) {
    let event = parse_push(bytes).unwrap_or_else(|err| panic!("{name}: {err}"));
    let document = json(bytes);
    let repo = document["repository"]["repo_name"].as_str().unwrap();
    let tag = document["push_data"]["tag"].as_str().unwrap_or("latest");
    let expected = ImageRef::parse(&format!("{repo}:{tag}")).unwrap();
    assert_eq!(event.image, expected, "{name}");
    if repo == "busybox" {
        assert_eq!(event.image.to_string(), "docker.io/library/busybox:latest");
    }
}

fn check_collection(name: &str, bytes: &[u8]) {
    let page = ServicePage::decode(bytes).unwrap_or_else(|err| panic!("{name}: {err}"));
    let document = json(bytes);
    assert_eq!(
        page.services.len(),
        document["data"].as_array().unwrap().len(),
        "{name}"
    );
    assert!(page.skipped.is_empty(), "{name}: {:?}", page.skipped);
    assert_eq!(page.end.limit, document["pagination"]["limit"].as_u64());
    match document["pagination"]["next"].as_str() {
        Some(_) => assert_eq!(page.end.next_marker.as_deref(), Some("m4"), "{name}"),
        None => assert_eq!(page.end.next_marker, None, "{name}"),
    }
    for service in &page.services {
        let image = primary_image(service);
        assert!(
            matches!(
                matching::judge(service, &image, &rule()),
                Verdict::Upgrade(_)
            ),
            "{name}: {}",
            service.id
        );
    }
}

fn check_service(name: &str, bytes: &[u8]) {
    let service = Service::decode(bytes).unwrap_or_else(|err| panic!("{name}: {err}"));
    let document = json(bytes);
    assert_eq!(service.state, document["state"].as_str().unwrap(), "{name}");
    assert_eq!(
        service.actions.upgrade,
        document["actions"].get("upgrade").is_some(),
        "{name}"
    );
    assert_eq!(
        service.actions.finishupgrade,
        document["actions"].get("finishupgrade").is_some(),
        "{name}"
    );
    assert_eq!(
        service.is_transitioning(),
        document["transitioning"] == "yes",
        "{name}"
    );
    let verdict = matching::judge(&service, &primary_image(&service), &rule());
    assert!(
        matches!(verdict, Verdict::Upgrade(Targets { primary: true, .. })),
        "{name}: {verdict:?}"
    );
}

fn check_error(name: &str, bytes: &[u8]) {
    let document = json(bytes);
    let status = document["status"].as_u64().unwrap() as u16;
    let error = RancherError::from_response("testing", status, bytes);
    assert_eq!(error.status(), Some(status), "{name}");
    assert_eq!(error.code(), document["code"].as_str(), "{name}");
    if let Some(field) = document["fieldName"].as_str() {
        assert!(error.to_string().contains(field), "{name}: {error}");
    }
}

/// The fields autoredeploy sends must exist in Rancher's schemas and be settable on create.
fn check_schema(name: &str, bytes: &[u8]) {
    let document = json(bytes);
    let fields = &document["resourceFields"];
    let creatable = |field: &str| fields[field]["create"] == true;
    match document["id"].as_str().unwrap() {
        "inServiceUpgradeStrategy" => {
            for field in [
                "launchConfig",
                "secondaryLaunchConfigs",
                "batchSize",
                "intervalMillis",
                "startFirst",
            ] {
                assert!(creatable(field), "{name}: {field}");
            }
            assert_eq!(fields["batchSize"]["min"], 1, "{name}");
            assert_eq!(fields["intervalMillis"]["min"], 100, "{name}");
        }
        "serviceUpgrade" => {
            assert!(
                creatable("inServiceStrategy") && creatable("toServiceStrategy"),
                "{name}"
            );
        }
        "launchConfig" => {
            assert!(creatable("imageUuid") && creatable("labels"), "{name}");
            assert_eq!(
                fields["version"]["create"], false,
                "{name}: the server drops a sent version"
            );
        }
        "service" => {
            let actions = document["resourceActions"].as_object().unwrap();
            assert!(
                actions.contains_key("upgrade") && actions.contains_key("finishupgrade"),
                "{name}"
            );
            assert!(
                fields.get("launchConfig").is_some()
                    && fields.get("secondaryLaunchConfigs").is_some(),
                "{name}"
            );
        }
        other => panic!("{name}: schema {other} is not checked"),
    }
}

/// Our request for the recorded active service has the shape of the recorded request.
fn check_upgrade_request(bytes: &[u8], files: &[(String, Vec<u8>)]) {
    let recorded = json(bytes);
    let (_, active) = files
        .iter()
        .find(|(n, _)| n == "rancher-v1-service-active.json")
        .unwrap();
    let service = Service::decode(active).unwrap();
    let settings = UpgradeSettings {
        batch_size: 1,
        interval_ms: 2000,
        start_first: false,
        poll_interval: std::time::Duration::from_secs(1),
        timeout: std::time::Duration::from_secs(1),
        finish: true,
        on_failure: autoredeploy::config::OnFailure::Rollback,
    };
    let targets = Targets {
        primary: true,
        sidekicks: vec![],
    };
    let ours =
        serde_json::to_value(upgrade_request(&service, &targets, &settings).unwrap()).unwrap();
    let keys = |v: &Value| {
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(keys(&ours), keys(&recorded));
    assert_eq!(
        keys(&ours["inServiceStrategy"]),
        keys(&recorded["inServiceStrategy"])
    );
    let (sent, expected) = (
        &ours["inServiceStrategy"]["launchConfig"],
        &recorded["inServiceStrategy"]["launchConfig"],
    );
    assert_eq!(keys(sent), keys(expected));
    assert_eq!(sent["labels"], expected["labels"]);
}

/// The image a service's primary launch config runs, as a push would name it.
fn primary_image(service: &Service) -> ImageRef {
    let view = LaunchConfigView::read(service.launch_config.as_ref().unwrap()).unwrap();
    autoredeploy::platform::rancher::matching::image_of_uuid(&view.image_uuid.unwrap()).unwrap()
}
