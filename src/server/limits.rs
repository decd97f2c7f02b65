//! Size limits of what the server accepts.

/// The largest project bundle the server accepts.
pub const MAX_BUNDLE_BYTES: usize = 512 * 1024 * 1024;
/// The largest prediction request body the gateway accepts.
pub const MAX_PREDICTION_BYTES: usize = 64 * 1024 * 1024;
/// The longest request target (path and query) the server answers; longer ones get a JSON
/// 414. hyper answers 414 itself, with no body, past 65,534 bytes.
pub const MAX_URI_BYTES: usize = 16 * 1024;
/// The most bytes of header fields (names and values) a request may carry; more get a JSON
/// 431. hyper answers 431 itself, with no body, to a head past about 408 KiB or with more than
/// 100 header fields.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
