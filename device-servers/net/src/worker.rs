//! One queue pair's data path, run by its vring worker thread: the receive and transmit kicks,
//! and the backend's fds (tap queue, or stream connection, listener and retry timer) in the same
//! epoll (`WorkerEpoll`).
//!
//! Flow control: the backend is read only while a frame can be delivered. A frame that finds
//! too few receive buffers waits in [`Pair`], the backend fd leaves the epoll set, and the
//! driver is asked for a kick when it adds buffers (§2.7.10); that kick delivers the frame and
//! resumes reading. Nothing is dropped for want of buffers and nothing spins. Transmit towards a
//! stream that is not draining stops taking chains until the socket is writable again.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tessera_server_common::vhost_backend::{Inflight, WorkerEpoll};
use vhost_user_backend::{VringRwLock, VringT};
use virtio_queue::QueueT;
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::backend::framing::MAX_FRAME;
use crate::backend::stream::{ReadOutcome, Stream};
use crate::backend::tap::Tap;
use crate::features::Negotiated;
use crate::header::{NetHdr, Offloads, HDR_LEN};
use crate::rx::{self, Delivery};
use crate::tx;
use crate::used::{self, Completer};

pub type Mem = GuestMemoryAtomic<GuestMemoryMmap>;

/// Tokens of the backend's fds (`WorkerEpoll::first_event() + token`).
pub const T_DATA: u16 = 0;
pub const T_LISTENER: u16 = 1;
pub const T_TIMER: u16 = 2;
pub const T_WAKE: u16 = 3;

/// Frames handled per wake-up before the worker looks at its other fds.
const RX_BUDGET: usize = 64;
const TX_BUDGET: usize = 256;
/// Bytes of header + frame the worker's buffers hold.
pub const BUF_LEN: usize = HDR_LEN + MAX_FRAME;

/// A pair's link to the outside.
pub enum Io {
    Tap(Arc<Tap>),
    Stream(Stream),
}

/// What the device tells a pair about the world when an event comes.
pub struct Ctx<'a> {
    pub rx: &'a VringRwLock<Mem>,
    pub tx: &'a VringRwLock<Mem>,
    pub rx_queue: u16,
    pub tx_queue: u16,
    pub mem: Option<Mem>,
    pub neg: Negotiated,
    /// Guest offloads in force (the negotiated ones, or a later GUEST_OFFLOADS_SET).
    pub guest: Offloads,
    /// The driver uses this pair (MQ).
    pub active: bool,
    pub inflight: Option<Arc<Inflight>>,
}

impl Ctx<'_> {
    fn rx_usable(&self) -> bool {
        let st = self.rx.get_ref();
        self.active && self.mem.is_some() && st.is_enabled() && st.get_queue().ready()
    }

    fn tx_usable(&self) -> bool {
        let st = self.tx.get_ref();
        self.mem.is_some() && st.is_enabled() && st.get_queue().ready()
    }
}

/// One queue pair.
pub struct Pair {
    index: u16,
    io: Io,
    ep: Option<WorkerEpoll>,
    wake: EventFd,
    /// The data fd's registration in `ep`.
    data_watch: Option<(RawFd, EventSet)>,
    listener_watch: Option<RawFd>,
    timer_watched: bool,
    /// The backend is read (a frame could be delivered).
    reading: bool,
    /// Tap queue attached (multi-queue taps only detach unused pairs).
    attached: bool,
    rx_buf: Box<[u8]>,
    rx_len: usize,
    rx_hdr_len: usize,
    rx_pending: bool,
    tx_buf: Box<[u8]>,
}

impl Pair {
    pub fn new(index: u16, io: Io) -> std::io::Result<Self> {
        Ok(Self {
            index,
            io,
            ep: None,
            wake: EventFd::new(EFD_NONBLOCK)?,
            data_watch: None,
            listener_watch: None,
            timer_watched: false,
            reading: false,
            attached: index == 0,
            rx_buf: vec![0u8; BUF_LEN].into_boxed_slice(),
            rx_len: 0,
            rx_hdr_len: 0,
            rx_pending: false,
            tx_buf: vec![0u8; BUF_LEN].into_boxed_slice(),
        })
    }

    /// A handle that makes the pair's worker look at its queues again (from another thread).
    pub fn waker(&self) -> std::io::Result<EventFd> {
        self.wake.try_clone()
    }

