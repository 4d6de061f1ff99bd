//! Logging: `tracing` to standard output, as text or JSON lines, filtered by `RUST_LOG`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. The filter comes from `RUST_LOG`, else from the
/// original program's `LOG_SEVERITY`, else `info`.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        let level = std::env::var("LOG_SEVERITY")
            .ok()
            .map(|severity| severity.to_ascii_lowercase())
            .map(|level| {
                if level == "fatal" {
                    "error".into()
                } else {
                    level
                }
            })
            .filter(|level| ["error", "warn", "info", "debug", "trace"].contains(&level.as_str()))
            .unwrap_or_else(|| "info".to_owned());
        EnvFilter::new(level)
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        // Colour codes only for a terminal, not for `docker logs` or a log shipper.
        .with_ansi(std::io::stdout().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
