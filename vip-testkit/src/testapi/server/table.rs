//! Server-side printing: the `meta.k8s.io/v1` Table that `kubectl get`
//! asks for (`Accept: application/json;as=Table;…`), for the kinds whose
//! real columns kubectl users read. Other kinds answer with their list, and
//! kubectl prints that itself.

use serde_json::{Value, json};

use crate::testapi::store::Kind;

/// Whether the request asks for a Table.
pub(super) fn wants_table(accept: &str) -> bool {
    accept
        .split(',')
        .any(|t| t.contains("as=Table") && t.contains("g=meta.k8s.io") && t.contains("v=v1"))
}

/// The Table of `items`, `None` for kinds printed by kubectl itself.
pub(super) fn table(kind: Kind, items: &[Value], rv: u64, now: jiff::Timestamp) -> Option<Value> {
    match kind {
        Kind::Event => Some(event_table(items, rv, now)),
        Kind::Lease | Kind::Node | Kind::Secret => None,
    }
}

/// The real server's Event columns (`printEvent`): the wide ones have
/// priority 1.
fn event_table(items: &[Value], rv: u64, now: jiff::Timestamp) -> Value {
    let col = |name: &str, priority: u8| json!({"name": name, "type": "string", "format": "", "description": "", "priority": priority});
    let columns = vec![
        col("Last Seen", 0),
        col("Type", 0),
        col("Reason", 0),
        col("Object", 0),
        col("Subobject", 1),
        col("Source", 1),
        col("Message", 0),
        col("First Seen", 1),
        col("Count", 1),
        col("Name", 1),
    ];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let rows: Vec<Value> = items
        .iter()
        .map(|e| {
            let io = &e["involvedObject"];
            let source = [&e["source"]["component"], &e["source"]["host"]]
                .into_iter()
                .filter_map(Value::as_str)
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(", ");
            let last = e["lastTimestamp"].as_str().or(e["eventTime"].as_str());
            json!({
                "cells": [
                    since(last, now),
                    text(&e["type"]),
                    text(&e["reason"]),
                    format!("{}/{}", text(&io["kind"]).to_lowercase(), text(&io["name"])),
                    text(&io["fieldPath"]),
                    source,
                    text(&e["message"]),
                    since(e["firstTimestamp"].as_str(), now),
                    e["count"].as_i64().unwrap_or(1),
                    text(&e["metadata"]["name"]),
                ],
                "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": e["metadata"]},
            })
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1",
           "metadata": {"resourceVersion": rv.to_string()},
           "columnDefinitions": columns, "rows": rows})
}

/// apimachinery's `HumanDuration` of the time since `t` (`<unknown>` when
/// absent).
fn since(t: Option<&str>, now: jiff::Timestamp) -> String {
    let Some(t) = t.and_then(|t| t.parse::<jiff::Timestamp>().ok()) else {
        return "<unknown>".into();
    };
    let secs = (now.as_second() - t.as_second()).max(0);
    human(secs)
}

fn human(secs: i64) -> String {
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    if secs < 120 {
        format!("{secs}s")
    } else if m < 10 {
        match secs % 60 {
            0 => format!("{m}m"),
            s => format!("{m}m{s}s"),
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        match m % 60 {
            0 => format!("{h}h"),
            mm => format!("{h}h{mm}m"),
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        match h % 24 {
            0 => format!("{d}d"),
            hh => format!("{d}d{hh}h"),
        }
    } else {
        format!("{d}d")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_kubectl() {
        for (secs, want) in [
            (5, "5s"),
            (119, "119s"),
            (125, "2m5s"),
            (600, "10m"),
            (3 * 3600 + 60, "3h1m"),
            (30 * 3600, "30h"),
            (3 * 86400 + 3600, "3d1h"),
        ] {
            assert_eq!(human(secs), want);
        }
        assert!(wants_table(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
        ));
        assert!(!wants_table("application/json"));
    }
}
