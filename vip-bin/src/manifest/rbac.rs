//! `vip manifest rbac`: the least permissions of the in-cluster variant.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use vip_lease::events::NODE_EVENT_NAMESPACE;

use super::{POD_NAMESPACE, labels, yaml_of};
use crate::config::Settings;

pub(super) fn meta(name: &str, namespace: Option<&str>, app: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: namespace.map(Into::into),
        labels: Some(labels(app, None)),
        ..Default::default()
    }
}

fn rule(groups: &str, resource: &str, names: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![groups.into()]),
        resources: Some(vec![resource.into()]),
        resource_names: (!names.is_empty()).then(|| names.iter().map(|n| n.to_string()).collect()),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        ..Default::default()
    }
}

/// Events: created with generated names, then patched to count repeats.
fn events_rule() -> PolicyRule {
    rule("", "events", &[], &["create", "patch"])
}

/// The RBAC objects of the in-cluster variant, as one YAML stream:
/// ServiceAccount, Role, RoleBinding, (with `vip_events`: the Events Role
/// and RoleBinding in `default`, for the Node's Events), ClusterRole,
/// ClusterRoleBinding.
pub fn rbac_yaml(s: &Settings, name: &str) -> String {
    let subject = Subject {
        kind: "ServiceAccount".into(),
        name: name.into(),
        namespace: Some(POD_NAMESPACE.into()),
        ..Default::default()
    };
    let lease_role = format!("{name}-lease");
    let nodes_role = format!("{name}-nodes");
    let sa = ServiceAccount {
        metadata: meta(name, Some(POD_NAMESPACE), name),
        ..Default::default()
    };
    let role = Role {
        metadata: meta(&lease_role, Some(&s.lease_namespace), name),
        rules: Some(
            vec![
                // create cannot be limited by name (the object does not exist yet).
                rule("coordination.k8s.io", "leases", &[], &["create"]),
                // the watch uses the field selector metadata.name=<lease>, so a
                // name-limited watch is authorised.
                rule(
                    "coordination.k8s.io",
                    "leases",
                    &[&s.lease_name],
                    &["get", "update", "watch"],
                ),
            ]
            .into_iter()
            .chain(s.events.then(events_rule))
            .collect(),
        ),
    };
    let role_binding = RoleBinding {
        metadata: meta(&lease_role, Some(&s.lease_namespace), name),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: lease_role.clone(),
        },
        subjects: Some(vec![subject.clone()]),
    };
    // Events about the Node (cluster-scoped) go into `default`; the Lease
    // Role already covers its own namespace.
    let node_events = (s.events && s.lease_namespace != NODE_EVENT_NAMESPACE).then(|| {
        let events_role = format!("{name}-events");
        let role = Role {
            metadata: meta(&events_role, Some(NODE_EVENT_NAMESPACE), name),
            rules: Some(vec![events_rule()]),
        };
        let binding = RoleBinding {
            metadata: meta(&events_role, Some(NODE_EVENT_NAMESPACE), name),
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "Role".into(),
                name: events_role.clone(),
            },
            subjects: Some(vec![subject.clone()]),
        };
        [yaml_of(&role), yaml_of(&binding)]
    });
    let cluster_role = ClusterRole {
        metadata: meta(&nodes_role, None, name),
        rules: Some(vec![rule("", "nodes", &[], &["get", "list", "watch"])]),
        ..Default::default()
    };
    let cluster_role_binding = ClusterRoleBinding {
        metadata: meta(&nodes_role, None, name),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: nodes_role.clone(),
        },
        subjects: Some(vec![subject]),
    };
    let mut docs = vec![yaml_of(&sa), yaml_of(&role), yaml_of(&role_binding)];
    docs.extend(node_events.into_iter().flatten());
    docs.extend([yaml_of(&cluster_role), yaml_of(&cluster_role_binding)]);
    docs.join("---\n")
}
