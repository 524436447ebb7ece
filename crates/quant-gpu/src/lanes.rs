//! The streams behind a backend's [`Queue::Lane`](crate::Queue::Lane)s: created on first use,
//! kept until the backend goes. What the CUDA and HIP drivers share about them.

use std::sync::{PoisonError, RwLock};

/// A backend's lane streams, index = lane. Finding a lane that exists takes a shared lock, so
/// that the pipeline's readers, each issuing every copy and kernel on its own lane, do not
/// serialise on it; only creating one takes the lock alone.
#[derive(Debug)]
pub struct Lanes<S> {
    streams: RwLock<Vec<S>>,
}

impl<S> Default for Lanes<S> {
    fn default() -> Self {
        Lanes {
            streams: RwLock::new(Vec::new()),
        }
    }
}

impl<S: Clone> Lanes<S> {
    /// Lane `lane`'s stream, made with `create` (with every lower lane not made yet) on first
    /// use. An error of `create` is returned, and the lanes made before it are kept.
    pub fn get_or_create<E>(
        &self,
        lane: u16,
        mut create: impl FnMut() -> Result<S, E>,
    ) -> Result<S, E> {
        let i = usize::from(lane);
        if let Some(s) = self.read().get(i) {
            return Ok(s.clone());
        }
        let mut streams = self.streams.write().unwrap_or_else(PoisonError::into_inner);
        while streams.len() <= i {
            streams.push(create()?);
        }
        Ok(streams[i].clone())
    }

    /// Every lane's stream made so far, in lane order (to synchronise or wait on them all).
    pub fn all(&self) -> Vec<S> {
        self.read().clone()
    }

    /// Takes every stream out, leaving none (to destroy them).
    pub fn take_all(&mut self) -> Vec<S> {
        let streams = self
            .streams
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        std::mem::take(streams)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<S>> {
        self.streams.read().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lane_is_made_once_with_the_lanes_below_it_and_an_error_stops_there() {
        let lanes = Lanes::default();
        let mut made = 0;
        let mut make = || -> Result<u32, String> {
            made += 1;
            Ok(made * 10)
        };
        assert_eq!(lanes.get_or_create(2, &mut make), Ok(30));
        assert_eq!(lanes.get_or_create(0, &mut make), Ok(10));
        assert_eq!(lanes.get_or_create(2, &mut make), Ok(30));
        assert_eq!(lanes.all(), [10, 20, 30]);
        let fail = || -> Result<u32, String> { Err("no stream".into()) };
        assert_eq!(lanes.get_or_create(4, fail), Err("no stream".into()));
        assert_eq!(lanes.all().len(), 3);
        let mut lanes = lanes;
        assert_eq!(lanes.take_all(), [10, 20, 30]);
        assert!(lanes.all().is_empty());
    }
}
