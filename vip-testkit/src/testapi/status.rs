//! `metav1.Status` bodies, field for field (and in the same order) as the
//! real API server writes them.

use serde::Serialize;

use super::store::Kind;

/// A failure `Status` with its HTTP code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    kind: &'static str,
    api_version: &'static str,
    metadata: Empty,
    status: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) message: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub(crate) reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Box<Details>>,
    /// The HTTP status code.
    pub(crate) code: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Empty {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct Details {
    #[serde(skip_serializing_if = "String::is_empty")]
    name: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    group: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    kind: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    uid: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    causes: Vec<Cause>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_seconds: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Cause {
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    message: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    field: String,
}

impl Status {
    fn failure(code: u16, reason: &'static str, message: String, details: Option<Details>) -> Self {
        let details = details.map(Box::new);
        Self {
            kind: "Status",
            api_version: "v1",
            metadata: Empty {},
            status: "Failure",
            message,
            reason,
            details,
            code,
        }
    }

    fn named(kind: Kind, name: &str) -> Option<Details> {
        Some(Details {
            name: name.to_owned(),
            group: kind.group(),
            kind: kind.plural(),
            ..Details::default()
        })
    }

    /// 404 `leases.coordination.k8s.io "x" not found`.
    pub fn not_found(kind: Kind, name: &str) -> Self {
        Self::failure(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", kind.qualified()),
            Self::named(kind, name),
        )
    }

    /// 404 `namespaces "x" not found`.
    pub fn namespace_not_found(name: &str) -> Self {
        Self::failure(
            404,
            "NotFound",
            format!("namespaces \"{name}\" not found"),
            Some(Details {
                name: name.to_owned(),
                kind: "namespaces",
                ..Details::default()
            }),
        )
    }

    /// 409 `leases.coordination.k8s.io "x" already exists`.
    pub fn already_exists(kind: Kind, name: &str) -> Self {
        Self::failure(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", kind.qualified()),
            Self::named(kind, name),
        )
    }

    /// 409 Conflict on a stale resourceVersion.
    pub fn conflict(kind: Kind, name: &str) -> Self {
        Self::failure(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                kind.qualified()
            ),
            Self::named(kind, name),
        )
    }

    /// 410 Expired: the watch's resourceVersion left the history.
    pub fn expired(requested: u64, oldest: u64) -> Self {
        Self::failure(
            410,
            "Expired",
            format!("too old resource version: {requested} ({oldest})"),
            None,
        )
    }

    /// 422 Invalid, one field.
    pub fn invalid(kind: Kind, name: &str, field: &str, value: &str, detail: &str) -> Self {
        let cause = format!("Invalid value: {value}: {detail}");
        Self::failure(
            422,
            "Invalid",
            format!(
                "{} \"{name}\" is invalid: {field}: {cause}",
                kind.kind_qualified()
            ),
            Some(Details {
                name: name.to_owned(),
                group: kind.group(),
                kind: kind.kind(),
                causes: vec![Cause {
                    reason: "FieldValueInvalid",
                    message: cause,
                    field: field.to_owned(),
                }],
                ..Details::default()
            }),
        )
    }

    /// 400 BadRequest.
    pub fn bad_request(message: String) -> Self {
        Self::failure(400, "BadRequest", message, None)
    }

    /// 401 Unauthorized.
    pub fn unauthorized() -> Self {
        Self::failure(401, "Unauthorized", "Unauthorized".into(), None)
    }

    /// 403 Forbidden for `user` doing `verb` on `kind` (in `namespace`).
    pub fn forbidden(
        user: &str,
        verb: &str,
        kind: Kind,
        name: &str,
        namespace: Option<&str>,
    ) -> Self {
        let what = if name.is_empty() {
            kind.qualified().to_owned()
        } else {
            format!("{} \"{name}\"", kind.qualified())
        };
        let group = format!("in API group \"{}\"", kind.group());
        let scope = match namespace {
            Some(ns) => format!(" in the namespace \"{ns}\""),
            None => " at the cluster scope".to_owned(),
        };
        Self::failure(
            403,
            "Forbidden",
            format!(
                "{what} is forbidden: User \"{user}\" cannot {verb} resource \"{}\" {group}{scope}",
                kind.plural()
            ),
            Self::named(kind, name),
        )
    }

    /// 404 for a path that names nothing.
    pub fn no_such_path() -> Self {
        Self::failure(
            404,
            "NotFound",
            "the server could not find the requested resource".into(),
            Some(Details::default()),
        )
    }

    /// 405 for a verb the resource does not support.
    pub fn method_not_allowed(method: &str) -> Self {
        Self::failure(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({method})"),
            Some(Details::default()),
        )
    }

    /// 415 for a patch type the stand-in does not implement.
    pub fn unsupported_media_type() -> Self {
        Self::failure(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json".into(),
            None,
        )
    }

    /// An injected server error: 429 TooManyRequests, 503 ServiceUnavailable,
    /// anything else InternalError.
    pub fn injected(code: u16) -> Self {
        match code {
            429 => Self::failure(
                429,
                "TooManyRequests",
                "Too many requests, please try again later.".into(),
                Some(Details {
                    retry_after_seconds: Some(1),
                    ..Details::default()
                }),
            ),
            503 => Self::failure(
                503,
                "ServiceUnavailable",
                "the server is currently unable to handle the request".into(),
                None,
            ),
            504 => Self::failure(
                504,
                "Timeout",
                "Timeout: request did not complete within the allowed duration".into(),
                None,
            ),
            code => Self::failure(
                code,
                "InternalError",
                "Internal error occurred: injected fault".into(),
                Some(Details {
                    causes: vec![Cause {
                        reason: "",
                        message: "injected fault".into(),
                        field: String::new(),
                    }],
                    ..Details::default()
                }),
            ),
        }
    }

    /// The JSON body.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}
