//! ns16550a UART, as Linux (8250/of_serial), OpenSBI (uart8250) and U-Boot (ns16550) drive it on
//! QEMU's `virt`: eight byte-wide registers (reg-shift 0, reg-io-width 1), 16-byte FIFOs,
//! divisor latch, loopback, and a **level** interrupt output.
//!
//! # Why not `vm-superio`'s `Serial`
//! The brief was to reuse it where it gives level semantics; it does not:
//! - its interrupt is a `Trigger` (an edge, "fire once"), and the model only knows when it
//!   fires, never when the condition goes away, so a PLIC input cannot follow it;
//! - it keeps the interrupt identity as sticky bits that a read of IIR wipes entirely, and a
//!   read of RBR drops the receive interrupt even while the FIFO still holds data; a level
//!   derived from that state would fall while data is waiting (a driver that reads one byte per
//!   interrupt would stall);
//! - FCR is ignored (no FIFO reset, no enable bit, no trigger level in IIR bits 7:6 semantics).
//!
//! So the register model is hand-written (~300 lines) and the output level is recomputed from
//! the registers after every access: asserted exactly while IIR would report an interrupt.
//!
//! # Model
//! - Transmission is instantaneous: a THR write goes straight to the sink, LSR.THRE/TEMT are
//!   always set, and the THR-empty interrupt is pending again right after each write (as QEMU
//!   without its tx timer). The sink is flushed after every byte so prompts without a newline
//!   appear at once (interactive use); a failing sink drops the byte (as a disconnected line).
//! - Receive: the FIFO holds 16 bytes with FIFOs enabled (FCR bit 0), 1 byte without.
//!   [`Uart::push_input`] applies **backpressure**: it accepts only what fits and returns the
//!   count; nothing is dropped and LSR.OE never rises from host input. [`spawn_input_reader`]
//!   waits for room with [`Uart::wait_rx_space`], so pasted text arrives whole.
//! - The character-timeout interrupt (IIR 0xc) is reported at once when the FIFO holds fewer
//!   bytes than the trigger level: there is no 4-character-time delay. Drivers treat it like
//!   received-data-available, and a guest never waits for a timer to see a single keystroke.
//! - Loopback (MCR bit 4): THR bytes go to the receive FIFO (overrun sets LSR.OE), host input
//!   is held back, MSR inputs follow MCR outputs (CTS=RTS, DSR=DTR, RI=OUT1, DCD=OUT2) with
//!   delta bits. Outside loopback the modem inputs read as DCD|DSR|CTS, as QEMU.
//! - MCR.OUT2 does not gate the interrupt (that gate is PC board wiring; QEMU does the same).
//! - Accesses wider than a byte are split into byte accesses to consecutive registers, as QEMU's
//!   `serial_mm` does. Offsets 8.. of the window read 0.
//!
//! # Locking
//! One mutex holds the registers; the interrupt line is set while it is held so that levels
//! seen by the PLIC are never reordered. Lock order: UART, then whatever the line takes (PLIC,
//! hart). Bytes are written to the sink after the register lock is released, so a blocked
//! terminal stalls only the writing hart, not the input thread.

use crate::mmio::lock;
use crate::{BusDevice, IrqLine};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Size of the receive FIFO with FIFOs enabled.
pub const FIFO_SIZE: usize = 16;

const RBR_THR: u64 = 0; // DLL with LCR.DLAB
const IER: u64 = 1; // DLM with LCR.DLAB
const IIR_FCR: u64 = 2;
const LCR: u64 = 3;
const MCR: u64 = 4;
const LSR: u64 = 5;
const MSR: u64 = 6;
const SCR: u64 = 7;

const IER_RDI: u8 = 0x01;
const IER_THRI: u8 = 0x02;
const IER_RLSI: u8 = 0x04;
const IER_MSI: u8 = 0x08;
const IER_MASK: u8 = 0x0f;

const IIR_NO_INT: u8 = 0x01;
const IIR_MSI: u8 = 0x00;
const IIR_THRI: u8 = 0x02;
const IIR_RDI: u8 = 0x04;
const IIR_RLSI: u8 = 0x06;
const IIR_RX_TIMEOUT: u8 = 0x0c;
const IIR_FIFOS_ENABLED: u8 = 0xc0;

