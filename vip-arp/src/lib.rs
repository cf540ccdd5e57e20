//! Placeholder: filled by its issue.
#![deny(missing_docs)]
