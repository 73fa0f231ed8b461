//! `tessera-shm`: guest RAM shared between Tessera's processes.
//!
//! # Contract
//!
//! - Guest RAM is one or more memfds, created by [`GuestRam::create`] (one memfd named
//!   `tessera-ram`, sealed with `F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`) and mapped
//!   `MAP_SHARED` read-write by every process that holds it.
//! - The layout crosses process boundaries as a [`RegionTable`] (guest physical address, size,
//!   fd index, fd offset), serialized as JSON by [`send_ram`] in the same message that carries the
//!   fds with `SCM_RIGHTS`; [`recv_ram`] maps it on the other side. [`send_fds`]/[`recv_fds`] are the
//!   framing underneath, reusable by other protocols; [`send_with_fds`]/[`recv_with_fds`] pass fds
//!   without framing, for protocols that frame their own messages (vfio-user).
//! - Received tables are untrusted: [`GuestRam::from_fds`] validates alignment, overlap, wrap-around,
//!   fd indices, that each fd is sealed against shrinking, and (with `fstat`) that every region lies
//!   inside its file, so a hostile peer cannot make this process map beyond a file or fault later.
//! - Host pointers from [`GuestRam::regions`] stay valid exactly as long as the [`GuestRam`]. The
//!   memory is written concurrently by other processes (other CPU clusters, device servers): access
//!   it only through raw pointers with volatile or atomic operations, never through `&`/`&mut`
//!   references to plain data. [`GuestRam::atomic_u64`] and friends do this for you; atomics on the
//!   shared mapping are atomic across processes.
//! - [`GuestRam::to_guest_memory`] gives a `vm-memory` view whose regions are file-backed
//!   (`FileOffset`), so vhost-user frontends can send the same fds on.
//!
//! Linux only (memfd, seals, `SCM_RIGHTS`). This crate is one of the few in Tessera allowed to use
//! `unsafe`; every block says why it is sound.

mod error;
mod fdpass;
mod ram;
mod shared;
mod table;

pub use error::ShmError;
pub use fdpass::{
    recv_fds, recv_ram, recv_with_fds, send_fds, send_ram, send_with_fds, MAX_RAM_FDS,
    MAX_RAM_PAYLOAD, SCM_MAX_FD,
};
pub use ram::{GuestRam, MappedRegion, RAM_MEMFD_NAME};
pub use shared::{inherit_fd, sealed_memfd, SharedPage};
pub use table::{page_size, RegionDesc, RegionTable, MAX_REGIONS};
