//! The model: VIP addresses, the interface selector, election timings and
//! the node identity. Every constructor validates, and every error names the
//! offending value.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use crate::names::DnsNameError;

/// Errors of the model's validating constructors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// An address could not be parsed.
    #[error(
        "invalid VIP address {value:?}: expected an IPv4 or IPv6 address, optionally with /prefix"
    )]
    InvalidAddress {
        /// The text that was given.
        value: String,
    },
    /// The prefix length does not fit the address family.
    #[error("invalid prefix length {prefix} for {address}: expected 1..={max}")]
    InvalidPrefix {
        /// The address the prefix was given for.
        address: IpAddr,
        /// The prefix length given.
        prefix: u8,
        /// The longest prefix of that family.
        max: u8,
    },
    /// The VIP is not a unicast host address.
    #[error("invalid VIP address {address}: {reason}")]
    UnusableAddress {
        /// The address.
        address: IpAddr,
        /// Why it cannot be a VIP.
        reason: &'static str,
    },
    /// No address was given.
    #[error("no VIP address given")]
    NoAddress,
    /// The same address appears twice.
    #[error("VIP address {address} is given twice")]
    DuplicateAddress {
        /// The repeated address.
        address: IpAddr,
    },
    /// A timing is zero or out of order.
    #[error("invalid timing {name}={value:?}: {expected}")]
    InvalidTiming {
        /// Which timing.
        name: &'static str,
        /// The value given.
        value: Duration,
        /// What is expected instead.
        expected: String,
    },
    /// The node identity is empty or not a valid Kubernetes object name.
    #[error("invalid node identity {value:?}: {reason}")]
    InvalidIdentity {
        /// The identity given.
        value: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The interface name is not a valid Linux interface name.
    #[error("invalid interface name {value:?}: {reason}")]
    InvalidInterface {
        /// The name given.
        value: String,
        /// Why it was refused.
        reason: &'static str,
    },
}

/// One virtual IP address with the prefix length it is added with.
///
/// A bare address means a host prefix: /32 for IPv4, /128 for IPv6.
///
/// ```
/// use vip_core::VipAddress;
/// let v: VipAddress = "192.0.2.10".parse().unwrap();
/// assert_eq!(v.prefix(), 32);
/// let v: VipAddress = "2001:db8::10/64".parse().unwrap();
/// assert_eq!(v.prefix(), 64);
/// assert!("192.0.2.10/33".parse::<VipAddress>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VipAddress {
    addr: IpAddr,
    prefix: u8,
}

impl VipAddress {
    /// A VIP with an explicit prefix length, validated.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Self, ModelError> {
        let max = max_prefix(addr);
        if prefix == 0 || prefix > max {
            return Err(ModelError::InvalidPrefix {
                address: addr,
                prefix,
                max,
            });
        }
        let reason = match addr {
            IpAddr::V4(a) if a.is_unspecified() => Some("the unspecified address"),
            IpAddr::V4(a) if a.is_broadcast() => Some("the broadcast address"),
            IpAddr::V4(a) if a.is_multicast() => Some("a multicast address"),
            IpAddr::V4(a) if a.is_loopback() => Some("a loopback address"),
            IpAddr::V6(a) if a.is_unspecified() => Some("the unspecified address"),
            IpAddr::V6(a) if a.is_multicast() => Some("a multicast address"),
            IpAddr::V6(a) if a.is_loopback() => Some("a loopback address"),
            _ => None,
        };
        if let Some(reason) = reason {
            return Err(ModelError::UnusableAddress {
                address: addr,
                reason,
            });
        }
        Ok(Self { addr, prefix })
    }

    /// A VIP with the host prefix of its family (/32 or /128).
    pub fn host(addr: IpAddr) -> Result<Self, ModelError> {
        Self::new(addr, max_prefix(addr))
    }

    /// The address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether this is an IPv4 address.
    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    if addr.is_ipv4() { 32 } else { 128 }
}

impl FromStr for VipAddress {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || ModelError::InvalidAddress {
            value: s.to_string(),
        };
        let s_trim = s.trim();
        let (addr, prefix) = match s_trim.split_once('/') {
            Some((a, p)) => {
                let addr: IpAddr = a.parse().map_err(|_| invalid())?;
                // Reject signs, spaces and leading zeros beyond one digit.
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.len() > 3 {
                    return Err(invalid());
                }
                let prefix: u8 = p.parse().map_err(|_| invalid())?;
                (addr, prefix)
            }
            None => {
                let addr: IpAddr = s_trim.parse().map_err(|_| invalid())?;
                (addr, max_prefix(addr))
            }
        };
        Self::new(addr, prefix)
    }
}

impl fmt::Display for VipAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The set of VIP addresses one controller keeps: one or more, IPv4 and/or
/// IPv6, no duplicates. All of them move together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipSpec {
    addresses: Vec<VipAddress>,
}

