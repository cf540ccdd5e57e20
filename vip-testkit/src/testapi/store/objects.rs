//! How each kind's objects are checked, normalised (through their typed
//! form) and patched.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node};
use serde_json::{Value, json};

use super::Kind;
use super::Status;

pub(super) fn check_type(kind: Kind, obj: &Value) -> Result<(), Status> {
    if let Some(v) = obj.get("apiVersion").and_then(Value::as_str)
        && v != kind.api_version()
    {
        return Err(Status::bad_request(format!(
            "the API version in the data ({v}) does not match the expected API version ({})",
            kind.api_version()
        )));
    }
    if let Some(k) = obj.get("kind").and_then(Value::as_str)
        && k != kind.kind()
    {
        return Err(Status::bad_request(format!(
            "the kind in the data ({k}) does not match the expected kind ({})",
            kind.kind()
        )));
    }
    Ok(())
}

/// Decodes and re-encodes the object through its typed form, as the real
/// API server does: unknown fields are dropped, MicroTimes are written with
/// six fractional digits; then validates it.
pub(super) fn normalise(kind: Kind, name: &str, obj: Value) -> Result<Value, Status> {
    let decode_err = |e: serde_json::Error| {
        Status::bad_request(format!("unable to decode {}: {e}", kind.kind()))
    };
    let out = match kind {
        Kind::Lease => {
            let mut lease: Lease = serde_json::from_value(obj).map_err(decode_err)?;
            if let Some(spec) = &mut lease.spec {
                // `preferredHolder` and `strategy` belong to the
                // CoordinatedLeaderElection feature gate, off by default
                // (kube-apiserver 1.34, kubeadm, k3s): the real server
                // drops them on every write, and so does the stand-in.
                spec.preferred_holder = None;
                spec.strategy = None;
                if let Some(d) = spec.lease_duration_seconds
                    && d <= 0
                {
                    return Err(Status::invalid(
                        kind,
                        name,
                        "spec.leaseDurationSeconds",
                        &d.to_string(),
                        "must be greater than 0",
                    ));
                }
                if let Some(t) = spec.lease_transitions
                    && t < 0
                {
                    return Err(Status::invalid(
                        kind,
                        name,
                        "spec.leaseTransitions",
                        &t.to_string(),
                        "must be greater than or equal to 0",
                    ));
                }
            }
            serde_json::to_value(&lease)
        }
        Kind::Node => {
            let node: Node = serde_json::from_value(obj).map_err(decode_err)?;
            serde_json::to_value(&node)
        }
        Kind::Event => {
            let event: Event = serde_json::from_value(obj).map_err(decode_err)?;
            validate_event(name, &event)?;
            serde_json::to_value(&event)
        }
    };
    out.map_err(|e| Status::bad_request(format!("cannot encode {}: {e}", kind.kind())))
}
/// The real server's core/v1 Event validation (`legacyValidateEvent`): the
/// involved object's namespace is the Event's, and an Event about a
/// cluster-scoped object (no namespace) lives in `default`.
fn validate_event(name: &str, event: &Event) -> Result<(), Status> {
    let ns = event.metadata.namespace.as_deref().unwrap_or_default();
    let involved = event
        .involved_object
        .namespace
        .as_deref()
        .unwrap_or_default();
    let ok = if involved.is_empty() {
        ns.is_empty() || ns == "default"
    } else {
        ns == involved
    };
    if ok {
        Ok(())
    } else {
        Err(Status::invalid(
            Kind::Event,
            name,
            "involvedObject.namespace",
            &format!("{involved:?}"),
            "does not match event.namespace",
        ))
    }
}

/// List fields merged by key in a strategic merge patch.
fn merge_key(path: &str) -> Option<&'static str> {
    match path {
        ".status.conditions" | ".status.addresses" => Some("type"),
        ".spec.taints" => Some("key"),
        ".metadata.ownerReferences" => Some("uid"),
        _ => None,
    }
}

/// JSON merge patch (RFC 7386), or with `strategic` the subset of the
/// strategic merge patch that kubectl sends for these kinds: `$patch`
/// (replace, delete) on maps and list items, list merge keys, and ignored
/// `$setElementOrder`/`$retainKeys` directives.
pub(super) fn merge(target: &mut Value, patch: &Value, strategic: bool, path: &str) {
    let Some(p) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if strategic && p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut replaced = p.clone();
        replaced.remove("$patch");
        *target = Value::Object(replaced);
        return;
    }
    if !target.is_object() {
        *target = json!({});
    }
    let Some(t) = target.as_object_mut() else {
        return;
    };
    for (k, v) in p {
        if strategic && k.starts_with('$') {
            continue;
        }
        let sub = format!("{path}.{k}");
        if v.is_null() || (strategic && v.get("$patch").and_then(Value::as_str) == Some("delete")) {
            t.remove(k);
        } else if let (true, Some(key), Some(items)) = (strategic, merge_key(&sub), v.as_array()) {
            let list = t.entry(k.clone()).or_insert_with(|| json!([]));
            if !list.is_array() {
                *list = json!([]);
            }
            if let Some(list) = list.as_array_mut() {
                for item in items {
                    let id = item.get(key);
                    let pos = list.iter().position(|e| e.get(key) == id && id.is_some());
                    let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                    match (pos, delete) {
                        (Some(i), true) => {
                            list.remove(i);
                        }
                        (Some(i), false) => merge(&mut list[i], item, true, &sub),
                        (None, true) => {}
                        (None, false) => {
                            let mut fresh = Value::Null;
                            merge(&mut fresh, item, true, &sub);
                            list.push(fresh);
                        }
                    }
                }
            }
        } else {
            merge(
                t.entry(k.clone()).or_insert(Value::Null),
                v,
                strategic,
                &sub,
            );
        }
    }
}
