//! Where frames go: a tap device ([`tap`]) or a stream socket with QEMU's framing ([`stream`],
//! [`framing`]). Both are opened before the sandbox.

pub mod framing;
pub mod stream;
pub mod tap;

use std::path::PathBuf;

/// `--backend`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendSpec {
    /// `tap:IFNAME`
    Tap(String),
    /// `stream:connect:PATH`
    Connect(PathBuf),
    /// `stream:listen:PATH`
    Listen(PathBuf),
}

impl BackendSpec {
    /// Whether frames carry a virtio-net header, so offloads can be offered.
    pub fn has_vnet_header(&self) -> bool {
        matches!(self, Self::Tap(_))
    }
}

/// clap value parser for `--backend`.
pub fn parse_backend(s: &str) -> Result<BackendSpec, String> {
    let path = |p: &str| {
        if p.is_empty() {
            Err("the stream socket path is empty".to_string())
        } else if p.len() > stream::MAX_PATH {
            Err(format!(
                "the stream socket path is longer than {} bytes",
                stream::MAX_PATH
            ))
        } else {
            Ok(PathBuf::from(p))
        }
    };
    if let Some(name) = s.strip_prefix("tap:") {
        tap::valid_name(name)?;
        Ok(BackendSpec::Tap(name.to_string()))
    } else if let Some(p) = s.strip_prefix("stream:connect:") {
        Ok(BackendSpec::Connect(path(p)?))
    } else if let Some(p) = s.strip_prefix("stream:listen:") {
        Ok(BackendSpec::Listen(path(p)?))
    } else {
        Err(format!(
            "{s:?}: expected tap:IFNAME, stream:connect:PATH or stream:listen:PATH"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_specs_parse() {
        assert_eq!(
            parse_backend("tap:tap0"),
            Ok(BackendSpec::Tap("tap0".into()))
        );
        assert_eq!(
            parse_backend("stream:connect:/run/a.sock"),
            Ok(BackendSpec::Connect("/run/a.sock".into()))
        );
        assert_eq!(
            parse_backend("stream:listen:rel/b.sock"),
            Ok(BackendSpec::Listen("rel/b.sock".into()))
        );
        assert_eq!(
            parse_backend("stream:listen:a:b"),
            Ok(BackendSpec::Listen("a:b".into()))
        );
        let long = format!("stream:listen:/{}", "x".repeat(120));
        for bad in [
            "",
            "tap",
            "tap:",
            "tap:has space",
            "tap:much-too-long-name",
            "stream:",
            "stream:connect:",
            "stream:bind:/x",
            "user",
            long.as_str(),
        ] {
            assert!(parse_backend(bad).is_err(), "{bad:?} accepted");
        }
    }
}
