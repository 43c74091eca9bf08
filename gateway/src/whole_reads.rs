//! A socket wrapper that reads whatever the kernel has in one `recv`, whatever room the
//! caller offers.
//!
//! tungstenite reads into the room left in its frame buffer: with a 1 KiB buffer and
//! 260-byte frames, every fourth frame straddled the end of that room and took two `recv`
//! calls (strace: 1.33 per message at 5,000 msg/s). A bigger buffer per connection would
//! cost idle memory on every connection; instead every read goes through one scratch buffer
//! per shard (thread) and what the caller had no room for is kept on the connection until
//! its next read (allocated only then, released once handed over). glommio arms its
//! readiness poll when a read comes back short of the room offered, and that room is now
//! the whole scratch buffer.

use futures_lite::{AsyncRead, AsyncWrite};
use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Bytes asked of the kernel per read: a few dozen typical frames, the size of one socket
/// buffer's worth of small segments.
const SCRATCH_BYTES: usize = 16 * 1024;

thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_BYTES].into_boxed_slice());
}

/// `S` read through the shard's scratch buffer; writes go straight through.
#[derive(Debug)]
pub struct WholeReads<S> {
    inner: S,
    /// Read from the socket, not yet handed to the caller: one pointer on an idle
    /// connection.
    spill: Option<Box<Spill>>,
}

#[derive(Debug)]
struct Spill {
    bytes: Box<[u8]>,
    /// How much of `bytes` was handed over already.
    at: usize,
}

impl<S> WholeReads<S> {
    pub fn new(inner: S) -> Self {
        Self { inner, spill: None }
    }

    /// Hands over kept bytes first: how many, or `None` when none were kept.
    fn take_spill(&mut self, buf: &mut [u8]) -> Option<usize> {
        let spill = self.spill.as_mut()?;
        let rest = &spill.bytes[spill.at..];
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        spill.at += n;
        if spill.at == spill.bytes.len() {
            self.spill = None;
        }
        Some(n)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WholeReads<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if let Some(n) = this.take_spill(buf) {
            return Poll::Ready(Ok(n));
        }
        if buf.len() >= SCRATCH_BYTES {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            match Pin::new(&mut this.inner).poll_read(cx, &mut scratch[..]) {
                Poll::Ready(Ok(n)) => {
                    let k = n.min(buf.len());
                    buf[..k].copy_from_slice(&scratch[..k]);
                    if n > k {
                        this.spill = Some(Box::new(Spill {
                            bytes: scratch[k..n].into(),
                            at: 0,
                        }));
                    }
                    Poll::Ready(Ok(k))
                }
                other => other,
            }
        })
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WholeReads<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::{future, io::Cursor, AsyncReadExt};

    #[test]
    fn hands_over_everything_in_order_whatever_the_room() {
        let data: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        let mut r = WholeReads::new(Cursor::new(data.clone()));
        let mut got = Vec::new();
        let mut room = 1;
        future::block_on(async {
            loop {
                let mut buf = vec![0; room];
                let n = r.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                room = room * 7 % 20_011 + 1;
            }
        });
        assert_eq!(got, data);
        assert!(r.spill.is_none());
    }

    #[test]
    fn one_inner_read_serves_several_small_ones() {
        struct Counting(Cursor<Vec<u8>>, usize);
        impl AsyncRead for Counting {
            fn poll_read(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut [u8],
            ) -> Poll<io::Result<usize>> {
                self.1 += 1;
                Pin::new(&mut self.0).poll_read(cx, buf)
            }
        }
        let mut r = WholeReads::new(Counting(Cursor::new(vec![7; 1000]), 0));
        future::block_on(async {
            let mut buf = [0; 252];
            for _ in 0..3 {
                assert_eq!(r.read(&mut buf).await.unwrap(), 252);
            }
            assert_eq!(r.read(&mut buf).await.unwrap(), 1000 - 3 * 252);
        });
        assert_eq!(r.inner.1, 1, "one read from the socket");
    }
}
