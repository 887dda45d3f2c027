//! RFC 6455 framing for the server side, as pure functions over bytes.
//!
//! Only what a Pusher server needs: client frames are decoded (unmasked,
//! fragments joined, control frames answered by the caller), server frames
//! are a header in front of a payload that is never copied. No extension is
//! ever negotiated, so the reserved bits must be zero.

/// Continuation of a fragmented message.
pub const OP_CONTINUATION: u8 = 0x0;
/// A UTF-8 text message (every Pusher frame).
pub const OP_TEXT: u8 = 0x1;
/// A binary message (not part of the Pusher protocol).
pub const OP_BINARY: u8 = 0x2;
/// Close.
pub const OP_CLOSE: u8 = 0x8;
/// Ping.
pub const OP_PING: u8 = 0x9;
/// Pong.
pub const OP_PONG: u8 = 0xA;

/// Why a client's bytes cannot be read as WebSocket; each maps to the close
/// code RFC 6455 asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    /// The framing rules were broken (1002).
    #[error("WebSocket protocol error: {0}")]
    Protocol(&'static str),
    /// A message is over the size limit (1009).
    #[error("message larger than the {0}-byte limit")]
    TooBig(usize),
    /// A text message or close reason is not UTF-8 (1007).
    #[error("text frame is not valid UTF-8")]
    InvalidUtf8,
}

impl WsError {
    /// The close code to answer with.
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::Protocol(_) => 1002,
            WsError::TooBig(_) => 1009,
            WsError::InvalidUtf8 => 1007,
        }
    }
}

/// A complete message from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message.
    Text(String),
    /// A binary message; only its length is kept, nothing reads it.
    Binary(usize),
    /// A ping, with the payload the pong must echo.
    Ping(Vec<u8>),
    /// A pong.
    Pong,
    /// A close, with the client's code if it gave one.
    Close(Option<u16>),
}

/// What one decoding step found at the start of the input.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// The next frame is not complete yet: read more.
    NeedMore,
    /// A fragment was consumed (this many bytes); no message is complete yet.
    Consumed(usize),
    /// A message is complete; this many bytes were consumed.
    Message(usize, Message),
}

/// A message being reassembled from fragments.
#[derive(Debug)]
struct Partial {
    text: bool,
    data: Vec<u8>,
}

/// Decodes client frames into messages, holding at most one fragmented
/// message in between.
#[derive(Debug)]
pub struct Decoder {
    max_message: usize,
    partial: Option<Partial>,
}

/// A frame header as read from the wire.
struct Header {
    fin: bool,
    opcode: u8,
    len: usize,
    mask: [u8; 4],
    /// Bytes the header itself takes.
    size: usize,
}

impl Decoder {
    /// A decoder that refuses messages (and frames) over `max_message` bytes.
    pub fn new(max_message: usize) -> Decoder {
        Decoder {
            max_message,
            partial: None,
        }
    }

    /// Decodes at most one frame from the start of `input`.
    pub fn step(&mut self, input: &[u8]) -> Result<Step, WsError> {
        let Some(h) = self.header(input)? else {
            return Ok(Step::NeedMore);
        };
        let end = h.size + h.len;
        if input.len() < end {
            return Ok(Step::NeedMore);
        }
        let mut payload = input[h.size..end].to_vec();
        unmask(&mut payload, h.mask);
        let message = match h.opcode {
            OP_PING => Message::Ping(payload),
            OP_PONG => Message::Pong,
            OP_CLOSE => close_message(&payload)?,
            OP_TEXT | OP_BINARY => {
                if self.partial.is_some() {
                    return Err(WsError::Protocol(
                        "a new message began before the fragmented one ended",
                    ));
                }
                let text = h.opcode == OP_TEXT;
                if !h.fin {
                    self.partial = Some(Partial {
                        text,
                        data: payload,
                    });
                    return Ok(Step::Consumed(end));
                }
                finish(text, payload)?
            }
            _ => {
                // OP_CONTINUATION: `header` let no other opcode through.
                let Some(partial) = self.partial.as_mut() else {
                    return Err(WsError::Protocol(
                        "continuation frame without a message to continue",
                    ));
                };
                if partial.data.len() + payload.len() > self.max_message {
                    return Err(WsError::TooBig(self.max_message));
                }
                partial.data.extend_from_slice(&payload);
                if !h.fin {
                    return Ok(Step::Consumed(end));
                }
                let Partial { text, data } = self.partial.take().expect("checked above");
                finish(text, data)?
            }
        };
        Ok(Step::Message(end, message))
    }

