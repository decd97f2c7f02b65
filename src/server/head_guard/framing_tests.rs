//! The framing tracker, fed the way a socket delivers: whole, split at every byte, and
//! pipelined; each test checks which bytes pass and which head is refused.

use super::{Fed, Framing};
use axum::http::StatusCode;

/// Feeds `stream` in pieces cut at `cuts`, holding back an incomplete head as the guard
/// does; returns the bytes passed and the refusal's status, if any.
fn run(stream: &[u8], cuts: &[usize]) -> (Vec<u8>, Option<StatusCode>) {
    let mut framing = Framing::new();
    let (mut passed, mut held) = (Vec::new(), Vec::new());
    let mut bounds: Vec<usize> = cuts.to_vec();
    bounds.push(stream.len());
    let mut start = 0;
    for end in bounds {
        let from = held.len();
        held.extend_from_slice(&stream[start..end]);
        start = end;
        let (n, refused) = match framing.feed(&held, from) {
            Fed::Pass(n) => (n, None),
            Fed::Refuse(n, r) => (n, Some(r.status)),
        };
        passed.extend_from_slice(&held[..n]);
        held.drain(..n);
        if refused.is_some() {
            return (passed, refused);
        }
    }
    (passed, None)
}

/// `stream` passes whole and cut at every byte, with the same outcome.
fn at_every_cut(stream: &[u8], want_passed: &[u8], want: Option<StatusCode>) {
    assert_eq!(run(stream, &[]), (want_passed.to_vec(), want), "whole");
    for cut in 0..=stream.len() {
        let got = run(stream, &[cut]);
        assert_eq!(got, (want_passed.to_vec(), want), "cut at {cut}");
    }
    let every: Vec<usize> = (1..stream.len()).collect();
    assert_eq!(
        run(stream, &every),
        (want_passed.to_vec(), want),
        "bytewise"
    );
}

const GET: &[u8] = b"GET /a?b=c HTTP/1.1\r\nhost: x\r\n\r\n";
const POST: &[u8] = b"POST /p HTTP/1.1\r\ncontent-length: 5\r\n\r\nhello";
const CHUNKED: &[u8] = b"POST /c HTTP/1.1\r\ntransfer-encoding: gzip, chunked\r\n\r\n4;name=\"v\"\r\nwiki\r\n5 \t;x\r\npedia\r\n0\r\nexpires: never\r\nx-sum: 1\r\n\r\n";

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn pipelined_requests_with_and_without_bodies_all_pass() {
    let stream = cat(&[GET, POST, b"\r\n", CHUNKED, GET]);
    at_every_cut(&stream, &stream, None);
}

#[test]
fn a_chunked_body_without_trailers_ends_at_its_empty_line() {
    let body = b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\na\r\n0123456789\r\n0\r\n\r\n";
    let stream = cat(&[body, GET]);
    at_every_cut(&stream, &stream, None);
}

#[test]
fn a_bad_head_after_a_body_is_refused_and_the_body_passes() {
    let bad = b"hello\r\n\r\n";
    let stream = cat(&[POST, bad]);
    at_every_cut(&stream, POST, Some(StatusCode::BAD_REQUEST));
    let stream = cat(&[CHUNKED, bad]);
    at_every_cut(&stream, CHUNKED, Some(StatusCode::BAD_REQUEST));
}

#[test]
fn the_body_is_never_read_as_a_head() {
    // A body that looks like a bad head passes: it is the request's data.
    let post = b"POST / HTTP/1.1\r\ncontent-length: 9\r\n\r\nhello\r\n\r\n";
    let stream = cat(&[post, GET]);
    at_every_cut(&stream, &stream, None);
}

#[test]
fn a_tls_handshake_is_refused_at_its_first_byte() {
    let hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
    at_every_cut(hello, b"", Some(StatusCode::BAD_REQUEST));
    assert_eq!(run(&hello[..1], &[]).1, Some(StatusCode::BAD_REQUEST));
}

#[test]
fn heads_over_the_limits_are_refused_with_their_status() {
    let uri = format!("GET /{} HTTP/1.1\r\n\r\n", "x".repeat(70_000));
    assert_eq!(run(uri.as_bytes(), &[]).1, Some(StatusCode::URI_TOO_LONG));
    let fields: String = (0..150).map(|i| format!("x-{i}: v\r\n")).collect();
    let many = format!("GET / HTTP/1.1\r\n{fields}\r\n");
    let got = run(many.as_bytes(), &[7, 300]);
    assert_eq!(got.1, Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
    // A head that never ends is refused once it is past the limit, not buffered on.
    let endless = format!("GET / HTTP/1.1\r\nx-big: {}", "y".repeat(200_000));
    let cuts: Vec<usize> = (1..20).map(|i| i * 10_000).collect();
    let got = run(endless.as_bytes(), &cuts);
    assert_eq!(got.1, Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
}

#[test]
fn a_refused_head_passes_nothing_after_it() {
    let stream = cat(&[GET, b"GET / HTTP/1.1\r\ncontent-length: x\r\n\r\n", GET]);
    at_every_cut(&stream, GET, Some(StatusCode::BAD_REQUEST));
}

#[test]
fn a_malformed_chunk_or_an_upgrade_passes_everything_after_to_hyper() {
    let bad_chunk = b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n\r\n";
    at_every_cut(bad_chunk, bad_chunk, None);
    let connect = b"CONNECT h:1 HTTP/1.1\r\n\r\n\x16\x03\x01";
    at_every_cut(connect, connect, None);
}

#[test]
fn heads_with_bare_line_feeds_or_leading_empty_lines_end_where_hyper_ends_them() {
    let bare = b"GET /lf HTTP/1.1\nhost: x\n\n";
    let leading = b"\r\n\nPOST /p HTTP/1.1\r\ncontent-length: 2\r\n\r\nok";
    let stream = cat(&[bare, leading, GET]);
    at_every_cut(&stream, &stream, None);
    // A field line hyper cannot parse is refused whether the head comes whole or in pieces.
    let bad_field = b"GET / HTTP/1.1\r\nno colon here\r\n\r\n";
    at_every_cut(&cat(&[GET, bad_field]), GET, Some(StatusCode::BAD_REQUEST));
}
