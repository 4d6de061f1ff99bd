//! The settings read end to end, through [`Settings::from_vars`].

use secrecy::ExposeSecret;

use super::*;

pub(super) fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(super) fn minimal() -> Vec<(String, String)> {
    vars(&[
        ("DOCKER_HUB_KEY", "hub-secret-value"),
        ("RANCHER_HOST", "rancher.example.com:8080"),
        ("RANCHER_PROJECT_ID", "1a5"),
        ("RANCHER_API_KEY", "ACCESSKEY"),
        ("RANCHER_API_SECRET", "rancher-secret-value"),
    ])
}

pub(super) fn with(extra: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let mut all: Vec<_> = minimal()
        .into_iter()
        .filter(|(name, _)| !extra.iter().any(|(replaced, _)| replaced == name))
        .collect();
    all.extend(vars(extra));
    Settings::from_vars(all)
}

/// The Rancher target, which every test here configures.
fn rancher(settings: &Settings) -> &RancherTarget {
    settings
        .targets
        .rancher
        .as_ref()
        .expect("the Rancher target is used")
}

pub(super) fn error_of(result: Result<Settings, ConfigError>) -> String {
    result.expect_err("settings should be refused").to_string()
}

#[test]
fn defaults_match_the_original_program() {
    let settings = Settings::from_vars(minimal()).unwrap();
    assert_eq!(settings.listen_address().to_string(), "0.0.0.0:8080");
    assert!(rancher(&settings).matching.default_opt_in);
    assert_eq!(
        rancher(&settings).matching.label_name,
        "tech.manas.service.autoredeploy"
    );
    assert_eq!(
        rancher(&settings).connection.api_base.as_str(),
        "http://rancher.example.com:8080/v1"
    );
    assert_eq!(
        rancher(&settings).connection.services_url.as_str(),
        "http://rancher.example.com:8080/v1/projects/1a5/services"
    );
    assert_eq!(rancher(&settings).upgrade.batch_size, 1);
    assert_eq!(rancher(&settings).upgrade.interval_ms, 2000);
    assert!(!rancher(&settings).upgrade.start_first);
    assert!(rancher(&settings).upgrade.finish);
}

#[test]
fn rancher_host_forms() {
    let base = |host: &str| {
        rancher(&with(&[("RANCHER_HOST", host)]).unwrap())
            .connection
            .api_base
            .to_string()
    };
    assert_eq!(base("10.0.0.5"), "http://10.0.0.5/v1");
    assert_eq!(
        base("https://rancher.example.com"),
        "https://rancher.example.com/v1"
    );
    assert_eq!(
        base("https://rancher.example.com/v2-beta/"),
        "https://rancher.example.com/v2-beta"
    );
    assert_eq!(
        base("http://proxy.local/rancher/v1"),
        "http://proxy.local/rancher/v1"
    );
    assert!(error_of(with(&[("RANCHER_HOST", "ftp://x")])).contains("RANCHER_HOST"));
    let leaked = error_of(with(&[("RANCHER_HOST", "https://user:topsecret@x")]));
    assert!(
        leaked.contains("RANCHER_HOST") && !leaked.contains("topsecret"),
        "{leaked}"
    );
}

#[test]
fn without_project_id_the_environment_scoped_collection_is_used() {
    let settings = Settings::from_vars(
        minimal()
            .into_iter()
            .filter(|(k, _)| k != "RANCHER_PROJECT_ID"),
    )
    .unwrap();
    assert_eq!(
        rancher(&settings).connection.services_url.as_str(),
        "http://rancher.example.com:8080/v1/services"
    );
    assert!(error_of(with(&[("RANCHER_PROJECT_ID", "../admin")])).contains("RANCHER_PROJECT_ID"));
}

#[test]
fn cattle_variables_stand_in_for_missing_rancher_ones() {
    let settings = Settings::from_vars(vars(&[
        ("DOCKER_HUB_KEY", "hub-secret-value"),
        ("CATTLE_URL", "http://rancher-server:8080/v1"),
        ("CATTLE_ACCESS_KEY", "AGENTKEY"),
        ("CATTLE_SECRET_KEY", "agent-secret"),
    ]))
    .unwrap();
    assert_eq!(
        rancher(&settings).connection.services_url.as_str(),
        "http://rancher-server:8080/v1/services"
    );
    assert_eq!(rancher(&settings).connection.access_key, "AGENTKEY");
    assert_eq!(
        rancher(&settings).connection.secret_key.expose_secret(),
        "agent-secret"
    );
}