const FCR_ENABLE: u8 = 0x01;
const FCR_CLEAR_RX: u8 = 0x02;
const FCR_TRIGGER: u8 = 0xc0;

const LCR_DLAB: u8 = 0x80;

const MCR_DTR: u8 = 0x01;
const MCR_RTS: u8 = 0x02;
const MCR_OUT1: u8 = 0x04;
const MCR_OUT2: u8 = 0x08;
const MCR_LOOP: u8 = 0x10;
const MCR_MASK: u8 = 0x1f;

const LSR_DR: u8 = 0x01;
const LSR_OE: u8 = 0x02;
const LSR_ERRORS: u8 = 0x1e; // OE | PE | FE | BI
const LSR_THRE: u8 = 0x20;
const LSR_TEMT: u8 = 0x40;

const MSR_DCTS: u8 = 0x01;
const MSR_DDSR: u8 = 0x02;
const MSR_TERI: u8 = 0x04;
const MSR_DDCD: u8 = 0x08;
const MSR_DELTAS: u8 = 0x0f;
const MSR_CTS: u8 = 0x10;
const MSR_DSR: u8 = 0x20;
const MSR_RI: u8 = 0x40;
const MSR_DCD: u8 = 0x80;

struct Regs {
    rx: VecDeque<u8>,
    ier: u8,
    /// FIFO enable and trigger-level bits of the last FCR write (FCR itself is write-only).
    fcr: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    dll: u8,
    dlm: u8,
    /// Sticky LSR error bits (OE), cleared by reading LSR.
    lsr_errors: u8,
    /// THR-empty interrupt condition: set when THR empties or THRI is enabled while empty;
    /// cleared by writing THR or by reading IIR while it is the reported interrupt.
    thr_pending: bool,
    /// MSR delta bits, cleared by reading MSR.
    msr_deltas: u8,
    irq_level: bool,
}

impl Regs {
    fn new() -> Self {
        Self {
            rx: VecDeque::with_capacity(FIFO_SIZE),
            ier: 0,
            fcr: 0,
            lcr: 0,
            mcr: 0,
            scr: 0,
            dll: 0,
            dlm: 0,
            lsr_errors: 0,
            thr_pending: false,
            msr_deltas: 0,
            irq_level: false,
        }
    }

    fn fifo_enabled(&self) -> bool {
        self.fcr & FCR_ENABLE != 0
    }

    fn rx_capacity(&self) -> usize {
        if self.fifo_enabled() {
            FIFO_SIZE
        } else {
            1
        }
    }

    fn rx_trigger(&self) -> usize {
        match self.fcr >> 6 {
            0 => 1,
            1 => 4,
            2 => 8,
            _ => 14,
        }
    }

    fn loopback(&self) -> bool {
        self.mcr & MCR_LOOP != 0
    }

    /// The modem input bits (MSR 7:4) for the current MCR.
    fn modem_inputs(&self) -> u8 {
        if !self.loopback() {
            return MSR_DCD | MSR_DSR | MSR_CTS;
        }
        let mut m = 0;
        if self.mcr & MCR_RTS != 0 {
            m |= MSR_CTS;
        }
        if self.mcr & MCR_DTR != 0 {
            m |= MSR_DSR;
        }
        if self.mcr & MCR_OUT1 != 0 {
            m |= MSR_RI;
        }
        if self.mcr & MCR_OUT2 != 0 {
            m |= MSR_DCD;
        }
        m
    }

    fn lsr(&self) -> u8 {
        let dr = if self.rx.is_empty() { 0 } else { LSR_DR };
        dr | self.lsr_errors | LSR_THRE | LSR_TEMT
    }

