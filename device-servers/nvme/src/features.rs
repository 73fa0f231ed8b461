//! Get Features / Set Features (NVMe 1.4 §5.14, §5.21): the feature identifiers we support,
//! their defaults, what Set accepts, and what Get returns for each Select value. Values live
//! in the state area (`state::feat`), so they survive a restart and reset with the controller.
//! Nothing is saveable: Set with SV is "Feature Identifier Not Saveable".

use std::sync::atomic::Ordering;

use crate::state::{feat, Layout, NUM_VECTORS};
use crate::status::Status;

pub const ARBITRATION: u8 = 0x01;
pub const POWER_MANAGEMENT: u8 = 0x02;
pub const TEMPERATURE_THRESHOLD: u8 = 0x04;
pub const ERROR_RECOVERY: u8 = 0x05;
pub const VOLATILE_WRITE_CACHE: u8 = 0x06;
pub const NUMBER_OF_QUEUES: u8 = 0x07;
pub const INTERRUPT_COALESCING: u8 = 0x08;
pub const INTERRUPT_VECTOR_CONFIG: u8 = 0x09;
pub const WRITE_ATOMICITY: u8 = 0x0a;
pub const ASYNC_EVENT_CONFIG: u8 = 0x0b;

/// Asynchronous Event Configuration bits we accept: SMART critical warnings (7:0), namespace
/// attribute notices (8), firmware activation notices (9).
const AEC_MASK: u32 = 0x3ff;
/// Default over-temperature threshold (kelvin).
const TEMP_OVER_DEFAULT: u32 = crate::identify::WCTEMP as u32;
/// Feature values are stored XORed with their default, so that the all-zero reset state means
/// "defaults".
fn default_of(index: usize, queues: u16) -> u32 {
    match index {
        feat::TEMP_OVER => TEMP_OVER_DEFAULT,
        // The volatile write cache is enabled at reset.
        feat::VOLATILE_WRITE_CACHE => 1,
        feat::NUM_QUEUES => {
            let n = u32::from(queues.saturating_sub(1));
            n | n << 16
        }
        _ => 0,
    }
}

/// Read feature word `index`.
pub fn value(st: &Layout, index: usize, queues: u16) -> u32 {
    st.features[index].load(Ordering::Acquire) ^ default_of(index, queues)
}

fn set_value(st: &Layout, index: usize, queues: u16, v: u32) {
    st.features[index].store(v ^ default_of(index, queues), Ordering::Release);
}

/// Whether the volatile write cache is enabled (writes then need no flush of their own).
pub fn write_cache_enabled(st: &Layout, queues: u16) -> bool {
    value(st, feat::VOLATILE_WRITE_CACHE, queues) & 1 != 0
}

/// Number of I/O queue pairs granted (1-based).
pub fn granted_queues(st: &Layout, queues: u16) -> (u16, u16) {
    let v = value(st, feat::NUM_QUEUES, queues);
    ((v & 0xffff) as u16 + 1, (v >> 16) as u16 + 1)
}

/// A validated Set Features: what to store, and the DW0 of the completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetOutcome {
    pub dw0: u32,
}

/// Check a Set Features (`fid`, CDW10 `save`, CDW11 `dw11`) and compute its effect without
/// applying it; [`apply_set`] applies it (also when a restart replays it).
pub fn check_set(
    st: &Layout,
    queues: u16,
    fid: u8,
    save: bool,
    dw11: u32,
) -> Result<SetOutcome, Status> {
    if save {
        return Err(Status::FEATURE_NOT_SAVEABLE);
    }
    let dw0 = match fid {
        ARBITRATION | INTERRUPT_COALESCING | WRITE_ATOMICITY | VOLATILE_WRITE_CACHE => 0,
        POWER_MANAGEMENT => {
            // Only power state 0 exists (NPSS = 0).
            if dw11 & 0x1f != 0 {
                return Err(Status::INVALID_FIELD);
            }
            0
        }
        TEMPERATURE_THRESHOLD => {
            let (sel, thsel) = (dw11 >> 16 & 0xf, dw11 >> 20 & 3);
            if sel != 0 || thsel > 1 {
                return Err(Status::INVALID_FIELD);
            }
            0
        }
        ERROR_RECOVERY => {
            // DULBE needs deallocated-block error reporting, which we do not have.
            if dw11 & 1 << 16 != 0 {
                return Err(Status::INVALID_FIELD);
            }
            0
        }
        NUMBER_OF_QUEUES => {
            let (nsqr, ncqr) = (dw11 & 0xffff, dw11 >> 16);
            if nsqr == 0xffff || ncqr == 0xffff {
                return Err(Status::INVALID_FIELD);
            }
            if value(st, feat::QUEUES_CREATED, queues) != 0 {
                return Err(Status::COMMAND_SEQUENCE_ERROR);
            }
            granted(queues, dw11)
        }
        INTERRUPT_VECTOR_CONFIG => {
            if (dw11 & 0xffff) as usize >= NUM_VECTORS.min(usize::from(queues) + 1) {
                return Err(Status::INVALID_FIELD);
            }
            0
        }
        ASYNC_EVENT_CONFIG => {
            if dw11 & !AEC_MASK != 0 {
                return Err(Status::INVALID_FIELD);
            }
            0
        }
        _ => return Err(Status::INVALID_FIELD),
    };
    Ok(SetOutcome { dw0 })
}

