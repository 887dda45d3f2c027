//! The byte stream under a connection, before and after the WebSocket
//! upgrade: plain TCP, or TLS over TCP when the server has a certificate.
//!
//! An enum rather than a boxed trait object: what a connection does per
//! frame (a vectored write, a non-blocking read, a readiness wait) costs a
//! `match` on the plain path, with no allocation and no virtual call, which
//! is what the benchmarks measure. The TLS state (rustls's buffers and
//! keys, some kilobytes) is boxed, so a plain connection does not carry
//! its size.
//!
//! TLS reads keep the socket's readiness model (wait for the socket to be
//! readable, then read without waiting until nothing is left): rustls only
//! runs out of plaintext when the TCP read under it would block, so
//! waiting on the TCP socket's readiness is waiting for more TLS input.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// What [`Stream::peek`] reads of a TLS connection: enough for the request
/// line and, usually, the whole head.
const TLS_PEEK: usize = 1024;

/// A connection's bytes.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP, after the handshake.
    Tls(Box<TlsConnection>),
}

/// A TLS connection, and what [`Stream::peek`] read from it before the
/// first reader: TLS has no peek, so the bytes are read and kept here until
/// the reader asks for them.
#[derive(Debug)]
pub struct TlsConnection {
    tls: TlsStream<TcpStream>,
    peeked: Vec<u8>,
}

impl From<TcpStream> for Stream {
    fn from(tcp: TcpStream) -> Stream {
        Stream::Plain(tcp)
    }
}

impl From<TlsStream<TcpStream>> for Stream {
    fn from(tls: TlsStream<TcpStream>) -> Stream {
        Stream::Tls(Box::new(TlsConnection {
            tls,
            peeked: Vec::new(),
        }))
    }
}

impl Stream {
    /// Reads without consuming: the first bytes decide which path serves
    /// the request (see `server::first_bytes`).
    pub async fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.peek(buf).await,
            Stream::Tls(c) => {
                if c.peeked.is_empty() {
                    c.peeked.reserve(TLS_PEEK);
                    c.tls.read_buf(&mut c.peeked).await?;
                }
                let n = buf.len().min(c.peeked.len());
                buf[..n].copy_from_slice(&c.peeked[..n]);
                Ok(n)
            }
        }
    }

    /// Ready when the socket may have something to read (or is closed).
    /// Registers `cx` as the only read waker, replacing one an earlier
    /// reader (the HTTP layer) left behind.
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Plain(tcp) => tcp.poll_read_ready(cx),
            Stream::Tls(c) if !c.peeked.is_empty() => Poll::Ready(Ok(())),
            Stream::Tls(c) => c.tls.get_ref().0.poll_read_ready(cx),
        }
    }

    /// Reads what is there without waiting: `WouldBlock` when nothing is,
    /// after which [`Stream::poll_read_ready`] wakes on new input.
    pub fn try_read_buf(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        if let Stream::Plain(tcp) = self {
            return tcp.try_read_buf(buf);
        }
        // tokio-rustls has no non-blocking read: poll a read once with a
        // waker that does nothing. It is pending only when rustls holds no
        // plaintext and the TCP read under it would block, and the next
        // `poll_read_ready` puts a real waker in this one's place.
        let mut cx = Context::from_waker(Waker::noop());
        match pin!(self.read_buf(buf)).poll(&mut cx) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Stream::Tls(c) if !c.peeked.is_empty() => {
                let n = buf.remaining().min(c.peeked.len());
                buf.put_slice(&c.peeked[..n]);
                c.peeked.drain(..n);
                if c.peeked.is_empty() {
                    c.peeked = Vec::new();
                }
                Poll::Ready(Ok(()))
            }
            Stream::Tls(c) => Pin::new(&mut c.tls).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Stream::Tls(c) => Pin::new(&mut c.tls).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Stream::Tls(c) => Pin::new(&mut c.tls).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(tcp) => tcp.is_write_vectored(),
            Stream::Tls(c) => c.tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Tls(c) => Pin::new(&mut c.tls).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Stream::Tls(c) => Pin::new(&mut c.tls).poll_shutdown(cx),
        }
    }
}