    /// Interrupt identification (IIR bits 3:0), highest priority first: line status, received
    /// data (or timeout), THR empty, modem status.
    fn iir_id(&self) -> u8 {
        if self.ier & IER_RLSI != 0 && self.lsr_errors & LSR_ERRORS != 0 {
            IIR_RLSI
        } else if self.ier & IER_RDI != 0 && !self.rx.is_empty() {
            if self.fifo_enabled() && self.rx.len() < self.rx_trigger() {
                IIR_RX_TIMEOUT
            } else {
                IIR_RDI
            }
        } else if self.ier & IER_THRI != 0 && self.thr_pending {
            IIR_THRI
        } else if self.ier & IER_MSI != 0 && self.msr_deltas & MSR_DELTAS != 0 {
            IIR_MSI
        } else {
            IIR_NO_INT
        }
    }

    fn push_rx(&mut self, byte: u8) -> bool {
        if self.rx.len() < self.rx_capacity() {
            self.rx.push_back(byte);
            true
        } else {
            false
        }
    }
}

/// An ns16550a UART. Map it with [`BusDevice`]; see the module doc for the model.
pub struct Uart {
    regs: Mutex<Regs>,
    /// Signalled when the guest takes bytes out of the receive FIFO (or resets it).
    rx_space: Condvar,
    sink: Mutex<Box<dyn Write + Send>>,
    irq: Arc<dyn IrqLine>,
}

impl Uart {
    /// A UART writing guest output to `sink` and driving `irq` (level).
    pub fn new(sink: Box<dyn Write + Send>, irq: Arc<dyn IrqLine>) -> Self {
        Self {
            regs: Mutex::new(Regs::new()),
            rx_space: Condvar::new(),
            sink: Mutex::new(sink),
            irq,
        }
    }

    /// Offer host input to the guest. Accepts what fits in the receive FIFO and returns how
    /// many bytes were taken (backpressure: the caller keeps the rest and retries, for instance
    /// after [`Uart::wait_rx_space`]). Takes nothing in loopback mode.
    pub fn push_input(&self, bytes: &[u8]) -> usize {
        let mut r = lock(&self.regs);
        if r.loopback() {
            return 0;
        }
        let n = bytes.iter().take_while(|&&b| r.push_rx(b)).count();
        if n > 0 {
            self.update_irq(&mut r);
        }
        n
    }

    /// Wait up to `timeout` until [`Uart::push_input`] would accept at least one byte.
    /// Returns whether there is room now.
    pub fn wait_rx_space(&self, timeout: Duration) -> bool {
        let r = lock(&self.regs);
        let (r, _) = self
            .rx_space
            .wait_timeout_while(r, timeout, |r| {
                r.loopback() || r.rx.len() >= r.rx_capacity()
            })
            .unwrap_or_else(|e| e.into_inner());
        !r.loopback() && r.rx.len() < r.rx_capacity()
    }

    /// Back to the power-on state (board reset). Host input not yet accepted stays with its
    /// producer; bytes in the FIFO are discarded.
    pub fn reset(&self) {
        let mut r = lock(&self.regs);
        // Keep the line's last level so that update_irq lowers it if it was high.
        let level = r.irq_level;
        *r = Regs::new();
        r.irq_level = level;
        self.update_irq(&mut r);
        self.rx_space.notify_all();
    }

    /// Drive the output line from the registers; called with the lock held after any change.
    fn update_irq(&self, r: &mut Regs) {
        let level = r.iir_id() != IIR_NO_INT;
        if level != r.irq_level {
            r.irq_level = level;
            self.irq.set(level);
        }
    }

    fn read_reg(&self, reg: u64) -> u8 {
        let mut r = lock(&self.regs);
        let dlab = r.lcr & LCR_DLAB != 0;
        let v = match reg {
            RBR_THR if dlab => r.dll,
            RBR_THR => {
                let b = r.rx.pop_front().unwrap_or(0);
                self.rx_space.notify_all();
                b
            }
            IER if dlab => r.dlm,
            IER => r.ier,
            IIR_FCR => {
                let id = r.iir_id();
                if id == IIR_THRI {
                    r.thr_pending = false;
                }
                let fifo = if r.fifo_enabled() {
                    IIR_FIFOS_ENABLED
                } else {
                    0
                };
                id | fifo
            }
            LCR => r.lcr,
            MCR => r.mcr,
            LSR => {
                let v = r.lsr();
                r.lsr_errors = 0;
                v
            }
            MSR => {
                let v = r.modem_inputs() | r.msr_deltas;
                r.msr_deltas = 0;
                v
            }
            SCR => r.scr,
            _ => {
                tracing::debug!(offset = reg, "uart: read of unimplemented offset");
                0
            }
        };
        self.update_irq(&mut r);
        v
    }

