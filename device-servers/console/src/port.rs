//! Port 0 of the console: output bytes go to a host sink; input bytes from a host source wait in
//! a bounded buffer until the guest offers receive buffers.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::sync::{Arc, Mutex, PoisonError};

use crate::Output;

/// Input the guest has not taken yet; beyond this the host source is not read (backpressure
/// through the reader thread blocking, so nothing is lost and memory stays bounded).
pub const MAX_PENDING_INPUT: usize = 64 * 1024;

type Sink = Box<dyn Write + Send>;

#[derive(Default)]
struct State {
    sink: Option<Sink>,
    pending: VecDeque<u8>,
}

/// The host side of port 0.
#[derive(Default)]
pub struct Port {
    state: Mutex<State>,
    space: std::sync::Condvar,
    /// Called when input arrives (the backend delivers it to the guest's receive queue).
    on_input: Mutex<Option<Box<dyn Fn() + Send + Sync>>>,
}

impl Port {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn set_sink(&self, sink: Option<Sink>) {
        self.lock().sink = sink;
    }

    /// Guest output. A broken sink (a client that went away) is dropped; output without a sink
    /// is discarded, as on a serial line with nothing attached.
    pub fn write_out(&self, bytes: &[u8]) {
        let mut s = self.lock();
        if let Some(sink) = s.sink.as_mut() {
            if sink.write_all(bytes).and_then(|_| sink.flush()).is_err() {
                tracing::info!("console output sink went away");
                s.sink = None;
            }
        }
    }

    /// Host input: waits while the buffer is full.
    pub fn push_input(&self, bytes: &[u8]) {
        let mut s = self.lock();
        for &b in bytes {
            while s.pending.len() >= MAX_PENDING_INPUT {
                s = self.space.wait(s).unwrap_or_else(PoisonError::into_inner);
            }
            s.pending.push_back(b);
        }
        drop(s);
        if let Some(f) = self
            .on_input
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            f();
        }
    }

    /// Take up to `max` pending input bytes for the guest.
    pub fn take_input(&self, max: usize) -> Vec<u8> {
        let mut s = self.lock();
        let n = max.min(s.pending.len());
        let v: Vec<u8> = s.pending.drain(..n).collect();
        if n > 0 {
            self.space.notify_all();
        }
        v
    }

    pub fn has_input(&self) -> bool {
        !self.lock().pending.is_empty()
    }

    pub fn set_on_input(&self, f: Box<dyn Fn() + Send + Sync>) {
        *self.on_input.lock().unwrap_or_else(PoisonError::into_inner) = Some(f);
    }
}

fn spawn_reader(
    port: &Arc<Port>,
    mut src: impl Read + Send + 'static,
    name: &str,
) -> std::io::Result<()> {
    let port = port.clone();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match src.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => port.push_input(&buf[..n]),
                }
            }
        })?;
    Ok(())
}

/// Attach port 0 to the host side described by `output`.
pub fn connect(port: &Arc<Port>, output: &Output) -> std::io::Result<()> {
    match output {
        Output::Stdio => {
            port.set_sink(Some(Box::new(std::io::stdout())));
            spawn_reader(port, std::io::stdin(), "console-stdin")
        }
        Output::File(p) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?;
            port.set_sink(Some(Box::new(f)));
            Ok(())
        }
        Output::Socket(p) => {
            let _ = std::fs::remove_file(p);
            let listener = UnixListener::bind(p)?;
            let port = port.clone();
            std::thread::Builder::new()
                .name("console-socket".into())
                .spawn(move || {
                    for conn in listener.incoming() {
                        let Ok(conn) = conn else { continue };
                        let (Ok(out), Ok(inp)) = (conn.try_clone(), conn.try_clone()) else {
                            continue;
                        };
                        port.set_sink(Some(Box::new(out)));
                        let mut inp = inp;
                        let mut buf = [0u8; 4096];
                        // One client at a time: its input until it hangs up.
                        loop {
                            match inp.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => port.push_input(&buf[..n]),
                            }
                        }
                        port.set_sink(None);
                    }
                })?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn output_reaches_the_sink_and_input_is_taken_in_order() {
        let port = Port::new();
        let out = Shared::default();
        port.set_sink(Some(Box::new(out.clone())));
        port.write_out(b"hello");
        assert_eq!(&*out.0.lock().expect("lock"), b"hello");
        port.push_input(b"abcdef");
        assert_eq!(port.take_input(4), b"abcd");
        assert_eq!(port.take_input(10), b"ef");
        assert!(!port.has_input());
    }
}
