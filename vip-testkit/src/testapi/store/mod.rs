//! The object store shared by every listener: Leases and Nodes, one global
//! resourceVersion counter, a bounded event history for watches.

mod kind;
mod objects;
mod select;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use super::status::Status;
pub use kind::Kind;
pub use objects::check_strict;
use objects::{check_type, merge, normalise};
pub use select::{Selectors, view_event};

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Deleted.
    Deleted,
}

impl EventType {
    /// The watch event type.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change, as kept in the history.
#[derive(Debug, Clone)]
pub struct Event {
    /// The resourceVersion the change produced.
    pub rv: u64,
    /// Which resource.
    pub kind: Kind,
    /// The namespace (`""` for cluster-scoped).
    pub namespace: String,
    /// The name.
    pub name: String,
    /// What happened.
    pub etype: EventType,
    /// The object after the change (before it, for a delete).
    pub object: Value,
    /// The object before the change.
    pub previous: Option<Value>,
}
type Key = (Kind, String, String);

#[derive(Debug)]
struct Inner {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    history: VecDeque<Arc<Event>>,
    capacity: usize,
    /// Watches from below this resourceVersion get 410 Expired.
    compacted: u64,
    uids: u64,
}

/// The start of a watch: the events to send first, then the live feed.
#[derive(Debug)]
pub struct WatchStart {
    /// Events to send before live ones.
    pub initial: Vec<(&'static str, Value)>,
    /// Live events (filter them with [`view_event`]).
    pub live: broadcast::Receiver<Arc<Event>>,
}

/// The shared object store.
#[derive(Debug)]
pub struct Store {
    inner: Mutex<Inner>,
    events: broadcast::Sender<Arc<Event>>,
}

impl Store {
    /// An empty store keeping at most `history` events for watches.
    pub fn new(history: usize) -> Self {
        let (events, _) = broadcast::channel(4096);
        Self {
            inner: Mutex::new(Inner {
                rv: 1,
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                capacity: history.max(1),
                compacted: 0,
                uids: 0,
            }),
            events,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// Forgets the whole event history: every watch from an older
    /// resourceVersion now gets 410 Expired.
    pub fn compact(&self) {
        let mut inner = self.lock();
        inner.history.clear();
        inner.compacted = inner.rv;
    }

    /// Sets how many events the history keeps (trimming at once).
    pub fn set_history_capacity(&self, capacity: usize) {
        let mut inner = self.lock();
        inner.capacity = capacity.max(1);
        trim(&mut inner);
    }

    /// One object.
    pub fn get(&self, kind: Kind, namespace: &str, name: &str) -> Result<Value, Status> {
        self.lock()
            .objects
            .get(&(kind, namespace.to_owned(), name.to_owned()))
            .cloned()
            .ok_or_else(|| Status::not_found(kind, name))
    }

    /// Whether a namespace exists: the usual four always do, others once
    /// they hold an object.
    pub fn namespace_exists(&self, namespace: &str) -> bool {
        ["default", "kube-system", "kube-public", "kube-node-lease"].contains(&namespace)
            || self.lock().objects.keys().any(|(_, ns, _)| ns == namespace)
    }

    /// The selected objects (in `namespace`, or all) and the list's
    /// resourceVersion.
    pub fn list(&self, kind: Kind, namespace: Option<&str>, sel: &Selectors) -> (Vec<Value>, u64) {
        let inner = self.lock();
        let items = inner
            .objects
            .iter()
            .filter(|((k, ns, _), obj)| {
                *k == kind && namespace.is_none_or(|n| n == ns) && sel.matches(obj)
            })
            .map(|(_, obj)| obj.clone())
            .collect();
        (items, inner.rv)
    }

    /// Creates an object (409 AlreadyExists when the name is taken).
    pub fn create(&self, kind: Kind, namespace: &str, mut obj: Value) -> Result<Value, Status> {
        check_type(kind, &obj)?;
        let meta = obj
            .as_object_mut()
            .ok_or_else(|| Status::bad_request("the object is not a JSON object".into()))?
            .entry("metadata")
            .or_insert_with(|| json!({}));
        if let Some(ns) = meta.get("namespace").and_then(Value::as_str)
            && kind.namespaced()
            && ns != namespace
        {
            return Err(Status::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request".into(),
            ));
        }
        let mut inner = self.lock();
        let name = match meta
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            Some(n) => n.to_owned(),
            None => match meta.get("generateName").and_then(Value::as_str) {
                Some(prefix) => format!("{prefix}{:05x}", (inner.rv * 2_654_435_761) % 0xf_ffff),
                None => {
                    return Err(Status::invalid(
                        kind,
                        "",
                        "metadata.name",
                        "\"\"",
                        "name or generateName is required",
                    ));
                }
            },
        };
        let key = (kind, namespace.to_owned(), name.clone());
        if inner.objects.contains_key(&key) {
            return Err(Status::already_exists(kind, &name));
        }
        inner.uids += 1;
        let uid = fake_uid(inner.uids, inner.rv);
        let rv = inner.rv + 1;
        let meta = meta
            .as_object_mut()
            .ok_or_else(|| Status::bad_request("metadata is not an object".into()))?;
        meta.insert("name".into(), name.clone().into());
        if kind.namespaced() {
            meta.insert("namespace".into(), namespace.into());
        } else {
            meta.remove("namespace");
        }
        meta.insert("uid".into(), uid.into());
        meta.insert("resourceVersion".into(), rv.to_string().into());
        meta.insert("creationTimestamp".into(), now_rfc3339().into());
        meta.remove("generateName");
        meta.remove("managedFields");
        let obj = normalise(kind, &name, obj)?;
        inner.rv = rv;
        inner.objects.insert(key, obj.clone());
        self.record(
            &mut inner,
            kind,
            namespace,
            &name,
            EventType::Added,
            obj.clone(),
            None,
        );
        Ok(obj)
    }

