//! MAC addresses: parsing `--mac`, and the default derived from the socket path.

use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::str::FromStr;

/// An Ethernet unicast address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// A locally administered unicast address derived from `path` (FNV-1a over its bytes), so a
    /// server restarted on the same socket keeps its address and two servers rarely share one.
    pub fn from_socket_path(path: &Path) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in path.as_os_str().as_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        let b = h.to_be_bytes();
        // Bit 1 of the first octet: locally administered; bit 0 clear: unicast.
        Self([(b[0] & 0xfc) | 0x02, b[1], b[2], b[3], b[4], b[5]])
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl FromStr for Mac {
    type Err = String;

    /// `aa:bb:cc:dd:ee:ff` (hex, either case); multicast addresses are refused.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut m = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut m {
            let p = parts
                .next()
                .ok_or_else(|| format!("{s:?}: expected six bytes like 52:54:00:12:34:56"))?;
            if p.len() != 2 || !p.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(format!("{s:?}: each byte is two hex digits"));
            }
            *byte =
                u8::from_str_radix(p, 16).map_err(|_| format!("{s:?}: {p:?} is not a hex byte"))?;
        }
        if parts.next().is_some() {
            return Err(format!("{s:?}: more than six bytes"));
        }
        if m[0] & 1 != 0 {
            return Err(format!(
                "{s:?} is a multicast address; a NIC needs a unicast one"
            ));
        }
        Ok(Self(m))
    }
}

/// clap value parser for `--mac`.
pub fn parse_mac(s: &str) -> Result<Mac, String> {
    s.parse()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_unicast_and_round_trips() {
        let m: Mac = "52:54:00:AB:cd:0f".parse().expect("valid");
        assert_eq!(m.0, [0x52, 0x54, 0x00, 0xab, 0xcd, 0x0f]);
        assert_eq!(m.to_string(), "52:54:00:ab:cd:0f");
    }

    #[test]
    fn parse_rejects_malformed_and_multicast() {
        for bad in [
            "",
            "52:54:00:12:34",
            "52:54:00:12:34:56:78",
            "52:54:00:12:34:5",
            "52:54:00:12:34:567",
            "52-54-00-12-34-56",
            "52:54:00:12:34:zz",
            "+1:54:00:12:34:56",
            "01:00:5e:00:00:01",
            "ff:ff:ff:ff:ff:ff",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn derived_mac_is_stable_local_unicast_and_depends_on_the_path() {
        let a = Mac::from_socket_path(Path::new("/run/tessera/net0.sock"));
        let b = Mac::from_socket_path(Path::new("/run/tessera/net0.sock"));
        let c = Mac::from_socket_path(Path::new("/run/tessera/net1.sock"));
        assert_eq!(a, b);
        assert_ne!(a, c);
        for m in [a, c] {
            assert_eq!(m.0[0] & 0x03, 0x02, "{m}: not locally administered unicast");
        }
    }
}