    /// A new connection's worker: its epoll replaces the previous one (with all registrations).
    pub fn attach(&mut self, ep: WorkerEpoll) {
        self.data_watch = None;
        self.listener_watch = None;
        self.timer_watched = false;
        self.reading = false;
        if let Err(e) = ep.add(
            self.wake.as_raw_fd(),
            EventSet::IN,
            ep.first_event() + T_WAKE,
        ) {
            tracing::warn!(pair = self.index, "watching the wake event: {e}");
        }
        self.ep = Some(ep);
        if let Io::Stream(s) = &mut self.io {
            s.try_connect();
        }
        self.sync_watches();
    }

    /// Device reset: no frame waits any more; unused tap queues are detached.
    pub fn reset(&mut self) {
        self.rx_pending = false;
        self.reading = false;
        self.set_attached(self.index == 0);
        self.sync_watches();
    }

    fn set_attached(&mut self, on: bool) {
        if let Io::Tap(t) = &self.io {
            if self.index > 0 && self.attached != on {
                match t.attach(self.index, on) {
                    Ok(()) => self.attached = on,
                    Err(e) => tracing::warn!(pair = self.index, on, "attaching a tap queue: {e}"),
                }
            }
        }
    }

    /// The receive queue was kicked (buffers added, or the ring just started).
    pub fn on_rx_kick(&mut self, ctx: &Ctx) {
        let usable = ctx.rx_usable();
        self.set_attached(usable || self.index == 0);
        if !usable {
            self.reading = false;
            self.sync_watches();
            return;
        }
        if let Err(e) = ctx.rx.disable_notification() {
            tracing::debug!("rx disable_notification: {e}");
        }
        if self.rx_pending && !self.deliver_pending(ctx) {
            self.reading = false;
            self.sync_watches();
            return;
        }
        self.reading = true;
        // Frames may already wait in the stream decoder: no fd event would announce them.
        self.rx_from_backend(ctx);
    }

    /// The transmit queue was kicked.
    pub fn on_tx_kick(&mut self, ctx: &Ctx) {
        if !ctx.tx_usable() {
            return;
        }
        loop {
            if let Err(e) = ctx.tx.disable_notification() {
                tracing::debug!("tx disable_notification: {e}");
            }
            if self.drain_tx(ctx) {
                return;
            }
            // Re-enable, and look again for chains that raced with it (§2.7.10).
            match ctx.tx.enable_notification() {
                Ok(true) => continue,
                Ok(false) => return,
                Err(e) => {
                    tracing::debug!("tx enable_notification: {e}");
                    return;
                }
            }
        }
    }

    /// One of the backend's fds (`token`) is ready.
    pub fn on_event(&mut self, token: u16, evset: EventSet, ctx: &Ctx) {
        match token {
            T_WAKE => {
                let _ = self.wake.read();
                self.on_rx_kick(ctx);
                self.on_tx_kick(ctx);
            }
            T_LISTENER => {
                if let Io::Stream(s) = &mut self.io {
                    s.accept();
                }
                self.sync_watches();
                if self.reading {
                    self.rx_from_backend(ctx);
                }
            }
            T_TIMER => {
                if let Io::Stream(s) = &mut self.io {
                    s.on_timer();
                }
                self.sync_watches();
            }
            T_DATA => {
                if evset.contains(EventSet::OUT) {
                    match self.flush_stream() {
                        Ok(true) => self.on_tx_kick(ctx),
                        Ok(false) => {}
                        Err(why) => self.drop_stream(&why),
                    }
                }
                if evset.intersects(EventSet::IN | EventSet::HANG_UP | EventSet::ERROR) {
                    self.rx_from_backend(ctx);
                }
                self.sync_watches();
            }
            _ => tracing::debug!(token, "unknown backend event"),
        }
    }