    fn write_reg(&self, reg: u64, v: u8) {
        let mut out = None;
        {
            let mut r = lock(&self.regs);
            let dlab = r.lcr & LCR_DLAB != 0;
            match reg {
                RBR_THR if dlab => r.dll = v,
                RBR_THR => {
                    if r.loopback() {
                        if !r.push_rx(v) {
                            r.lsr_errors |= LSR_OE;
                        }
                    } else {
                        out = Some(v);
                    }
                    // Sent instantly: THR is empty again.
                    r.thr_pending = true;
                }
                IER if dlab => r.dlm = v,
                IER => {
                    let changed = (r.ier ^ v) & IER_MASK;
                    r.ier = v & IER_MASK;
                    if changed & IER_THRI != 0 {
                        // THR is always empty here, so enabling THRI raises the condition
                        // (Linux's THRE-bug probe and start_tx rely on this).
                        r.thr_pending = r.ier & IER_THRI != 0;
                    }
                }
                IIR_FCR => {
                    if (r.fcr ^ v) & FCR_ENABLE != 0 || v & FCR_CLEAR_RX != 0 {
                        r.rx.clear();
                        self.rx_space.notify_all();
                    }
                    r.fcr = if v & FCR_ENABLE != 0 {
                        v & (FCR_ENABLE | FCR_TRIGGER)
                    } else {
                        0
                    };
                }
                LCR => r.lcr = v,
                MCR => {
                    let before = r.modem_inputs();
                    let was_loop = r.loopback();
                    r.mcr = v & MCR_MASK;
                    let after = r.modem_inputs();
                    let changed = before ^ after;
                    if changed & MSR_CTS != 0 {
                        r.msr_deltas |= MSR_DCTS;
                    }
                    if changed & MSR_DSR != 0 {
                        r.msr_deltas |= MSR_DDSR;
                    }
                    if changed & MSR_DCD != 0 {
                        r.msr_deltas |= MSR_DDCD;
                    }
                    if before & MSR_RI != 0 && after & MSR_RI == 0 {
                        r.msr_deltas |= MSR_TERI;
                    }
                    if was_loop != r.loopback() {
                        // Host input resumes (or pauses) with the loopback switch.
                        self.rx_space.notify_all();
                    }
                }
                LSR | MSR => {
                    tracing::debug!(offset = reg, value = v, "uart: write to read-only register")
                }
                SCR => r.scr = v,
                _ => tracing::debug!(
                    offset = reg,
                    value = v,
                    "uart: write to unimplemented offset"
                ),
            }
            self.update_irq(&mut r);
        }
        if let Some(b) = out {
            let mut sink = lock(&self.sink);
            if let Err(e) = sink.write_all(&[b]).and_then(|()| sink.flush()) {
                tracing::debug!(error = %e, "uart: output sink failed; byte dropped");
            }
        }
    }
}

impl BusDevice for Uart {
    fn read(&self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = self.read_reg(offset.wrapping_add(i as u64));
        }
    }

    fn write(&self, offset: u64, data: &[u8]) {
        for (i, &b) in data.iter().enumerate() {
            self.write_reg(offset.wrapping_add(i as u64), b);
        }
    }
}

