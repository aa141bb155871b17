//! Operator CLI subcommands.

pub mod tls;
