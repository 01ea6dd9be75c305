//! The request head of an incoming HTTP request, read before the WebSocket
//! upgrade so a resident worker can answer `/healthz`, a refused token or
//! "busy" itself; [`Rewind`] then replays the bytes for the upgrade.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// Largest request head accepted; a longer one is refused.
pub(crate) const MAX_HEAD_BYTES: usize = 16 * 1024;

/// The parts of a request head the gate looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The request target without its query.
    pub path: String,
    /// The `Authorization` header's value, if any.
    pub authorization: Option<String>,
    /// Every byte read, head included, to replay for the upgrade.
    pub raw: Vec<u8>,
}

/// Reads up to the blank line ending the head. Errors on EOF, an oversized
/// head or a head that is not HTTP/1.
pub(crate) async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<Head> {
    let mut raw = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(end) = find_end(&raw) {
            return parse(&raw[..end]).map(|(method, path, authorization)| Head {
                method,
                path,
                authorization,
                raw,
            });
        }
        if raw.len() > MAX_HEAD_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request head too large",
            ));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        raw.extend_from_slice(&chunk[..n]);
    }
}

fn find_end(raw: &[u8]) -> Option<usize> {
    raw.windows(4).position(|w| w == b"\r\n\r\n")
}

fn parse(head: &[u8]) -> io::Result<(String, String, Option<String>)> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "not an HTTP/1 request");
    let text = std::str::from_utf8(head).map_err(|_| bad())?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next().ok_or_else(bad)?.split(' ');
    let (method, target, version) = (first.next(), first.next(), first.next());
    let (Some(method), Some(target), Some(version)) = (method, target, version) else {
        return Err(bad());
    };
    if !version.starts_with("HTTP/1.") {
        return Err(bad());
    }
    let path = target.split('?').next().unwrap_or_default().to_owned();
    let authorization = lines.find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("authorization")
            .then(|| value.trim().to_owned())
    });
    Ok((method.to_owned(), path, authorization))
}

/// A stream that first yields `prefix`, then reads from `inner`.
#[derive(Debug)]
pub(crate) struct Rewind<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> Rewind<S> {
    /// Replays `prefix` before `inner`.
    pub(crate) fn new(prefix: Vec<u8>, inner: S) -> Self {
        Self {
            prefix,
            pos: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pos < this.prefix.len() {
            let n = buf.remaining().min(this.prefix.len() - this.pos);
            buf.put_slice(&this.prefix[this.pos..this.pos + n]);
            this.pos += n;
            if this.pos == this.prefix.len() {
                this.prefix = Vec::new();
                this.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_head_is_parsed_and_replayed_byte_for_byte() {
        let request = b"GET /x?y=1 HTTP/1.1\r\nHost: h\r\nauthorization: Bearer abc\r\n\r\nrest";
        let mut input: &[u8] = request;
        let head = read_head(&mut input).await.unwrap();
        assert_eq!(head.method, "GET");
        assert_eq!(head.path, "/x");
        assert_eq!(head.authorization.as_deref(), Some("Bearer abc"));
        let mut replay = Rewind::new(head.raw, input);
        let mut all = Vec::new();
        replay.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, request);
    }

    #[tokio::test]
    async fn garbage_and_an_early_end_are_errors() {
        let mut tls_hello: &[u8] = b"\x16\x03\x01\x02\x00\x01\r\n\r\n";
        assert!(read_head(&mut tls_hello).await.is_err());
        let mut cut: &[u8] = b"GET / HTTP/1.1\r\nHost";
        assert!(read_head(&mut cut).await.is_err());
    }
}