/// Feed `input` into `uart` from a new thread (named `name`), with backpressure: the thread
/// waits for FIFO room rather than dropping bytes. It ends at end of input, on a read error,
/// or once the UART has been dropped (noticed at the next input byte, or within 100 ms while
/// waiting for room). It holds only a weak reference, so it does not keep the UART alive.
///
/// The thread blocks in `read` and cannot be interrupted; it is meant to be detached.
pub fn spawn_input_reader<R: Read + Send + 'static>(
    uart: &Arc<Uart>,
    mut input: R,
    name: &str,
) -> io::Result<JoinHandle<()>> {
    let weak: Weak<Uart> = Arc::downgrade(uart);
    thread::Builder::new().name(name.to_owned()).spawn(move || {
        let mut buf = [0u8; 256];
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::debug!(error = %e, "uart input reader: read failed; stopping");
                    return;
                }
            };
            let mut rest = &buf[..n];
            while !rest.is_empty() {
                let Some(uart) = weak.upgrade() else { return };
                let taken = uart.push_input(rest);
                rest = &rest[taken..];
                if taken == 0 {
                    uart.wait_rx_space(Duration::from_millis(100));
                }
            }
        }
    })
}

/// The UART that the process's stdin feeds (see [`spawn_stdin_reader`]).
static STDIN_UART: Mutex<Option<Weak<Uart>>> = Mutex::new(None);
/// Whether the stdin thread runs (there is one per process: two readers would split the input).
static STDIN_THREAD: Mutex<bool> = Mutex::new(false);

