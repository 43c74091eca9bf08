//! Per-conversation state a plugin keeps between messages ([`ConvState`]), bounded: past
//! `capacity` conversations the oldest is forgotten first, so a bridge that runs for months
//! holds what its recent conversations need and no more.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

pub struct ConvState<T> {
    capacity: usize,
    inner: Mutex<(HashMap<String, T>, VecDeque<String>)>,
}

impl<T: Default> ConvState<T> {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    /// Runs `f` on the state of `conv` (a default one for a conversation not seen, or
    /// forgotten); `None` only if an earlier caller panicked while holding the state.
    pub fn with<R>(&self, conv: &str, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        let mut guard = self.inner.lock().ok()?;
        let (map, order) = &mut *guard;
        if !map.contains_key(conv) {
            if map.len() >= self.capacity {
                if let Some(old) = order.pop_front() {
                    map.remove(&old);
                }
            }
            order.push_back(conv.to_owned());
        }
        Some(f(map.entry(conv.to_owned()).or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_state_per_conversation_and_forgets_the_oldest() {
        let s = ConvState::<u32>::new(2);
        s.with("a", |n| *n += 1);
        s.with("a", |n| *n += 1);
        s.with("b", |n| *n += 5);
        assert_eq!(s.with("a", |n| *n), Some(2));
        s.with("c", |n| *n += 1); // "a" is the oldest: forgotten
        assert_eq!(s.with("b", |n| *n), Some(5));
        assert_eq!(s.with("a", |n| *n), Some(0));
    }
}
