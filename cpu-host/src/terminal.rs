//! The host terminal and signals: SIGINT/SIGTERM are taken by a dedicated thread (sigwait), so
//! they stop the machine cleanly; an interactive stdin is put in raw mode (keeping ISIG, so Ctrl-C
//! still stops) while the guest owns the console, and restored afterwards.

use nix::sys::signal::{SigSet, Signal};
use nix::sys::termios::{self, LocalFlags, SetArg, Termios};
use std::io::IsTerminal;

/// Blocks SIGINT and SIGTERM in this and all later threads and handles them on one thread.
pub struct SignalThread;

impl SignalThread {
    /// Must be called before any other thread is started, so every thread inherits the mask.
    pub fn start(on_signal: impl Fn() + Send + 'static) -> anyhow::Result<Self> {
        let mut set = SigSet::empty();
        set.add(Signal::SIGINT);
        set.add(Signal::SIGTERM);
        set.thread_block()?;
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || loop {
                if let Ok(sig) = set.wait() {
                    tracing::info!(?sig, "stopping");
                    on_signal();
                }
            })?;
        Ok(SignalThread)
    }
}

/// Raw mode on an interactive stdin for as long as it lives.
pub struct RawMode(Termios);

impl RawMode {
    pub fn enter() -> Option<Self> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return None;
        }
        let saved = termios::tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        raw.local_flags |= LocalFlags::ISIG;
        // Keep output post-processing so the host's own messages still start at column 0.
        raw.output_flags = saved.output_flags;
        termios::tcsetattr(&stdin, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin(), SetArg::TCSANOW, &self.0);
    }
}
