//! Stream framing (RFC 3261 §18.3): messages on TCP are delimited by Content-Length, which is
//! mandatory there. Also recognises the RFC 5626 §4.4.1 keep-alives: a double CRLF "ping" (to be
//! answered with a single CRLF "pong") and a lone CRLF "pong".

use bytes::{Buf, Bytes, BytesMut};

use super::parse::find_head_end;

/// Default bound on one message (headers and body): 64 KiB.
pub const MAX_MESSAGE_SIZE_DEFAULT: usize = 64 * 1024;

/// What the framer cut out of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framed {
    /// One complete message, to be given to [`super::parse`].
    Message(Bytes),
    /// A CRLFCRLF keep-alive ping: answer with a single CRLF.
    Ping,
    /// A lone CRLF keep-alive pong.
    Pong,
}

/// Why the stream cannot be framed any further. After any of these the connection must be
/// closed: the framer can no longer tell where the next message starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The message (or its header section) exceeds the size bound.
    #[error("message larger than {0} bytes")]
    TooLarge(usize),
    /// A stream message without Content-Length (RFC 3261 §18.3: MUST on streams).
    #[error("missing Content-Length on a stream")]
    MissingContentLength,
    /// A Content-Length that is not a number.
    #[error("malformed Content-Length")]
    BadContentLength,
}

/// Accumulates stream bytes and cuts them into messages.
#[derive(Debug)]
pub struct StreamFramer {
    buf: BytesMut,
    max_size: usize,
}

impl StreamFramer {
    /// A framer that refuses messages larger than `max_size` bytes.
    pub fn new(max_size: usize) -> StreamFramer {
        StreamFramer {
            buf: BytesMut::with_capacity(4096),
            max_size,
        }
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes buffered but not yet framed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete unit, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Framed>, FrameError> {
        if self.buf.starts_with(b"\r\n\r\n") {
            self.buf.advance(4);
            return Ok(Some(Framed::Ping));
        }
        if self.buf.starts_with(b"\r\n") {
            // "\r\n" and "\r\n\r" may still become a ping. Any other continuation (including
            // "\r\n\r" followed by something other than "\n") makes the CRLF a pong; waiting longer
            // would let a peer grow the buffer without bound.
            let is_pong = match self.buf.len() {
                0..=2 => false,
                3 => self.buf[2] != b'\r',
                _ => true,
            };
            if is_pong {
                self.buf.advance(2);
                return Ok(Some(Framed::Pong));
            }
            return Ok(None);
        }
        let Some(head_end) = find_head_end(&self.buf[..self.buf.len().min(self.max_size + 4)])
        else {
            if self.buf.len() > self.max_size {
                return Err(FrameError::TooLarge(self.max_size));
            }
            return Ok(None);
        };
        let len = content_length(&self.buf[..head_end])?;
        let total = head_end + 4 + len;
        if total > self.max_size {
            return Err(FrameError::TooLarge(self.max_size));
        }
        if self.buf.len() < total {
            return Ok(None);
        }
        Ok(Some(Framed::Message(self.buf.split_to(total).freeze())))
    }
}

/// Finds Content-Length (or its compact form `l`) in a header section.
fn content_length(head: &[u8]) -> Result<usize, FrameError> {
    for line in head.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii_end();
        if name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l") {
            let value = line[colon + 1..].trim_ascii();
            if value.is_empty() || value.len() > 9 || !value.iter().all(u8::is_ascii_digit) {
                return Err(FrameError::BadContentLength);
            }
            return value.iter().try_fold(0usize, |acc, d| {
                acc.checked_mul(10)
                    .and_then(|a| a.checked_add(usize::from(d - b'0')))
                    .ok_or(FrameError::BadContentLength)
            });
        }
    }
    Err(FrameError::MissingContentLength)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"OPTIONS sip:x SIP/2.0\r\nl: 5\r\n\r\nhello";

    #[test]
    fn frames_byte_by_byte() {
        let mut f = StreamFramer::new(1024);
        let mut stream = Vec::new();
        stream.extend_from_slice(b"\r\n\r\n");
        stream.extend_from_slice(MSG);
        stream.extend_from_slice(MSG);
        stream.extend_from_slice(b"\r\nX");
        let mut out = Vec::new();
        for b in &stream {
            f.push(&[*b]);
            while let Some(frame) = f.next_frame().unwrap() {
                out.push(frame);
            }
        }
        assert_eq!(
            out,
            vec![
                Framed::Ping,
                Framed::Message(Bytes::from_static(MSG)),
                Framed::Message(Bytes::from_static(MSG)),
                Framed::Pong
            ]
        );
        assert_eq!(f.buffered(), 1);
    }

    #[test]
    fn crlf_cr_not_followed_by_lf_is_a_pong_not_a_stall() {
        // Found by fuzzing (stream_framing): "\r\n\r" followed by anything but "\n" used to
        // return `Ok(None)` forever while the buffer grew.
        let mut f = StreamFramer::new(64);
        f.push(b"\r\n\rX");
        assert_eq!(f.next_frame(), Ok(Some(Framed::Pong)));
        f.push(&[b'a'; 100]);
        assert_eq!(f.next_frame(), Err(FrameError::TooLarge(64)));
    }

    #[test]
    fn refuses_oversize_and_missing_length() {
        let mut f = StreamFramer::new(16);
        f.push(MSG);
        assert_eq!(f.next_frame(), Err(FrameError::TooLarge(16)));

        let mut f = StreamFramer::new(1024);
        f.push(&[b'a'; 2000]);
        assert_eq!(f.next_frame(), Err(FrameError::TooLarge(1024)));

        let mut f = StreamFramer::new(1024);
        f.push(b"OPTIONS sip:x SIP/2.0\r\nVia: x\r\n\r\n");
        assert_eq!(f.next_frame(), Err(FrameError::MissingContentLength));

        let mut f = StreamFramer::new(1024);
        f.push(b"OPTIONS sip:x SIP/2.0\r\nContent-Length: 99999999999\r\n\r\n");
        assert_eq!(f.next_frame(), Err(FrameError::BadContentLength));
    }
}
