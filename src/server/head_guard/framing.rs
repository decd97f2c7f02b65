//! Where each request's head starts and ends in a connection's bytes: a head runs to its
//! first empty line, then its body is as long as its Content-Length, or chunked (size lines
//! with optional extensions, data, and a last chunk with optional trailers), and the next
//! head follows. The rules are hyper's, so the two never disagree about a boundary; a body
//! the tracker cannot follow (a malformed chunk, which hyper refuses too) or a connection
//! that leaves HTTP/1 (CONNECT, Upgrade) is passed on unread.

use super::head::{self, Next, Refusal};
use crate::server::limits::MAX_HEAD_BYTES;

/// The framing of one connection's bytes, fed as they arrive.
#[derive(Debug, Default)]
pub struct Framing {
    state: State,
}

/// What `Framing::feed` found in a window of bytes.
#[derive(Debug, PartialEq)]
pub enum Fed {
    /// The first `n` bytes may go to hyper; the rest, if any, is a head not yet complete.
    Pass(usize),
    /// The first `n` bytes may go to hyper; the head that starts there is refused.
    Refuse(usize, Refusal),
}

#[derive(Debug, Default)]
enum State {
    /// In a head; `Scan::len` of its bytes have been seen.
    Head(Scan),
    /// In a body of known length: this many bytes are left.
    Body(u64),
    Chunked(Chunk),
    /// Past what the tracker follows: everything passes.
    #[default]
    Open,
    Refused,
}

impl Framing {
    pub fn new() -> Framing {
        Framing {
            state: State::Head(Scan::default()),
        }
    }

    /// Follows `window[from..]`, the bytes just read. When the stream is in a head,
    /// `window[..from]` is that head's start (held back by the caller); otherwise `from` is 0.
    pub fn feed(&mut self, window: &[u8], from: usize) -> Fed {
        let mut at = from;
        let mut head_start = 0;
        loop {
            match &mut self.state {
                State::Head(scan) => {
                    let bytes = &window[head_start..];
                    // A head that is all there is parsed once; one that comes in pieces is
                    // scanned as it arrives, and parsed once it is complete.
                    let whole = match scan.len {
                        0 => head::check_whole(bytes),
                        _ => None,
                    };
                    let (len, checked) = match whole {
                        Some(whole) => whole,
                        None => match scan.scan(bytes) {
                            Step::Partial => return Fed::Pass(head_start),
                            Step::Refused(refusal) => {
                                self.state = State::Refused;
                                return Fed::Refuse(head_start, refusal);
                            }
                            Step::Complete(len) => (len, head::check(&bytes[..len])),
                        },
                    };
                    at = head_start + len;
                    match checked {
                        Ok(next) => self.state = State::after_head(next),
                        Err(refusal) => {
                            self.state = State::Refused;
                            return Fed::Refuse(head_start, refusal);
                        }
                    }
                }
                State::Body(left) => {
                    let take = (*left).min((window.len() - at) as u64);
                    at += take as usize;
                    *left -= take;
                    if *left > 0 {
                        return Fed::Pass(at);
                    }
                    self.state = State::Head(Scan::default());
                }
                State::Chunked(chunk) => match chunk.follow(window, at) {
                    Ok(next) if *chunk == Chunk::End => {
                        at = next;
                        self.state = State::Head(Scan::default());
                    }
                    Ok(_) => return Fed::Pass(window.len()),
                    Err(Malformed) => self.state = State::Open,
                },
                State::Open => return Fed::Pass(window.len()),
                State::Refused => return Fed::Pass(0),
            }
            if let State::Head(_) = self.state {
                head_start = at;
            }
        }
    }
}

impl State {
    fn after_head(next: Next) -> State {
        match next {
            Next::Length(0) => State::Head(Scan::default()),
            Next::Length(n) => State::Body(n),
            Next::Chunked => State::Chunked(Chunk::Start),
            Next::Open => State::Open,
        }
    }
}

/// How far a head has been read: its length so far, and where in it the scan is.
#[derive(Debug, Default)]
struct Scan {
    len: usize,
    at: Place,
}

#[derive(Debug, Default, Clone, Copy, PartialEq)]
enum Place {
    /// Before the request line (empty lines may come first, as RFC 9112 allows).
    #[default]
    Leading,
    Method,
    /// In the rest of the request line.
    Target,
    /// In a header field line; `blank` while it has had no byte but `\r`.
    Field {
        blank: bool,
    },
}

