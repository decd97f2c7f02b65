//! Size limits of what the server accepts.

/// The largest project bundle the server accepts.
pub const MAX_BUNDLE_BYTES: usize = 512 * 1024 * 1024;
/// The largest prediction request body the gateway accepts.
pub const MAX_PREDICTION_BYTES: usize = 64 * 1024 * 1024;
