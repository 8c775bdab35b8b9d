//! Response header names spelled as Salesforce spells them on HTTP/1.x.
//!
//! hyper writes every header name in lower case (the `http` crate stores them so), and its
//! `title_case_headers` option spells `Sforce-Numberofrecords` and `Etag`. Real orgs send
//! `Sforce-NumberOfRecords`, `Sforce-Locator`, `ETag`, `Content-Type`…, and clients that read
//! headers into a case-sensitive map (a Python `dict(response.headers)`, a literal name
//! comparison) stop paging after the first Bulk results page when the name differs. hyper
//! keeps its case map private, so this module rewrites the names on the way out instead.
//!
//! It wraps a connection's byte stream below hyper. Each HTTP/1.x response head is copied
//! (it is a few hundred bytes) and its names are rewritten in place — the same length, so
//! `Content-Length`, chunked framing, keep-alive and gzip bodies are untouched. Body bytes
//! are never copied or changed: they go straight to the socket, and the module only follows
//! the framing (`Content-Length`, chunked encoding, bodiless statuses, responses to `HEAD`)
//! to know where the next head starts. Whatever it does not recognise — HTTP/2 (whose names
//! are lower case by definition), an upgrade, a close-delimited body, a head that does not
//! start with `HTTP/1.` — switches the connection to pass-through for good: it may then miss
//! a rewrite, but it can never alter a body.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Longest response head rewritten. The emulator's heads are under 1 KiB; a longer one is
/// passed through as it is rather than buffered without bound.
const MAX_HEAD: usize = 16 * 1024;

/// Requests in flight on one connection whose responses are not written yet. HTTP/1 answers
/// requests in order, so a queue is enough; the cap only guards against a connection this
/// module has stopped following (it then passes everything through).
const MAX_PENDING: usize = 1024;

/// Salesforce's spelling where title case (`Sforce-Limit-Info`, `Content-Type`,
/// `Retry-After`, `Last-Modified`, …) is not it.
fn special(lower: &[u8]) -> Option<&'static [u8]> {
    Some(match lower {
        b"sforce-numberofrecords" => b"Sforce-NumberOfRecords",
        b"etag" => b"ETag",
        b"www-authenticate" => b"WWW-Authenticate",
        b"x-xss-protection" => b"X-XSS-Protection",
        b"content-md5" => b"Content-MD5",
        _ => return None,
    })
}

/// Rewrites one header name in place (its length never changes).
fn spell(name: &mut [u8]) {
    let lower = name.to_ascii_lowercase();
    if let Some(s) = special(&lower).filter(|s| s.len() == name.len()) {
        name.copy_from_slice(s);
        return;
    }
    let mut upper = true;
    for b in name.iter_mut() {
        *b = if upper {
            b.to_ascii_uppercase()
        } else {
            b.to_ascii_lowercase()
        };
        upper = *b == b'-';
    }
}

/// What follows a response head on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// Nothing: the next bytes are another head.
    None,
    Length(u64),
    Chunked,
    /// Unknown length (close-delimited, an upgrade): stop following the connection.
    Unknown,
}

/// Rewrites the header names of a complete head (ending in `\r\n\r\n`) and says what
/// framing follows it. `is_head_request` is asked only for final (non-1xx) responses.
fn rewrite_head(head: &mut [u8], is_head_request: impl FnOnce() -> bool) -> Framing {
    let mut lines = head.split_mut(|&b| b == b'\n');
    let status = lines
        .next()
        .and_then(|l| l.get(9..12))
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse::<u16>().ok());
    let mut length: Option<u64> = None;
    let mut chunked = false;
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = line.split_at_mut(colon);
        spell(name);
        let value = value[1..].trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") {
            length = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            chunked = value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        }
    }
    match status {
        Some(101) => Framing::Unknown,
        Some(100..=199) => Framing::None,
        Some(s) => {
            if is_head_request() || s == 204 || s == 304 {
                Framing::None
            } else if chunked {
                Framing::Chunked
            } else {
                match length {
                    Some(0) => Framing::None,
                    Some(n) => Framing::Length(n),
                    None => Framing::Unknown,
                }
            }
        }
        None => Framing::Unknown,
    }
}