    /// Read frames from the backend and deliver them, while the driver has buffers.
    fn rx_from_backend(&mut self, ctx: &Ctx) {
        let hdr_len = ctx.neg.hdr_len;
        let mut handled = 0;
        while self.reading && !self.rx_pending {
            if handled == RX_BUDGET {
                // Let the other fds have a turn; come back through the wake event.
                let _ = self.wake.write(1);
                break;
            }
            let got = match &mut self.io {
                Io::Tap(t) => read_tap(t, self.index, &mut self.rx_buf, hdr_len, ctx.guest),
                Io::Stream(s) => read_stream(s, &mut self.rx_buf, hdr_len),
            };
            match got {
                Got::Frame(len) => {
                    handled += 1;
                    self.rx_len = len;
                    self.rx_hdr_len = hdr_len;
                    self.rx_pending = true;
                    if !self.deliver_pending(ctx) {
                        self.reading = false;
                    }
                }
                Got::Skip => handled += 1,
                Got::Nothing => break,
                Got::Failed(why) => {
                    // A tap gone bad (deleted, say) stays readable: stop until the next kick
                    // rather than spin on it.
                    tracing::warn!(pair = self.index, "{why}; receive paused");
                    self.reading = false;
                    break;
                }
                Got::Closed(why) => {
                    self.drop_stream(&why);
                    break;
                }
            }
        }
        self.sync_watches();
    }

    /// Deliver the waiting frame: `true` once it is gone (delivered or dropped), `false` while
    /// it waits for buffers (the driver is then asked for a kick).
    fn deliver_pending(&mut self, ctx: &Ctx) -> bool {
        if !self.rx_pending {
            return true;
        }
        let Some(mem) = &ctx.mem else {
            return false;
        };
        if !ctx.rx_usable() {
            return false;
        }
        if self.rx_hdr_len != ctx.neg.hdr_len {
            // Read before a renegotiation changed the header: stale.
            self.rx_pending = false;
            return true;
        }
        let completer = Completer::new(ctx.inflight.clone(), ctx.rx_queue);
        let mut st = ctx.rx.get_mut();
        let guard = mem.memory();
        // A few rounds at most: each one only follows buffers the driver added meanwhile.
        for _ in 0..4 {
            let q = st.get_queue_mut();
            let old = q.next_used();
            let seen = q.avail_idx(&*guard, Ordering::Acquire).ok();
            let r = rx::deliver(
                q,
                &guard,
                &mut self.rx_buf[..self.rx_len],
                self.rx_hdr_len,
                ctx.neg.mrg_rxbuf,
                &completer,
            );
            if used::needs_notification(st.get_queue(), &*guard, old) {
                if let Err(e) = st.signal_used_queue() {
                    tracing::debug!("signalling rx: {e}");
                }
            }
            match r {
                Ok(Delivery::Delivered(_)) => {
                    self.rx_pending = false;
                    return true;
                }
                Ok(Delivery::Dropped(why)) => {
                    tracing::debug!(pair = self.index, "dropping a received frame: {why}");
                    self.rx_pending = false;
                    return true;
                }
                Err(e) => {
                    tracing::warn!(pair = self.index, "receive queue: {e}");
                    self.rx_pending = false;
                    return true;
                }
                Ok(Delivery::NoBuffers) => {
                    let Some(seen) = seen else {
                        return false;
                    };
                    let q = st.get_queue_mut();
                    if let Err(e) = used::kick_after(q, &*guard, seen.0) {
                        tracing::debug!("asking for an rx kick: {e}");
                        return false;
                    }
                    match q.avail_idx(&*guard, Ordering::Acquire) {
                        Ok(now) if now != seen => continue,
                        _ => return false,
                    }
                }
            }
        }
        false
    }

