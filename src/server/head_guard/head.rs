//! One complete request head, checked against the server's limits and hyper's rules before
//! hyper sees it: what follows it (the body's framing), or why it is refused.

use axum::http::{StatusCode, Uri};

use crate::server::limits::{MAX_HEADER_BYTES, MAX_HEADER_FIELDS, MAX_HEAD_BYTES, MAX_URI_BYTES};

/// A head the server answers itself: `{"kind","message"}` with `status`, then it closes.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
}

/// What follows an accepted head.
#[derive(Debug, PartialEq)]
pub enum Next {
    /// A body of this many bytes (0: the next head).
    Length(u64),
    Chunked,
    /// The connection may leave HTTP/1 (CONNECT, Upgrade): nothing after is followed.
    Open,
}

/// Checks `head` (a request line and header fields up to the empty line that ends them).
pub fn check(head: &[u8]) -> Result<Next, Refusal> {
    let mut fields = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADER_FIELDS];
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(head, &mut fields) {
        Ok(httparse::Status::Complete(_)) => accepted(&req, head),
        Ok(httparse::Status::Partial) => Err(bad("the request's head ended early")),
        Err(httparse::Error::TooManyHeaders) => Err(too_many_fields(head)),
        Err(e) => Err(unparsable(head, req.method.is_some(), e)),
    }
}

/// When `bytes` start with a whole head that parses (most reads carry one): its length and
/// what [`check`] says of it, from one parse. `None` otherwise: the caller finds the head's
/// end itself, and [`check`] says why it is refused.
pub fn check_whole(bytes: &[u8]) -> Option<(usize, Result<Next, Refusal>)> {
    let mut fields = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADER_FIELDS];
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(bytes, &mut fields) {
        Ok(httparse::Status::Complete(len)) => Some((len, accepted(&req, &bytes[..len]))),
        _ => None,
    }
}

/// A head that parsed, checked against the limits and hyper's rules for its target and
/// framing.
fn accepted(req: &httparse::Request, head: &[u8]) -> Result<Next, Refusal> {
    let target = req.path.unwrap_or_default();
    if target.len() > MAX_URI_BYTES {
        return Err(uri_too_long(format!("{} bytes", target.len())));
    }
    let field_bytes: usize = req
        .headers
        .iter()
        .map(|h| h.name.len() + h.value.len())
        .sum();
    if field_bytes > MAX_HEADER_BYTES {
        return Err(too_large(format!(
            "the request's header fields are {field_bytes} bytes, more than the limit of {MAX_HEADER_BYTES}; send large values in the body"
        )));
    }
    if head.len() > MAX_HEAD_BYTES {
        return Err(head_too_large());
    }
    check_target(target)?;
    framing(req)
}

/// The body's framing, by hyper's rules: Transfer-Encoding (HTTP/1.1 only, ending in
/// chunked) wins over Content-Length; Content-Lengths are digits and agree.
fn framing(req: &httparse::Request) -> Result<Next, Refusal> {
    let http11 = req.version == Some(1);
    let mut open = req.method == Some("CONNECT");
    let mut encoding: Option<&[u8]> = None;
    let mut length: Option<u64> = None;
    for field in req.headers.iter() {
        let (name, value) = (field.name, field.value);
        if name.eq_ignore_ascii_case("transfer-encoding") {
            if !http11 {
                return Err(bad("transfer-encoding needs HTTP/1.1 and this request is HTTP/1.0; send a content-length instead"));
            }
            encoding = Some(value);
        } else if name.eq_ignore_ascii_case("content-length") && encoding.is_none() {
            let n = digits(value).ok_or_else(|| {
                bad(format!(
                    "the content-length {} is not a whole number of bytes",
                    shown(value)
                ))
            })?;
            if let Some(m) = length.filter(|&m| m != n) {
                return Err(bad(format!(
                    "the request's content-length headers disagree ({m} and {n}); send one"
                )));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("upgrade") {
            open |= http11;
        }
    }
    match encoding {
        Some(value) if !ends_in_chunked(value) => Err(bad(format!(
            "the transfer-encoding {} does not end in chunked, the only framing of a request body this server reads",
            shown(value)
        ))),
        _ if open => Ok(Next::Open),
        Some(_) => Ok(Next::Chunked),
        None => Ok(Next::Length(length.unwrap_or(0))),
    }
}

fn ends_in_chunked(value: &[u8]) -> bool {
    let visible = value
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b));
    let last = value.rsplit(|&b| b == b',').next().unwrap_or_default();
    visible && last.trim_ascii().eq_ignore_ascii_case(b"chunked")
}

