//! Settings both ends of hookyard's gRPC calls must agree on.

/// Largest gRPC message hookyard services send or accept (tonic's default is 4 MiB, less than a
/// partner response egress may return, which is capped at 10 MiB plus headers).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
