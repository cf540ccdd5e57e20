//! The resources the stand-in serves and their names.

/// The resources the stand-in serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `coordination.k8s.io/v1` Lease (namespaced).
    Lease,
    /// `v1` Node (cluster-scoped).
    Node,
    /// `v1` Event (namespaced; Events about cluster-scoped objects go into
    /// `default`).
    Event,
    /// `v1` Secret (namespaced).
    Secret,
}

impl Kind {
    /// The API group (`""` for core).
    pub fn group(self) -> &'static str {
        match self {
            Self::Lease => "coordination.k8s.io",
            Self::Node | Self::Event | Self::Secret => "",
        }
    }

    /// The plural resource name.
    pub fn plural(self) -> &'static str {
        match self {
            Self::Lease => "leases",
            Self::Node => "nodes",
            Self::Event => "events",
            Self::Secret => "secrets",
        }
    }

    /// `leases.coordination.k8s.io` / `nodes` / `events`.
    pub fn qualified(self) -> &'static str {
        match self {
            Self::Lease => "leases.coordination.k8s.io",
            Self::Node => "nodes",
            Self::Event => "events",
            Self::Secret => "secrets",
        }
    }

    /// `Lease.coordination.k8s.io` / `Node`, as validation errors name it.
    pub fn kind_qualified(self) -> &'static str {
        match self {
            Self::Lease => "Lease.coordination.k8s.io",
            Self::Node => "Node",
            Self::Event => "Event",
            Self::Secret => "Secret",
        }
    }

    /// The kind.
    pub fn kind(self) -> &'static str {
        match self {
            Self::Lease => "Lease",
            Self::Node => "Node",
            Self::Event => "Event",
            Self::Secret => "Secret",
        }
    }

    /// The list kind.
    pub fn list_kind(self) -> &'static str {
        match self {
            Self::Lease => "LeaseList",
            Self::Node => "NodeList",
            Self::Event => "EventList",
            Self::Secret => "SecretList",
        }
    }

    /// `coordination.k8s.io/v1` / `v1`.
    pub fn api_version(self) -> &'static str {
        match self {
            Self::Lease => "coordination.k8s.io/v1",
            Self::Node | Self::Event | Self::Secret => "v1",
        }
    }

    /// Whether objects live in a namespace.
    pub fn namespaced(self) -> bool {
        matches!(self, Self::Lease | Self::Event | Self::Secret)
    }
}
