//! Where the etcd is and how to reach it: endpoints, the mutual-TLS files,
//! the election key and the per-request bound.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Errors of this module (construction and configuration; runtime errors
/// are [`vip_core::BackendError`]s).
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// No endpoint was given.
    #[error(
        "no etcd endpoint given: expected a comma-separated list such as https://127.0.0.1:2379"
    )]
    NoEndpoints,
    /// An endpoint is not `host:port` or an `https://` / `http://` URL.
    #[error("invalid etcd endpoint {value:?}: {reason}")]
    InvalidEndpoint {
        /// What was given.
        value: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A TLS file cannot be read.
    #[error("cannot read the etcd {what} {path}")]
    File {
        /// Which file: `CA certificate`, `client certificate`, `client key`.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The request timeout is not below the retry period.
    #[error("the etcd request timeout {timeout:?} must be below the retry period {retry:?}")]
    TimeoutNotBelowRetry {
        /// The request timeout.
        timeout: Duration,
        /// The retry period.
        retry: Duration,
    },
    /// The client could not be built.
    #[error("cannot build the etcd client for {endpoints}")]
    Client {
        /// The endpoints.
        endpoints: String,
        /// The client's error.
        #[source]
        source: etcd_client::Error,
    },
}

/// The three files of mutual TLS, kube-vip's `--etcdCACert`,
/// `--etcdCert` and `--etcdKey`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA that signed the etcd servers' certificates (PEM).
    pub ca: PathBuf,
    /// This client's certificate (PEM).
    pub cert: PathBuf,
    /// This client's private key (PEM).
    pub key: PathBuf,
}

impl TlsFiles {
    /// Read the three files.
    pub(crate) fn load(&self) -> Result<etcd_client::TlsOptions, EtcdError> {
        let read = |what: &'static str, path: &Path| {
            std::fs::read(path).map_err(|source| EtcdError::File {
                what,
                path: path.to_owned(),
                source,
            })
        };
        let ca = read("CA certificate", &self.ca)?;
        let cert = read("client certificate", &self.cert)?;
        let key = read("client key", &self.key)?;
        Ok(etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(ca))
            .identity(etcd_client::Identity::from_pem(cert, key)))
    }
}

/// The etcd key of an election: kube-vip names the election
/// `<namespace>-<lease name>`, and so does vip.
pub fn election_key(namespace: &str, lease_name: &str) -> String {
    format!("{namespace}-{lease_name}")
}

/// Parses kube-vip's `--etcdEndpoints`: a comma-separated list of
/// `host:port` (read as `https://host:port` with TLS, `http://` without)
/// or URLs. Plain `http://` is refused when TLS files are given.
pub fn parse_endpoints(value: &str, tls: bool) -> Result<Vec<String>, EtcdError> {
    let mut out = Vec::new();
    for raw in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let invalid = |reason| EtcdError::InvalidEndpoint {
            value: raw.to_owned(),
            reason,
        };
        let (scheme, rest) = match raw.split_once("://") {
            Some(("https", rest)) => ("https", rest),
            Some(("http", rest)) if !tls => ("http", rest),
            Some(("http", _)) => {
                return Err(invalid(
                    "http:// with the TLS files given; use https:// or host:port",
                ));
            }
            Some(_) => return Err(invalid("the scheme must be https:// or http://")),
            None => (if tls { "https" } else { "http" }, raw),
        };
        let rest = rest.trim_end_matches('/');
        let port_ok = rest.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !port_ok || rest.contains('/') {
            return Err(invalid("expected host:port, e.g. 127.0.0.1:2379"));
        }
        out.push(format!("{scheme}://{rest}"));
    }
    if out.is_empty() {
        return Err(EtcdError::NoEndpoints);
    }
    Ok(out)
}

/// How the backend talks to etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// The client URLs.
    pub endpoints: Vec<String>,
    /// Mutual TLS; `None` only for a plain-HTTP etcd.
    pub tls: Option<TlsFiles>,
    /// The key holding the record, see [`election_key`].
    pub key: String,
    /// Bound of one request; must be below the retry period.
    pub request_timeout: Duration,
}

impl EtcdConfig {
    /// A configuration with the request timeout derived from the retry
    /// period: three quarters of it, at least 50 ms (as the Lease
    /// backend).
    pub fn for_retry_period(
        endpoints: Vec<String>,
        tls: Option<TlsFiles>,
        key: String,
        retry: Duration,
    ) -> Self {
        Self {
            endpoints,
            tls,
            key,
            request_timeout: (retry * 3 / 4).max(Duration::from_millis(50)),
        }
    }

    /// Refuses a request timeout that is not below `retry`.
    pub fn check(&self, retry: Duration) -> Result<(), EtcdError> {
        if self.request_timeout >= retry {
            return Err(EtcdError::TimeoutNotBelowRetry {
                timeout: self.request_timeout,
                retry,
            });
        }
        Ok(())
    }

    /// The endpoints as one comma-separated string, for messages.
    pub fn endpoint_list(&self) -> String {
        self.endpoints.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_like_kube_vip_writes_them() {
        assert_eq!(
            parse_endpoints("127.0.0.1:2379", true).unwrap(),
            ["https://127.0.0.1:2379"]
        );
        assert_eq!(
            parse_endpoints("https://10.0.0.1:2379, 10.0.0.2:2379,", true).unwrap(),
            ["https://10.0.0.1:2379", "https://10.0.0.2:2379"]
        );
        assert_eq!(
            parse_endpoints("http://127.0.0.1:2379", false).unwrap(),
            ["http://127.0.0.1:2379"]
        );
        assert!(matches!(
            parse_endpoints(" , ", true),
            Err(EtcdError::NoEndpoints)
        ));
        for bad in [
            "127.0.0.1",
            "http://127.0.0.1:2379",
            "ftp://a:1",
            "a:0",
            "a:1/x",
        ] {
            let e = parse_endpoints(bad, true).unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn the_key_is_named_after_the_election() {
        assert_eq!(
            election_key("kube-system", "plndr-cp-lock"),
            "kube-system-plndr-cp-lock"
        );
    }

    #[test]
    fn an_unreadable_file_is_named() {
        let tls = TlsFiles {
            ca: "/nonexistent/ca.crt".into(),
            cert: "/nonexistent/c.crt".into(),
            key: "/nonexistent/c.key".into(),
        };
        let e = tls.load().unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot read the etcd CA certificate /nonexistent/ca.crt"
        );
    }
}
