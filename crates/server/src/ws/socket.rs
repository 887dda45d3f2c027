//! A server-side WebSocket over a [`Stream`] (plain TCP, or TLS), with the
//! buffers kept as small as the traffic allows.
//!
//! Why not a general-purpose WebSocket type: an idle presence member is the
//! common case, and a general type keeps a read buffer and a write buffer
//! per connection that grow to the largest message ever sent and stay
//! there (a 5 000-member roster is ~300 kB, once per member). Here nothing
//! is buffered while idle, a received frame is kept only until it is
//! complete, and outgoing frames are written straight from the shared,
//! encoded-once broadcast bytes with one vectored write.

use super::frame::{self, Decoder, Message, Step, WsError, OP_PONG, OP_TEXT};
use super::stream::Stream;
use crate::outbox::Frame;
use std::io::{self, IoSlice};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

/// Free space made in the read buffer before each read. Small: client
/// frames are small, and a larger message just takes more reads.
const READ_RESERVE: usize = 512;
/// How long a close frame (or a refusal) may take to go out.
pub(crate) const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long to wait for the client's side of the close after ours. Dropping
/// a socket with unread input makes the kernel send a reset, which can
/// destroy the close frame before the client reads it.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Why reading stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The client broke the WebSocket rules; answer with its close code.
    #[error(transparent)]
    Ws(#[from] WsError),
    /// The socket failed or the client went away.
    #[error("connection lost: {0}")]
    Io(#[from] io::Error),
}

/// One accepted WebSocket.
#[derive(Debug)]
pub struct Socket {
    stream: Stream,
    /// Bytes received and not yet decoded, from `start`.
    buf: Vec<u8>,
    start: usize,
    decoder: Decoder,
    eof: bool,
}

impl Socket {
    /// Wraps an upgraded stream; `leftover` is what the HTTP layer had
    /// already read past the handshake.
    pub fn new(stream: impl Into<Stream>, leftover: Vec<u8>, max_message: usize) -> Socket {
        Socket {
            stream: stream.into(),
            buf: leftover,
            start: 0,
            decoder: Decoder::new(max_message),
            eof: false,
        }
    }

    /// Waits until the socket has something to read (or is closed).
    /// Cancel-safe: nothing is read. What is already buffered does not
    /// count: call [`Socket::try_next`] until it returns `None` first.
    ///
    /// Polled through `poll_read_ready` on purpose: that replaces the read
    /// waker the HTTP layer left on this stream during the handshake. With
    /// `readable()` the stale waker would stay registered and keep the
    /// finished HTTP task's memory (~1 kB) alive for the connection's life.
    pub async fn readable(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.stream.poll_read_ready(cx)).await
    }

    /// The next complete message: decodes what is buffered and reads what
    /// the socket has without waiting. `Ok(None)` means wait for
    /// [`Socket::readable`] again.
    pub fn try_next(&mut self) -> Result<Option<Message>, ReadError> {
        loop {
            match self.decoder.step(&self.buf[self.start..])? {
                Step::Message(n, m) => {
                    self.consumed(n);
                    return Ok(Some(m));
                }
                Step::Consumed(n) => self.consumed(n),
                Step::NeedMore => {
                    if self.eof {
                        return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
                    }
                    if !self.fill()? {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Reads once without waiting; `false` when nothing was there.
    fn fill(&mut self) -> io::Result<bool> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        // Straight into the buffer's spare capacity: no staging copy and
        // no zeroing of a scratch array on every read.
        self.buf.reserve(READ_RESERVE);
        match self.stream.try_read_buf(&mut self.buf) {
            Ok(0) => {
                self.eof = true;
                Ok(true)
            }
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Nothing came: do not keep the space reserved for it.
                if self.buf.is_empty() {
                    self.buf = Vec::new();
                }
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    fn consumed(&mut self, n: usize) {
        self.start += n;
        if self.start == self.buf.len() {
            // Everything read is decoded: give the buffer back. A member
            // sends a few messages in its life; holding even 512 bytes each
            // between them would be a quarter of an idle connection's cost.
            self.start = 0;
            self.buf = Vec::new();
        }
    }

    /// Writes text frames with vectored writes: a small header per frame in
    /// front of the shared payload, nothing copied.
    pub async fn write_texts(&mut self, frames: &[Frame]) -> io::Result<()> {
        let heads: Vec<([u8; 10], usize)> = frames
            .iter()
            .map(|f| frame::header(OP_TEXT, f.len()))
            .collect();
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(frames.len() * 2);
        for ((h, n), f) in heads.iter().zip(frames) {
            slices.push(IoSlice::new(&h[..*n]));
            slices.push(IoSlice::new(f.as_bytes()));
        }
        let mut rest: &mut [IoSlice<'_>] = &mut slices;
        while !rest.is_empty() {
            let n = self.stream.write_vectored(rest).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut rest, n);
        }
        // TLS may hold written records back until flushed; a no-op on TCP.
        self.stream.flush().await
    }

    /// Answers a ping.
    pub async fn pong(&mut self, payload: &[u8]) -> io::Result<()> {
        self.stream
            .write_all(&frame::control(OP_PONG, payload))
            .await?;
        self.stream.flush().await
    }

    /// Sends a close frame, ends our side, and waits briefly for the
    /// client's. Best effort and bounded in time.
    pub async fn close(mut self, code: u16, reason: &str) {
        let bytes = frame::close(code, reason);
        let sent = timeout(CLOSE_WRITE_TIMEOUT, async {
            self.stream.write_all(&bytes).await?;
            self.stream.shutdown().await
        })
        .await;
        if matches!(sent, Ok(Ok(()))) && !self.eof {
            self.linger().await;
        }
    }

    /// Ends the connection without a close frame (the client is gone or
    /// already closed), after reading out what it sent.
    pub async fn finish(mut self) {
        let _ = timeout(CLOSE_WRITE_TIMEOUT, self.stream.shutdown()).await;
        if !self.eof {
            self.linger().await;
        }
    }

    async fn linger(&mut self) {
        let _ = timeout(CLOSE_LINGER, async {
            let mut sink = [0u8; 512];
            while matches!(self.stream.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::{TcpListener, TcpStream};

    async fn pair() -> (Socket, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        (Socket::new(server, Vec::new(), 1 << 20), client)
    }

    fn masked_text(s: &str) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut out = vec![0x81];
        assert!(s.len() < 126);
        out.push(0x80 | s.len() as u8);
        out.extend_from_slice(&mask);
        out.extend(s.bytes().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        out
    }

    async fn next(sock: &mut Socket) -> Result<Message, ReadError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(m) = sock.try_next()? {
                return Ok(m);
            }
            tokio::time::timeout_at(deadline, sock.readable())
                .await
                .expect("a message within 5 s")?;
        }
    }

    #[tokio::test]
    async fn reads_frames_split_and_pipelined_and_releases_the_buffer() {
        let (mut sock, mut client) = pair().await;
        let mut bytes = masked_text("one");
        bytes.extend(masked_text("two"));
        // Cut in the middle of the second frame's mask.
        client.write_all(&bytes[..12]).await.unwrap();
        assert_eq!(next(&mut sock).await.unwrap(), Message::Text("one".into()));
        assert_eq!(sock.try_next().unwrap(), None);
        client.write_all(&bytes[12..]).await.unwrap();
        assert_eq!(next(&mut sock).await.unwrap(), Message::Text("two".into()));
        assert_eq!(sock.buf.len(), 0);
        assert_eq!(sock.buf.capacity(), 0, "nothing held between messages");
    }

    #[tokio::test]
    async fn an_idle_socket_holds_no_buffer() {
        let (mut sock, _client) = pair().await;
        assert_eq!(sock.try_next().unwrap(), None);
        assert_eq!(sock.buf.capacity(), 0);
    }

    #[tokio::test]
    async fn leftover_from_the_handshake_is_read_first() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        let mut sock = Socket::new(server, masked_text("early"), 100);
        assert_eq!(
            next(&mut sock).await.unwrap(),
            Message::Text("early".into())
        );
    }

    #[tokio::test]
    async fn eof_in_the_middle_of_a_frame_is_an_error() {
        let (mut sock, mut client) = pair().await;
        client.write_all(&masked_text("cut")[..4]).await.unwrap();
        drop(client);
        assert!(matches!(next(&mut sock).await, Err(ReadError::Io(_))));
    }

    #[tokio::test]
    async fn writes_frames_and_a_close_the_client_can_read() {
        let (mut sock, mut client) = pair().await;
        let frames: Vec<Frame> = vec![Frame::from("a"), Frame::from("x".repeat(70_000))];
        sock.write_texts(&frames).await.unwrap();
        sock.close(4009, "bye").await;
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(&got[..3], &[0x81, 1, b'a']);
        assert_eq!(&got[3..5], &[0x81, 127]);
        let body = 3 + 10;
        assert_eq!(got.len(), body + 70_000 + 7);
        assert_eq!(
            &got[body + 70_000..],
            &[0x88, 5, 0x0F, 0xA9, b'b', b'y', b'e']
        );
    }
}
