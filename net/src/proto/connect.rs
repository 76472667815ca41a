//! `CONNECT {json}`: the client's options, decoded with nats-server's rules.
//!
//! nats-server decodes CONNECT with Go's `encoding/json` into options that start as
//! `verbose`, `pedantic` and `echo` all true. So, here too: missing fields keep their
//! current value, `null` leaves a field unchanged, unknown fields are ignored (but must
//! be valid JSON), keys match without regard to ASCII case, and a repeated key's last
//! value wins. A known field of the wrong type, or anything but an object (or `null`),
//! is an error. A second CONNECT updates the options in place ([`Connect::update`]).

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::json::{set, FieldVisitor};
use super::ProtoError;

/// The options a client sends in `CONNECT`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Connect {
    /// Acknowledge every op with `+OK` (nats-server's default: true).
    pub verbose: bool,
    /// Check published subjects strictly (nats-server's default: true).
    pub pedantic: bool,
    /// Deliver the connection's own publishes back to it (default: true).
    pub echo: bool,
    /// The client understands `HMSG` and may send `HPUB` (default: false).
    pub headers: bool,
    /// Send a 503 status message to requests that nobody answers (needs `headers`).
    pub no_responders: bool,
    /// The client's name for itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The client library's language.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
    /// The client library's version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Protocol level: 0 (original) or 1 (understands async INFO). Default 0.
    pub protocol: u8,
    /// User name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pass: Option<String>,
    /// Authentication token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<String>,
}

impl Default for Connect {
    /// nats-server's options before any CONNECT ("telnet mode").
    fn default() -> Self {
        Self {
            verbose: true,
            pedantic: true,
            echo: true,
            headers: false,
            no_responders: false,
            name: None,
            lang: None,
            version: None,
            protocol: 0,
            user: None,
            pass: None,
            auth_token: None,
        }
    }
}

impl Connect {
    /// Decodes a CONNECT argument onto the defaults and checks it as nats-server does.
    ///
    /// Errors: [`ProtoError::BadConnect`] for bad JSON (silent close),
    /// [`ProtoError::BadClientProtocol`] for a protocol other than 0 or 1, and
    /// [`ProtoError::NoRespondersRequiresHeaders`] for `no_responders` without `headers`.
    pub fn parse(json: &[u8]) -> Result<Connect, ProtoError> {
        let mut c = Connect::default();
        c.update(json)?;
        Ok(c)
    }

    /// Applies a further CONNECT to these options: fields present in `json` replace
    /// the current values, the rest stay (nats-server decodes a second CONNECT into the
    /// options it already holds). On error the options may be partly updated; the
    /// connection is to be closed anyway.
    pub fn update(&mut self, json: &[u8]) -> Result<(), ProtoError> {
        let mut de = serde_json::Deserializer::from_slice(json);
        let mut protocol = i64::from(self.protocol);
        Apply {
            c: self,
            protocol: &mut protocol,
        }
        .deserialize(&mut de)
        .map_err(|_| ProtoError::BadConnect)?;
        de.end().map_err(|_| ProtoError::BadConnect)?;
        self.protocol = match protocol {
            0 => 0,
            1 => 1,
            _ => return Err(ProtoError::BadClientProtocol),
        };
        if self.no_responders && !self.headers {
            return Err(ProtoError::NoRespondersRequiresHeaders);
        }
        Ok(())
    }
}

/// Decodes one JSON value onto a [`Connect`] in place.
struct Apply<'c> {
    c: &'c mut Connect,
    /// Kept wide until the end, so an out-of-range value is a protocol error and not a
    /// JSON error (nats-server answers `'invalid client protocol'`).
    protocol: &'c mut i64,
}

impl<'de> DeserializeSeed<'de> for Apply<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Apply<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a CONNECT object")
    }

    /// `CONNECT null` decodes to nothing in Go, so the options stay as they are.
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let c = self.c;
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Verbose => set(&mut c.verbose, map.next_value()?),
                Field::Pedantic => set(&mut c.pedantic, map.next_value()?),
                Field::Echo => set(&mut c.echo, map.next_value()?),
                Field::Headers => set(&mut c.headers, map.next_value()?),
                Field::NoResponders => set(&mut c.no_responders, map.next_value()?),
                Field::Protocol => set(self.protocol, map.next_value()?),
                Field::Name => set_some(&mut c.name, map.next_value()?),
                Field::Lang => set_some(&mut c.lang, map.next_value()?),
                Field::Version => set_some(&mut c.version, map.next_value()?),
                Field::User => set_some(&mut c.user, map.next_value()?),
                Field::Pass => set_some(&mut c.pass, map.next_value()?),
                Field::AuthToken => set_some(&mut c.auth_token, map.next_value()?),
                Field::OtherBool => {
                    map.next_value::<Option<bool>>()?;
                }
                Field::OtherString => {
                    map.next_value::<Option<String>>()?;
                }
                Field::Unknown => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// As [`set`](super::json::set), for optional strings.