/// Where the outgoing stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At (or inside) a response head.
    Head,
    /// Bytes of a `Content-Length` body still to come.
    Fixed(u64),
    /// Inside a chunk-size line: the size so far, and whether an extension started.
    ChunkSize {
        size: u64,
        digits: bool,
        ext: bool,
    },
    ChunkData(u64),
    /// The CRLF after a chunk's data: bytes of it still to come.
    ChunkEnd(u8),
    /// After the last chunk: trailer lines up to an empty one; `line` = bytes on this line.
    Trailer {
        line: usize,
    },
    /// Not following the stream any more.
    Through,
}

impl State {
    /// Follows `bytes` of body framing; returns how many belong to the current message
    /// (fewer than `bytes.len()` only when the message ends and a head follows).
    fn step(&mut self, bytes: &[u8]) -> usize {
        let mut i = 0;
        while i < bytes.len() {
            match *self {
                State::Head => return i,
                State::Through => return bytes.len(),
                State::Fixed(n) => {
                    let take = n.min((bytes.len() - i) as u64);
                    i += take as usize;
                    *self = if take == n {
                        State::Head
                    } else {
                        State::Fixed(n - take)
                    };
                }
                State::ChunkData(n) => {
                    let take = n.min((bytes.len() - i) as u64);
                    i += take as usize;
                    *self = if take == n {
                        State::ChunkEnd(2)
                    } else {
                        State::ChunkData(n - take)
                    };
                }
                State::ChunkEnd(left) => {
                    let expect = if left == 2 { b'\r' } else { b'\n' };
                    *self = match (bytes[i], left) {
                        (b, 2) if b == expect => State::ChunkEnd(1),
                        (b, _) if b == expect => State::ChunkSize {
                            size: 0,
                            digits: false,
                            ext: false,
                        },
                        _ => State::Through,
                    };
                    i += 1;
                }
                State::ChunkSize { size, digits, ext } => {
                    let b = bytes[i];
                    i += 1;
                    *self = match b {
                        b'\n' if digits && size == 0 => State::Trailer { line: 0 },
                        b'\n' if digits => State::ChunkData(size),
                        b'\r' | b';' | b' ' | b'\t' if digits => State::ChunkSize {
                            size,
                            digits,
                            ext: true,
                        },
                        _ if ext => State::ChunkSize { size, digits, ext },
                        _ => match (b as char).to_digit(16) {
                            Some(d) if size < (1 << 56) => State::ChunkSize {
                                size: size * 16 + u64::from(d),
                                digits: true,
                                ext,
                            },
                            _ => State::Through,
                        },
                    };
                }
                State::Trailer { line } => {
                    let b = bytes[i];
                    i += 1;
                    *self = match b {
                        b'\n' if line == 0 => State::Head,
                        b'\n' => State::Trailer { line: 0 },
                        b'\r' => State::Trailer { line },
                        _ => State::Trailer { line: line + 1 },
                    };
                }
            }
        }
        i
    }
}

/// The requests a connection has handed to the service and not yet answered, as "was it a
/// `HEAD`" flags: a response to `HEAD` carries `Content-Length` but no body.
#[derive(Debug, Default)]
pub struct PendingRequests {
    queue: Mutex<VecDeque<bool>>,
    off: AtomicBool,
}

impl PendingRequests {
    /// Called by the service for every request, before its response exists.
    pub fn push(&self, method: &hyper::Method) {
        if self.off.load(Ordering::Relaxed) {
            return;
        }
        if let Ok(mut q) = self.queue.lock() {
            if q.len() >= MAX_PENDING {
                q.clear();
                self.off.store(true, Ordering::Relaxed);
                return;
            }
            q.push_back(method == hyper::Method::HEAD);
        }
    }

    fn pop(&self) -> bool {
        self.queue
            .lock()
            .ok()
            .and_then(|mut q| q.pop_front())
            .unwrap_or(false)
    }

    fn stop(&self) {
        self.off.store(true, Ordering::Relaxed);
        if let Ok(mut q) = self.queue.lock() {
            q.clear();
        }
    }
}

/// A connection's byte stream with Salesforce's header spelling on the way out.
#[derive(Debug)]
pub struct HeaderCase<S> {
    inner: S,
    state: State,
    /// The response head being collected.
    head: Vec<u8>,
    /// Rewritten heads not yet handed to `inner`; always written before more body bytes.
    out: Vec<u8>,
    out_pos: usize,
    pending: Arc<PendingRequests>,
}

