//! SiFive test device (`sifive,test0`, also the `syscon` behind Linux's `syscon-poweroff` and
//! `syscon-reboot` on `virt`): one write-only 32-bit register at offset 0.
//!
//! Low 16 bits `0x5555` = pass (poweroff), `0x3333` = fail with exit code `value >> 16`,
//! `0x7777` = reset. Other values are ignored (logged). Accesses of 1 or 2 bytes inside the
//! register act as writes of that value zero-extended (QEMU accepts 2- and 4-byte writes);
//! reads return 0.
//!
//! The action runs on the writing hart's thread, synchronously: what to do (stop the machine,
//! record an exit code, reset) is the board's business. The callback must not access the bus.

use crate::mmio::Lane;
use crate::BusDevice;

/// What the guest asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinisherAction {
    /// `0x5555`: stop, success.
    Pass,
    /// `0x3333`: stop, failure with this code.
    Fail(u16),
    /// `0x7777`: reset the machine.
    Reset,
}

impl FinisherAction {
    /// Decode a register value; `None` for values the device ignores.
    pub fn decode(value: u32) -> Option<Self> {
        match value & 0xffff {
            0x5555 => Some(Self::Pass),
            0x3333 => Some(Self::Fail((value >> 16) as u16)),
            0x7777 => Some(Self::Reset),
            _ => None,
        }
    }
}

/// The test finisher.
pub struct TestFinisher {
    action: Box<dyn Fn(FinisherAction) + Send + Sync>,
}

impl TestFinisher {
    /// A finisher that calls `action` for each recognised write.
    pub fn new(action: Box<dyn Fn(FinisherAction) + Send + Sync>) -> Self {
        Self { action }
    }
}

impl BusDevice for TestFinisher {
    fn read(&self, offset: u64, data: &mut [u8]) {
        tracing::debug!(offset, "sifive-test: read (write-only device)");
        data.fill(0);
    }

    fn write(&self, offset: u64, data: &[u8]) {
        let value = match Lane::of(offset, data.len(), 4) {
            Some(l) if l.index == 0 => l.merge(0, data) as u32,
            _ => {
                tracing::debug!(
                    offset,
                    len = data.len(),
                    "sifive-test: write outside the register"
                );
                return;
            }
        };
        match FinisherAction::decode(value) {
            Some(a) => (self.action)(a),
            None => tracing::debug!(value, "sifive-test: unknown command ignored"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mmio::test_util::{fuzz_accesses, w32};
    use std::sync::{Arc, Mutex};

    fn finisher() -> (TestFinisher, Arc<Mutex<Vec<FinisherAction>>>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = Arc::clone(&log);
        let f = TestFinisher::new(Box::new(move |a| crate::mmio::lock(&l).push(a)));
        (f, log)
    }

    #[test]
    fn commands_map_to_actions() {
        let (f, log) = finisher();
        w32(&f, 0, 0x5555);
        w32(&f, 0, (42 << 16) | 0x3333);
        w32(&f, 0, 0x7777);
        w32(&f, 0, 0x1234);
        w32(&f, 4, 0x5555);
        f.write(0, &0x5555u16.to_le_bytes());
        assert_eq!(
            *crate::mmio::lock(&log),
            vec![
                FinisherAction::Pass,
                FinisherAction::Fail(42),
                FinisherAction::Reset,
                FinisherAction::Pass
            ]
        );
    }

    #[test]
    fn any_access_does_not_panic() {
        let (f, log) = finisher();
        fuzz_accesses(&f, (0..0x20).chain([0xfff, u64::MAX]));
        assert!(
            crate::mmio::lock(&log).is_empty(),
            "0xa5a5 garbage is not a command"
        );
    }
}
