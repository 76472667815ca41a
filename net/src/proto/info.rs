//! `INFO {json}`: what the server tells a client about itself, first thing after accept.
//!
//! Decoded with the same Go-like rules as CONNECT (missing fields and `null` keep the
//! default, unknown fields are ignored, keys match without regard to ASCII case). The
//! fields are those nats-server sends and clients rely on; see
//! `nats-server-behaviour.md` §2 for why each one is needed.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::json::{set, FieldVisitor};
use super::ProtoError;

/// The server's self-description, in nats-server's field order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Info {
    /// Unique id of this server instance.
    pub server_id: String,
    /// The server's name (nats-server defaults it to the id).
    pub server_name: String,
    /// The nats-server version whose protocol the server implements. Clients gate features
    /// on it (nats.js needs a semver, nats-py a major version of 2), so it is never the
    /// server's own version when that is not nats-server's.
    pub version: String,
    /// Protocol level the server speaks (1: async INFO).
    pub proto: i32,
    /// The version of the server program itself when it is not nats-server (a key no NATS
    /// client reads; omitted when empty).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub engine_version: String,
    /// Address the server listens on.
    pub host: String,
    /// Port the server listens on (async-nats's test harness dials it).
    pub port: u16,
    /// The server understands `HPUB` and sends `HMSG` (async-nats needs it).
    pub headers: bool,
    /// Largest payload the server accepts; clients check it before publishing.
    pub max_payload: usize,
    /// JetStream is enabled (omitted when false, as nats-server omits it).
    #[serde(skip_serializing_if = "is_false")]
    pub jetstream: bool,
    /// The id of this client's connection (omitted when 0).
    #[serde(skip_serializing_if = "is_zero")]
    pub client_id: u64,
    /// The client's address as the server sees it (omitted when empty).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub client_ip: String,
    /// Clients must authenticate in CONNECT (omitted when false).
    #[serde(skip_serializing_if = "is_false")]
    pub auth_required: bool,
    /// The server has entered lame-duck mode: it accepts no new connections and will close
    /// this one soon (sent in a later INFO, as nats-server does; omitted when false).
    #[serde(rename = "ldm", skip_serializing_if = "is_false")]
    pub lame_duck_mode: bool,
}

impl Info {
    /// Decodes an INFO argument. Anything but an object (or `null`), or a known field
    /// of the wrong type, is [`ProtoError::BadInfo`].
    pub fn parse(json: &[u8]) -> Result<Info, ProtoError> {
        let mut info = Info::default();
        let mut de = serde_json::Deserializer::from_slice(json);
        Apply(&mut info)
            .deserialize(&mut de)
            .map_err(|_| ProtoError::BadInfo)?;
        de.end().map_err(|_| ProtoError::BadInfo)?;
        Ok(info)
    }
}

/// Decodes one JSON value onto an [`Info`] in place.
struct Apply<'i>(&'i mut Info);

impl<'de> DeserializeSeed<'de> for Apply<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Apply<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an INFO object")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let i = self.0;
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::ServerId => set(&mut i.server_id, map.next_value()?),
                Field::ServerName => set(&mut i.server_name, map.next_value()?),
                Field::Version => set(&mut i.version, map.next_value()?),
                Field::Proto => set(&mut i.proto, map.next_value()?),
                Field::EngineVersion => set(&mut i.engine_version, map.next_value()?),
                Field::Host => set(&mut i.host, map.next_value()?),
                Field::Port => set(&mut i.port, map.next_value()?),
                Field::Headers => set(&mut i.headers, map.next_value()?),
                Field::MaxPayload => set(&mut i.max_payload, map.next_value()?),
                Field::ClientId => set(&mut i.client_id, map.next_value()?),
                Field::ClientIp => set(&mut i.client_ip, map.next_value()?),
                Field::AuthRequired => set(&mut i.auth_required, map.next_value()?),
                Field::LameDuckMode => set(&mut i.lame_duck_mode, map.next_value()?),
                Field::Unknown => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// The INFO fields kept here, matched without regard to case.
#[derive(Clone, Copy)]
enum Field {
    ServerId,
    ServerName,
    Version,
    Proto,
    EngineVersion,
    Host,
    Port,
    Headers,
    MaxPayload,
    ClientId,
    ClientIp,
    AuthRequired,
    LameDuckMode,
    Unknown,
}

/// The JSON keys kept here, matched without regard to ASCII case (as Go's encoding/json).
const FIELDS: [(&str, Field); 13] = [
    ("server_id", Field::ServerId),
    ("server_name", Field::ServerName),
    ("version", Field::Version),
    ("proto", Field::Proto),
    ("engine_version", Field::EngineVersion),
    ("host", Field::Host),
    ("port", Field::Port),
    ("headers", Field::Headers),
    ("max_payload", Field::MaxPayload),
    ("client_id", Field::ClientId),
    ("client_ip", Field::ClientIp),
    ("auth_required", Field::AuthRequired),
    ("ldm", Field::LameDuckMode),
];

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(FieldVisitor {
            table: &FIELDS,
            unknown: Field::Unknown,
        })
    }
}

/// `skip_serializing_if` helper.
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `skip_serializing_if` helper.
fn is_false(b: &bool) -> bool {
    !*b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nats_server_info() {
        let json = br#"{"server_id":"NDW","server_name":"NDW","version":"2.9.10","proto":1,"go":"go1.19.8","host":"127.0.0.1","port":14222,"headers":true,"max_payload":1048576,"client_id":5,"client_ip":"127.0.0.1"} "#;
        let i = Info::parse(json).unwrap();
        assert_eq!((i.port, i.max_payload, i.client_id), (14222, 1_048_576, 5));
        assert!(i.headers && !i.auth_required && !i.lame_duck_mode);
        assert!(i.engine_version.is_empty());
        assert_eq!(Info::parse(b"{}").unwrap(), Info::default());
        assert_eq!(Info::parse(b"null").unwrap(), Info::default());
        assert_eq!(Info::parse(b"{\"port\":\"x\"}"), Err(ProtoError::BadInfo));
        assert_eq!(Info::parse(b"garbage"), Err(ProtoError::BadInfo));
    }

    #[test]
    fn omits_defaults() {
        let json = serde_json::to_string(&Info::default()).unwrap();
        assert!(!json.contains("client_id") && !json.contains("auth_required"));
        assert!(!json.contains("ldm") && !json.contains("engine_version"));
        assert!(json.contains("\"max_payload\":0"));
    }

    #[test]
    fn lame_duck_info_round_trips() {
        // nats-server 2.9.10's INFO on entering lame-duck mode ends in `"ldm":true`.
        let json = br#"{"server_id":"NAW","version":"2.9.10","proto":1,"client_id":5,"client_ip":"127.0.0.1","ldm":true}"#;
        let i = Info::parse(json).unwrap();
        assert!(i.lame_duck_mode);
        let info = Info {
            version: "2.9.10".into(),
            engine_version: "0.1.0".into(),
            lame_duck_mode: true,
            ..Info::default()
        };
        let json = serde_json::to_string(&info).unwrap();
        assert!(json.ends_with(r#","ldm":true}"#), "{json}");
        assert!(
            json.contains(r#""proto":0,"engine_version":"0.1.0","#),
            "{json}"
        );
        assert_eq!(Info::parse(json.as_bytes()), Ok(info));
    }
}
