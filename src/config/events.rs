//! Who is told what happened: the notification channels, when they fire, how long a
//! delivery is retried, the Docker Hub callback, and the key of `/metrics`.
//!
//! Every notification URL is a secret (Slack's, Teams' and Discord's carry their token):
//! no message here shows one, only the variable's name.

use std::time::Duration;

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::ConfigError;
use super::server::signing_secret;
use super::vars::EventVars;

/// Where notifications go, when they fire, and how callers are told.
#[derive(Debug, Clone)]
pub struct EventSettings {
    /// The channels notifications are sent to.
    pub channels: Channels,
    /// Which jobs notify (`AUTOREDEPLOY_NOTIFY_ON`).
    pub notify_on: NotifyOn,
    /// How long a notification or callback is retried before it is dropped
    /// (`AUTOREDEPLOY_NOTIFY_RETRY_FOR`).
    pub retry_for: Duration,
    /// The origins a Docker Hub `callback_url` may point at (`AUTOREDEPLOY_CALLBACK_ORIGINS`).
    pub callback_origins: Vec<url::Origin>,
    /// Where autoredeploy's own routes are reached from outside, for the `target_url` of a
    /// callback (`AUTOREDEPLOY_PUBLIC_URL`).
    pub public_url: Option<Url>,
    /// The key `GET /metrics` asks for; without it the route answers `404`
    /// (`AUTOREDEPLOY_METRICS_KEY`).
    pub metrics_key: Option<SecretString>,
}

/// The configured notification channels; none by default.
#[derive(Debug, Clone, Default)]
pub struct Channels {
    /// A Slack incoming webhook (`SLACK_WEBHOOK_URL`), and the name its messages show
    /// (`SLACK_USERNAME`).
    pub slack: Option<(SecretString, Option<String>)>,
    /// A Microsoft Teams incoming webhook (`TEAMS_WEBHOOK_URL`).
    pub teams: Option<SecretString>,
    /// A Discord webhook (`DISCORD_WEBHOOK_URL`).
    pub discord: Option<SecretString>,
    /// A generic JSON webhook (`AUTOREDEPLOY_NOTIFY_URL`).
    pub webhook: Option<SecretString>,
    /// A beanstalkd tube, as symfoni/deployer's `NOTIFY_FLAGS` configure it.
    pub beanstalk: Option<BeanstalkSettings>,
}

/// Which finished jobs send notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyOn {
    /// Jobs that upgraded, rolled back or failed something (the default).
    Changes,
    /// Jobs that failed something.
    Failures,
    /// Every job, those that matched nothing or found everything up to date included.
    All,
}

/// symfoni/deployer's beanstalkd notifier: a message per upgraded unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeanstalkSettings {
    /// `host:port` of beanstalkd.
    pub address: String,
    /// The tube the messages are put into.
    pub tube: String,
    /// The message, with `{{.Artifact}}` and `{{.ServiceName}}` to fill in.
    pub template: MessageTemplate,
}

/// A message template in Go's template syntax, limited to the two fields symfoni/deployer
/// offers: `{{.Artifact}}` (the deployed image) and `{{.ServiceName}}` (the unit's name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageTemplate(Vec<Piece>);

/// A part of a [`MessageTemplate`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// Text copied as it is.
    Text(String),
    /// `{{.Artifact}}`.
    Artifact,
    /// `{{.ServiceName}}`.
    ServiceName,
}

impl MessageTemplate {
    /// Parses `text`; an action other than the two fields is refused, with its name.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                pieces.push(Piece::Text(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after.find("}}").ok_or("a `{{` is not closed by `}}`")?;
            pieces.push(match after[..end].trim() {
                ".Artifact" => Piece::Artifact,
                ".ServiceName" => Piece::ServiceName,
                other => {
                    return Err(format!(
                        "`{{{{{other}}}}}` is not offered; the template may use {{{{.Artifact}}}} \
                         and {{{{.ServiceName}}}}"
                    ));
                }
            });
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        Ok(Self(pieces))
    }

    /// The message for `artifact` deployed to `service_name`.
    pub fn render(&self, artifact: &str, service_name: &str) -> String {
        self.0
            .iter()
            .map(|piece| match piece {
                Piece::Text(text) => text.as_str(),
                Piece::Artifact => artifact,
                Piece::ServiceName => service_name,
            })
            .collect()
    }
}

impl Channels {
    /// Whether no channel is configured.
    pub fn is_empty(&self) -> bool {
        self.slack.is_none()
            && self.teams.is_none()
            && self.discord.is_none()
            && self.webhook.is_none()
            && self.beanstalk.is_none()
    }
}

/// The Docker Hub origin a callback may go to by default.
const DOCKER_HUB_ORIGIN: &str = "https://registry.hub.docker.com";