    /// Take transmit chains and send their frames. Returns `true` when it stopped early
    /// (backpressure or budget), with a way back arranged (OUT watch or wake event); `false`
    /// when the ring looked empty (the caller then asks for a kick).
    ///
    /// `true` must never be returned without that way back: the caller leaves the kick off,
    /// so the queue would never be looked at again. A stream that runs out of room is flushed
    /// here and the draining goes on if that made room; whether the stream still holds bytes
    /// (and so has its OUT watch) is decided after the last flush, not before it.
    fn drain_tx(&mut self, ctx: &Ctx) -> bool {
        let Some(mem) = &ctx.mem else {
            return false;
        };
        let completer = Completer::new(ctx.inflight.clone(), ctx.tx_queue);
        let mut st = ctx.tx.get_mut();
        let guard = mem.memory();
        let old = st.get_queue().next_used();
        let mut budget_spent = false;
        let mut n = 0;
        loop {
            if !self.tx_room() {
                // Make room: send what is queued; stop while the peer takes no more.
                if let Err(why) = self.flush_stream() {
                    self.drop_stream(&why);
                }
                if !self.tx_room() {
                    break;
                }
            }
            if n == TX_BUDGET {
                let _ = self.wake.write(1);
                budget_spent = true;
                break;
            }
            let q = st.get_queue_mut();
            let Some(chain) = q.pop_descriptor_chain(guard.clone()) else {
                break;
            };
            n += 1;
            let head = chain.head_index();
            if completer.begin(head) {
                tracing::info!(
                    head,
                    "a transmit chain taken before a restart: sending it now"
                );
            }
            let frame = tx::read_chain(&guard, chain, &mut self.tx_buf, ctx.neg.hdr_len);
            // Completed before it is sent: a restart never sends it twice.
            if let Err(e) = completer.publish(q, &*guard, &[(head, 0)]) {
                tracing::warn!(pair = self.index, "transmit queue: {e}");
                break;
            }
            match frame {
                Ok(len) => self.send(ctx, len),
                Err(e) => tracing::debug!(pair = self.index, "dropping a transmit chain: {e}"),
            }
        }
        if used::needs_notification(st.get_queue(), &*guard, old) {
            if let Err(e) = st.signal_used_queue() {
                tracing::debug!("signalling tx: {e}");
            }
        }
        drop(st);
        // Bytes left unsent: the OUT watch (set below) brings the worker back to this queue.
        let unsent = match self.flush_stream() {
            Ok(all_out) => !all_out,
            Err(why) => {
                self.drop_stream(&why);
                false
            }
        };
        self.sync_watches();
        budget_spent || unsent
    }

    /// Whether another frame can be taken for the backend now.
    fn tx_room(&mut self) -> bool {
        match &mut self.io {
            Io::Tap(_) => true,
            // No peer: frames are dropped, as on an unplugged cable.
            Io::Stream(s) => s.conn().is_none_or(|c| c.enc.has_room()),
        }
    }

    /// Send the frame of `len` bytes (header included) in `tx_buf`.
    fn send(&mut self, ctx: &Ctx, len: usize) {
        let hdr_len = ctx.neg.hdr_len;
        let frame = &mut self.tx_buf[..len];
        let Ok(hdr) = NetHdr::parse(frame, hdr_len) else {
            return;
        };
        match &mut self.io {
            Io::Tap(t) => {
                let hdr = match hdr.from_guest(ctx.neg.host) {
                    Ok(h) => h,
                    Err(e) => {
                        tracing::debug!(pair = self.index, "dropping a transmitted frame: {e}");
                        return;
                    }
                };
                hdr.write(&mut frame[..hdr_len]);
                let Some(mut f) = t.queue(self.index) else {
                    return;
                };
                // A tap takes a frame whole or not at all.
                match f.write(frame) {
                    Ok(n) if n == frame.len() => {}
                    Ok(n) => tracing::debug!(pair = self.index, n, "short tap write"),
                    Err(e) => tracing::debug!(pair = self.index, "tap write: {e}"),
                }
            }
            Io::Stream(s) => {
                // No offloads are offered over a stream: the header must ask for none.
                if let Err(e) = hdr.from_guest(Offloads::default()) {
                    tracing::debug!("dropping a transmitted frame: {e}");
                    return;
                }
                if let Some(c) = s.conn() {
                    c.enc.push(&frame[hdr_len..]);
                }
            }
        }
    }

    /// Push the stream's queued bytes: `Ok(true)` when all is out (or nothing to do).
    fn flush_stream(&mut self) -> Result<bool, String> {
        let Io::Stream(s) = &mut self.io else {
            return Ok(true);
        };
        let Some(c) = s.conn() else {
            return Ok(true);
        };
        c.flush().map_err(|e| format!("writing: {e}"))
    }

    fn drop_stream(&mut self, why: &str) {
        if let Io::Stream(s) = &mut self.io {
            if let (Some(ep), Some((fd, _))) = (&self.ep, self.data_watch.take()) {
                let _ = ep.remove(fd);
            }
            s.disconnect(why);
        }
        self.sync_watches();
    }

