//! JSON helpers shared by the CONNECT and INFO decoders.

use std::fmt;

use serde::de::{self, Visitor};

/// Decodes a JSON object key into one of `table`'s fields, comparing without regard to ASCII
/// case as nats-server (Go's `encoding/json`) does; keys not in the table give `unknown`.
pub(super) struct FieldVisitor<F: 'static> {
    /// Key names and the field each one means.
    pub(super) table: &'static [(&'static str, F)],
    /// The field for any other key (ignored by the caller).
    pub(super) unknown: F,
}

impl<F: Copy + 'static> Visitor<'_> for FieldVisitor<F> {
    type Value = F;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<F, E> {
        Ok(self
            .table
            .iter()
            .find(|(name, _)| key.eq_ignore_ascii_case(name))
            .map_or(self.unknown, |&(_, field)| field))
    }
}

/// Go leaves a field alone when the JSON value is `null`.
pub(super) fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}
