//! The one validator of Kubernetes names: DNS labels (RFC 1123: namespaces,
//! service accounts, labels of a subdomain) and DNS subdomains (object
//! names such as a Lease's or a node's). Every crate checks names here and
//! words the refusal for its own setting.

/// The longest DNS label.
pub const DNS_LABEL_MAX: usize = 63;
/// The longest DNS subdomain.
pub const DNS_SUBDOMAIN_MAX: usize = 253;

/// Why a name is not a DNS label or subdomain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DnsNameError {
    /// Nothing was given.
    #[error("empty")]
    Empty,
    /// Too long.
    #[error("longer than {max} characters")]
    TooLong {
        /// The most allowed.
        max: usize,
    },
    /// A character other than `a-z`, `0-9`, `-` (and `.` between the labels
    /// of a subdomain).
    #[error("only lower-case letters, digits and '-' are allowed ('.' between labels)")]
    BadChar,
    /// A label (or the name) starts or ends with something other than a
    /// letter or digit, or is empty between two dots.
    #[error("each label must start and end with a letter or digit")]
    BadEnds,
}

/// Checks an RFC 1123 DNS label: 1 to 63 of `a-z`, `0-9` and `-`,
/// alphanumeric at both ends.
///
/// ```
/// use vip_core::names::{DnsNameError, check_dns_label};
/// assert!(check_dns_label("kube-system").is_ok());
/// assert_eq!(check_dns_label("-a"), Err(DnsNameError::BadEnds));
/// assert_eq!(check_dns_label("a.b"), Err(DnsNameError::BadChar));
/// ```
pub fn check_dns_label(value: &str) -> Result<(), DnsNameError> {
    if value.len() > DNS_LABEL_MAX {
        return Err(DnsNameError::TooLong { max: DNS_LABEL_MAX });
    }
    label_chars(value)
}

/// Checks a DNS subdomain: 1 to 253 characters, dot-separated labels of
/// `a-z`, `0-9` and `-`, each alphanumeric at both ends (as Kubernetes,
/// the labels' own length is not bounded, only the whole).
///
/// ```
/// use vip_core::names::{DnsNameError, check_dns_subdomain};
/// assert!(check_dns_subdomain("plndr-cp-lock").is_ok());
/// assert!(check_dns_subdomain("cp-1.example").is_ok());
/// assert_eq!(check_dns_subdomain("a..b"), Err(DnsNameError::BadEnds));
/// assert_eq!(check_dns_subdomain(""), Err(DnsNameError::Empty));
/// ```
pub fn check_dns_subdomain(value: &str) -> Result<(), DnsNameError> {
    if value.len() > DNS_SUBDOMAIN_MAX {
        return Err(DnsNameError::TooLong {
            max: DNS_SUBDOMAIN_MAX,
        });
    }
    if value.is_empty() {
        return Err(DnsNameError::Empty);
    }
    // Characters first, so that "a_b" reads as a bad character, not a
    // bad end.
    if !value.bytes().all(|b| allowed(b) || b == b'.') {
        return Err(DnsNameError::BadChar);
    }
    value.split('.').try_for_each(|l| match label_chars(l) {
        Err(DnsNameError::Empty) => Err(DnsNameError::BadEnds),
        other => other,
    })
}

fn allowed(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'
}

fn label_chars(label: &str) -> Result<(), DnsNameError> {
    let (Some(first), Some(last)) = (label.bytes().next(), label.bytes().last()) else {
        return Err(DnsNameError::Empty);
    };
    if !label.bytes().all(allowed) {
        return Err(DnsNameError::BadChar);
    }
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return Err(DnsNameError::BadEnds);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn labels() {
        assert_eq!(check_dns_label(""), Err(DnsNameError::Empty));
        assert_eq!(check_dns_label(&"a".repeat(63)), Ok(()));
        assert_eq!(
            check_dns_label(&"a".repeat(64)),
            Err(DnsNameError::TooLong { max: 63 })
        );
        assert_eq!(check_dns_label("A"), Err(DnsNameError::BadChar));
        assert_eq!(check_dns_label("a-"), Err(DnsNameError::BadEnds));
        assert_eq!(check_dns_label("0-a"), Ok(()));
    }

    #[test]
    fn subdomains() {
        assert_eq!(check_dns_subdomain("a.b-c.d"), Ok(()));
        assert_eq!(check_dns_subdomain(".a"), Err(DnsNameError::BadEnds));
        assert_eq!(check_dns_subdomain("a.-b"), Err(DnsNameError::BadEnds));
        assert_eq!(check_dns_subdomain("a_b"), Err(DnsNameError::BadChar));
        // As Kubernetes: no bound on one label of a subdomain but the whole.
        assert_eq!(check_dns_subdomain(&"a".repeat(64)), Ok(()));
        let long = ["a"; 127].join(".");
        assert_eq!(long.len(), 253);
        assert_eq!(check_dns_subdomain(&long), Ok(()));
        assert_eq!(
            check_dns_subdomain(&format!("{long}a")),
            Err(DnsNameError::TooLong { max: 253 })
        );
    }

    proptest! {
        /// A subdomain is exactly a dot-joined list of well-formed labels,
        /// at most 253 characters long.
        #[test]
        fn subdomain_is_labels_joined(s in "[a-z0-9.-]{0,70}") {
            let by_labels = !s.is_empty()
                && s.len() <= DNS_SUBDOMAIN_MAX
                && s.split('.').all(|l| label_chars(l).is_ok());
            prop_assert_eq!(check_dns_subdomain(&s).is_ok(), by_labels);
        }
    }
}
