//! Limits on a request head, shared by the listener (which sets hyper's own,
//! higher limits) and the API envelope (which answers 414/431 with an error
//! body below them). A leaf module: both sides depend on it, it on neither.

use hyper_util::rt::TokioExecutor;

/// Longest accepted request target (path and query), in bytes.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Largest accepted header section: the sum of header name and value
/// lengths, in bytes.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Most header fields accepted in one request.
pub const MAX_HEADER_COUNT: usize = 100;

/// hyper's own limits, set well above ours so that requests between the two
/// reach the API envelope and get a 414/431 with an error body. Above these,
/// hyper answers by itself (bodiless 431, or a reset stream in HTTP/2);
/// hyper's HTTP/1 URI limit (64 KiB) is already far above ours.
const HYPER_H1_MAX_HEADERS: usize = 2 * MAX_HEADER_COUNT;

/// Sets hyper's request-head limits of an API connection above the
/// envelope's, so the envelope is what answers oversize requests:
/// `max_head_bytes` is `[limits] max_header_bytes`, at least twice
/// [`MAX_HEADER_BYTES`] (checked with the config).
pub fn tune_hyper(
    builder: &mut hyper_util::server::conn::auto::Builder<TokioExecutor>,
    max_head_bytes: u32,
) {
    builder
        .http1()
        .max_headers(HYPER_H1_MAX_HEADERS)
        .max_buf_size(max_head_bytes as usize);
    builder.http2().max_header_list_size(max_head_bytes);
}