    /// Replaces an object; a non-empty `metadata.resourceVersion` must be
    /// the current one (409 Conflict, also when the object is gone); an
    /// absent Lease or Event without one is created.
    pub fn update(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        obj: Value,
    ) -> Result<Value, Status> {
        check_type(kind, &obj)?;
        if let Some(body_name) = obj["metadata"]["name"].as_str()
            && body_name != name
        {
            return Err(Status::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let mut inner = self.lock();
        let rv = obj["metadata"]["resourceVersion"]
            .as_str()
            .filter(|v| !v.is_empty());
        let (key, old) = match existing(&inner, kind, namespace, name) {
            Ok(found) => found,
            // As the real server: a replace naming a version of an object
            // that is gone is a conflict (its precondition fails), not
            // 404; without a version, Leases and Events are created
            // (their strategies allow create-on-update), Nodes are not.
            Err(_) if rv.is_some() => return Err(Status::conflict(kind, name)),
            Err(_) if kind != Kind::Node => {
                drop(inner);
                return self.create(kind, namespace, obj);
            }
            Err(not_found) => return Err(not_found),
        };
        if let Some(rv) = rv
            && Some(rv) != old["metadata"]["resourceVersion"].as_str()
        {
            return Err(Status::conflict(kind, name));
        }
        self.replace_locked(&mut inner, key, old, obj)
    }

    /// Applies a merge patch (`strategic`: with strategic-merge directives
    /// and list merge keys); a `metadata.resourceVersion` in the patch is a
    /// precondition.
    pub fn patch(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        patch: &Value,
        strategic: bool,
    ) -> Result<Value, Status> {
        if !patch.is_object() {
            return Err(Status::bad_request("the patch is not a JSON object".into()));
        }
        let mut inner = self.lock();
        let (key, old) = existing(&inner, kind, namespace, name)?;
        if let Some(rv) = patch["metadata"]["resourceVersion"].as_str()
            && Some(rv) != old["metadata"]["resourceVersion"].as_str()
        {
            return Err(Status::conflict(kind, name));
        }
        let mut new = old.clone();
        merge(&mut new, patch, strategic, "");
        self.replace_locked(&mut inner, key, old, new)
    }

    fn replace_locked(
        &self,
        inner: &mut Inner,
        key: Key,
        old: Value,
        mut obj: Value,
    ) -> Result<Value, Status> {
        let (kind, namespace, name) = key.clone();
        {
            let meta = obj
                .as_object_mut()
                .ok_or_else(|| Status::bad_request("the object is not a JSON object".into()))?
                .entry("metadata")
                .or_insert_with(|| json!({}));
            let meta = meta
                .as_object_mut()
                .ok_or_else(|| Status::bad_request("metadata is not an object".into()))?;
            for k in [
                "uid",
                "creationTimestamp",
                "name",
                "namespace",
                "resourceVersion",
            ] {
                match old["metadata"].get(k) {
                    Some(v) => meta.insert(k.into(), v.clone()),
                    None => meta.remove(k),
                };
            }
            meta.remove("managedFields");
        }
        let obj = normalise(kind, &name, obj)?;
        if obj == old {
            // A no-op update does not bump the resourceVersion.
            return Ok(old);
        }
        let rv = inner.rv + 1;
        let mut obj = obj;
        obj["metadata"]["resourceVersion"] = rv.to_string().into();
        inner.rv = rv;
        inner.objects.insert(key, obj.clone());
        self.record(
            inner,
            kind,
            &namespace,
            &name,
            EventType::Modified,
            obj.clone(),
            Some(old),
        );
        Ok(obj)
    }

    /// Deletes an object; `precondition` is a resourceVersion it must have.
    pub fn delete(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        precondition: Option<&str>,
    ) -> Result<Value, Status> {
        let mut inner = self.lock();
        let (key, old) = existing(&inner, kind, namespace, name)?;
        if let Some(rv) = precondition
            && Some(rv) != old["metadata"]["resourceVersion"].as_str()
        {
            return Err(Status::conflict(kind, name));
        }
        inner.objects.remove(&key);
        let rv = inner.rv + 1;
        inner.rv = rv;
        let mut gone = old.clone();
        gone["metadata"]["resourceVersion"] = rv.to_string().into();
        self.record(
            &mut inner,
            kind,
            namespace,
            name,
            EventType::Deleted,
            gone,
            Some(old.clone()),
        );
        Ok(old)
    }

    /// Starts a watch: from `None`/`0` the current objects come first as
    /// ADDED; from a resourceVersion the history after it (410 Expired when
    /// that left the history).
    pub fn watch(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        sel: &Selectors,
        from: Option<u64>,
    ) -> Result<WatchStart, Status> {
        let inner = self.lock();
        let initial = match from {
            None | Some(0) => inner
                .objects
                .iter()
                .filter(|((k, ns, _), obj)| {
                    *k == kind && namespace.is_none_or(|n| n == ns) && sel.matches(obj)
                })
                .map(|(_, obj)| ("ADDED", obj.clone()))
                .collect(),
            Some(rv) => {
                if rv < inner.compacted {
                    return Err(Status::expired(rv, inner.compacted));
                }
                inner
                    .history
                    .iter()
                    .filter(|ev| ev.rv > rv)
                    .filter_map(|ev| view_event(ev, kind, namespace, sel))
                    .collect()
            }
        };
        Ok(WatchStart {
            initial,
            live: self.events.subscribe(),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        inner: &mut Inner,
        kind: Kind,
        namespace: &str,
        name: &str,
        etype: EventType,
        object: Value,
        previous: Option<Value>,
    ) {
        let ev = Arc::new(Event {
            rv: inner.rv,
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            etype,
            object,
            previous,
        });
        inner.history.push_back(ev.clone());
        trim(inner);
        let _ = self.events.send(ev);
    }

    /// Creates or replaces a Node (test helper): control-plane label when
    /// `control_plane`, a Ready condition with `ready`, and
    /// `spec.unschedulable` when `unschedulable`.
    pub fn put_node(
        &self,
        name: &str,
        control_plane: bool,
        ready: bool,
        unschedulable: bool,
    ) -> Result<Value, Status> {
        let mut labels = Map::new();
        labels.insert("kubernetes.io/hostname".into(), name.into());
        if control_plane {
            labels.insert("node-role.kubernetes.io/control-plane".into(), "".into());
        }
        let mut obj = json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": labels},
            "spec": {},
            "status": {"conditions": [{
                "type": "Ready",
                "status": if ready { "True" } else { "False" },
                "reason": if ready { "KubeletReady" } else { "KubeletNotReady" },
                "message": if ready { "kubelet is posting ready status" } else { "container runtime is down" },
                "lastHeartbeatTime": now_rfc3339(),
                "lastTransitionTime": now_rfc3339(),
            }]},
        });
        if unschedulable {
            obj["spec"]["unschedulable"] = true.into();
        }
        match self.get(Kind::Node, "", name) {
            Ok(_) => self.update(Kind::Node, "", name, obj),
            Err(_) => self.create(Kind::Node, "", obj),
        }
    }
}

/// The key and current object of an existing object, or 404.
fn existing(
    inner: &Inner,
    kind: Kind,
    namespace: &str,
    name: &str,
) -> Result<(Key, Value), Status> {
    let key = (kind, namespace.to_owned(), name.to_owned());
    let old = inner
        .objects
        .get(&key)
        .cloned()
        .ok_or_else(|| Status::not_found(kind, name))?;
    Ok((key, old))
}

fn trim(inner: &mut Inner) {
    while inner.history.len() > inner.capacity {
        if let Some(ev) = inner.history.pop_front() {
            inner.compacted = ev.rv;
        }
    }
}

/// Now as an RFC 3339 time with whole seconds (metav1.Time).
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn fake_uid(n: u64, rv: u64) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let a = (u64::from(nanos) << 16) ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ rv;
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        (a >> 32) as u32,
        (a >> 16) as u16,
        n & 0xfff,
        rv & 0xfff,
        a & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(name: &str, holder: &str) -> Value {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
               "metadata": {"name": name}, "spec": {"holderIdentity": holder, "leaseDurationSeconds": 5}})
    }

