//! The region table: the description of guest RAM that crosses process boundaries.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::ShmError;

/// Upper bound on the number of regions in one table (a hostile table cannot make us create
/// an unbounded number of mappings).
pub const MAX_REGIONS: usize = 256;

/// The host page size in bytes (`sysconf(_SC_PAGESIZE)`, 4096 if that fails).
pub fn page_size() -> u64 {
    static PAGE_SIZE: OnceLock<u64> = OnceLock::new();
    *PAGE_SIZE.get_or_init(
        || match nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE) {
            Ok(Some(n)) if n > 0 => u64::try_from(n).unwrap_or(4096),
            _ => 4096,
        },
    )
}

/// One RAM region as it crosses process boundaries.
///
/// Guest physical range `[gpa, gpa + size)` is backed by bytes `[fd_offset, fd_offset + size)` of
/// the fd at position `fd_index` in the fd list sent alongside the table.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct RegionDesc {
    /// Guest physical address of the first byte.
    pub gpa: u64,
    /// Length in bytes (a non-zero multiple of the page size).
    pub size: u64,
    /// Index into the accompanying fd list.
    pub fd_index: usize,
    /// Offset of the first byte in that fd (a multiple of the page size).
    pub fd_offset: u64,
}

impl RegionDesc {
    /// One past the last guest physical address, `None` if that does not fit in 64 bits.
    pub fn end(&self) -> Option<u64> {
        self.gpa.checked_add(self.size)
    }

    /// Whether `gpa` falls inside this region.
    pub fn contains(&self, gpa: u64) -> bool {
        gpa >= self.gpa && gpa - self.gpa < self.size
    }
}

/// The whole guest RAM layout: what [`crate::send_ram`] sends (as JSON) next to the fds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct RegionTable {
    /// The regions; [`crate::GuestRam`] keeps them sorted by `gpa`.
    pub regions: Vec<RegionDesc>,
}

impl RegionTable {
    /// Encode as JSON (the wire form used by [`crate::send_ram`]).
    pub fn to_json(&self) -> Result<Vec<u8>, ShmError> {
        serde_json::to_vec(self).map_err(ShmError::EncodeTable)
    }

