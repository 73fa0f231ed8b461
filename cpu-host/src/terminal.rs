//! The host terminal and signals: SIGINT/SIGTERM are taken by a dedicated thread, so they stop
//! the machine cleanly (signal-hook installs real handlers, so this works even when the parent
//! started us with SIGINT ignored, as shells do for background jobs); an interactive stdin is put in raw mode (keeping ISIG, so Ctrl-C
//! still stops) while the guest owns the console, and restored afterwards.

use nix::sys::termios::{self, LocalFlags, SetArg, Termios};
use std::io::IsTerminal;

/// Handles SIGINT and SIGTERM on a thread of its own for as long as it lives.
pub struct SignalThread(signal_hook::iterator::Handle);

impl SignalThread {
    pub fn start(on_signal: impl Fn() + Send + 'static) -> anyhow::Result<Self> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
        let handle = signals.handle();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    tracing::info!(sig, "stopping");
                    on_signal();
                }
            })?;
        Ok(SignalThread(handle))
    }
}

impl Drop for SignalThread {
    fn drop(&mut self) {
        self.0.close();
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