    #[test]
    fn versions_conflicts_and_history() {
        let s = Store::new(2);
        let a = s.create(Kind::Lease, "ns", lease("a", "x")).unwrap();
        assert_eq!(a["metadata"]["resourceVersion"], "2");
        assert_eq!(a["metadata"]["namespace"], "ns");
        let err = s.create(Kind::Lease, "ns", lease("a", "y")).unwrap_err();
        assert_eq!(err.reason, "AlreadyExists");
        let mut stale = lease("a", "y");
        stale["metadata"]["resourceVersion"] = "1".into();
        assert_eq!(
            s.update(Kind::Lease, "ns", "a", stale).unwrap_err().code,
            409
        );
        let mut fresh = a.clone();
        fresh["spec"]["holderIdentity"] = "y".into();
        let b = s.update(Kind::Lease, "ns", "a", fresh).unwrap();
        assert_eq!(b["metadata"]["resourceVersion"], "3");
        assert_eq!(b["metadata"]["uid"], a["metadata"]["uid"]);
        // No-op update: same version.
        assert_eq!(s.update(Kind::Lease, "ns", "a", b.clone()).unwrap(), b);
        s.patch(
            Kind::Lease,
            "ns",
            "a",
            &json!({"spec": {"holderIdentity": "z"}}),
            false,
        )
        .unwrap();
        // History holds rv 3 and 4 now: from 2 is fine, from 1 expired.
        assert_eq!(
            s.watch(Kind::Lease, None, &Selectors::default(), Some(2))
                .unwrap()
                .initial
                .len(),
            2
        );
        let err = s
            .watch(Kind::Lease, None, &Selectors::default(), Some(1))
            .unwrap_err();
        assert_eq!(
            (err.code, err.message.as_str()),
            (410, "too old resource version: 1 (2)")
        );
        let bad = json!({"spec": {"leaseDurationSeconds": 0}});
        assert_eq!(
            s.patch(Kind::Lease, "ns", "a", &bad, false)
                .unwrap_err()
                .code,
            422
        );
    }