    /// Decode from JSON. The result is not validated; [`crate::GuestRam::from_fds`] does that.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ShmError> {
        serde_json::from_slice(bytes).map_err(ShmError::DecodeTable)
    }

    /// Check everything that can be checked without looking at the fds themselves: the table is
    /// non-empty and bounded, every region has a non-zero, page-aligned size, a page-aligned gpa
    /// and fd offset, does not wrap around, fits this host's address space and a file offset, and
    /// uses an fd index below `num_fds`; regions do not overlap in guest physical address space;
    /// every one of the `num_fds` fds is used by some region.
    pub fn validate(&self, num_fds: usize) -> Result<(), ShmError> {
        if self.regions.is_empty() {
            return Err(ShmError::NoRegions);
        }
        if self.regions.len() > MAX_REGIONS {
            return Err(ShmError::TooManyRegions {
                count: self.regions.len(),
                max: MAX_REGIONS,
            });
        }
        let page = page_size();
        let mut used = vec![false; num_fds];
        for r in &self.regions {
            if r.size == 0 {
                return Err(ShmError::ZeroSize { gpa: r.gpa });
            }
            if !r.gpa.is_multiple_of(page)
                || !r.size.is_multiple_of(page)
                || !r.fd_offset.is_multiple_of(page)
            {
                return Err(ShmError::Unaligned {
                    gpa: r.gpa,
                    size: r.size,
                    fd_offset: r.fd_offset,
                    page_size: page,
                });
            }
            if r.end().is_none() {
                return Err(ShmError::WrapAround {
                    gpa: r.gpa,
                    size: r.size,
                });
            }
            let file_end = r.fd_offset.checked_add(r.size);
            if usize::try_from(r.size).is_err()
                || isize::try_from(r.size).is_err()
                || file_end.is_none_or(|e| i64::try_from(e).is_err())
            {
                return Err(ShmError::TooLarge { gpa: r.gpa });
            }
            match used.get_mut(r.fd_index) {
                Some(u) => *u = true,
                None => {
                    return Err(ShmError::FdIndexOutOfRange {
                        gpa: r.gpa,
                        fd_index: r.fd_index,
                        fds: num_fds,
                    })
                }
            }
        }
        if let Some(fd_index) = used.iter().position(|u| !u) {
            return Err(ShmError::UnusedFd { fd_index });
        }
        let mut sorted: Vec<&RegionDesc> = self.regions.iter().collect();
        sorted.sort_by_key(|r| r.gpa);
        for pair in sorted.windows(2) {
            // end() was checked above.
            let first_end = pair[0].end().unwrap_or(u64::MAX);
            if first_end > pair[1].gpa {
                return Err(ShmError::Overlap {
                    first: pair[0].gpa,
                    second: pair[1].gpa,
                });
            }
        }
        Ok(())
    }

    /// The same table with its regions sorted by guest physical address.
    pub(crate) fn sorted(&self) -> RegionTable {
        let mut regions = self.regions.clone();
        regions.sort_by_key(|r| r.gpa);
        RegionTable { regions }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(regions: &[(u64, u64, usize, u64)]) -> RegionTable {
        RegionTable {
            regions: regions
                .iter()
                .map(|&(gpa, size, fd_index, fd_offset)| RegionDesc {
                    gpa,
                    size,
                    fd_index,
                    fd_offset,
                })
                .collect(),
        }
    }

    #[test]
    fn table_json_round_trip_is_identical() {
        let p = page_size();
        let t = table(&[(0x8000_0000, 16 * p, 0, 0), (0x1000, p, 0, 16 * p)]);
        let bytes = t.to_json().expect("encode");
        let back = RegionTable::from_json(&bytes).expect("decode");
        assert_eq!(t, back);
        // The wire form is plain JSON with the documented field names.
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(v["regions"][0]["gpa"], 0x8000_0000u64);
        assert_eq!(v["regions"][1]["fd_offset"], 16 * p);
    }

    #[test]
    fn table_garbage_json_is_rejected() {
        assert!(matches!(
            RegionTable::from_json(b"{\"regions\": 3}"),
            Err(ShmError::DecodeTable(_))
        ));
        assert!(matches!(
            RegionTable::from_json(b"\xff"),
            Err(ShmError::DecodeTable(_))
        ));
    }

    #[test]
    fn table_validate_reports_each_defect() {
        let p = page_size();
        assert!(table(&[(0, p, 0, 0)]).validate(1).is_ok());
        assert!(matches!(table(&[]).validate(0), Err(ShmError::NoRegions)));
        assert!(matches!(
            table(&[(0, 0, 0, 0)]).validate(1),
            Err(ShmError::ZeroSize { gpa: 0 })
        ));
        assert!(matches!(
            table(&[(1, p, 0, 0)]).validate(1),
            Err(ShmError::Unaligned { .. })
        ));
        assert!(matches!(
            table(&[(0, p + 1, 0, 0)]).validate(1),
            Err(ShmError::Unaligned { .. })
        ));
        assert!(matches!(
            table(&[(0, p, 0, 8)]).validate(1),
            Err(ShmError::Unaligned { .. })
        ));
        assert!(matches!(
            table(&[(u64::MAX - p + 1, p, 0, 0)]).validate(1),
            Err(ShmError::WrapAround { .. })
        ));
        assert!(matches!(
            table(&[(0, p, 0, u64::MAX - p + 1)]).validate(1),
            Err(ShmError::TooLarge { .. })
        ));
        assert!(matches!(
            table(&[(0, p, 1, 0)]).validate(1),
            Err(ShmError::FdIndexOutOfRange {
                fd_index: 1,
                fds: 1,
                ..
            })
        ));
        assert!(matches!(
            table(&[(0, p, 0, 0)]).validate(2),
            Err(ShmError::UnusedFd { fd_index: 1 })
        ));
        assert!(matches!(
            table(&[(4 * p, 2 * p, 0, 0), (5 * p, p, 0, 2 * p)]).validate(1),
            Err(ShmError::Overlap { .. })
        ));
        // Adjacent is fine, in any order.
        assert!(table(&[(5 * p, p, 0, 0), (4 * p, p, 0, p)])
            .validate(1)
            .is_ok());
        let many: Vec<_> = (0..=MAX_REGIONS as u64).map(|i| (i * p, p, 0, 0)).collect();
        assert!(matches!(
            table(&many).validate(1),
            Err(ShmError::TooManyRegions { .. })
        ));
    }

    #[test]
    fn region_contains_is_half_open() {
        let r = RegionDesc {
            gpa: 0x1000,
            size: 0x1000,
            fd_index: 0,
            fd_offset: 0,
        };
        assert!(!r.contains(0xfff));
        assert!(r.contains(0x1000));
        assert!(r.contains(0x1fff));
        assert!(!r.contains(0x2000));
    }
}
