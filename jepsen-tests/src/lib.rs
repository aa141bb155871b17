//! Real `coffer` processes as clusters on loopback or in network namespaces,
//! for integration tests, fault-injection runs and benchmarks (the one place
//! in the project that starts and stops clusters), plus the Jepsen-style
//! harness: workloads, nemeses, history checkers and reports.

pub mod bench;
pub mod checker;
pub mod cluster;
pub mod history;
pub mod nemesis;
pub mod netns;
pub mod observe;
pub mod plot;
pub mod ports;
pub mod report;
pub mod runner;
pub mod suite;
pub mod workload;
