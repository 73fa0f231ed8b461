//! `tessera-console`: virtio-console (virtio 1.2 §5.3) port 0 over vhost-user, bridged to the
//! host's stdio, a file, or a unix socket.
//!
//! [`port`] is the device model (what goes out, what comes in); [`backend`] is the
//! `vhost-user-backend` glue; [`run`] serves frontends one after another until SIGTERM/SIGINT.
#![forbid(unsafe_code)]

pub mod backend;
pub mod port;

use anyhow::Context;
use std::path::PathBuf;
use std::sync::Arc;

/// Where port 0 is connected on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Stdio,
    File(PathBuf),
    Socket(PathBuf),
}

pub fn parse_output(s: &str) -> Result<Output, String> {
    if s == "stdio" {
        return Ok(Output::Stdio);
    }
    match s.split_once(':') {
        Some(("file", p)) if !p.is_empty() => Ok(Output::File(p.into())),
        Some(("socket", p)) if !p.is_empty() => Ok(Output::Socket(p.into())),
        _ => Err(format!("`{s}` is not stdio, file:PATH or socket:PATH")),
    }
}

pub struct Config {
    pub socket: PathBuf,
    pub output: Output,
}

pub fn run(config: Config) -> anyhow::Result<()> {
    let port = Arc::new(port::Port::new());
    port::connect(&port, &config.output)
        .with_context(|| format!("connecting port 0 to {:?}", config.output))?;
    let backend = Arc::new(backend::ConsoleBackend::new(port));
    tessera_server_common::serve_forever("tessera-console", &config.socket, backend)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_parse() {
        assert_eq!(parse_output("stdio"), Ok(Output::Stdio));
        assert_eq!(
            parse_output("file:/tmp/x"),
            Ok(Output::File("/tmp/x".into()))
        );
        assert_eq!(
            parse_output("socket:/tmp/s"),
            Ok(Output::Socket("/tmp/s".into()))
        );
        assert!(parse_output("file:").is_err());
        assert!(parse_output("tcp:1").is_err());
    }
}