    /// Reads and checks a header; `None` when it is not all there yet.
    fn header(&self, input: &[u8]) -> Result<Option<Header>, WsError> {
        let [b0, b1, ..] = *input else {
            return Ok(None);
        };
        if b0 & 0x70 != 0 {
            return Err(WsError::Protocol(
                "reserved bits set, but no extension was negotiated",
            ));
        }
        let fin = b0 & 0x80 != 0;
        let opcode = b0 & 0x0F;
        let control = match opcode {
            OP_CONTINUATION | OP_TEXT | OP_BINARY => false,
            OP_CLOSE | OP_PING | OP_PONG => true,
            _ => return Err(WsError::Protocol("unknown opcode")),
        };
        if b1 & 0x80 == 0 {
            return Err(WsError::Protocol("client frames must be masked"));
        }
        let (len, at) = match b1 & 0x7F {
            126 => match input.get(2..4) {
                Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
                None => return Ok(None),
            },
            127 => match input.get(2..10) {
                Some(b) => {
                    let n = u64::from_be_bytes(b.try_into().expect("8 bytes"));
                    if n >> 63 != 0 {
                        return Err(WsError::Protocol("payload length has its top bit set"));
                    }
                    (n, 10)
                }
                None => return Ok(None),
            },
            n => (u64::from(n), 2),
        };
        if control && !fin {
            return Err(WsError::Protocol("control frames must not be fragmented"));
        }
        if control && len > 125 {
            return Err(WsError::Protocol("control frame payload over 125 bytes"));
        }
        if len > self.max_message as u64 {
            return Err(WsError::TooBig(self.max_message));
        }
        let Some(mask) = input.get(at..at + 4) else {
            return Ok(None);
        };
        Ok(Some(Header {
            fin,
            opcode,
            len: len as usize,
            mask: mask.try_into().expect("4 bytes"),
            size: at + 4,
        }))
    }
}

fn finish(text: bool, data: Vec<u8>) -> Result<Message, WsError> {
    if text {
        String::from_utf8(data)
            .map(Message::Text)
            .map_err(|_| WsError::InvalidUtf8)
    } else {
        Ok(Message::Binary(data.len()))
    }
}

fn close_message(payload: &[u8]) -> Result<Message, WsError> {
    match payload {
        [] => Ok(Message::Close(None)),
        [_] => Err(WsError::Protocol("close frame with a one-byte payload")),
        [a, b, reason @ ..] => {
            let code = u16::from_be_bytes([*a, *b]);
            if !valid_close_code(code) {
                return Err(WsError::Protocol("invalid close code"));
            }
            std::str::from_utf8(reason).map_err(|_| WsError::InvalidUtf8)?;
            Ok(Message::Close(Some(code)))
        }
    }
}