impl<S> HeaderCase<S> {
    pub fn new(inner: S, pending: Arc<PendingRequests>) -> Self {
        HeaderCase {
            inner,
            state: State::Head,
            head: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            pending,
        }
    }

    fn pass_through(&mut self) {
        self.out.extend_from_slice(&self.head);
        self.head.clear();
        self.state = State::Through;
        self.pending.stop();
    }

    /// Takes head bytes from `buf` into `self.head`; returns how many it took. A complete
    /// head moves, rewritten, to `self.out`.
    fn absorb_head(&mut self, buf: &[u8]) -> usize {
        const PREFIX: &[u8] = b"HTTP/1.";
        if self.pending.off.load(Ordering::Relaxed) {
            self.pass_through();
            return 0;
        }
        for (i, &b) in buf.iter().enumerate() {
            self.head.push(b);
            let n = self.head.len();
            if (n <= PREFIX.len() && PREFIX[n - 1] != b) || n > MAX_HEAD {
                self.pass_through();
                return i + 1;
            }
            if n >= 4 && &self.head[n - 4..] == b"\r\n\r\n" {
                let mut head = std::mem::take(&mut self.head);
                let pending = self.pending.clone();
                let framing = rewrite_head(&mut head, || pending.pop());
                self.out.extend_from_slice(&head);
                self.state = match framing {
                    Framing::None => State::Head,
                    Framing::Length(n) => State::Fixed(n),
                    Framing::Chunked => State::ChunkSize {
                        size: 0,
                        digits: false,
                        ext: false,
                    },
                    Framing::Unknown => {
                        self.pass_through();
                        State::Through
                    }
                };
                head.clear();
                self.head = head;
                return i + 1;
            }
        }
        buf.len()
    }
}