fn set_some<T>(slot: &mut Option<T>, value: Option<T>) {
    if value.is_some() {
        *slot = value;
    }
}

/// The CONNECT fields nats-server 2.9 declares for clients, matched without regard to case.
#[derive(Clone, Copy)]
enum Field {
    Verbose,
    Pedantic,
    Echo,
    Headers,
    NoResponders,
    Protocol,
    Name,
    Lang,
    Version,
    User,
    Pass,
    AuthToken,
    /// Declared by nats-server as a bool but not kept here (`tls_required`, `new_account`).
    OtherBool,
    /// Declared by nats-server as a string but not kept here (`jwt`, `nkey`, `sig`, ...).
    OtherString,
    /// Not declared: ignored.
    Unknown,
}

/// The JSON keys kept here, matched without regard to ASCII case (as Go's encoding/json).
const FIELDS: [(&str, Field); 19] = [
    ("verbose", Field::Verbose),
    ("pedantic", Field::Pedantic),
    ("echo", Field::Echo),
    ("headers", Field::Headers),
    ("no_responders", Field::NoResponders),
    ("protocol", Field::Protocol),
    ("name", Field::Name),
    ("lang", Field::Lang),
    ("version", Field::Version),
    ("user", Field::User),
    ("pass", Field::Pass),
    ("auth_token", Field::AuthToken),
    ("tls_required", Field::OtherBool),
    ("new_account", Field::OtherBool),
    ("jwt", Field::OtherString),
    ("nkey", Field::OtherString),
    ("sig", Field::OtherString),
    ("account", Field::OtherString),
    ("remote_account", Field::OtherString),
];

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(FieldVisitor {
            table: &FIELDS,
            unknown: Field::Unknown,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_nulls() {
        let c = Connect::parse(b"{}").unwrap();
        assert!(c.verbose && c.pedantic && c.echo && !c.headers);
        assert_eq!(Connect::parse(b"null").unwrap(), Connect::default());
        let c = Connect::parse(b"{\"verbose\":null,\"name\":null,\"x\":[1,{}]}").unwrap();
        assert!(c.verbose);
        assert_eq!(c.name, None);
    }

    #[test]
    fn go_rules() {
        let c = Connect::parse(b"{\"VERBOSE\":false,\"verbose\":true,\"Verbose\":false}").unwrap();
        assert!(!c.verbose);
        assert_eq!(Connect::parse(b"[]"), Err(ProtoError::BadConnect));
        assert_eq!(Connect::parse(b"{} x"), Err(ProtoError::BadConnect));
        assert_eq!(Connect::parse(b""), Err(ProtoError::BadConnect));
        assert_eq!(Connect::parse(b"{\"name\":5}"), Err(ProtoError::BadConnect));
        assert_eq!(
            Connect::parse(b"{\"tls_required\":\"x\"}"),
            Err(ProtoError::BadConnect)
        );
        assert_eq!(
            Connect::parse(b"{\"protocol\":\"1\"}"),
            Err(ProtoError::BadConnect)
        );
        assert_eq!(
            Connect::parse(b"{\"protocol\":2}"),
            Err(ProtoError::BadClientProtocol)
        );
        assert_eq!(
            Connect::parse(b"{\"protocol\":-1}"),
            Err(ProtoError::BadClientProtocol)
        );
        assert_eq!(
            Connect::parse(b"{\"no_responders\":true}"),
            Err(ProtoError::NoRespondersRequiresHeaders)
        );
    }

    #[test]
    fn update_keeps_missing_fields() {
        let mut c = Connect::parse(b"{\"verbose\":false,\"name\":\"a\"}").unwrap();
        c.update(b"{\"pedantic\":false}").unwrap();
        assert!(!c.verbose && !c.pedantic);
        assert_eq!(c.name.as_deref(), Some("a"));
    }

    #[test]
    fn round_trip() {
        let c = Connect {
            verbose: false,
            pedantic: false,
            headers: true,
            no_responders: true,
            lang: Some("rust".into()),
            protocol: 1,
            ..Connect::default()
        };
        let json = serde_json::to_vec(&c).unwrap();
        assert_eq!(Connect::parse(&json).unwrap(), c);
    }
}