    /// Bring the epoll registrations in line with the state.
    fn sync_watches(&mut self) {
        let Some(ep) = &self.ep else {
            return;
        };
        let first = ep.first_event();
        // The data fd: IN while reading, OUT while a stream has bytes queued.
        let want: Option<(RawFd, EventSet)> = match &mut self.io {
            Io::Tap(t) => t
                .queue(self.index)
                .filter(|_| self.reading)
                .map(|f| (f.as_raw_fd(), EventSet::IN)),
            Io::Stream(s) => s.conn().and_then(|c| {
                let mut ev = EventSet::empty();
                if self.reading {
                    ev |= EventSet::IN;
                }
                if c.enc.pending() > 0 {
                    ev |= EventSet::OUT;
                }
                (!ev.is_empty()).then(|| (c.fd(), ev))
            }),
        };
        if want != self.data_watch {
            if let Some((fd, _)) = self.data_watch.take() {
                let _ = ep.remove(fd);
            }
            if let Some((fd, ev)) = want {
                match ep.add(fd, ev, first + T_DATA) {
                    Ok(()) => self.data_watch = Some((fd, ev)),
                    Err(e) => tracing::warn!(pair = self.index, "watching the backend: {e}"),
                }
            }
        }
        if let Io::Stream(s) = &self.io {
            let listener = s.listener_fd();
            if listener != self.listener_watch {
                if let Some(fd) = self.listener_watch.take() {
                    let _ = ep.remove(fd);
                }
                if let Some(fd) = listener {
                    match ep.add(fd, EventSet::IN, first + T_LISTENER) {
                        Ok(()) => self.listener_watch = Some(fd),
                        Err(e) => tracing::warn!("watching the stream listener: {e}"),
                    }
                }
            }
            if let (Some(fd), false) = (s.timer_fd(), self.timer_watched) {
                match ep.add(fd, EventSet::IN, first + T_TIMER) {
                    Ok(()) => self.timer_watched = true,
                    Err(e) => tracing::warn!("watching the retry timer: {e}"),
                }
            }
        }
    }
}

/// What one read from the backend gave.
enum Got {
    /// A frame of this many bytes (header included) is in the buffer.
    Frame(usize),
    /// Something was read and dropped.
    Skip,
    /// Nothing to read now.
    Nothing,
    /// The stream connection ended.
    Closed(String),
    /// The backend fails (not "would block").
    Failed(String),
}

/// One frame from the tap: its header is checked against the guest's offloads.
fn read_tap(t: &Tap, pair: u16, buf: &mut [u8], hdr_len: usize, guest: Offloads) -> Got {
    let Some(mut f) = t.queue(pair) else {
        return Got::Nothing;
    };
    let n = match f.read(buf) {
        Ok(n) => n,
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
            return Got::Nothing
        }
        Err(e) => return Got::Failed(format!("tap read: {e}")),
    };
    let hdr = match NetHdr::parse(&buf[..n], hdr_len).and_then(|h| h.for_guest(guest)) {
        Ok(h) => h,
        Err(e) => {
            tracing::debug!(pair, "dropping a frame from the tap: {e}");
            return Got::Skip;
        }
    };
    if n == hdr_len {
        return Got::Skip;
    }
    hdr.write(&mut buf[..hdr_len]);
    Got::Frame(n)
}

