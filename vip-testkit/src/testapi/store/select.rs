//! Field and label selectors, and what a watch shows of a change.

use serde_json::Value;

use super::Status;
use super::{Event, EventType, Kind};

/// Field and label selectors of a list or watch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selectors {
    fields: Vec<(String, bool, String)>,
    labels: Vec<LabelReq>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelReq {
    Exists(String),
    NotExists(String),
    Eq(String, String),
    NotEq(String, String),
}

impl Selectors {
    /// Parses `fieldSelector` and `labelSelector` values of a request for
    /// `kind`: the field labels are those the real API server converts for
    /// that kind, with its error text for others.
    pub fn parse(kind: Kind, fields: Option<&str>, labels: Option<&str>) -> Result<Self, Status> {
        let mut s = Self::default();
        for term in fields
            .unwrap_or_default()
            .split(',')
            .filter(|t| !t.is_empty())
        {
            let (key, eq, value) = split_term(term).ok_or_else(|| {
                Status::bad_request(format!(
                    "invalid selector: '{term}'; can't understand '{term}'"
                ))
            })?;
            check_field_label(kind, &key)?;
            s.fields.push((key, eq, value));
        }
        for term in labels
            .unwrap_or_default()
            .split(',')
            .filter(|t| !t.is_empty())
        {
            let term = term.trim();
            let req = if let Some((k, eq, v)) = split_term(term) {
                if eq {
                    LabelReq::Eq(k, v)
                } else {
                    LabelReq::NotEq(k, v)
                }
            } else if let Some(k) = term.strip_prefix('!') {
                LabelReq::NotExists(k.trim().to_owned())
            } else if term.contains(' ') || term.contains('(') {
                return Err(Status::bad_request(format!(
                    "unable to parse requirement: set-based requirements are not supported by the stand-in: {term}"
                )));
            } else {
                LabelReq::Exists(term.to_owned())
            };
            s.labels.push(req);
        }
        Ok(s)
    }

    /// Whether `obj` is selected.
    pub fn matches(&self, obj: &Value) -> bool {
        let meta = &obj["metadata"];
        let field = |k: &str| {
            // `source` selects `source.component`, as the real server's
            // Event field set does; a missing field is "".
            let path = if k == "source" { "source.component" } else { k };
            path.split('.')
                .try_fold(obj, |v, seg| v.get(seg))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        let fields_ok = self.fields.iter().all(|(k, eq, v)| (field(k) == *v) == *eq);
        let label = |k: &str| {
            meta["labels"]
                .get(k)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let labels_ok = self.labels.iter().all(|r| match r {
            LabelReq::Exists(k) => label(k).is_some(),
            LabelReq::NotExists(k) => label(k).is_none(),
            LabelReq::Eq(k, v) => label(k).as_deref() == Some(v.as_str()),
            LabelReq::NotEq(k, v) => label(k).as_deref() != Some(v.as_str()),
        });
        fields_ok && labels_ok
    }
}

/// The field labels of core/v1 Events (`AddFieldLabelConversionsForEvent`).
const EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
    "metadata.namespace",
    "metadata.name",
];

/// A field label the real server accepts for `kind`, or its 400 text.
fn check_field_label(kind: Kind, key: &str) -> Result<(), Status> {
    match kind {
        Kind::Event if EVENT_FIELDS.contains(&key) => Ok(()),
        Kind::Event => Err(Status::bad_request(format!(
            "field label not supported: {key}"
        ))),
        Kind::Lease | Kind::Node | Kind::Secret
            if key == "metadata.name" || key == "metadata.namespace" =>
        {
            Ok(())
        }
        Kind::Lease | Kind::Node | Kind::Secret => Err(Status::bad_request(format!(
            "\"{key}\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        ))),
    }
}

fn split_term(term: &str) -> Option<(String, bool, String)> {
    let (k, eq, v) = if let Some((k, v)) = term.split_once("!=") {
        (k, false, v)
    } else if let Some((k, v)) = term.split_once("==") {
        (k, true, v)
    } else {
        let (k, v) = term.split_once('=')?;
        (k, true, v)
    };
    Some((k.trim().to_owned(), eq, v.trim().to_owned()))
}

/// What a watch shows of one history event, given its filter: the real
/// API server turns a change into or out of the selection into ADDED or
/// DELETED.
pub fn view_event(
    ev: &Event,
    kind: Kind,
    namespace: Option<&str>,
    sel: &Selectors,
) -> Option<(&'static str, Value)> {
    if ev.kind != kind || namespace.is_some_and(|ns| ns != ev.namespace) {
        return None;
    }
    let now = sel.matches(&ev.object);
    let before = ev.previous.as_ref().is_some_and(|p| sel.matches(p));
    match ev.etype {
        EventType::Added => now.then(|| ("ADDED", ev.object.clone())),
        EventType::Deleted => now.then(|| ("DELETED", ev.object.clone())),
        EventType::Modified => match (before, now) {
            (true, true) => Some(("MODIFIED", ev.object.clone())),
            (false, true) => Some(("ADDED", ev.object.clone())),
            (true, false) => Some(("DELETED", ev.object.clone())),
            (false, false) => None,
        },
    }
}
