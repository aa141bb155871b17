//! Raft wiring, gRPC transport, forwarding and membership.
