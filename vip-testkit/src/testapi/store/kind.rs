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
}

impl Kind {
    /// The API group (`""` for core).
    pub fn group(self) -> &'static str {
        match self {
            Self::Lease => "coordination.k8s.io",
            Self::Node | Self::Event => "",
        }
    }

    /// The plural resource name.
    pub fn plural(self) -> &'static str {
        match self {
            Self::Lease => "leases",
            Self::Node => "nodes",
            Self::Event => "events",
        }
    }

    /// `leases.coordination.k8s.io` / `nodes` / `events`.
    pub fn qualified(self) -> &'static str {
        match self {
            Self::Lease => "leases.coordination.k8s.io",
            Self::Node => "nodes",
            Self::Event => "events",
        }
    }

    /// `Lease.coordination.k8s.io` / `Node`, as validation errors name it.
    pub fn kind_qualified(self) -> &'static str {
        match self {
            Self::Lease => "Lease.coordination.k8s.io",
            Self::Node => "Node",
            Self::Event => "Event",
        }
    }

    /// The kind.
    pub fn kind(self) -> &'static str {
        match self {
            Self::Lease => "Lease",
            Self::Node => "Node",
            Self::Event => "Event",
        }
    }

    /// The list kind.
    pub fn list_kind(self) -> &'static str {
        match self {
            Self::Lease => "LeaseList",
            Self::Node => "NodeList",
            Self::Event => "EventList",
        }
    }

    /// `coordination.k8s.io/v1` / `v1`.
    pub fn api_version(self) -> &'static str {
        match self {
            Self::Lease => "coordination.k8s.io/v1",
            Self::Node | Self::Event => "v1",
        }
    }

    /// Whether objects live in a namespace.
    pub fn namespaced(self) -> bool {
        matches!(self, Self::Lease | Self::Event)
    }
}