/// The queues granted for a Number of Queues request: what was asked, at most what we have.
fn granted(queues: u16, dw11: u32) -> u32 {
    let max = u32::from(queues.saturating_sub(1));
    let nsq = (dw11 & 0xffff).min(max);
    let ncq = (dw11 >> 16).min(max);
    nsq | ncq << 16
}

/// Apply a Set Features that [`check_set`] accepted. Idempotent.
pub fn apply_set(st: &Layout, queues: u16, fid: u8, dw11: u32) {
    let set = |index, v| set_value(st, index, queues, v);
    match fid {
        ARBITRATION => set(feat::ARBITRATION, dw11 & 0xffff_ff07),
        POWER_MANAGEMENT => set(feat::POWER_MANAGEMENT, dw11 & 0xff),
        TEMPERATURE_THRESHOLD => {
            let index = if dw11 >> 20 & 3 == 0 {
                feat::TEMP_OVER
            } else {
                feat::TEMP_UNDER
            };
            set(index, dw11 & 0xffff);
        }
        ERROR_RECOVERY => set(feat::ERROR_RECOVERY, dw11 & 0xffff),
        VOLATILE_WRITE_CACHE => set(feat::VOLATILE_WRITE_CACHE, dw11 & 1),
        NUMBER_OF_QUEUES => set(feat::NUM_QUEUES, granted(queues, dw11)),
        INTERRUPT_COALESCING => set(feat::INTERRUPT_COALESCING, dw11 & 0xffff),
        INTERRUPT_VECTOR_CONFIG => {
            let v = (dw11 & 0xffff) as usize;
            if let Some(w) = st.iv_config.get(v) {
                w.store(dw11 >> 16 & 1, Ordering::Release);
            }
        }
        WRITE_ATOMICITY => set(feat::WRITE_ATOMICITY, dw11 & 1),
        ASYNC_EVENT_CONFIG => set(feat::ASYNC_EVENT_CONFIG, dw11 & AEC_MASK),
        _ => {}
    }
}

/// Get Features: `sel` is CDW10 bits 10:8 (0 current, 1 default, 2 saved, 3 capabilities).
pub fn get(st: &Layout, queues: u16, fid: u8, sel: u32, dw11: u32) -> Result<u32, Status> {
    let index = match fid {
        ARBITRATION => feat::ARBITRATION,
        POWER_MANAGEMENT => feat::POWER_MANAGEMENT,
        TEMPERATURE_THRESHOLD => {
            let (tsel, thsel) = (dw11 >> 16 & 0xf, dw11 >> 20 & 3);
            if tsel != 0 || thsel > 1 {
                return Err(Status::INVALID_FIELD);
            }
            if thsel == 0 {
                feat::TEMP_OVER
            } else {
                feat::TEMP_UNDER
            }
        }
        ERROR_RECOVERY => feat::ERROR_RECOVERY,
        VOLATILE_WRITE_CACHE => feat::VOLATILE_WRITE_CACHE,
        NUMBER_OF_QUEUES => feat::NUM_QUEUES,
        INTERRUPT_COALESCING => feat::INTERRUPT_COALESCING,
        INTERRUPT_VECTOR_CONFIG => {
            let v = dw11 & 0xffff;
            if v as usize >= NUM_VECTORS.min(usize::from(queues) + 1) {
                return Err(Status::INVALID_FIELD);
            }
            let cd = match sel {
                0 => st.iv_config[v as usize].load(Ordering::Acquire),
                1 | 2 => 0,
                _ => return Ok(CHANGEABLE),
            };
            return Ok(v | cd << 16);
        }
        WRITE_ATOMICITY => feat::WRITE_ATOMICITY,
        ASYNC_EVENT_CONFIG => feat::ASYNC_EVENT_CONFIG,
        _ => return Err(Status::INVALID_FIELD),
    };
    let mut v = match sel {
        0 => value(st, index, queues),
        // Not saveable: the saved value is the default.
        1 | 2 => default_of(index, queues),
        3 => return Ok(CHANGEABLE),
        _ => return Err(Status::INVALID_FIELD),
    };
    if fid == TEMPERATURE_THRESHOLD {
        v |= dw11 & 0x3f_0000;
    }
    Ok(v)
}

