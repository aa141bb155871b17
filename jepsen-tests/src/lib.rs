//! Real `coffer` processes as clusters on loopback, for integration tests,
//! fault-injection runs and benchmarks. The one place in the project that
//! starts and stops clusters.

pub mod bench;
pub mod cluster;
