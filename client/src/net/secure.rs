//! TLS and SASL connection setup (wired to `tls` and `sasl` once they land).

use std::sync::Arc;

use tokio::net::TcpStream;

use super::connection::Connection;
use crate::config::ClientConfig;
use crate::error::{Error, Result};

pub async fn open(_tcp: TcpStream, addr: &str, _node_id: i32, cfg: &ClientConfig) -> Result<Arc<Connection>> {
    Err(Error::Unsupported(format!("security.protocol {:?} to {addr} is not available in this build yet", cfg.security_protocol)))
}
