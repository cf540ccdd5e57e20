//! How each kind's objects are checked, normalised (through their typed
//! form) and patched.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, Secret};
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

/// `fieldValidation=Strict`: a 400 naming the first field of `input` (an
/// object, or a merge patch of one) that `kind`'s type does not have, as
/// the real server's strict decoding does (`spec.colour`, list items as
/// `[i]`). Fields set to null are not checked (a patch deletes them).
pub fn check_strict(kind: Kind, input: &Value) -> Result<(), Status> {
    let mut typed_input = input.clone();
    if let Some(o) = typed_input.as_object_mut() {
        o.insert("apiVersion".into(), kind.api_version().into());
        o.insert("kind".into(), kind.kind().into());
    }
    let round_trip = match kind {
        Kind::Lease => serde_json::from_value::<Lease>(typed_input).and_then(serde_json::to_value),
        Kind::Node => serde_json::from_value::<Node>(typed_input).and_then(serde_json::to_value),
        Kind::Event => serde_json::from_value::<Event>(typed_input).and_then(serde_json::to_value),
        Kind::Secret => {
            serde_json::from_value::<Secret>(typed_input).and_then(serde_json::to_value)
        }
    };
    // Undecodable input is refused later with the decoding error.
    let Ok(known) = round_trip else {
        return Ok(());
    };
    match first_unknown(input, &known, "") {
        None => Ok(()),
        Some(field) => Err(Status::bad_request(format!(
            "{} in version \"v1\" cannot be handled as a {}: strict decoding error: unknown field \"{field}\"",
            kind.kind(),
            kind.kind()
        ))),
    }
}

fn first_unknown(input: &Value, known: &Value, path: &str) -> Option<String> {
    match (input, known) {
        (Value::Object(i), Value::Object(k)) => i.iter().find_map(|(key, v)| {
            let here = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            match k.get(key) {
                _ if v.is_null() => None,
                None => Some(here),
                Some(kv) => first_unknown(v, kv, &here),
            }
        }),
        (Value::Array(i), Value::Array(k)) => i
            .iter()
            .zip(k)
            .enumerate()
            .find_map(|(n, (v, kv))| first_unknown(v, kv, &format!("{path}[{n}]"))),
        _ => None,
    }
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
        Kind::Secret => {
            let secret: Secret = serde_json::from_value(obj).map_err(decode_err)?;
            serde_json::to_value(&secret)
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