/// Codes a peer may send (RFC 6455 7.4 and the IANA registry).
fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// XORs the client's mask over the payload, eight bytes at a time. Both
/// sides are read in native byte order, so byte `i` always meets
/// `mask[i % 4]`.
fn unmask(data: &mut [u8], mask: [u8; 4]) {
    let m = u64::from(u32::from_ne_bytes(mask));
    let wide = m | (m << 32);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes((&*c).try_into().expect("8 bytes")) ^ wide;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    // The remainder starts at a multiple of 8, so at mask[0].
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// The header of an unmasked, final server frame carrying `len` bytes:
/// the buffer and how many of its bytes are used.
pub fn header(opcode: u8, len: usize) -> ([u8; 10], usize) {
    let mut h = [0u8; 10];
    h[0] = 0x80 | opcode;
    let used = if len < 126 {
        h[1] = len as u8;
        2
    } else if let Ok(n) = u16::try_from(len) {
        h[1] = 126;
        h[2..4].copy_from_slice(&n.to_be_bytes());
        4
    } else {
        h[1] = 127;
        h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    };
    (h, used)
}

/// A whole control frame (payloads over 125 bytes are cut to 125).
pub fn control(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let payload = &payload[..payload.len().min(125)];
    let (h, n) = header(opcode, payload.len());
    let mut out = Vec::with_capacity(n + payload.len());
    out.extend_from_slice(&h[..n]);
    out.extend_from_slice(payload);
    out
}

/// A close frame with a code and a reason (cut at a character boundary to
/// fit the 125-byte control frame limit).
pub fn close(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    control(OP_CLOSE, &payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// A masked client frame.
    fn client(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&MASK);
        let mut p = payload.to_vec();
        unmask(&mut p, MASK);
        out.extend_from_slice(&p);
        out
    }

    fn one(input: &[u8]) -> Result<Step, WsError> {
        Decoder::new(1 << 20).step(input)
    }

    #[test]
    fn rfc_example_masked_hello() {
        // RFC 6455 5.7: a single-frame masked text message "Hello".
        let bytes = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(
            one(&bytes),
            Ok(Step::Message(11, Message::Text("Hello".into())))
        );
    }

    #[test]
    fn every_prefix_of_a_frame_needs_more() {
        for len in [0usize, 5, 125, 126, 300, 65_535, 65_536, 70_000] {
            let payload = "x".repeat(len);
            let f = client(true, OP_TEXT, payload.as_bytes());
            let mut d = Decoder::new(1 << 20);
            for cut in [0, 1, 2, 3, 5, 9, 13, f.len() - 1] {
                if cut < f.len() {
                    assert_eq!(d.step(&f[..cut]), Ok(Step::NeedMore), "len {len} cut {cut}");
                }
            }
            assert_eq!(
                d.step(&f),
                Ok(Step::Message(f.len(), Message::Text(payload)))
            );
        }
    }

    #[test]
    fn consumes_only_its_own_frame() {
        let mut two = client(true, OP_TEXT, b"a");
        let first = two.len();
        two.extend(client(true, OP_TEXT, b"b"));
        let mut d = Decoder::new(100);
        assert_eq!(
            d.step(&two),
            Ok(Step::Message(first, Message::Text("a".into())))
        );
        assert_eq!(
            d.step(&two[first..]),
            Ok(Step::Message(two.len() - first, Message::Text("b".into())))
        );
    }

    #[test]
    fn fragments_join_with_control_frames_between() {
        let mut d = Decoder::new(100);
        let a = client(false, OP_TEXT, "hé".as_bytes());
        let ping = client(true, OP_PING, b"p");
        // An empty fragment is allowed.
        let b = client(false, OP_CONTINUATION, b"");
        let c = client(true, OP_CONTINUATION, b"llo");
        assert_eq!(d.step(&a), Ok(Step::Consumed(a.len())));
        assert_eq!(
            d.step(&ping),
            Ok(Step::Message(ping.len(), Message::Ping(b"p".to_vec())))
        );
        assert_eq!(d.step(&b), Ok(Step::Consumed(b.len())));
        assert_eq!(
            d.step(&c),
            Ok(Step::Message(c.len(), Message::Text("héllo".into())))
        );
        // A character split across two fragments.
        let e = "é".as_bytes();
        let mut d = Decoder::new(100);
        let f1 = client(false, OP_TEXT, &e[..1]);
        let f2 = client(true, OP_CONTINUATION, &e[1..]);
        assert_eq!(d.step(&f1), Ok(Step::Consumed(f1.len())));
        assert_eq!(
            d.step(&f2),
            Ok(Step::Message(f2.len(), Message::Text("é".into())))
        );
    }

    #[test]
    fn unmasking_matches_the_byte_by_byte_rule_at_every_length() {
        let mask = [0x01, 0x80, 0xFE, 0x7F];
        for len in 0..40 {
            let plain: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(37)).collect();
            let mut data = plain.clone();
            unmask(&mut data, mask);
            let expected: Vec<u8> = plain
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            assert_eq!(data, expected, "len {len}");
        }
    }

    #[test]
    fn binary_keeps_only_the_length() {
        let f = client(true, OP_BINARY, &[0, 159, 146, 150]);
        assert_eq!(one(&f), Ok(Step::Message(f.len(), Message::Binary(4))));
    }

    #[test]
    fn close_codes_and_reasons() {
        let f = client(true, OP_CLOSE, b"");
        assert_eq!(one(&f), Ok(Step::Message(f.len(), Message::Close(None))));
        let mut p = 1000u16.to_be_bytes().to_vec();
        p.extend_from_slice(b"bye");
        let f = client(true, OP_CLOSE, &p);
        assert_eq!(
            one(&f),
            Ok(Step::Message(f.len(), Message::Close(Some(1000))))
        );
        for bad in [0u16, 999, 1004, 1005, 1006, 1015, 2999, 5000] {
            let f = client(true, OP_CLOSE, &bad.to_be_bytes());
            assert_eq!(
                one(&f),
                Err(WsError::Protocol("invalid close code")),
                "{bad}"
            );
        }
        let f = client(true, OP_CLOSE, &[3]);
        assert_eq!(one(&f).unwrap_err().close_code(), 1002);
        let f = client(true, OP_CLOSE, &[0x03, 0xE8, 0xFF]);
        assert_eq!(one(&f), Err(WsError::InvalidUtf8));
    }

    #[test]
    fn protocol_violations_have_their_close_codes() {
        let mut unmasked = client(true, OP_TEXT, b"hi");
        unmasked[1] &= 0x7F;
        let mut rsv = client(true, OP_TEXT, b"hi");
        rsv[0] |= 0x40;
        let cases: Vec<(&str, Vec<u8>, u16)> = vec![
            ("unmasked", unmasked, 1002),
            ("reserved bit", rsv, 1002),
            ("opcode 3", client(true, 0x3, b""), 1002),
            ("opcode 0xB", client(true, 0xB, b""), 1002),
            ("fragmented ping", client(false, OP_PING, b""), 1002),
            ("long ping", client(true, OP_PING, &[0; 126]), 1002),
            (
                "lone continuation",
                client(true, OP_CONTINUATION, b"x"),
                1002,
            ),
            ("invalid utf-8", client(true, OP_TEXT, &[0xC3, 0x28]), 1007),
        ];
        for (what, bytes, code) in cases {
            let e = one(&bytes).expect_err(what);
            assert_eq!(e.close_code(), code, "{what}: {e}");
        }
        let mut top = vec![0x81, 0xFF];
        top.extend_from_slice(&(1u64 << 63).to_be_bytes());
        assert_eq!(one(&top).unwrap_err().close_code(), 1002);
    }

    #[test]
    fn a_new_message_inside_a_fragmented_one_is_refused() {
        let mut d = Decoder::new(100);
        let a = client(false, OP_TEXT, b"a");
        assert_eq!(d.step(&a), Ok(Step::Consumed(a.len())));
        let e = d.step(&client(true, OP_TEXT, b"b")).unwrap_err();
        assert_eq!(e.close_code(), 1002);
    }

    #[test]
    fn size_limit_is_checked_from_the_header_and_across_fragments() {
        let mut d = Decoder::new(10);
        // Refused from the header alone, before the payload arrives.
        let big = client(true, OP_TEXT, &[b'x'; 11]);
        assert_eq!(d.step(&big[..4]), Err(WsError::TooBig(10)));
        let mut huge = vec![0x81, 0xFF];
        huge.extend_from_slice(&(u64::MAX >> 1).to_be_bytes());
        assert_eq!(d.step(&huge), Err(WsError::TooBig(10)));
        let mut d = Decoder::new(10);
        let a = client(false, OP_TEXT, &[b'x'; 6]);
        assert_eq!(d.step(&a), Ok(Step::Consumed(a.len())));
        let b = client(true, OP_CONTINUATION, &[b'x'; 5]);
        assert_eq!(d.step(&b).unwrap_err().close_code(), 1009);
        let ok = client(true, OP_TEXT, &[b'x'; 10]);
        assert!(matches!(Decoder::new(10).step(&ok), Ok(Step::Message(..))));
    }

    #[test]
    fn server_headers_use_the_shortest_length_form() {
        assert_eq!(header(OP_TEXT, 0), ([0x81, 0, 0, 0, 0, 0, 0, 0, 0, 0], 2));
        assert_eq!(header(OP_TEXT, 125).0[..2], [0x81, 125]);
        assert_eq!(header(OP_TEXT, 126).0[..4], [0x81, 126, 0, 126]);
        assert_eq!(header(OP_TEXT, 65_535).0[..4], [0x81, 126, 0xFF, 0xFF]);
        let (h, n) = header(OP_TEXT, 65_536);
        assert_eq!(n, 10);
        assert_eq!(h, [0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn close_frames_fit_the_control_limit() {
        assert_eq!(close(4001, "x"), vec![0x88, 3, 0x0F, 0xA1, b'x']);
        let long = "é".repeat(100);
        let f = close(1000, &long);
        assert_eq!(f[1] as usize, f.len() - 2);
        assert!(f.len() - 2 <= 125);
        assert!(std::str::from_utf8(&f[4..]).is_ok());
        assert_eq!(control(OP_PONG, &[7; 200]).len(), 127);
    }
}