impl<S: AsyncWrite + Unpin> HeaderCase<S> {
    /// Writes what is left of `out`.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out_pos < self.out.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out[self.out_pos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out_pos += n;
        }
        self.out.clear();
        self.out_pos = 0;
        Poll::Ready(Ok(()))
    }

    fn write(&mut self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        loop {
            if self.state == State::Head {
                let Some(first) = bufs.iter().find(|b| !b.is_empty()) else {
                    return Poll::Ready(Ok(0));
                };
                let took = self.absorb_head(first);
                if took > 0 {
                    return Poll::Ready(Ok(took));
                }
                continue;
            }
            // The body bytes of the current message (all of them once passing through),
            // behind any heads still waiting, in one vectored write.
            let mut probe = self.state;
            let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(bufs.len() + 1);
            let waiting = self.out.len() - self.out_pos;
            if waiting > 0 {
                slices.push(IoSlice::new(&self.out[self.out_pos..]));
            }
            let mut body = 0;
            for b in bufs {
                let take = probe.step(b);
                if take > 0 {
                    slices.push(IoSlice::new(&b[..take]));
                    body += take;
                }
                if take < b.len() {
                    break;
                }
            }
            if body == 0 && waiting == 0 {
                // Nothing of this message left in `bufs`: the next head starts here.
                if probe == State::Head && self.state != State::Head {
                    self.state = State::Head;
                    continue;
                }
                return Poll::Ready(Ok(0));
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write_vectored(cx, &slices))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            let from_out = n.min(waiting);
            self.out_pos += from_out;
            if self.out_pos == self.out.len() {
                self.out.clear();
                self.out_pos = 0;
            }
            let mut wrote = n - from_out;
            if wrote == 0 {
                continue;
            }
            let consumed = wrote;
            for b in bufs {
                if wrote == 0 {
                    break;
                }
                let part = wrote.min(b.len());
                self.state.step(&b[..part]);
                wrote -= part;
            }
            return Poll::Ready(Ok(consumed));
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HeaderCase<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().write(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().write(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for HeaderCase<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Writes `parts` through the wrapper in the given pieces (a body split anywhere must
    /// come out the same) and returns what reached the other end.
    async fn through(parts: &[&[u8]], heads: &[bool]) -> Vec<u8> {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let pending = Arc::new(PendingRequests::default());
        for &h in heads {
            pending.push(if h {
                &hyper::Method::HEAD
            } else {
                &hyper::Method::GET
            });
        }
        let mut w = HeaderCase::new(a, pending);
        for p in parts {
            w.write_all(p).await.expect("write");
        }
        w.shutdown().await.expect("shutdown");
        let mut out = Vec::new();
        b.read_to_end(&mut out).await.expect("read");
        out
    }

    fn split_everywhere(wire: &[u8]) -> Vec<Vec<&[u8]>> {
        (1..wire.len())
            .map(|i| vec![&wire[..i], &wire[i..]])
            .chain([wire.chunks(1).collect(), wire.chunks(7).collect()])
            .collect()
    }

    /// A chunked body whose data looks like headers, a bodiless status, a fixed-length
    /// body that looks like a head, and a last response.
    fn wire(names: [&str; 8]) -> Vec<u8> {
        let [ct, loc, num, etag, te, limit, len, lm] = names;
        let data = "sforce-locator: not a header\r\n\r\n";
        let fixed = "\r\nretry-after: 5\r\n\r\nHTTP/1.1 ";
        format!(
            "HTTP/1.1 200 OK\r\n{ct}: text/csv\r\n{loc}: MTAw\r\n{num}: 2\r\n{etag}: \"x\"\r\n{te}: chunked\r\n\r\n\
             {:x}\r\n{data}\r\n0\r\n\r\n\
             HTTP/1.1 204 No Content\r\n{limit}: api-usage=1/5\r\n\r\n\
             HTTP/1.1 404 Not Found\r\n{len}: {}\r\n\r\n{fixed}\
             HTTP/1.1 200 OK\r\n{lm}: x\r\n{len}: 3\r\n\r\nabc",
            data.len(),
            fixed.len(),
        )
        .into_bytes()
    }

    #[tokio::test]
    async fn names_take_salesforce_spelling_and_bodies_stay_byte_for_byte() {
        let sent = wire([
            "content-type",
            "sforce-locator",
            "sforce-numberofrecords",
            "etag",
            "transfer-encoding",
            "sforce-limit-info",
            "content-length",
            "last-modified",
        ]);
        let want = wire([
            "Content-Type",
            "Sforce-Locator",
            "Sforce-NumberOfRecords",
            "ETag",
            "Transfer-Encoding",
            "Sforce-Limit-Info",
            "Content-Length",
            "Last-Modified",
        ]);
        for parts in split_everywhere(&sent) {
            let out = through(&parts, &[false; 4]).await;
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&want),
                "split {:?}",
                parts.iter().map(|p| p.len()).collect::<Vec<_>>()
            );
        }
    }

    #[tokio::test]
    async fn a_head_response_has_no_body_and_an_interim_response_does_not_count() {
        let wire: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        let out = through(&[wire], &[true, false]).await;
        assert_eq!(
            String::from_utf8_lossy(&out),
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        );
    }

    #[tokio::test]
    async fn anything_but_http1_passes_through_untouched() {
        // An HTTP/2 SETTINGS frame, then bytes that look like a head.
        let h2: &[u8] =
            b"\x00\x00\x00\x04\x00\x00\x00\x00\x00HTTP/1.1 200 OK\r\ncontent-type: x\r\n\r\n";
        assert_eq!(through(&[h2], &[]).await, h2);
        // A close-delimited body is followed no further.
        let close: &[u8] =
            b"HTTP/1.0 200 OK\r\ncontent-type: x\r\n\r\nbody\r\nHTTP/1.1 200 OK\r\netag: y\r\n\r\n";
        assert_eq!(
            String::from_utf8_lossy(&through(&[close], &[false]).await),
            "HTTP/1.0 200 OK\r\nContent-Type: x\r\n\r\nbody\r\nHTTP/1.1 200 OK\r\netag: y\r\n\r\n"
        );
        // Malformed chunk framing stops the rewriting, never the bytes.
        let bad: &[u8] =
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nHTTP/1.1 200 OK\r\netag: y\r\n\r\n";
        assert_eq!(
            String::from_utf8_lossy(&through(&[bad], &[false]).await),
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nHTTP/1.1 200 OK\r\netag: y\r\n\r\n"
        );
    }
}
