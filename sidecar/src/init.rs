//! `airlock-sidecar init`: installs the transparent inbound redirect in the pod's network namespace, and
//! recovers a redirected connection's original destination.
//!
//! TODO(issue 5): stub with the agreed interface; the real rules replace the bodies.

use std::net::SocketAddr;

use crate::{Error, Result};

/// What `init` installs, read from the environment the webhook sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitSettings {
    /// `AIRLOCK_INBOUND_PORTS`: the model server's ports to redirect.
    pub ports: Vec<u16>,
    /// `AIRLOCK_INBOUND_TARGET_PORT`: the sidecar's inbound port (15006).
    pub target_port: u16,
    /// `AIRLOCK_SIDECAR_UID`: the sidecar's user id, whose own traffic is never redirected.
    pub sidecar_uid: u32,
}

impl InitSettings {
    pub fn from_env() -> Result<InitSettings> {
        Err(Error::Init("not implemented yet".into()))
    }
}

/// Installs the redirect.
pub fn run(settings: &InitSettings) -> Result<()> {
    let _ = settings;
    Err(Error::Init("not implemented yet".into()))
}

/// The destination a redirected connection was addressed to before the redirect.
pub fn original_destination(stream: &tokio::net::TcpStream) -> std::io::Result<SocketAddr> {
    stream.local_addr()
}
