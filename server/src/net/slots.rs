//! Counted permits shared by every session, for the states that hold a lot of memory and that a
//! peer could otherwise multiply by opening sessions: key uploads in progress (the upload and its
//! expanded keys, a few hundred MB) and inferences prepared ahead of their input (every layer's
//! encoded plaintexts).

use std::sync::atomic::{AtomicUsize, Ordering};

/// At most `max` holders at once.
pub struct Slots {
    used: AtomicUsize,
    max: usize,
}

/// One permit; returned on drop.
pub struct Slot<'a>(&'a Slots);

impl Slots {
    /// `max` permits.
    pub fn new(max: usize) -> Self {
        Self {
            used: AtomicUsize::new(0),
            max,
        }
    }

    /// A permit, if one is free.
    pub fn try_take(&self) -> Option<Slot<'_>> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                (u < self.max).then_some(u + 1)
            })
            .ok()
            .map(|_| Slot(self))
    }

    /// True if [`Slots::try_take`] would succeed now.
    pub fn available(&self) -> bool {
        self.used.load(Ordering::Acquire) < self.max
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.used.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::Slots;

    #[test]
    fn permits_are_counted_and_returned() {
        let s = Slots::new(2);
        let a = s.try_take().unwrap();
        let b = s.try_take().unwrap();
        assert!(s.try_take().is_none());
        assert!(!s.available());
        drop(a);
        assert!(s.available());
        let _c = s.try_take().unwrap();
        assert!(s.try_take().is_none());
        drop(b);
        assert!(s.available());
    }
}