#[test]
fn missing_required_values_name_the_variable() {
    let without = |name: &str| {
        error_of(Settings::from_vars(
            minimal().into_iter().filter(|(k, _)| k != name),
        ))
    };
    assert!(without("DOCKER_HUB_KEY").contains("DOCKER_HUB_KEY"));
    assert!(without("RANCHER_HOST").contains("RANCHER_HOST"));
    assert!(without("RANCHER_API_SECRET").contains("RANCHER_API_SECRET"));
    assert!(without("RANCHER_API_KEY").contains("RANCHER_API_KEY"));
    assert!(error_of(with(&[("DOCKER_HUB_KEY", "")])).contains("DOCKER_HUB_KEY"));
}

#[test]
fn malformed_values_name_the_variable_and_the_expectation() {
    for (name, value) in [
        ("BIND_PORT", "eighty"),
        ("BIND_PORT", "70000"),
        ("BIND_ADDRESS", "localhost:80"),
        ("RANCHER_AUTOREDEPLOY_DEFAULT", "yes"),
        ("RANCHER_UPGRADE_BATCH_SIZE", "0"),
        ("RANCHER_UPGRADE_INTERVAL_MS", "50"),
        ("RANCHER_UPGRADE_START_FIRST", "1"),
        ("RANCHER_UPGRADE_POLL_MS", "-5"),
        ("RANCHER_UPGRADE_TIMEOUT_S", "soon"),
        ("RANCHER_FINISH_UPGRADE", "maybe"),
        ("AUTOREDEPLOY_QUEUE_SIZE", "0"),
        ("AUTOREDEPLOY_LOG_FORMAT", "xml"),
        ("AUTOREDEPLOY_HISTORY_DAYS", "0"),
        ("RANCHER_UPGRADE_ON_FAILURE", "panic"),
        ("RANCHER_RETRY_ATTEMPTS", "many"),
        ("RANCHER_RETRY_TOTAL_S", "0"),
        ("AUTOREDEPLOY_TRUSTED_PROXIES", "10.0.0.0/33"),
        ("AUTOREDEPLOY_ALLOWED_REPOS", "myorg/[web"),
        ("AUTOREDEPLOY_REGISTRY_ALIASES", "registry.internal:5000"),
        ("AUTOREDEPLOY_RECHECK_INTERVAL", "daily"),
        ("AUTOREDEPLOY_RECHECK_INTERVAL", "0s"),
        ("AUTOREDEPLOY_RECHECK_INTERVAL", "40d"),
        ("AUTOREDEPLOY_REGISTRY_ALIASES", "a.example.com=Bad Host"),
        (
            "AUTOREDEPLOY_REGISTRY_ALIASES",
            "a.example.com=a.example.com",
        ),
        ("AUTOREDEPLOY_AUTH_FAILURES_PER_MINUTE", "0"),
        ("AUTOREDEPLOY_MAX_CONNECTIONS", "0"),
        ("RANCHER_LIST_CONCURRENCY", "0"),
        ("RANCHER_MAX_CONCURRENT_REQUESTS", "0"),
        ("AUTOREDEPLOY_READ_TIMEOUT_S", "0"),
    ] {
        let message = error_of(with(&[(name, value)]));
        assert!(
            message.contains(name) && message.contains(value),
            "{message}"
        );
    }
}

#[test]
fn signing_secrets_must_resist_guessing() {
    for name in ["GITHUB_WEBHOOK_SECRET", "GITEA_WEBHOOK_SECRET"] {
        let refused = error_of(with(&[(name, "short-secret")]));
        assert!(refused.contains(name), "{refused}");
        assert!(!refused.contains("short-secret"), "{refused}");
    }
    let given = with(&[("GITHUB_WEBHOOK_SECRET", "a-long-enough-secret")]).unwrap();
    assert!(given.signing_secrets.github.is_some() && given.signing_secrets.gitea.is_none());
}

#[test]
fn the_recheck_is_off_unless_an_interval_is_given() {
    assert_eq!(with(&[]).unwrap().deploy.recheck_interval, None);
    let daily = with(&[("AUTOREDEPLOY_RECHECK_INTERVAL", "24h")]).unwrap();
    assert_eq!(
        daily.deploy.recheck_interval,
        Some(Duration::from_secs(86_400))
    );
}

#[test]
fn registry_aliases_are_pairs_of_hosts() {
    let settings = with(&[(
        "AUTOREDEPLOY_REGISTRY_ALIASES",
        " registry.internal:5000 = Registry.Example.com , localhost:5000=127.0.0.1:5000",
    )])
    .unwrap();
    assert_eq!(
        settings.access.registry_aliases,
        [
            (
                "registry.internal:5000".to_owned(),
                "registry.example.com".to_owned()
            ),
            ("localhost:5000".to_owned(), "127.0.0.1:5000".to_owned()),
        ]
    );
}

