//! The INFO a client is sent: on accept, and again (with `ldm`) when lame-duck mode starts.

use std::net::IpAddr;

use net::proto;

use super::Shared;

/// The nats-server release whose client protocol the engine implements, reported as
/// INFO's `version`. Client libraries compare that field with nats-server releases to decide
/// what the server supports (nats.js will not connect without a semver there), so it names
/// the behaviour the engine reproduces: every case in `docs/protocol.md` was observed on
/// nats-server 2.9.10. A bare "2.9.0" was rejected: it would claim a release nothing here was
/// checked against. The engine's own version goes in INFO's `engine_version`.
pub(crate) const NATS_SERVER_VERSION: &str = "2.9.10";

impl Shared {
    /// The INFO for client `client_id` at `client_ip`: nats-server's fields (see
    /// `nats-server-behaviour.md` §2), plus `engine_version`.
    pub(super) fn info(&self, client_id: u64, client_ip: IpAddr) -> proto::Info {
        let cfg = &self.config;
        proto::Info {
            server_id: self.server_id.clone(),
            server_name: if cfg.server_name.is_empty() {
                self.server_id.clone()
            } else {
                cfg.server_name.clone()
            },
            version: NATS_SERVER_VERSION.to_string(),
            proto: 1,
            engine_version: env!("CARGO_PKG_VERSION").to_string(),
            host: self.addr.ip().to_string(),
            port: self.addr.port(),
            headers: true,
            max_payload: cfg.max_payload as _,
            jetstream: cfg.jetstream,
            client_id,
            client_ip: client_ip.to_string(),
            auth_required: cfg.auth.required(),
            lame_duck_mode: false,
        }
    }
}