impl VipSpec {
    /// A validated set of addresses.
    pub fn new(addresses: Vec<VipAddress>) -> Result<Self, ModelError> {
        if addresses.is_empty() {
            return Err(ModelError::NoAddress);
        }
        for (i, a) in addresses.iter().enumerate() {
            if addresses[..i].iter().any(|b| b.addr == a.addr) {
                return Err(ModelError::DuplicateAddress { address: a.addr });
            }
        }
        Ok(Self { addresses })
    }

    /// One address.
    pub fn single(address: VipAddress) -> Self {
        Self {
            addresses: vec![address],
        }
    }

    /// The addresses, in the order given.
    pub fn addresses(&self) -> &[VipAddress] {
        &self.addresses
    }
}

impl FromStr for VipSpec {
    type Err = ModelError;

    /// A comma-separated list, as kube-vip's `address` takes it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts = s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::parse)
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(parts)
    }
}

impl fmt::Display for VipSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.addresses.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}

/// Which interface the VIP goes on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum InterfaceSelector {
    /// This interface, by name.
    Name(String),
    /// The interface whose connected prefix contains the VIP, else the one
    /// of the default route.
    Auto,
}

impl InterfaceSelector {
    /// A named interface, validated as a Linux interface name (1–15 bytes,
    /// no `/`, no white space, not `.` or `..`).
    pub fn named(name: &str) -> Result<Self, ModelError> {
        let bad = |reason| ModelError::InvalidInterface {
            value: name.to_string(),
            reason,
        };
        if name.is_empty() {
            return Err(bad("empty"));
        }
        if name.len() > 15 {
            return Err(bad("longer than 15 bytes"));
        }
        if name == "." || name == ".." {
            return Err(bad("reserved name"));
        }
        if name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(bad("contains '/', ':', white space or a control character"));
        }
        Ok(Self::Name(name.to_string()))
    }
}

impl fmt::Display for InterfaceSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(n) => f.write_str(n),
            Self::Auto => f.write_str("auto"),
        }
    }
}

/// Election timings, client-go's three durations.
///
/// Validated: every one positive, the lease duration a whole number of
/// seconds (the Lease stores seconds), and
/// `retry period < renew deadline < lease duration`.
///
/// ```
/// use std::time::Duration;
/// use vip_core::Timings;
/// let t = Timings::default();
/// assert_eq!(t.lease_duration(), Duration::from_secs(5));
/// assert!(Timings::new(Duration::from_secs(5), Duration::from_secs(5), Duration::from_secs(1)).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    lease_duration: Duration,
    renew_deadline: Duration,
    retry_period: Duration,
}

impl Timings {
    /// Validated timings.
    pub fn new(
        lease_duration: Duration,
        renew_deadline: Duration,
        retry_period: Duration,
    ) -> Result<Self, ModelError> {
        let positive = |name, value: Duration| {
            if value.is_zero() {
                Err(ModelError::InvalidTiming {
                    name,
                    value,
                    expected: "a positive duration".into(),
                })
            } else {
                Ok(())
            }
        };
        positive("lease_duration", lease_duration)?;
        positive("renew_deadline", renew_deadline)?;
        positive("retry_period", retry_period)?;
        if lease_duration.subsec_nanos() != 0 {
            return Err(ModelError::InvalidTiming {
                name: "lease_duration",
                value: lease_duration,
                expected: "a whole number of seconds".into(),
            });
        }
        if lease_duration.as_secs() > i32::MAX as u64 {
            return Err(ModelError::InvalidTiming {
                name: "lease_duration",
                value: lease_duration,
                expected: "at most 2147483647 s".into(),
            });
        }
        if renew_deadline >= lease_duration {
            return Err(ModelError::InvalidTiming {
                name: "renew_deadline",
                value: renew_deadline,
                expected: format!("less than the lease duration ({lease_duration:?})"),
            });
        }
        if retry_period >= renew_deadline {
            return Err(ModelError::InvalidTiming {
                name: "retry_period",
                value: retry_period,
                expected: format!("less than the renew deadline ({renew_deadline:?})"),
            });
        }
        Ok(Self {
            lease_duration,
            renew_deadline,
            retry_period,
        })
    }

    /// How long after the last observed change of the record a candidate
    /// may take the lease.
    pub fn lease_duration(&self) -> Duration {
        self.lease_duration
    }

    /// How long after sending its last successful renewal a leader may go
    /// on leading.
    pub fn renew_deadline(&self) -> Duration {
        self.renew_deadline
    }

    /// How often the leader renews and a follower re-reads the record.
    pub fn retry_period(&self) -> Duration {
        self.retry_period
    }

    /// The lease duration in whole seconds, as the record stores it.
    pub fn lease_duration_seconds(&self) -> u32 {
        // Validated to fit in i32 in `new`.
        self.lease_duration.as_secs() as u32
    }
}

impl Default for Timings {
    /// kube-vip v1.0.3's: lease 5 s, renew deadline 3 s, retry 1 s.
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(5),
            renew_deadline: Duration::from_secs(3),
            retry_period: Duration::from_secs(1),
        }
    }
}

/// This node's identity in the election: the Lease's `holderIdentity`.
///
/// Normalised to lower case, as Kubernetes node names are (kube-vip #520).
///
/// ```
/// use vip_core::NodeIdentity;
/// assert_eq!(NodeIdentity::new("Alpha-1").unwrap().as_str(), "alpha-1");
/// assert!(NodeIdentity::new("").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeIdentity(String);