/// Select 011b answer: changeable, not saveable, not namespace specific.
const CHANGEABLE: u32 = 1 << 2;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateMem;

    fn st() -> StateMem {
        let s = StateMem::anonymous().expect("state");
        s.init(4, 8);
        s
    }

    #[test]
    fn defaults_after_reset() {
        let s = st();
        assert_eq!(get(&s, 4, NUMBER_OF_QUEUES, 0, 0), Ok(0x0003_0003));
        assert_eq!(get(&s, 4, VOLATILE_WRITE_CACHE, 0, 0), Ok(1));
        assert_eq!(get(&s, 4, TEMPERATURE_THRESHOLD, 0, 0), Ok(0x157));
        assert_eq!(get(&s, 4, ARBITRATION, 3, 0), Ok(CHANGEABLE));
        assert_eq!(get(&s, 4, 0x0c, 0, 0), Err(Status::INVALID_FIELD));
    }

    #[test]
    fn number_of_queues_grants_what_is_there_once() {
        let s = st();
        let dw11 = 1 | 9 << 16; // 2 SQs, 10 CQs
        let out = check_set(&s, 4, NUMBER_OF_QUEUES, false, dw11).expect("ok");
        assert_eq!(out.dw0, 1 | 3 << 16);
        apply_set(&s, 4, NUMBER_OF_QUEUES, dw11);
        assert_eq!(granted_queues(&s, 4), (2, 4));
        assert_eq!(
            check_set(&s, 4, NUMBER_OF_QUEUES, false, 0xffff),
            Err(Status::INVALID_FIELD)
        );
        set_value(&s, feat::QUEUES_CREATED, 4, 1);
        assert_eq!(
            check_set(&s, 4, NUMBER_OF_QUEUES, false, 0),
            Err(Status::COMMAND_SEQUENCE_ERROR)
        );
    }

    #[test]
    fn set_then_get_and_the_refusals() {
        let s = st();
        for (fid, dw11) in [
            (ARBITRATION, 0x0302_0103),
            (INTERRUPT_COALESCING, 0x0a05),
            (WRITE_ATOMICITY, 1),
            (ASYNC_EVENT_CONFIG, 0x1ff),
            (VOLATILE_WRITE_CACHE, 0),
            (ERROR_RECOVERY, 100),
        ] {
            check_set(&s, 4, fid, false, dw11).expect("accepted");
            apply_set(&s, 4, fid, dw11);
            assert_eq!(get(&s, 4, fid, 0, 0), Ok(dw11), "fid {fid}");
            assert_eq!(get(&s, 4, fid, 1, 0), Ok(default_of_fid(fid)));
        }
        apply_set(&s, 4, TEMPERATURE_THRESHOLD, 1 << 20 | 250);
        assert_eq!(
            get(&s, 4, TEMPERATURE_THRESHOLD, 0, 1 << 20),
            Ok(1 << 20 | 250)
        );
        apply_set(&s, 4, INTERRUPT_VECTOR_CONFIG, 1 << 16 | 2);
        assert_eq!(get(&s, 4, INTERRUPT_VECTOR_CONFIG, 0, 2), Ok(1 << 16 | 2));
        assert_eq!(
            check_set(&s, 4, ARBITRATION, true, 0),
            Err(Status::FEATURE_NOT_SAVEABLE)
        );
        assert_eq!(
            check_set(&s, 4, POWER_MANAGEMENT, false, 1),
            Err(Status::INVALID_FIELD)
        );
        assert_eq!(
            check_set(&s, 4, ERROR_RECOVERY, false, 1 << 16),
            Err(Status::INVALID_FIELD)
        );
        assert_eq!(
            check_set(&s, 4, INTERRUPT_VECTOR_CONFIG, false, 5),
            Err(Status::INVALID_FIELD)
        );
        assert_eq!(
            check_set(&s, 4, TEMPERATURE_THRESHOLD, false, 1 << 16),
            Err(Status::INVALID_FIELD)
        );
        assert_eq!(check_set(&s, 4, 0x80, false, 0), Err(Status::INVALID_FIELD));
        s.reset_controller();
        assert_eq!(get(&s, 4, VOLATILE_WRITE_CACHE, 0, 0), Ok(1));
    }

    fn default_of_fid(fid: u8) -> u32 {
        if fid == VOLATILE_WRITE_CACHE {
            1
        } else {
            0
        }
    }
}