    #[test]
    fn strategic_patch_merges_conditions_and_cordons() {
        let s = Store::new(10);
        s.put_node("n1", true, true, false).unwrap();
        let p = json!({"spec": {"unschedulable": true}, "status": {"conditions": [{"type": "Ready", "status": "False"}]},
                       "$setElementOrder/conditions": [{"type": "Ready"}]});
        let n = s.patch(Kind::Node, "", "n1", &p, true).unwrap();
        assert_eq!(n["spec"]["unschedulable"], true);
        assert_eq!(n["status"]["conditions"][0]["reason"], "KubeletReady");
        assert_eq!(n["status"]["conditions"][0]["status"], "False");
        let sel = Selectors::parse(
            Kind::Node,
            None,
            Some("node-role.kubernetes.io/control-plane"),
        )
        .unwrap();
        assert_eq!(s.list(Kind::Node, None, &sel).0.len(), 1);
        let sel = Selectors::parse(Kind::Node, Some("metadata.name=n2"), None).unwrap();
        assert_eq!(s.list(Kind::Node, None, &sel).0.len(), 0);
        assert!(Selectors::parse(Kind::Node, Some("spec.x=1"), None).is_err());
    }

    fn event(ns: &str, name: &str, kind: &str, object: &str, object_ns: Option<&str>) -> Value {
        json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": ns},
               "involvedObject": {"kind": kind, "name": object, "namespace": object_ns},
               "reason": "LeaderElection", "message": "m", "count": 1, "type": "Normal",
               "source": {"component": "vip"}, "reportingComponent": "vip", "reportingInstance": "cp-1"})
    }

    #[test]
    fn events_select_by_involved_object_and_follow_the_namespace_rule() {
        let s = Store::new(10);
        let e = s
            .create(
                Kind::Event,
                "kube-system",
                event("kube-system", "l.1", "Lease", "l", Some("kube-system")),
            )
            .unwrap();
        assert!(e["metadata"]["uid"].is_string());
        assert!(e["metadata"]["creationTimestamp"].is_string());
        assert_eq!(e["reportingInstance"], "cp-1");
        s.create(
            Kind::Event,
            "default",
            event("default", "cp-1.1", "Node", "cp-1", None),
        )
        .unwrap();
        // A Node event outside `default` is refused as the real server does.
        let err = s
            .create(
                Kind::Event,
                "kube-system",
                event("kube-system", "cp-1.2", "Node", "cp-1", None),
            )
            .unwrap_err();
        assert_eq!(
            (err.code, err.message.as_str()),
            (
                422,
                "Event \"cp-1.2\" is invalid: involvedObject.namespace: Invalid value: \"\": does not match event.namespace"
            )
        );
        let sel = |f: &str| Selectors::parse(Kind::Event, Some(f), None).unwrap();
        let count = |f: &str| s.list(Kind::Event, None, &sel(f)).0.len();
        assert_eq!(count("involvedObject.name=l"), 1);
        assert_eq!(
            count("involvedObject.kind=Node,involvedObject.name=cp-1"),
            1
        );
        assert_eq!(
            count("involvedObject.namespace=kube-system,reason=LeaderElection"),
            1
        );
        assert_eq!(count("source=vip,type=Normal"), 2);
        assert_eq!(count("reason!=LeaderElection"), 0);
        let err = Selectors::parse(Kind::Event, Some("message=m"), None).unwrap_err();
        assert_eq!(
            (err.code, err.message.as_str()),
            (400, "field label not supported: message")
        );
        let p = s
            .patch(
                Kind::Event,
                "kube-system",
                "l.1",
                &json!({"count": 2, "lastTimestamp": "2026-01-01T00:00:00Z"}),
                true,
            )
            .unwrap();
        assert_eq!(p["count"], 2);
        assert_ne!(
            p["metadata"]["resourceVersion"],
            e["metadata"]["resourceVersion"]
        );
    }
}
