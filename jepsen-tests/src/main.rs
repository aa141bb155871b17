//! `jepsen-tests` CLI (filled in below).
fn main() {}