/// Content-Length's value as hyper reads it: digits only, no sign, no spaces.
fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| match b {
        b'0'..=b'9' => n.checked_mul(10)?.checked_add(u64::from(b - b'0')),
        _ => None,
    })
}

/// The bytes of a target that is taken without a closer look: letters, digits and
/// `-._~!$&'()*+,;=:@/?%`.
const PLAIN_IN_TARGET: [bool; 256] = byte_set(b"-._~!$&'()*+,;=:@/?%");

/// A table of the ASCII letters and digits and `extra`, by byte.
pub const fn byte_set(extra: &[u8]) -> [bool; 256] {
    let mut set = [false; 256];
    let mut b = 0;
    while b < 128 {
        set[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        set[extra[i] as usize] = true;
        i += 1;
    }
    set
}

/// A target hyper would not take as a URI is refused here (a path of common characters
/// is one; others are checked the way hyper checks them).
fn check_target(target: &str) -> Result<(), Refusal> {
    if target.starts_with('/') && target.bytes().all(|b| PLAIN_IN_TARGET[usize::from(b)]) {
        return Ok(());
    }
    Uri::try_from(target).map(|_| ()).map_err(|_| {
        bad(format!(
            "the request's target {} is not a valid URI; percent-encode spaces, quotes and other special characters",
            shown(target.as_bytes())
        ))
    })
}

/// The bytes that began a connection's head and cannot begin an HTTP request.
pub fn not_a_request(start: &[u8]) -> Refusal {
    let start = start.trim_ascii_start();
    if start.first() == Some(&0x16) {
        return bad("the connection began with a TLS handshake, but this port speaks plain HTTP; use http://, not https://");
    }
    let line = start
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or_default();
    bad(format!(
        "the request line {} is not an HTTP request line (`METHOD /path HTTP/1.1`)",
        shown(line)
    ))
}

/// A head still going at `MAX_HEAD_BYTES`: its target is too long if its request line is.
pub fn too_long(head: &[u8], line_done: bool) -> Refusal {
    let line = head
        .trim_ascii_start()
        .split(|&b| b == b'\n')
        .next()
        .unwrap_or_default();
    let target = line.split(|&b| b == b' ').nth(1).map_or(0, <[u8]>::len);
    if !line_done {
        return uri_too_long(format!("more than {target} bytes"));
    }
    if target > MAX_URI_BYTES {
        return uri_too_long(format!("{target} bytes"));
    }
    head_too_large()
}

fn unparsable(head: &[u8], had_method: bool, e: httparse::Error) -> Refusal {
    let line = head
        .trim_ascii_start()
        .split(|&b| b == b'\r' || b == b'\n')
        .next();
    let line = line.unwrap_or_default();
    match e {
        httparse::Error::Token if had_method && line.split(|&b| b == b' ').count() >= 3 => bad(format!(
            "the request line {} has a target with bytes a URI may not hold; percent-encode spaces, quotes and control characters",
            shown(line)
        )),
        httparse::Error::Version if line.ends_with(b"HTTP/2.0") => {
            bad("this port speaks HTTP/1.1, not HTTP/2 without TLS; send HTTP/1.1")
        }
        httparse::Error::Version | httparse::Error::Token => bad(format!(
            "the request line {} does not read `METHOD /path HTTP/1.1`",
            shown(line)
        )),
        _ => bad("a header field line is not `name: value` (a token, a colon, then visible characters); check the request's headers"),
    }
}

fn too_many_fields(head: &[u8]) -> Refusal {
    let lines = head.trim_ascii_start().split(|&b| b == b'\n').skip(1);
    let count = lines.filter(|l| !l.is_empty() && *l != b"\r").count();
    too_large(format!(
        "the request's head has {count} header fields, more than the limit of {MAX_HEADER_FIELDS}; send fewer fields, or the data in the body"
    ))
}

/// `size`: the target's size, or what is known of it ("more than 90000 bytes").
fn uri_too_long(size: String) -> Refusal {
    Refusal {
        status: StatusCode::URI_TOO_LONG,
        kind: "uri_too_long",
        message: format!(
            "the request's path and query are {size}, more than the limit of {MAX_URI_BYTES}; send the data in the body"
        ),
    }
}

fn head_too_large() -> Refusal {
    too_large(format!(
        "the request's head is more than {MAX_HEAD_BYTES} bytes (its header fields may hold {MAX_HEADER_BYTES}); send large values in the body"
    ))
}

fn too_large(message: String) -> Refusal {
    Refusal {
        status: StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        kind: "headers_too_large",
        message,
    }
}

fn bad(message: impl Into<String>) -> Refusal {
    Refusal {
        status: StatusCode::BAD_REQUEST,
        kind: "bad_request",
        message: message.into(),
    }
}

/// At most 40 bytes of what the client sent, quoted, for a message.
fn shown(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(40)]);
    let more = if bytes.len() > 40 { "…" } else { "" };
    format!("{:?}{more}", text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(head: &str) -> Refusal {
        check(head.as_bytes()).expect_err(head)
    }

    #[test]
    fn framing_follows_hypers_rules() {
        let next = |fields: &str| check(format!("POST / HTTP/1.1\r\n{fields}\r\n").as_bytes());
        assert_eq!(next(""), Ok(Next::Length(0)));
        assert_eq!(next("content-length: 7\r\n"), Ok(Next::Length(7)));
        let both = "content-length: 7\r\ntransfer-encoding: gzip, Chunked\r\n";
        assert_eq!(next(both), Ok(Next::Chunked));
        assert_eq!(next("upgrade: websocket\r\n"), Ok(Next::Open));
        for bad in [
            "content-length: +7\r\n",
            "content-length: 7\r\ncontent-length: 8\r\n",
            "transfer-encoding: chunked, gzip\r\n",
        ] {
            assert_eq!(
                next(bad).unwrap_err().status,
                StatusCode::BAD_REQUEST,
                "{bad}"
            );
        }
        let old = refused("POST / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n");
        assert!(old.message.contains("needs HTTP/1.1"), "{old:?}");
    }

    #[test]
    fn a_target_hyper_would_not_take_is_refused_here() {
        let mut refused = 0;
        for b in 0x21..=0xffu8 {
            let target = [b"/a".as_slice(), &[b], b"?q=".as_slice(), &[b]].concat();
            let head = [b"GET ".as_slice(), &target, b" HTTP/1.1\r\n\r\n"].concat();
            let mut fields = [httparse::EMPTY_HEADER; 1];
            if httparse::Request::new(&mut fields).parse(&head).is_err() {
                continue;
            }
            let hyper_takes = Uri::try_from(target.as_slice()).is_ok();
            assert_eq!(check(&head).is_ok(), hyper_takes, "{}", b as char);
            refused += usize::from(!hyper_takes);
        }
        for target in ["/a%zz", "*", "http://h/p", "h:1"] {
            let head = format!("GET {target} HTTP/1.1\r\n\r\n");
            let hyper_takes = Uri::try_from(target).is_ok();
            assert_eq!(check(head.as_bytes()).is_ok(), hyper_takes, "{target}");
        }
        assert!(
            refused > 0,
            "some bytes httparse takes in a target and hyper does not"
        );
    }

    #[test]
    fn messages_say_what_arrived() {
        let fields: String = (0..150).map(|i| format!("x-{i}: v\r\n")).collect();
        let r = refused(&format!("GET / HTTP/1.1\r\n{fields}\r\n"));
        assert!(r
            .message
            .contains("has 150 header fields, more than the limit of 100"));
        let r = refused("PRI * HTTP/2.0\r\n\r\n");
        assert!(r.message.contains("not HTTP/2"), "{r:?}");
        let r = not_a_request(b"\r\nhel lo");
        assert_eq!(r.message, not_a_request(b"hel lo").message);
        let r = not_a_request(b"\x16\x03");
        assert!(r.message.contains("TLS handshake"));
    }
}
