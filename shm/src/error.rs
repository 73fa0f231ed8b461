//! The one error type of this crate: one variant per step that can fail.

use nix::errno::Errno;

/// Everything that can go wrong while creating, validating, mapping, passing or accessing guest RAM.
///
/// Each variant names the step that failed and carries the values needed to find the culprit
/// (the guest physical address of the region, the fd index, the sizes involved).
#[derive(Debug, thiserror::Error)]
pub enum ShmError {
    // ---- region table validation -------------------------------------------------------------
    /// The range list or region table is empty.
    #[error("validate regions: no RAM region given")]
    NoRegions,
    /// A region table has more entries than [`crate::MAX_REGIONS`].
    #[error("validate regions: {count} regions exceed the limit of {max}")]
    TooManyRegions { count: usize, max: usize },
    /// A region has size zero.
    #[error("validate regions: region at gpa {gpa:#x} has size 0")]
    ZeroSize { gpa: u64 },
    /// A region's guest address, size or file offset is not a multiple of the host page size.
    #[error(
        "validate regions: region at gpa {gpa:#x} (size {size:#x}, fd offset {fd_offset:#x}) \
         is not aligned to the page size {page_size:#x}"
    )]
    Unaligned {
        gpa: u64,
        size: u64,
        fd_offset: u64,
        page_size: u64,
    },
    /// `gpa + size` does not fit in 64 bits.
    #[error("validate regions: region at gpa {gpa:#x} with size {size:#x} wraps around")]
    WrapAround { gpa: u64, size: u64 },
    /// Two regions overlap in guest physical address space.
    #[error("validate regions: region at gpa {first:#x} overlaps region at gpa {second:#x}")]
    Overlap { first: u64, second: u64 },
    /// A region (or the sum of all regions) is too large for this host's address space or for a
    /// file offset.
    #[error("validate regions: region at gpa {gpa:#x} is too large for this host")]
    TooLarge { gpa: u64 },
    /// A region refers to an fd index that was not supplied.
    #[error("validate regions: region at gpa {gpa:#x} uses fd index {fd_index} but only {fds} fds were given")]
    FdIndexOutOfRange {
        gpa: u64,
        fd_index: usize,
        fds: usize,
    },
    /// An fd was supplied that no region uses.
    #[error("validate regions: fd index {fd_index} is not used by any region")]
    UnusedFd { fd_index: usize },

    // ---- creating the memfd -------------------------------------------------------------------
    /// `memfd_create` failed.
    #[error("create memfd: {0}")]
    MemfdCreate(#[source] memfd::Error),
    /// Setting the memfd's size (`ftruncate`) failed.
    #[error("size memfd to {size:#x} bytes: {source}")]
    MemfdSize { size: u64, source: std::io::Error },
    /// Adding the seals failed.
    #[error("seal memfd: {0}")]
    MemfdSeal(#[source] memfd::Error),

    // ---- inspecting received fds --------------------------------------------------------------
    /// `fcntl(F_GET_SEALS)` failed on a received fd (it is probably not a memfd).
    #[error("read seals of fd index {fd_index}: {source}")]
    GetSeals { fd_index: usize, source: Errno },
    /// A received fd is not sealed against shrinking, so the sender could make our accesses fault.
    #[error("fd index {fd_index} is not sealed against shrinking (seals {seals:#x})")]
    NotSealed { fd_index: usize, seals: i32 },
    /// `fstat` failed on a received fd.
    #[error("fstat fd index {fd_index}: {source}")]
    Fstat { fd_index: usize, source: Errno },
    /// A region extends beyond the end of the file that backs it.
    #[error(
        "region at gpa {gpa:#x} needs fd index {fd_index} up to byte {end:#x}, \
         but the file has only {file_size:#x} bytes"
    )]
    BeyondFile {
        gpa: u64,
        fd_index: usize,
        end: u64,
        file_size: u64,
    },

    // ---- mapping ------------------------------------------------------------------------------
    /// `mmap` of a region failed.
    #[error("mmap region at gpa {gpa:#x} (size {size:#x}): {source}")]
    Mmap { gpa: u64, size: u64, source: Errno },
    /// Building the `vm-memory` view failed.
    #[error("build vm-memory GuestMemoryMmap: {0}")]
    GuestMemory(#[source] vm_memory::mmap::FromRangesError),

    // ---- accessing ----------------------------------------------------------------------------
    /// `[gpa, gpa + len)` is not inside one RAM region.
    #[error("access of {len} bytes at gpa {gpa:#x} is outside RAM (or crosses a region end)")]
    OutOfRange { gpa: u64, len: u64 },
    /// An atomic access at a gpa that is not naturally aligned.
    #[error("atomic access at gpa {gpa:#x} is not {align}-byte aligned")]
    Misaligned { gpa: u64, align: u64 },

    // ---- the region table on the wire ---------------------------------------------------------
    /// Encoding the region table as JSON failed.
    #[error("encode region table: {0}")]
    EncodeTable(#[source] serde_json::Error),
    /// Decoding the region table from JSON failed.
    #[error("decode region table: {0}")]
    DecodeTable(#[source] serde_json::Error),

    // ---- fd passing ---------------------------------------------------------------------------
    /// The socket is not a `SOCK_STREAM` unix socket (the framing needs a byte stream).
    #[error("fd passing needs a SOCK_STREAM unix socket")]
    NotStreamSocket,
    /// Querying the socket type failed.
    #[error("query socket type: {0}")]
    SocketType(#[source] Errno),
    /// A payload is larger than the receiver's limit (or than the 32-bit length field).
    #[error("message payload of {len} bytes exceeds the limit of {max}")]
    PayloadTooLarge { len: u64, max: u64 },
    /// More fds than allowed were sent or received.
    #[error("{count} fds exceed the limit of {max}")]
    TooManyFds { count: usize, max: usize },
    /// `sendmsg`/`send` failed.
    #[error("send message: {0}")]
    Send(#[source] Errno),
    /// `recvmsg` failed.
    #[error("receive message: {0}")]
    Recv(#[source] Errno),
    /// Reading the rest of a message failed.
    #[error("receive message body: {0}")]
    RecvBody(#[source] std::io::Error),
    /// The kernel truncated the ancillary data (fds were lost).
    #[error("receive message: control data truncated, fds were dropped")]
    ControlTruncated,
    /// The peer closed the socket before a whole message arrived.
    #[error("receive message: peer closed the connection")]
    PeerClosed,

    // Shared pages and inherited fds.
    #[error("fd {fd} given on the command line is not open: {source}")]
    NotInherited { fd: i32, source: Errno },

    #[error("fd {fd} is given twice")]
    InheritedTwice { fd: i32 },

    #[error("shared page: the file holds {file_size} bytes, less than one page")]
    PageBeyondFile { file_size: u64 },
}
