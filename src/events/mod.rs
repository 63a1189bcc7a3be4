//! Live events for signed-in tabs (`GET /api/events`, Server-Sent Events): a snapshot of the
//! user's instances, then their changes, usage figures, admins' alerts and "signed out"
//! (docs/events.md). This module counts the open streams; routes.rs runs each one.

pub mod routes;

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

pub use routes::router;

/// Streams one user may hold open at once: a tab each, with room for a few left behind by a
/// phone that went to sleep and has not yet been noticed gone.
pub const MAX_STREAMS_PER_USER: usize = 16;

/// The open event streams, per user.
#[derive(Default)]
pub struct Streams {
    open: Mutex<HashMap<i64, usize>>,
}

/// One open stream; counted until dropped.
pub struct StreamGuard {
    streams: Arc<Streams>,
    user_id: i64,
}

impl Streams {
    /// Counts a new stream of `user_id`, or `None` when the user has the most open already.
    pub fn open(self: &Arc<Self>, user_id: i64) -> Option<StreamGuard> {
        let mut open = self.open.lock();
        let count = open.entry(user_id).or_default();
        if *count >= MAX_STREAMS_PER_USER {
            return None;
        }
        *count += 1;
        Some(StreamGuard {
            streams: self.clone(),
            user_id,
        })
    }

    /// Streams open now, of every user.
    pub fn total(&self) -> usize {
        self.open.lock().values().sum()
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut open = self.streams.open.lock();
        if let Some(count) = open.get_mut(&self.user_id) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.user_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_holds_at_most_the_limit_and_a_closed_stream_frees_its_place() {
        let streams = Arc::new(Streams::default());
        let mut held: Vec<_> = (0..MAX_STREAMS_PER_USER)
            .map(|_| streams.open(1).expect("under the limit"))
            .collect();
        assert!(streams.open(1).is_none(), "one over the limit is refused");
        let other = streams
            .open(2)
            .expect("another user has places of their own");
        drop(held.pop());
        assert!(streams.open(1).is_some(), "a closed stream frees its place");
        drop(other);
        assert_eq!(streams.total(), MAX_STREAMS_PER_USER - 1);
    }
}