/// Feed the process's stdin to `uart` (`--serial stdio`). One thread per process reads stdin;
/// calling this again (a machine rebuilt on reset) redirects it to the new UART without losing
/// a byte: input that arrives while no UART exists waits for the next one. Putting the terminal
/// in raw mode, if wanted, is the caller's job.
pub fn spawn_stdin_reader(uart: &Arc<Uart>) -> io::Result<()> {
    *lock(&STDIN_UART) = Some(Arc::downgrade(uart));
    let mut started = lock(&STDIN_THREAD);
    if *started {
        return Ok(());
    }
    thread::Builder::new()
        .name("uart-stdin".to_owned())
        .spawn(|| {
            let mut input = io::stdin();
            let mut buf = [0u8; 256];
            loop {
                let n = match input.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        tracing::debug!(error = %e, "uart stdin reader: read failed; stopping");
                        return;
                    }
                };
                let mut rest = &buf[..n];
                while !rest.is_empty() {
                    let target = lock(&STDIN_UART).as_ref().and_then(Weak::upgrade);
                    let Some(uart) = target else {
                        thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    let taken = uart.push_input(rest);
                    rest = &rest[taken..];
                    if taken == 0 {
                        uart.wait_rx_space(Duration::from_millis(100));
                    }
                }
            }
        })?;
    *started = true;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mmio::test_util::{fuzz_accesses, r8, w8, TestLine};

    #[derive(Clone, Default)]
    struct SharedSink(Arc<Mutex<Vec<u8>>>);
    impl Write for SharedSink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            lock(&self.0).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn uart() -> (Arc<Uart>, SharedSink, Arc<TestLine>) {
        let sink = SharedSink::default();
        let line = TestLine::new();
        let u = Arc::new(Uart::new(Box::new(sink.clone()), line.clone()));
        (u, sink, line)
    }

    #[test]
    fn thr_write_reaches_sink() {
        let (u, sink, line) = uart();
        for &b in b"hi\n" {
            w8(&*u, RBR_THR, b);
        }
        assert_eq!(&*lock(&sink.0), b"hi\n");
        assert!(!line.level(), "no interrupt enabled");
        assert_eq!(r8(&*u, LSR) & (LSR_THRE | LSR_TEMT), LSR_THRE | LSR_TEMT);
    }

    #[test]
    fn dlab_selects_divisor_latch() {
        let (u, sink, _) = uart();
        w8(&*u, LCR, LCR_DLAB | 0x03);
        w8(&*u, RBR_THR, 0x12);
        w8(&*u, IER, 0x34);
        assert_eq!(r8(&*u, RBR_THR), 0x12);
        assert_eq!(r8(&*u, IER), 0x34);
        w8(&*u, LCR, 0x03);
        assert_eq!(r8(&*u, IER), 0, "IER untouched by the DLM write");
        assert!(lock(&sink.0).is_empty(), "DLL write is not output");
    }

    #[test]
    fn rx_interrupt_is_level_while_data_remains() {
        let (u, _, line) = uart();
        w8(&*u, IIR_FCR, FCR_ENABLE | FCR_CLEAR_RX); // trigger level 1
        w8(&*u, IER, IER_RDI);
        assert!(!line.level());
        assert_eq!(u.push_input(b"ab"), 2);
        assert!(line.level());
        assert_eq!(r8(&*u, IIR_FCR), IIR_FIFOS_ENABLED | IIR_RDI);
        assert!(line.level(), "reading IIR does not clear received-data");
        assert_eq!(r8(&*u, LSR) & LSR_DR, LSR_DR);
        assert_eq!(r8(&*u, RBR_THR), b'a');
        assert!(line.level(), "one byte still in the FIFO");
        assert_eq!(r8(&*u, RBR_THR), b'b');
        assert!(!line.level());
        assert_eq!(r8(&*u, IIR_FCR), IIR_FIFOS_ENABLED | IIR_NO_INT);
        assert_eq!(r8(&*u, LSR) & LSR_DR, 0);
    }

    #[test]
    fn rx_below_trigger_reports_timeout() {
        let (u, _, _) = uart();
        w8(&*u, IIR_FCR, FCR_ENABLE | 0x80); // trigger 8
        w8(&*u, IER, IER_RDI);
        u.push_input(b"x");
        assert_eq!(r8(&*u, IIR_FCR) & 0x0f, IIR_RX_TIMEOUT);
        u.push_input(b"12345678");
        assert_eq!(r8(&*u, IIR_FCR) & 0x0f, IIR_RDI);
    }

    #[test]
    fn masked_rx_interrupt_asserts_when_ier_restored() {
        let (u, _, line) = uart();
        w8(&*u, IIR_FCR, FCR_ENABLE);
        u.push_input(b"k");
        assert!(!line.level());
        w8(&*u, IER, IER_RDI);
        assert!(line.level());
        w8(&*u, IER, 0);
        assert!(!line.level());
    }

    #[test]
    fn thre_interrupt_priority_and_clear_on_iir_read() {
        let (u, _, line) = uart();
        w8(&*u, IIR_FCR, FCR_ENABLE);
        w8(&*u, IER, IER_THRI | IER_RDI);
        assert!(line.level());
        u.push_input(b"z");
        // Received data outranks THR empty.
        assert_eq!(r8(&*u, IIR_FCR) & 0x0f, IIR_RDI);
        r8(&*u, RBR_THR);
        assert!(line.level(), "THRE still pending");
        assert_eq!(r8(&*u, IIR_FCR) & 0x0f, IIR_THRI);
        assert!(!line.level(), "IIR read that reports THRE clears it");
        let sets = line.sets();
        w8(&*u, RBR_THR, b'.');
        assert!(line.level(), "THR empty again after the write");
        w8(&*u, RBR_THR, b'.');
        assert_eq!(
            line.sets(),
            sets + 1,
            "the line changes only on level changes"
        );
        w8(&*u, IER, IER_RDI);
        assert!(!line.level());
    }

    #[test]
    fn linux_thre_probe_sees_interrupt_both_times() {
        let (u, _, _) = uart();
        w8(&*u, IER, IER_THRI);
        let iir1 = r8(&*u, IIR_FCR);
        w8(&*u, IER, 0);
        w8(&*u, IER, IER_THRI);
        let iir2 = r8(&*u, IIR_FCR);
        w8(&*u, IER, 0);
        assert_eq!(iir1 & IIR_NO_INT, 0);
        assert_eq!(iir2 & IIR_NO_INT, 0);
    }

    #[test]
    fn push_input_backpressures_when_fifo_full() {
        let (u, _, _) = uart();
        assert_eq!(u.push_input(b"abc"), 1, "FIFO disabled: one holding byte");
        w8(&*u, IIR_FCR, FCR_ENABLE);
        let data = [b'q'; 40];
        assert_eq!(u.push_input(&data), FIFO_SIZE);
        assert_eq!(u.push_input(&data), 0);
        assert!(!u.wait_rx_space(Duration::from_millis(1)));
        r8(&*u, RBR_THR);
        assert!(u.wait_rx_space(Duration::from_millis(1)));
        assert_eq!(r8(&*u, LSR) & LSR_OE, 0, "backpressure never overruns");
    }

    #[test]
    fn fcr_clear_and_disable_flush_rx() {
        let (u, _, _) = uart();
        w8(&*u, IIR_FCR, FCR_ENABLE);
        u.push_input(b"abc");
        w8(&*u, IIR_FCR, FCR_ENABLE | FCR_CLEAR_RX);
        assert_eq!(r8(&*u, LSR) & LSR_DR, 0);
        u.push_input(b"abc");
        w8(&*u, IIR_FCR, 0);
        assert_eq!(r8(&*u, LSR) & LSR_DR, 0);
        assert_eq!(r8(&*u, IIR_FCR) & IIR_FIFOS_ENABLED, 0);
    }

    #[test]
    fn loopback_echoes_and_mirrors_modem_lines() {
        let (u, sink, line) = uart();
        w8(&*u, IIR_FCR, FCR_ENABLE);
        w8(&*u, MCR, MCR_LOOP);
        assert_eq!(r8(&*u, MSR) & 0xf0, 0);
        w8(&*u, RBR_THR, 0x5a);
        assert_eq!(r8(&*u, RBR_THR), 0x5a);
        assert!(lock(&sink.0).is_empty());
        assert_eq!(u.push_input(b"x"), 0, "host input held back in loopback");
        w8(&*u, IER, IER_MSI);
        w8(&*u, MCR, MCR_LOOP | MCR_RTS | MCR_OUT2);
        assert!(line.level(), "modem status change");
        let msr = r8(&*u, MSR);
        assert_eq!(msr & 0xf0, MSR_CTS | MSR_DCD);
        assert_eq!(msr & MSR_DELTAS, MSR_DCTS | MSR_DDCD);
        assert!(!line.level(), "MSR read clears deltas");
        for _ in 0..=FIFO_SIZE {
            w8(&*u, RBR_THR, 1);
        }
        assert_eq!(r8(&*u, LSR) & LSR_OE, LSR_OE);
        assert_eq!(r8(&*u, LSR) & LSR_OE, 0, "OE cleared by the LSR read");
    }

    #[test]
    fn scratch_and_wide_accesses_split_into_bytes() {
        let (u, _, _) = uart();
        w8(&*u, SCR, 0x77);
        assert_eq!(r8(&*u, SCR), 0x77);
        let mut d = [0u8; 2];
        u.read(6, &mut d); // MSR, SCR
        assert_eq!(d[1], 0x77);
        u.write(0x40, &[1, 2, 3, 4]);
        assert_eq!(r8(&*u, 0x40), 0);
    }

    #[test]
    fn any_access_does_not_panic() {
        let (u, _, _) = uart();
        fuzz_accesses(&*u, (0..0x110).chain([u64::MAX - 3, u64::MAX]));
    }

    #[test]
    fn input_reader_delivers_everything_with_backpressure() {
        let (u, _, _) = uart();
        w8(&*u, IIR_FCR, FCR_ENABLE);
        let text: Vec<u8> = (0..200u32).map(|i| b'a' + (i % 26) as u8).collect();
        let h =
            spawn_input_reader(&u, io::Cursor::new(text.clone()), "test-uart-in").expect("spawn");
        let mut got = Vec::new();
        let end = std::time::Instant::now() + Duration::from_secs(5);
        while got.len() < text.len() && std::time::Instant::now() < end {
            if r8(&*u, LSR) & LSR_DR != 0 {
                got.push(r8(&*u, RBR_THR));
            } else {
                thread::sleep(Duration::from_millis(1));
            }
        }
        assert_eq!(got, text);
        h.join().expect("reader thread");
    }

    #[test]
    fn reset_clears_state_and_drops_irq() {
        let (u, _, line) = uart();
        w8(&*u, IER, IER_THRI);
        assert!(line.level());
        u.reset();
        assert!(!line.level());
        assert_eq!(r8(&*u, IER), 0);
    }
}
