//! How `vip` logs: the level (`vip_loglevel`, kube-vip's slog numbers or
//! the names) and the format (`vip_logformat`, `vip`'s own).

use super::{ConfigError, Sources, invalid};

/// How much to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Everything useful for debugging.
    Debug,
    /// State changes.
    Info,
    /// Problems only.
    Warn,
    /// Errors only.
    Error,
}

impl LogLevel {
    /// The tracing filter directive.
    pub fn directive(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }

    /// The most verbose level logged.
    pub fn level_filter(self) -> tracing::level_filters::LevelFilter {
        use tracing::level_filters::LevelFilter;
        match self {
            Self::Debug => LevelFilter::DEBUG,
            Self::Info => LevelFilter::INFO,
            Self::Warn => LevelFilter::WARN,
            Self::Error => LevelFilter::ERROR,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `vip_loglevel`: kube-vip's slog numbers, or the names (default info).
pub(super) fn log_level(sources: &Sources) -> Result<LogLevel, ConfigError> {
    Ok(match sources.get("vip_loglevel") {
        None => LogLevel::Info,
        Some(v) => match v.to_ascii_lowercase().as_str() {
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "warn" | "warning" => LogLevel::Warn,
            "error" => LogLevel::Error,
            other => match other.parse::<i32>() {
                // kube-vip's slog levels since v0.9.0.
                Ok(n) if n <= -4 => LogLevel::Debug,
                Ok(n) if n < 4 => LogLevel::Info,
                Ok(n) if n < 8 => LogLevel::Warn,
                Ok(_) => LogLevel::Error,
                Err(_) => {
                    return Err(invalid(
                        "vip_loglevel",
                        v,
                        "-4 (debug), 0 (info), 4 (warn), 8 (error), or a name",
                    ));
                }
            },
        },
    })
}

/// `vip_logformat`: text (default) or json.
pub(super) fn log_format(sources: &Sources) -> Result<LogFormat, ConfigError> {
    Ok(match sources.get("vip_logformat") {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(v) => return Err(invalid("vip_logformat", v, "text or json")),
    })
}
