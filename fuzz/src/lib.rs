//! Fuzz target bodies; replayed as ordinary tests on stable.
