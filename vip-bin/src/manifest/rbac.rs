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

/// The heartbeat key's Secret next to the Lease
/// (`vip_lease::heartbeat_key`): `get` on that one name, and `create`,
/// which Kubernetes cannot limit by name (the object does not exist yet).
/// Only while fast failover is on, no pre-shared key file is set and the
/// election is the Lease (etcd keeps the key under the election's key).
/// Without them the daemon logs one line and keeps fast failover off;
/// failover by Lease expiry still works.
fn heartbeat_key_rules(s: &Settings) -> Vec<PolicyRule> {
    if s.fast_failover.heartbeat.is_zero()
        || s.heartbeat_key_file.is_some()
        || s.leader_election == crate::config::LeaderElection::Etcd
    {
        return Vec::new();
    }
    let secret = vip_lease::heartbeat_key::secret_name(&vip_lease::LeaseName {
        namespace: s.lease_namespace.clone(),
        name: s.lease_name.clone(),
    });
    vec![
        rule("", "secrets", &[], &["create"]),
        rule("", "secrets", &[&secret], &["get"]),
    ]
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
                // the watch lists and watches with the field selector
                // metadata.name=<lease>, which RBAC authorises by name.
                rule(
                    "coordination.k8s.io",
                    "leases",
                    &[&s.lease_name],
                    &["get", "list", "update", "watch"],
                ),
            ]
            .into_iter()
            .chain(s.events.then(events_rule))
            .chain(heartbeat_key_rules(s))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Sources;

    fn yaml(pairs: &[(&str, &str)]) -> String {
        let mut all = vec![("address", "198.18.0.10"), ("vip_nodename", "n")];
        all.extend_from_slice(pairs);
        rbac_yaml(
            &Settings::from_sources(&Sources::env_only(&all), "h").unwrap(),
            "kube-vip",
        )
    }

    #[test]
    fn the_heartbeat_key_secret_is_granted_only_while_needed() {
        let y = yaml(&[("vip_leasename", "vip-lock")]);
        assert!(
            y.contains(
                "- apiGroups:\n  - \"\"\n  resourceNames:\n  - vip-lock-heartbeat\n  resources:\n  - secrets\n  verbs:\n  - get\n"
            ),
            "{y}"
        );
        assert!(
            y.contains("- apiGroups:\n  - \"\"\n  resources:\n  - secrets\n  verbs:\n  - create\n"),
            "{y}"
        );
        assert_eq!(y.matches("secrets").count(), 2, "{y}");
        for off in [
            yaml(&[("vip_heartbeat_ms", "0")]),
            yaml(&[("vip_heartbeat_key_file", "/etc/vip/hb.key")]),
            yaml(&[
                ("vip_leaderelectiontype", "etcd"),
                ("vip_etcdcacert", "/etc/etcd/ca.crt"),
                ("vip_etcdcert", "/etc/etcd/client.crt"),
                ("vip_etcdkey", "/etc/etcd/client.key"),
                ("vip_etcdendpoints", "https://198.18.0.1:2379"),
            ]),
        ] {
            assert!(!off.contains("secrets"), "{off}");
        }
    }
}