/// One frame from the stream peer, behind an all-zero header.
fn read_stream(s: &mut Stream, buf: &mut [u8], hdr_len: usize) -> Got {
    let Some(c) = s.conn() else {
        return Got::Nothing;
    };
    loop {
        match c.dec.next_frame() {
            Ok(Some(frame)) => {
                let len = hdr_len + frame.len();
                let Some(dst) = buf.get_mut(hdr_len..len) else {
                    return Got::Skip;
                };
                dst.copy_from_slice(frame);
                buf[..hdr_len].fill(0);
                return Got::Frame(len);
            }
            Ok(None) => {}
            Err(e) => return Got::Closed(e.to_string()),
        }
        match c.read_some() {
            ReadOutcome::Data => continue,
            ReadOutcome::WouldBlock => return Got::Nothing,
            ReadOutcome::Closed(why) => return Got::Closed(why),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::testring::{mem, Ring, AVAIL, D, DESC, USED};
    use std::os::unix::net::UnixStream;
    use vm_memory::{Bytes, GuestAddress};

    const SIZE: u16 = 256;
    /// An Ethernet frame of the MTU: 44 of them (4-byte length each) pass the stream's 64 KiB.
    const FRAME: usize = 1514;

    fn vring(m: &Mem, ready: bool) -> VringRwLock<Mem> {
        let v = VringRwLock::new(m.clone(), SIZE).unwrap();
        if ready {
            v.set_queue_size(SIZE);
            v.set_queue_info(DESC, AVAIL, USED).unwrap();
            v.set_queue_event_idx(true);
            v.set_queue_ready(true);
            v.set_enabled(true);
        }
        v
    }

    fn used_idx(m: &vm_memory::GuestMemoryMmap) -> u16 {
        m.read_obj(GuestAddress(USED + 2)).unwrap()
    }

    /// The regression of an intermittent guest-to-guest TCP stall: a transmit drain that ran
    /// out of stream room (more than 64 KiB taken at once) and then flushed everything to the
    /// peer reported "stopped early" with neither bytes left for an OUT watch nor a wake, and
    /// with EVENT_IDX no kick was asked for either: the queue was never looked at again.
    #[test]
    fn a_transmit_drain_past_the_stream_room_never_leaves_the_queue_unwatched() {
        let d = std::env::temp_dir().join(format!("tessera-net-worker-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("peer.sock");
        let mut s = Stream::listen(&p).unwrap();
        let peer = UnixStream::connect(&p).unwrap();
        peer.set_nonblocking(true).unwrap();
        assert!(s.accept());
        let mut pair = Pair::new(0, Io::Stream(s)).unwrap();

        let m = mem();
        let gm = Mem::new(m.clone());
        let mut ring = Ring::new(&m, SIZE);
        let frames = 60u16;
        for i in 0..frames {
            let at = 0x10_0000 + 0x800 * u64::from(i);
            let mut buf = vec![0u8; HDR_LEN + FRAME];
            buf[HDR_LEN..].fill(i as u8);
            m.write_slice(&buf, GuestAddress(at)).unwrap();
            ring.post(&[D::r(at, buf.len() as u32)]);
        }
        let (rx, tx) = (vring(&gm, false), vring(&gm, true));
        let ctx = Ctx {
            rx: &rx,
            tx: &tx,
            rx_queue: 0,
            tx_queue: 1,
            mem: Some(gm.clone()),
            neg: Negotiated::new(1 << virtio_bindings::virtio_config::VIRTIO_F_VERSION_1),
            guest: Offloads::default(),
            active: true,
            inflight: None,
        };

        let mut got = Vec::new();
        for _ in 0..100 {
            pair.on_tx_kick(&ctx);
            // Whatever stopped the drain must bring the worker back: bytes queued (OUT
            // watch), the wake event, or a kick asked for at the device's position.
            let pending = match &mut pair.io {
                Io::Stream(s) => s.conn().map_or(0, |c| c.enc.pending()),
                Io::Tap(_) => 0,
            };
            let woken = pair.wake.read().is_ok();
            let next_avail = tx.queue_next_avail();
            let avail_event: u16 = m
                .read_obj(GuestAddress(USED + 4 + 8 * u64::from(SIZE)))
                .unwrap();
            if used_idx(&m) < frames {
                assert!(
                    pending > 0 || woken || avail_event == next_avail,
                    "{} of {frames} chains taken, nothing queued, no wake, avail_event \
                     {avail_event} behind {next_avail}: the queue is never looked at again",
                    used_idx(&m)
                );
            }
            // The peer reads what arrived; the OUT watch would then fire.
            let mut chunk = [0u8; 65536];
            while let Ok(n) = (&peer).read(&mut chunk) {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&chunk[..n]);
            }
            if used_idx(&m) == frames && pending == 0 {
                break;
            }
            if pending > 0 {
                pair.on_event(T_DATA, EventSet::OUT, &ctx);
            }
        }
        assert_eq!(used_idx(&m), frames, "every chain completed");
        let mut rest = &got[..];
        for i in 0..frames {
            let (len, tail) = rest.split_first_chunk::<4>().unwrap();
            assert_eq!(u32::from_be_bytes(*len) as usize, FRAME);
            assert!(
                tail[..FRAME].iter().all(|&b| b == i as u8),
                "frame {i} in order"
            );
            rest = &tail[FRAME..];
        }
        assert!(rest.is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }
}
