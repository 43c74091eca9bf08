//! The bounded queue of frames waiting to be written to one connection.
//!
//! The gateway never blocks a shard on a slow reader: frames queue here, and when the queued
//! bytes pass the limit the connection is marked for closing (4001) and its queue is dropped.
//! An idle connection's queue holds no allocation.

use bytes::Bytes;
use std::collections::VecDeque;

#[derive(Debug, Default)]
pub struct Outbox {
    frames: VecDeque<Bytes>,
    bytes: usize,
}

/// The queue overflowed; the caller closes the connection.
#[derive(Debug, PartialEq, Eq)]
pub struct Overflow;

impl Outbox {
    pub fn push(&mut self, frame: Bytes, limit: usize) -> Result<(), Overflow> {
        if self.bytes + frame.len() > limit {
            self.clear();
            return Err(Overflow);
        }
        self.bytes += frame.len();
        self.frames.push_back(frame);
        Ok(())
    }

    pub fn pop(&mut self) -> Option<Bytes> {
        let frame = self.frames.pop_front()?;
        self.bytes -= frame.len();
        if self.frames.is_empty() && self.frames.capacity() > 16 {
            // A burst is over: give the memory back so idle connections stay small.
            self.frames = VecDeque::new();
        }
        Some(frame)
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn queued_bytes(&self) -> usize {
        self.bytes
    }

    pub fn clear(&mut self) {
        self.frames = VecDeque::new();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_drops_everything_and_reports() {
        let mut o = Outbox::default();
        o.push(Bytes::from_static(b"12345"), 10).unwrap();
        o.push(Bytes::from_static(b"12345"), 10).unwrap();
        assert_eq!(o.queued_bytes(), 10);
        assert_eq!(o.push(Bytes::from_static(b"1"), 10), Err(Overflow));
        assert!(o.is_empty());
        assert_eq!(o.queued_bytes(), 0);
    }

    #[test]
    fn fifo_and_byte_accounting() {
        let mut o = Outbox::default();
        for i in 0..100u8 {
            o.push(Bytes::from(vec![i; 3]), 1000).unwrap();
        }
        for i in 0..100u8 {
            assert_eq!(o.pop().unwrap()[0], i);
        }
        assert_eq!((o.len(), o.queued_bytes()), (0, 0));
        assert_eq!(o.frames.capacity(), 0, "memory returned after a burst");
    }
}
