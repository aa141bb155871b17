//! Operator CLI subcommands.
