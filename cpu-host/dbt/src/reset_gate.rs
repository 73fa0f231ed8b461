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
    timeout: Duration,
}

impl ResetGate {
    pub fn new(vcpus: usize) -> Self {
        Self::with_timeout(vcpus, STEP_TIMEOUT)
    }

    /// A gate whose steps wait at most `timeout` for the other vCPUs.
    pub fn with_timeout(vcpus: usize, timeout: Duration) -> Self {
        Self {
            state: Mutex::new(State {
                active: vcpus,
                arrived: 0,
                generation: 0,
            }),
            cv: Condvar::new(),
            timeout,
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
            .wait_timeout_while(s, self.timeout, |s| s.generation == gen)
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
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
    use std::sync::Arc;

    /// With a timeout that never fires, the gate is a barrier over the vCPUs still active:
    /// nobody passes step k before every active vCPU has arrived at step k, and a vCPU that
    /// leaves early releases the others instead of holding them.
    #[test]
    fn no_vcpu_passes_a_step_before_all_active_ones_arrive() {
        const N: usize = 3;
        let gate = Arc::new(ResetGate::with_timeout(N, Duration::from_secs(3600)));
        let arrived: Arc<Vec<AtomicU32>> = Arc::new((0..N).map(|_| AtomicU32::new(0)).collect());
        let left: Arc<Vec<AtomicBool>> = Arc::new((0..N).map(|_| AtomicBool::new(false)).collect());
        let violations = Arc::new(AtomicU32::new(0));
        let threads: Vec<_> = (0..N)
            .map(|i| {
                let (gate, arrived, left, violations) = (
                    gate.clone(),
                    arrived.clone(),
                    left.clone(),
                    violations.clone(),
                );
                std::thread::spawn(move || {
                    let steps = if i == 2 { 5 } else { 40 };
                    for _ in 0..steps {
                        let k = arrived[i].fetch_add(1, SeqCst) + 1;
                        gate.step();
                        for j in 0..N {
                            if !left[j].load(SeqCst) && arrived[j].load(SeqCst) < k {
                                violations.fetch_add(1, SeqCst);
                            }
                        }
                    }
                    left[i].store(true, SeqCst);
                    gate.leave();
                })
            })
            .collect();
        for t in threads {
            t.join().expect("vCPU thread");
        }
        assert_eq!(violations.load(SeqCst), 0);
        assert_eq!(arrived[0].load(SeqCst), 40);
        assert_eq!(arrived[2].load(SeqCst), 5);
    }

    #[test]
    fn a_single_vcpu_never_waits() {
        let gate = ResetGate::with_timeout(1, Duration::from_secs(3600));
        for _ in 0..1000 {
            gate.step();
        }
        gate.leave();
    }
}
