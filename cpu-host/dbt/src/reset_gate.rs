//! Reset release in lockstep. On hardware every hart leaves reset in the same cycle, and
//! firmware relies on it: OpenSBI ≤ 1.5 runs its boot-hart lottery on the same word that later
//! says "boot hart done", so a hart that reaches the lottery late overwrites that word and every
//! other hart waits forever. Host threads start skewed (and share few cores), so for their first
//! blocks the vCPUs step together through this gate. Each wait is bounded, so a vCPU that parks
//! or stops early cannot hold the others.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// Blocks each vCPU executes in lockstep after reset.
pub const LOCKSTEP_BLOCKS: u32 = 256;
/// Longest a vCPU waits for the others at one step.
const STEP_TIMEOUT: Duration = Duration::from_millis(5);

struct State {
    active: usize,
    arrived: usize,
    generation: u64,
}

pub struct ResetGate {
    state: Mutex<State>,
    cv: Condvar,
}

impl ResetGate {
    pub fn new(vcpus: usize) -> Self {
        Self {
            state: Mutex::new(State {
                active: vcpus,
                arrived: 0,
                generation: 0,
            }),
            cv: Condvar::new(),
        }
    }

    /// Wait until every active vCPU has arrived at this step (or the timeout passes).
    pub fn step(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.arrived += 1;
        if s.arrived >= s.active {
            s.arrived = 0;
            s.generation += 1;
            self.cv.notify_all();
            return;
        }
        let gen = s.generation;
        let (mut s, res) = self
            .cv
            .wait_timeout_while(s, STEP_TIMEOUT, |s| s.generation == gen)
            .unwrap_or_else(|e| e.into_inner());
        if res.timed_out() && s.generation == gen {
            s.arrived = s.arrived.saturating_sub(1);
        }
    }

    /// This vCPU is done with lockstep (or stopped): the others no longer wait for it.
    pub fn leave(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.active = s.active.saturating_sub(1);
        if s.arrived > 0 && s.arrived >= s.active {
            s.arrived = 0;
            s.generation += 1;
            self.cv.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[test]
    fn vcpus_advance_together_and_a_leaver_releases_the_rest() {
        let gate = Arc::new(ResetGate::new(3));
        let max_skew = Arc::new(AtomicU32::new(0));
        let steps: Arc<Vec<AtomicU32>> = Arc::new((0..3).map(|_| AtomicU32::new(0)).collect());
        let threads: Vec<_> = (0..3)
            .map(|i| {
                let (gate, steps, max_skew) = (gate.clone(), steps.clone(), max_skew.clone());
                std::thread::spawn(move || {
                    let n = if i == 2 { 5 } else { 50 };
                    for _ in 0..n {
                        gate.step();
                        let mine = steps[i].fetch_add(1, Ordering::SeqCst) + 1;
                        for s in steps.iter() {
                            let other = s.load(Ordering::SeqCst);
                            if i != 2 && other < 5 || other <= mine {
                                max_skew.fetch_max(mine.saturating_sub(other), Ordering::SeqCst);
                            }
                        }
                    }
                    gate.leave();
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert!(steps.iter().all(|s| s.load(Ordering::SeqCst) >= 5));
        assert!(
            max_skew.load(Ordering::SeqCst) <= 2,
            "skew {}",
            max_skew.load(Ordering::SeqCst)
        );
    }
}
