//! Length-prefixed bincode frames: a 4-byte big-endian payload length, then the payload.
//!
//! The length is checked against the reader's limit before anything is allocated, so an
//! oversized or hostile prefix costs the daemon nothing.

use serde::{de::DeserializeOwned, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest frame accepted unless configured otherwise (1 MiB).
pub const DEFAULT_MAX_FRAME_BYTES: u32 = 1 << 20;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length prefix announced more bytes than the limit allows.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge { len: u32, max: u32 },
    /// The peer closed the stream in the middle of a frame.
    #[error("connection closed in the middle of a frame")]
    Truncated,
    /// The payload is not a valid message.
    #[error("undecodable frame: {0}")]
    Malformed(String),
    /// The message could not be encoded.
    #[error("could not encode frame: {0}")]
    Encode(String),
    /// The underlying stream failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Decoding never claims more than this many bytes for the containers in one message,
/// whatever lengths a hostile payload announces.
const DECODE_LIMIT_BYTES: usize = 4 << 20;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_LIMIT_BYTES>()
}

/// Encodes `msg` as one complete frame (prefix included).
pub fn encode_frame<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let mut out = vec![0u8; 4];
    bincode::serde::encode_into_std_write(msg, &mut out, config())
        .map_err(|e| FrameError::Encode(e.to_string()))?;
    let len = u32::try_from(out.len() - 4).map_err(|_| FrameError::Encode("too long".into()))?;
    out[..4].copy_from_slice(&len.to_be_bytes());
    Ok(out)
}

/// Decodes one payload (no prefix); trailing bytes are an error.
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    let (msg, used) = bincode::serde::decode_from_slice(payload, config())
        .map_err(|e| FrameError::Malformed(e.to_string()))?;
    if used != payload.len() {
        return Err(FrameError::Malformed(format!(
            "{} trailing bytes after the message",
            payload.len() - used
        )));
    }
    Ok(msg)
}

/// Writes `msg` as one frame and flushes.
pub async fn write_frame<W, T>(w: &mut W, msg: &T) -> Result<(), FrameError>
where
    W: AsyncWrite + Unpin,
    T: Serialize,
{
    let bytes = encode_frame(msg)?;
    w.write_all(&bytes).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one frame. `Ok(None)` means the peer closed cleanly between frames.
pub async fn read_frame<R, T>(r: &mut R, max_bytes: u32) -> Result<Option<T>, FrameError>
where
    R: AsyncRead + Unpin,
    T: DeserializeOwned,
{
    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut prefix[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(FrameError::Truncated)
            };
        }
        got += n;
    }
    let len = u32::from_be_bytes(prefix);
    if len > max_bytes {
        return Err(FrameError::TooLarge {
            len,
            max: max_bytes,
        });
    }
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            FrameError::Truncated
        } else {
            FrameError::Io(e)
        }
    })?;
    decode_payload(&payload).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{ClientMessage, GenerateRequest};

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    #[test]
    fn round_trip() {
        let msg = ClientMessage::Generate {
            id: 7,
            request: GenerateRequest::new("héllo"),
        };
        let bytes = encode_frame(&msg).unwrap();
        let back: Option<ClientMessage> = rt()
            .block_on(read_frame(&mut &bytes[..], DEFAULT_MAX_FRAME_BYTES))
            .unwrap();
        assert_eq!(back, Some(msg));
    }

    #[test]
    fn clean_eof_is_none() {
        let empty: &[u8] = &[];
        let back: Option<ClientMessage> = rt()
            .block_on(read_frame(&mut &empty[..], DEFAULT_MAX_FRAME_BYTES))
            .unwrap();
        assert_eq!(back, None);
    }

    #[test]
    fn oversized_prefix_is_refused_before_reading() {
        let bytes = u32::MAX.to_be_bytes();
        let err = rt()
            .block_on(read_frame::<_, ClientMessage>(&mut &bytes[..], 1024))
            .unwrap_err();
        assert!(matches!(
            err,
            FrameError::TooLarge {
                len: u32::MAX,
                max: 1024
            }
        ));
    }

    #[test]
    fn truncated_prefix_and_payload() {
        let short: &[u8] = &[0, 0];
        let err = rt()
            .block_on(read_frame::<_, ClientMessage>(&mut &short[..], 1024))
            .unwrap_err();
        assert!(matches!(err, FrameError::Truncated));
        let mut bytes = encode_frame(&ClientMessage::Status).unwrap();
        bytes.extend_from_slice(&[0, 0, 0, 9, 1, 2]);
        let mut r = &bytes[..];
        let rt = rt();
        let first: Option<ClientMessage> = rt.block_on(read_frame(&mut r, 1024)).unwrap();
        assert_eq!(first, Some(ClientMessage::Status));
        let err = rt
            .block_on(read_frame::<_, ClientMessage>(&mut r, 1024))
            .unwrap_err();
        assert!(matches!(err, FrameError::Truncated));
    }

    #[test]
    fn garbage_is_malformed() {
        let mut bytes = vec![0, 0, 0, 6];
        bytes.extend_from_slice(&[0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0xfa]);
        let err = rt()
            .block_on(read_frame::<_, ClientMessage>(&mut &bytes[..], 1024))
            .unwrap_err();
        assert!(matches!(err, FrameError::Malformed(_)));
    }
}