enum Step {
    Partial,
    /// The head is complete: its first this many bytes.
    Complete(usize),
    Refused(Refusal),
}

impl Scan {
    /// Scans `head[self.len..]` (the head so far starts at `head[0]`) for the empty line
    /// that ends it, refusing what cannot be an HTTP request and heads past the limit.
    fn scan(&mut self, head: &[u8]) -> Step {
        while self.len < head.len() {
            // Inside the request line's target or a field line that is not blank, only the
            // line's end changes the state: go straight to it.
            if matches!(self.at, Place::Target | Place::Field { blank: false }) {
                match memchr::memchr(b'\n', &head[self.len..]) {
                    Some(to_end) => self.len += to_end,
                    None => {
                        self.len = head.len();
                        break;
                    }
                }
            }
            let b = head[self.len];
            self.len += 1;
            self.at = match (self.at, b) {
                (Place::Leading, b'\r' | b'\n') => Place::Leading,
                (Place::Leading | Place::Method, b) if is_token(b) => Place::Method,
                (Place::Method, b' ') => Place::Target,
                (Place::Leading | Place::Method, _) => {
                    return Step::Refused(head::not_a_request(&head[..self.len]))
                }
                (Place::Target, b'\n') => Place::Field { blank: true },
                (Place::Target, _) => Place::Target,
                (Place::Field { blank: true }, b'\n') => return Step::Complete(self.len),
                (Place::Field { blank }, b'\r') => Place::Field { blank },
                (Place::Field { .. }, b'\n') => Place::Field { blank: true },
                (Place::Field { .. }, _) => Place::Field { blank: false },
            };
        }
        if self.len > MAX_HEAD_BYTES {
            let line_done = matches!(self.at, Place::Field { .. });
            return Step::Refused(head::too_long(head, line_done));
        }
        Step::Partial
    }
}

/// The `tchar`s of RFC 9110, what a method is made of.
const TOKEN: [bool; 256] = head::byte_set(b"!#$%&'*+-.^_`|~");

fn is_token(b: u8) -> bool {
    TOKEN[usize::from(b)]
}

/// Where a chunked body is (hyper's states: a size line, data, then CRLF; after the last
/// chunk, trailer lines up to an empty one).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Chunk {
    Start,
    Size(u64),
    SizeLws(u64),
    Extension(u64),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    EndCr,
    Trailer,
    TrailerLf,
    EndLf,
    End,
}

#[derive(Debug)]
struct Malformed;

impl Chunk {
    /// Follows the body through `bytes[at..]`; returns where it stopped: the end of `bytes`,
    /// or just past the body's last byte (then `self` is `End`).
    fn follow(&mut self, bytes: &[u8], mut at: usize) -> Result<usize, Malformed> {
        while at < bytes.len() && *self != Chunk::End {
            if let Chunk::Data(left) = self {
                let take = (*left).min((bytes.len() - at) as u64);
                at += take as usize;
                *left -= take;
                if *left == 0 {
                    *self = Chunk::DataCr;
                }
                continue;
            }
            *self = self.step(bytes[at])?;
            at += 1;
        }
        Ok(at)
    }

    fn step(self, b: u8) -> Result<Chunk, Malformed> {
        use Chunk::*;
        let hex = |size: u64| -> Result<Chunk, Malformed> {
            let digit = (b as char).to_digit(16).ok_or(Malformed)?;
            let size = size.checked_mul(16).ok_or(Malformed)?;
            Ok(Size(size + u64::from(digit)))
        };
        Ok(match (self, b) {
            (Start, _) => hex(0)?,
            (Size(n), b'\t' | b' ') | (SizeLws(n), b'\t' | b' ') => SizeLws(n),
            (Size(n) | SizeLws(n), b';') => Extension(n),
            (Size(n) | SizeLws(n) | Extension(n), b'\r') => SizeLf(n),
            (Size(n), _) => hex(n)?,
            (Extension(_), b'\n') => return Err(Malformed),
            (Extension(n), _) => Extension(n),
            (SizeLf(0), b'\n') => EndCr,
            (SizeLf(n), b'\n') => Data(n),
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => Start,
            (EndCr, b'\r') => EndLf,
            (Trailer, b'\r') => TrailerLf,
            (EndCr | Trailer, _) => Trailer,
            (TrailerLf, b'\n') => EndCr,
            (EndLf, b'\n') => End,
            _ => return Err(Malformed),
        })
    }
}

#[cfg(test)]
#[path = "framing_tests.rs"]
mod tests;
