//! Coffer client library.
