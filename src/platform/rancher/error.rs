use serde::Deserialize;

/// A client's error, whichever client made the request.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A Rancher request that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum RancherError {
    /// No HTTP answer: connection refused, DNS, TLS, timeout.
    #[error("could not reach Rancher ({what}): {}", describe_transport_error(.source))]
    Transport {
        /// What was being done, e.g. `listing services`.
        what: String,
        /// The client's error, without the URL (which may hold credentials).
        source: BoxError,
    },
    /// Rancher answered with an error status.
    #[error("{}", describe_api_error(.status, .code.as_deref(), .field_name.as_deref(), .message.as_deref(), .what))]
    Api {
        /// What was being done.
        what: String,
        /// HTTP status.
        status: u16,
        /// Rancher's `code`, e.g. `ActionNotAvailable`.
        code: Option<String>,
        /// Rancher's `fieldName`: for validation errors this holds the human-readable reason.
        field_name: Option<String>,
        /// Rancher's `message`.
        message: Option<String>,
    },
    /// Rancher answered with a redirect, which is never followed with credentials.
    #[error(
        "Rancher redirected ({what}) to {location}; set RANCHER_HOST to the address Rancher redirects to"
    )]
    Redirect {
        /// What was being done.
        what: String,
        /// The `Location` header.
        location: String,
    },
    /// The answer was longer than autoredeploy reads; the rest of it was not read.
    #[error(
        "Rancher sent an answer larger than {} MiB ({what}), far more than a service takes; it \
         was not read further. Check that RANCHER_HOST leads to the Rancher API itself",
        .limit >> 20
    )]
    TooLarge {
        /// What was being done.
        what: String,
        /// The bound, in bytes.
        limit: usize,
    },
    /// The answer was not the JSON document expected.
    #[error("Rancher sent an unreadable answer ({what}): {reason}")]
    Decode {
        /// What was being done.
        what: String,
        /// What was wrong with it.
        reason: String,
    },
}

/// The error and its causes, `: `-separated: a client's own text ("error sending request")
/// says little without them.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        text.push_str(&format!(": {error}"));
        cause = error.source();
    }
    text
}

/// The error with its causes, and a hint when Rancher's certificate was not trusted.
fn describe_transport_error(error: &BoxError) -> String {
    let text = with_causes(error.as_ref());
    if text.contains("certificate") {
        format!(
            "{text}; if Rancher's certificate comes from a private CA, name its PEM file in \
             RANCHER_CA_FILE"
        )
    } else {
        text
    }
}

fn describe_api_error(
    status: &u16,
    code: Option<&str>,
    field_name: Option<&str>,
    message: Option<&str>,
    what: &str,
) -> String {
    let mut text = format!("Rancher answered {status}");
    if let Some(code) = code {
        text.push_str(&format!(" {code}"));
    }
    let details: Vec<&str> = [field_name, message].into_iter().flatten().collect();
    if !details.is_empty() {
        text.push_str(&format!(" ({})", details.join(": ")));
    }
    text.push_str(&format!(" while {what}"));
    if matches!(status, 401 | 403) {
        text.push_str(
            "; check RANCHER_API_KEY/RANCHER_API_SECRET (or CATTLE_ACCESS_KEY/CATTLE_SECRET_KEY) \
             and that the key belongs to this environment",
        );
    }
    text
}

/// Rancher's error body: `{"type":"error","status":422,"code":"ActionNotAvailable",
/// "message":null,"detail":null,"fieldName":"action"}`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody {
    code: Option<String>,
    message: Option<String>,
    field_name: Option<String>,
}

impl RancherError {
    /// Builds the error for a non-success answer from its status and body.
    pub fn from_response(what: &str, status: u16, body: &[u8]) -> Self {
        let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
        let (code, message, field_name) = match parsed {
            Some(body) => (body.code, body.message, body.field_name),
            None => (None, None, None),
        };
        Self::Api {
            what: what.to_owned(),
            status,
            code,
            field_name,
            message,
        }
    }

    /// The HTTP status, when Rancher answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Rancher's error `code`, when it sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// Whether trying again later may succeed: transport errors, 409 Conflict and 5xx.
    /// 4xx answers (422 above all) are permanent for the request that caused them.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport { .. } => true,
            Self::Api { status, .. } => *status == 409 || *status >= 500,
            Self::Redirect { .. } | Self::TooLarge { .. } | Self::Decode { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_errors_carry_the_reason_from_field_name() {
        let body = br#"{"id":"x","type":"error","links":{},"actions":{},"status":422,"code":"InvalidOption","message":null,"detail":null,"fieldName":"StartFirst option can't be used for service with retainIp field set"}"#;
        let error = RancherError::from_response("upgrading service 1s3", 422, body);
        assert_eq!(error.status(), Some(422));
        assert_eq!(error.code(), Some("InvalidOption"));
        assert!(!error.is_retryable());
        assert_eq!(
            error.to_string(),
            "Rancher answered 422 InvalidOption (StartFirst option can't be used for service with \
             retainIp field set) while upgrading service 1s3"
        );
    }

    #[test]
    fn authentication_errors_say_what_to_check() {
        let error = RancherError::from_response("listing services", 401, b"not json");
        assert!(error.to_string().contains("check RANCHER_API_KEY"));
        assert!(!error.is_retryable());
    }

    #[test]
    fn conflicts_and_server_errors_are_retryable() {
        for status in [409, 500, 502, 503] {
            assert!(
                RancherError::from_response("x", status, b"{}").is_retryable(),
                "{status}"
            );
        }
        assert!(!RancherError::from_response("x", 404, b"{}").is_retryable());
    }
}
