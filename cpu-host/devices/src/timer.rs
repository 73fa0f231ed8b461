//! A background thread that sleeps until a device's next deadline.
//!
//! The ACLINT's MTIP and the RTC's alarm must rise at a point in host time without any guest
//! access, so each of them owns one of these. The thread calls `poll`, which updates the
//! device's interrupt lines from the current time and returns the next deadline (or `None`
//! for "nothing armed"), then sleeps until that deadline or until [`DeadlineThread::kick`]
//! (the guest changed a comparator). The thread ends, and is joined, on
//! [`DeadlineThread::shutdown`] or drop, so tests and machine resets leak no threads.

use crate::mmio::lock;
use std::io;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Instant;

#[derive(Default)]
struct Flags {
    /// Set by `kick`, cleared by the thread before each poll: a kick that lands between the
    /// poll and the wait is not lost.
    kicked: bool,
    shutdown: bool,
}

#[derive(Default)]
struct Shared {
    flags: Mutex<Flags>,
    cv: Condvar,
}

pub(crate) struct DeadlineThread {
    shared: Arc<Shared>,
    handle: Mutex<Option<JoinHandle<()>>>,
}

impl DeadlineThread {
    /// Start the thread. `poll` runs on it: first immediately, then at each deadline it
    /// returned and after each kick.
    pub fn spawn(
        name: &str,
        mut poll: impl FnMut() -> Option<Instant> + Send + 'static,
    ) -> io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let s = Arc::clone(&shared);
        let handle = thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || loop {
                {
                    let mut f = lock(&s.flags);
                    if f.shutdown {
                        return;
                    }
                    f.kicked = false;
                }
                let deadline = poll();
                let mut f = lock(&s.flags);
                while !f.kicked && !f.shutdown {
                    match deadline {
                        None => f = s.cv.wait(f).unwrap_or_else(|e| e.into_inner()),
                        Some(d) => {
                            let now = Instant::now();
                            if now >= d {
                                break;
                            }
                            f =
                                s.cv.wait_timeout(f, d - now)
                                    .unwrap_or_else(|e| e.into_inner())
                                    .0;
                        }
                    }
                }
            })?;
        Ok(Self {
            shared,
            handle: Mutex::new(Some(handle)),
        })
    }

    /// Make the thread poll again now (a comparator or the time base changed).
    pub fn kick(&self) {
        lock(&self.shared.flags).kicked = true;
        self.shared.cv.notify_all();
    }

    /// Stop and join the thread. Idempotent. Called from the thread itself (an interrupt line
    /// that ends up shutting the device down), it only asks the thread to stop.
    pub fn shutdown(&self) {
        lock(&self.shared.flags).shutdown = true;
        self.shared.cv.notify_all();
        let handle = lock(&self.handle).take();
        if let Some(h) = handle {
            if h.thread().id() != thread::current().id() && h.join().is_err() {
                tracing::warn!("device timer thread panicked");
            }
        }
    }
}

impl Drop for DeadlineThread {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[test]
    fn deadline_thread_polls_on_kick_and_stops_on_drop() {
        let polls = Arc::new(AtomicUsize::new(0));
        let p = Arc::clone(&polls);
        let t = DeadlineThread::spawn("test-timer", move || {
            p.fetch_add(1, Ordering::SeqCst);
            None
        })
        .expect("spawn");
        let wait = |n: usize| {
            let end = Instant::now() + Duration::from_secs(5);
            while polls.load(Ordering::SeqCst) < n && Instant::now() < end {
                thread::sleep(Duration::from_millis(1));
            }
            polls.load(Ordering::SeqCst)
        };
        assert!(wait(1) >= 1);
        t.kick();
        assert!(wait(2) >= 2);
        drop(t);
        let after = polls.load(Ordering::SeqCst);
        thread::sleep(Duration::from_millis(20));
        assert_eq!(polls.load(Ordering::SeqCst), after);
    }

    #[test]
    fn deadline_thread_wakes_at_deadline() {
        let polls = Arc::new(AtomicUsize::new(0));
        let p = Arc::clone(&polls);
        let start = Instant::now();
        let t = DeadlineThread::spawn("test-timer", move || {
            let n = p.fetch_add(1, Ordering::SeqCst);
            (n == 0).then(|| start + Duration::from_millis(20))
        })
        .expect("spawn");
        let end = Instant::now() + Duration::from_secs(5);
        while polls.load(Ordering::SeqCst) < 2 && Instant::now() < end {
            thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(polls.load(Ordering::SeqCst), 2);
        assert!(start.elapsed() >= Duration::from_millis(20));
        t.shutdown();
        t.shutdown();
    }
}