impl NodeIdentity {
    /// A validated, lower-cased identity: 1–253 characters of a DNS
    /// subdomain (`a-z`, `0-9`, `-`, `.`), starting and ending alphanumeric.
    pub fn new(value: &str) -> Result<Self, ModelError> {
        let bad = |reason| ModelError::InvalidIdentity {
            value: value.to_string(),
            reason,
        };
        let v = value.trim().to_ascii_lowercase();
        crate::names::check_dns_subdomain(&v).map_err(|e| {
            bad(match e {
                DnsNameError::Empty => "empty",
                DnsNameError::TooLong { .. } => "longer than 253 characters",
                DnsNameError::BadChar => "only letters, digits, '-' and '.' are allowed",
                DnsNameError::BadEnds => "must start and end with a letter or digit",
            })
        })?;
        Ok(Self(v))
    }

    /// The identity as written into the Lease.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An Ethernet hardware address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The broadcast address `ff:ff:ff:ff:ff:ff`.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// The all-zero address.
    pub const ZERO: MacAddr = MacAddr([0; 6]);
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl FromStr for MacAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for b in &mut out {
            let p = parts
                .next()
                .ok_or_else(|| format!("invalid MAC address {s:?}"))?;
            if p.len() != 2 {
                return Err(format!("invalid MAC address {s:?}"));
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| format!("invalid MAC address {s:?}"))?;
        }
        if parts.next().is_some() {
            return Err(format!("invalid MAC address {s:?}"));
        }
        Ok(MacAddr(out))
    }
}

/// A resolved network interface.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Interface {
    /// Its name, e.g. `end0`.
    pub name: String,
    /// Its kernel index.
    pub index: u32,
    /// Its hardware address.
    pub mac: MacAddr,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_addresses_get_host_prefixes() {
        assert_eq!("198.18.0.1".parse::<VipAddress>().unwrap().prefix(), 32);
        assert_eq!("2001:db8::1".parse::<VipAddress>().unwrap().prefix(), 128);
        assert_eq!(
            " 198.18.0.1/24 ".parse::<VipAddress>().unwrap().prefix(),
            24
        );
    }

    #[test]
    fn bad_addresses_are_named() {
        for bad in [
            "",
            "198.18.0.1/",
            "198.18.0.1/+3",
            "198.18.0.1/0",
            "x",
            "198.18.0.1/129",
            "::1",
        ] {
            let e = bad.parse::<VipAddress>().unwrap_err().to_string();
            assert!(!e.is_empty(), "{bad}");
        }
        let e = "198.18.0.1/33"
            .parse::<VipAddress>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("33") && e.contains("1..=32"), "{e}");
        let e = "224.0.0.1".parse::<VipAddress>().unwrap_err().to_string();
        assert!(e.contains("multicast"), "{e}");
    }

    #[test]
    fn spec_lists() {
        let s: VipSpec = "198.18.0.1, 2001:db8::1/64".parse().unwrap();
        assert_eq!(s.addresses().len(), 2);
        assert_eq!(s.to_string(), "198.18.0.1/32,2001:db8::1/64");
        assert_eq!("".parse::<VipSpec>(), Err(ModelError::NoAddress));
        assert!(matches!(
            "198.18.0.1,198.18.0.1/24".parse::<VipSpec>(),
            Err(ModelError::DuplicateAddress { .. })
        ));
    }

    #[test]
    fn timings_are_ordered() {
        let s = Duration::from_secs;
        assert!(Timings::new(s(5), s(3), s(1)).is_ok());
        let e = Timings::new(s(5), s(3), s(3)).unwrap_err().to_string();
        assert!(e.contains("retry_period"), "{e}");
        let e = Timings::new(s(3), s(3), s(1)).unwrap_err().to_string();
        assert!(e.contains("renew_deadline"), "{e}");
        let e = Timings::new(Duration::from_millis(5500), s(3), s(1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("whole number"), "{e}");
        let e = Timings::new(s(5), s(3), Duration::ZERO)
            .unwrap_err()
            .to_string();
        assert!(e.contains("positive"), "{e}");
    }

    #[test]
    fn identities_and_interfaces() {
        assert_eq!(
            NodeIdentity::new(" Node-A.example ").unwrap().as_str(),
            "node-a.example"
        );
        assert!(NodeIdentity::new("-a").is_err());
        assert!(NodeIdentity::new("a_b").is_err());
        assert!(InterfaceSelector::named("end0").is_ok());
        assert!(InterfaceSelector::named("averyveryverylongname").is_err());
        assert!(InterfaceSelector::named("a/b").is_err());
    }

    #[test]
    fn mac_round_trip() {
        let m: MacAddr = "02:00:5e:10:00:01".parse().unwrap();
        assert_eq!(m.to_string(), "02:00:5e:10:00:01");
        assert!("02:00:5e:10:00".parse::<MacAddr>().is_err());
        assert!("02:00:5e:10:00:01:02".parse::<MacAddr>().is_err());
    }
}