/// Validates the event variables.
pub(super) fn validate(vars: EventVars) -> Result<EventSettings, ConfigError> {
    let slack = webhook_url("SLACK_WEBHOOK_URL", vars.slack_webhook_url)?;
    if vars.slack_username.is_some() && slack.is_none() {
        return Err(ConfigError(
            "SLACK_USERNAME is set without SLACK_WEBHOOK_URL".into(),
        ));
    }
    Ok(EventSettings {
        channels: Channels {
            slack: slack.map(|url| (url, vars.slack_username)),
            teams: webhook_url("TEAMS_WEBHOOK_URL", vars.teams_webhook_url)?,
            discord: webhook_url("DISCORD_WEBHOOK_URL", vars.discord_webhook_url)?,
            webhook: webhook_url("AUTOREDEPLOY_NOTIFY_URL", vars.autoredeploy_notify_url)?,
            beanstalk: vars.notify_flags.as_deref().map(notify_flags).transpose()?,
        },
        notify_on: match vars.autoredeploy_notify_on.as_deref().map(str::trim) {
            None | Some("changes") => NotifyOn::Changes,
            Some("failures") => NotifyOn::Failures,
            Some("all") => NotifyOn::All,
            Some(other) => {
                return Err(ConfigError::invalid(
                    "AUTOREDEPLOY_NOTIFY_ON",
                    "`changes`, `failures` or `all`",
                    other,
                ));
            }
        },
        retry_for: match vars.autoredeploy_notify_retry_for {
            None => Duration::from_secs(3600),
            Some(value) => retry_for(&value)?,
        },
        callback_origins: callback_origins(vars.autoredeploy_callback_origins.as_deref())?,
        public_url: vars
            .autoredeploy_public_url
            .as_deref()
            .map(public_url)
            .transpose()?,
        metrics_key: signing_secret("AUTOREDEPLOY_METRICS_KEY", vars.autoredeploy_metrics_key)?,
    })
}

/// A notification URL: http or https. The message never shows it.
fn webhook_url(
    variable: &str,
    value: Option<SecretString>,
) -> Result<Option<SecretString>, ConfigError> {
    let Some(value) = value else {
        return Ok(None);
    };
    match Url::parse(value.expose_secret().trim()) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
            Ok(Some(SecretString::from(url.to_string())))
        }
        _ => Err(ConfigError(format!(
            "{variable} must be an http or https URL (its value is not shown: it is a secret)"
        ))),
    }
}

/// `NOTIFY_FLAGS`: `{"addr": "host:port", "tube": "…", "template": "<base64>"}`.
fn notify_flags(value: &str) -> Result<BeanstalkSettings, ConfigError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Flags {
        addr: String,
        tube: String,
        template: String,
    }
    let invalid = |why: String| {
        ConfigError(format!(
            "NOTIFY_FLAGS must be {{\"addr\": \"host:port\", \"tube\": \"name\", \"template\": \
             \"<base64>\"}}: {why}"
        ))
    };
    let flags: Flags = serde_json::from_str(value).map_err(|error| invalid(error.to_string()))?;
    if flags
        .addr
        .rsplit_once(':')
        .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
    {
        return Err(invalid(format!("`addr` {:?} is not host:port", flags.addr)));
    }
    // beanstalkd's tube names: letters, digits and `-+/;.$_()`, not starting with `-`,
    // at most 200 bytes.
    let tube_char = |c: char| c.is_ascii_alphanumeric() || "-+/;.$_()".contains(c);
    if flags.tube.is_empty()
        || flags.tube.len() > 200
        || flags.tube.starts_with('-')
        || !flags.tube.chars().all(tube_char)
    {
        return Err(invalid(format!(
            "`tube` {:?} is not a beanstalkd tube name",
            flags.tube
        )));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(flags.template.trim())
        .map_err(|error| invalid(format!("`template` is not base64: {error}")))?;
    let text = String::from_utf8(decoded)
        .map_err(|_| invalid("`template` does not decode to UTF-8 text".into()))?;
    let template =
        MessageTemplate::parse(&text).map_err(|why| invalid(format!("`template`: {why}")))?;
    Ok(BeanstalkSettings {
        address: flags.addr,
        tube: flags.tube,
        template,
    })
}

/// `AUTOREDEPLOY_NOTIFY_RETRY_FOR`: a duration from a second to seven days.
fn retry_for(value: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(value.trim())
        .ok()
        .filter(|time| (Duration::from_secs(1)..=Duration::from_secs(7 * 86_400)).contains(time))
        .ok_or_else(|| {
            ConfigError::invalid(
                "AUTOREDEPLOY_NOTIFY_RETRY_FOR",
                "a duration from 1s to 7d, such as 1h or 30m",
                value,
            )
        })
}