#[test]
fn secrets_can_come_from_files_without_their_trailing_newline() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("hub-key");
    std::fs::write(&key_file, "from-a-file-0123456789\n").unwrap();
    let secret_file = dir.path().join("rancher-secret");
    std::fs::write(&secret_file, "rancher-secret-in-file\r\n").unwrap();
    let settings = Settings::from_vars(
        minimal()
            .into_iter()
            .filter(|(k, _)| k != "DOCKER_HUB_KEY" && k != "RANCHER_API_SECRET")
            .chain(vars(&[
                ("DOCKER_HUB_KEY_FILE", key_file.to_str().unwrap()),
                ("RANCHER_API_SECRET_FILE", secret_file.to_str().unwrap()),
            ])),
    )
    .unwrap();
    assert_eq!(
        settings.webhook_keys[0].expose_secret(),
        "from-a-file-0123456789"
    );
    assert_eq!(
        rancher(&settings).connection.secret_key.expose_secret(),
        "rancher-secret-in-file"
    );

    let both = error_of(with(&[("DOCKER_HUB_KEY_FILE", key_file.to_str().unwrap())]));
    assert!(
        both.contains("DOCKER_HUB_KEY or DOCKER_HUB_KEY_FILE, not both"),
        "{both}"
    );
    let missing = error_of(Settings::from_vars(
        minimal()
            .into_iter()
            .filter(|(k, _)| k != "RANCHER_API_SECRET")
            .chain(vars(&[("RANCHER_API_SECRET_FILE", "/nonexistent/secret")])),
    ));
    assert!(
        missing.contains("RANCHER_API_SECRET_FILE") && missing.contains("/nonexistent/secret"),
        "{missing}"
    );
}

#[test]
fn several_keys_rotate_and_short_ones_are_refused() {
    let settings = with(&[(
        "DOCKER_HUB_KEY",
        "old-key-0123456789abcdef, new-key-0123456789abcdef",
    )])
    .unwrap();
    let keys: Vec<&str> = settings
        .webhook_keys
        .iter()
        .map(|k| k.expose_secret())
        .collect();
    assert_eq!(
        keys,
        ["old-key-0123456789abcdef", "new-key-0123456789abcdef"]
    );
    for short in [
        "shortkey",
        "long-enough-key-0123,short",
        "long-enough-key-0123,",
    ] {
        let refused = error_of(with(&[("DOCKER_HUB_KEY", short)]));
        assert!(
            refused.contains("at least 16 characters") && refused.contains("openssl rand"),
            "{refused}"
        );
        assert!(
            !refused.contains("shortkey") && !refused.contains("long-enough"),
            "{refused}"
        );
    }
}

#[test]
fn a_ca_file_must_hold_pem_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("ca.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let refused = error_of(with(&[("RANCHER_CA_FILE", garbage.to_str().unwrap())]));
    assert!(
        refused.contains("RANCHER_CA_FILE") && refused.contains("no PEM certificate"),
        "{refused}"
    );
    let missing = error_of(with(&[("RANCHER_CA_FILE", "/nonexistent/ca.pem")]));
    assert!(
        missing.contains("RANCHER_CA_FILE: cannot read /nonexistent/ca.pem"),
        "{missing}"
    );
    let insecure = with(&[("RANCHER_INSECURE_SKIP_VERIFY", "true")]).unwrap();
    assert!(rancher(&insecure).connection.insecure_skip_verify);
}

#[test]
fn debug_output_redacts_every_secret() {
    let settings = Settings::from_vars(minimal()).unwrap();
    let debug = format!("{settings:?}");
    assert!(!debug.contains("hub-secret-value"), "{debug}");
    assert!(!debug.contains("rancher-secret-value"), "{debug}");
    assert!(debug.contains("ACCESSKEY"));
}

#[test]
fn the_listen_address_alone_is_read_as_the_settings_read_it() {
    let bind = [("BIND_ADDRESS", "127.0.0.1"), ("BIND_PORT", "9000")];
    let settings = with(&bind).unwrap();
    assert_eq!(
        listen_address_from_vars(vars(&bind)).unwrap(),
        settings.listen_address()
    );
    assert_eq!(
        listen_address_from_vars(vars(&[])).unwrap(),
        Settings::from_vars(minimal()).unwrap().listen_address()
    );
    assert_eq!(
        error_of(with(&[("BIND_PORT", "70000")])),
        listen_address_from_vars(vars(&[("BIND_PORT", "70000")]))
            .unwrap_err()
            .to_string()
    );
}
