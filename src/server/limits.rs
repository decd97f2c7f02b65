//! Size limits of what the server accepts.

/// The largest project bundle the server accepts.
pub const MAX_BUNDLE_BYTES: usize = 512 * 1024 * 1024;
/// The largest prediction request body the gateway accepts.
pub const MAX_PREDICTION_BYTES: usize = 64 * 1024 * 1024;
/// The largest body of a control request that is not an upload (a deploy's `cortex.yaml`,
/// users, tokens, access, Model Bazaar routes, queue acknowledgements): each is read whole
/// and parsed, so it stays small (upstream's configs are a few KiB).
pub const MAX_CONTROL_BYTES: usize = 1024 * 1024;
// The limits on a request's head, enforced by `head_guard` before hyper sees the head. Each
// is below hyper's own (a target of 65,534 bytes, a head of about 408 KiB, 100 fields),
// which would answer a bare status with no body.

/// The longest request target (path and query) the server answers; longer ones get a JSON
/// 414.
pub const MAX_URI_BYTES: usize = 16 * 1024;
/// The most bytes of header fields (names and values) a request may carry; more get a JSON
/// 431.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// The most header fields a request may carry; more get a JSON 431. It is hyper's own default
/// limit, which the server leaves unset: a limit set explicitly, even the same one, makes hyper
/// fill a table of that many slots on every request it parses.
pub const MAX_HEADER_FIELDS: usize = 100;
/// The largest request head: the target and the fields at their limits, with room for the
/// method, the version and each field's separators and spaces; larger gets a JSON 431.
pub const MAX_HEAD_BYTES: usize = MAX_URI_BYTES + MAX_HEADER_BYTES + 8 * 1024;