/// `AUTOREDEPLOY_CALLBACK_ORIGINS`: comma-separated `scheme://host[:port]`, or `none`.
fn callback_origins(value: Option<&str>) -> Result<Vec<url::Origin>, ConfigError> {
    let value = value.unwrap_or(DOCKER_HUB_ORIGIN);
    if value.trim() == "none" {
        return Ok(Vec::new());
    }
    super::vars::list(Some(value))
        .map(|entry| {
            Url::parse(entry)
                .ok()
                .filter(|url| {
                    matches!(url.scheme(), "http" | "https")
                        && url.host().is_some()
                        && url.path() == "/"
                        && url.query().is_none()
                        && url.username().is_empty()
                })
                .map(|url| url.origin())
                .ok_or_else(|| {
                    ConfigError::invalid(
                        "AUTOREDEPLOY_CALLBACK_ORIGINS",
                        "comma-separated origins such as https://registry.hub.docker.com, or `none`",
                        entry,
                    )
                })
        })
        .collect()
}

/// `AUTOREDEPLOY_PUBLIC_URL`: the http or https URL autoredeploy is reached at, kept with
/// a trailing `/` so that routes are joined below its path.
fn public_url(value: &str) -> Result<Url, ConfigError> {
    Url::parse(value.trim())
        .ok()
        .map(|mut url| {
            if !url.path().ends_with('/') {
                let path = format!("{}/", url.path());
                url.set_path(&path);
            }
            url
        })
        .filter(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
        .filter(|url| url.query().is_none() && url.username().is_empty())
        .ok_or_else(|| {
            ConfigError::invalid(
                "AUTOREDEPLOY_PUBLIC_URL",
                "the http or https URL autoredeploy is reached at, such as \
                 https://deploy.example.com",
                value,
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symfoni_deployer_s_own_template_renders_its_message() {
        // The example of symfoni/deployer's README, as its users have it configured.
        let flags = r#"{"addr": "beanstalk:11300", "tube": "jobs", "template": "IkkganVzdCBkZXBsb3llZCB7ey5BcnRpZmFjdH19IGZvciB7ey5TZXJ2aWNlTmFtZX19"}"#;
        let settings = notify_flags(flags).unwrap();
        assert_eq!(settings.address, "beanstalk:11300");
        assert_eq!(settings.tube, "jobs");
        assert_eq!(
            settings.template.render("me/blog:v1.12", "blog"),
            "\"I just deployed me/blog:v1.12 for blog"
        );
    }

    #[test]
    fn templates_take_spaces_inside_actions_and_refuse_other_fields() {
        let template = MessageTemplate::parse("{{ .ServiceName }}={{.Artifact}}!").unwrap();
        assert_eq!(template.render("a:1", "web"), "web=a:1!");
        let refused = MessageTemplate::parse("{{.Image}}").unwrap_err();
        assert!(refused.contains("{{.Image}}"), "{refused}");
        assert!(MessageTemplate::parse("{{.Artifact").is_err());
    }

    #[test]
    fn bad_notify_flags_are_refused_with_what_is_wrong() {
        let template = base64::engine::general_purpose::STANDARD.encode("{{.Artifact}}");
        for (flags, expected) in [
            ("{", "NOTIFY_FLAGS must be"),
            (
                r#"{"addr": "beanstalk", "tube": "jobs", "template": ""}"#,
                "host:port",
            ),
            (
                r#"{"addr": "b:11300", "tube": "a b", "template": ""}"#,
                "tube name",
            ),
            (
                r#"{"addr": "b:11300", "tube": "jobs", "template": "%%"}"#,
                "not base64",
            ),
        ] {
            let refused = notify_flags(flags).unwrap_err().to_string();
            assert!(refused.contains(expected), "{flags}: {refused}");
        }
        let flags = format!(r#"{{"addr": "b:11300", "tube": "jobs", "template": "{template}"}}"#);
        assert!(notify_flags(&flags).is_ok());
    }

    #[test]
    fn a_bad_notification_url_is_refused_without_showing_it() {
        let refused = webhook_url(
            "SLACK_WEBHOOK_URL",
            Some("ftp://hooks/T000/secret-part".into()),
        )
        .unwrap_err()
        .to_string();
        assert!(refused.contains("SLACK_WEBHOOK_URL"), "{refused}");
        assert!(!refused.contains("secret-part"), "{refused}");
    }

    #[test]
    fn routes_are_joined_below_the_public_url_s_path() {
        for given in ["https://example.com/deploy", "https://example.com/deploy/"] {
            let url = public_url(given).unwrap();
            assert_eq!(
                url.join("jobs/7").unwrap().as_str(),
                "https://example.com/deploy/jobs/7"
            );
        }
        assert!(public_url("ftp://example.com").is_err());
    }

    #[test]
    fn callback_origins_default_to_docker_hub_and_can_be_turned_off() {
        let origins = callback_origins(None).unwrap();
        assert_eq!(
            origins,
            [Url::parse("https://registry.hub.docker.com")
                .unwrap()
                .origin()]
        );
        assert!(callback_origins(Some("none")).unwrap().is_empty());
        assert!(callback_origins(Some("https://hub.example.com/path")).is_err());
        assert_eq!(
            callback_origins(Some("http://127.0.0.1:8080, https://b.example"))
                .unwrap()
                .len(),
            2
        );
    }
}
