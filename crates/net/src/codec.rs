//! The wire framing of the sync protocol, `/regiosync/sync/4`, `/3`, `/2` and `/1`.
//!
//! One request or response per libp2p stream, as a frame: a 4-byte big-endian length
//! and that many bytes. The protocol version is negotiated by libp2p's
//! multistream-select on the protocol name, per stream: a node offers `/4`, then
//! `/3`, `/2`, then `/1`, and answers on any of them; a peer that speaks none fails
//! negotiation and the request fails with `UnsupportedProtocols`, a clear error
//! instead of misread bytes. A request can carry one form per version
//! ([`Frame::Versioned`]), and the codec writes the one the stream negotiated, so a
//! newer node sends what an older one understands. What the bytes mean is the business of
//! `regiosync_core`'s sync messages; this layer only guarantees bounded frames.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;

/// The sync protocol name this build prefers, with its version: the messages of
/// `/regiosync/sync/3` plus frames in which the dossier changes one reader sends
/// another travel in bundles (frame format 3).
pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/regiosync/sync/4");

/// The messages of `/regiosync/sync/2` plus frames whose change envelopes travel
/// compact (frame format 2); spoken with nodes that know no later version.
pub const SYNC_PROTOCOL_3: StreamProtocol = StreamProtocol::new("/regiosync/sync/3");

/// The messages of `/regiosync/sync/1` plus pushes that name the other peers pushed
/// to; spoken with nodes that know no later version.
pub const SYNC_PROTOCOL_2: StreamProtocol = StreamProtocol::new("/regiosync/sync/2");

/// The first sync protocol, still spoken with nodes that know no other.
pub const SYNC_PROTOCOL_1: StreamProtocol = StreamProtocol::new("/regiosync/sync/1");

/// Default largest frame (request or response), in bytes.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;

/// An inbound request as read from the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A frame within the limit.
    Data(Vec<u8>),
    /// A frame whose announced length exceeds the limit; its body was not read. The
    /// network task disconnects the sender (libp2p would only log a read error).
    Oversized(u64),
    /// Outgoing only: a request in one form per protocol version, newest first;
    /// the codec writes the form of the protocol the stream negotiated (the last
    /// form if none is for it).
    Versioned(Vec<(StreamProtocol, Vec<u8>)>),
}

/// Frames requests and responses with a length prefix and refuses frames larger than
/// `max_frame` before reading them.
#[derive(Clone, Debug)]
pub struct FrameCodec {
    max_frame: usize,
}

impl FrameCodec {
    /// A codec with the given frame limit.
    pub fn new(max_frame: usize) -> Self {
        Self { max_frame }
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME)
    }
}

impl FrameCodec {
    async fn read_frame<T: AsyncRead + Unpin + Send>(&self, io: &mut T) -> io::Result<Vec<u8>> {
        let mut len = [0u8; 4];
        io.read_exact(&mut len).await?;
        let len = u32::from_be_bytes(len) as usize;
        if len > self.max_frame {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "frame of {len} bytes exceeds the limit of {} bytes",
                    self.max_frame
                ),
            ));
        }
        let mut buf = vec![0u8; len];
        io.read_exact(&mut buf).await?;
        Ok(buf)
    }

    async fn write_frame<T: AsyncWrite + Unpin + Send>(
        &self,
        io: &mut T,
        data: &[u8],
    ) -> io::Result<()> {
        if data.len() > self.max_frame {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "frame of {} bytes exceeds the limit of {} bytes",
                    data.len(),
                    self.max_frame
                ),
            ));
        }
        let len =
            u32::try_from(data.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        io.write_all(&len.to_be_bytes()).await?;
        io.write_all(data).await?;
        io.close().await
    }
}

impl libp2p::request_response::Codec for FrameCodec {
    type Protocol = StreamProtocol;
    type Request = Frame;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &Self::Protocol, io: &mut T) -> io::Result<Frame>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut len = [0u8; 4];
        io.read_exact(&mut len).await?;
        let len = u32::from_be_bytes(len) as usize;
        if len > self.max_frame {
            return Ok(Frame::Oversized(len as u64));
        }
        let mut buf = vec![0u8; len];
        io.read_exact(&mut buf).await?;
        Ok(Frame::Data(buf))
    }

    async fn read_response<T>(&mut self, _: &Self::Protocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        self.read_frame(io).await
    }

    async fn write_request<T>(
        &mut self,
        protocol: &Self::Protocol,
        io: &mut T,
        req: Frame,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        match req {
            Frame::Data(d) => self.write_frame(io, &d).await,
            Frame::Versioned(forms) => {
                let form = forms
                    .iter()
                    .find(|(p, _)| p == protocol)
                    .or(forms.last())
                    .map(|(_, f)| f.as_slice())
                    .ok_or_else(|| {
                        io::Error::new(io::ErrorKind::InvalidInput, "a request with no form")
                    })?;
                self.write_frame(io, form).await
            }
            Frame::Oversized(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot send an oversized frame",
            )),
        }
    }

    async fn write_response<T>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
        res: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.write_frame(io, &res).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;

    #[tokio::test]
    async fn frames_roundtrip_and_oversized_frames_are_refused_before_reading() {
        let codec = FrameCodec::new(1024);
        let mut buf = Cursor::new(Vec::new());
        codec.write_frame(&mut buf, b"hallo").await.unwrap();
        let mut rd = Cursor::new(buf.into_inner());
        assert_eq!(codec.read_frame(&mut rd).await.unwrap(), b"hallo");

        // A length prefix of 4 GiB: refused without allocating or reading.
        let mut rd = Cursor::new(vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
        let e = codec.read_frame(&mut rd).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        // Truncated frame.
        let mut rd = Cursor::new(vec![0, 0, 0, 10, 1, 2]);
        assert!(codec.read_frame(&mut rd).await.is_err());
        // A request in four forms: the negotiated protocol picks the one written.
        let mut codec = codec;
        for (protocol, want) in [
            (SYNC_PROTOCOL, b"vier"),
            (SYNC_PROTOCOL_3, b"drie"),
            (SYNC_PROTOCOL_2, b"twee"),
            (SYNC_PROTOCOL_1, b"een!"),
        ] {
            let mut w = Cursor::new(Vec::new());
            let req = Frame::Versioned(vec![
                (SYNC_PROTOCOL, b"vier".to_vec()),
                (SYNC_PROTOCOL_3, b"drie".to_vec()),
                (SYNC_PROTOCOL_2, b"twee".to_vec()),
                (SYNC_PROTOCOL_1, b"een!".to_vec()),
            ]);
            libp2p::request_response::Codec::write_request(&mut codec, &protocol, &mut w, req)
                .await
                .unwrap();
            let mut rd = Cursor::new(w.into_inner());
            assert_eq!(codec.read_frame(&mut rd).await.unwrap(), want);
        }
        // Writing too much is refused too.
        let mut w = Cursor::new(Vec::new());
        assert!(codec.write_frame(&mut w, &vec![0u8; 2048]).await.is_err());
    }
}
