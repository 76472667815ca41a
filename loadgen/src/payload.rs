//! The stamp every published payload starts with: scheduled send time, publisher id and
//! sequence number, so a receiver can compute latency and detect loss without any side channel.
//!
//! Layout (little-endian, 16 bytes, so the 16 B scenarios carry nothing but the stamp):
//! `scheduled_ns: u64 | publisher: u32 | seq: u32`. The rest of the payload is filler.

/// Bytes the stamp occupies at the front of every payload; also the smallest payload allowed.
pub const STAMP_BYTES: usize = 16;

/// What a receiver learns from a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// When the message was scheduled to be sent, in nanoseconds since the run's clock origin.
    pub scheduled_ns: u64,
    /// The publisher's global id (0-based).
    pub publisher: u32,
    /// The publisher's sequence number for this message (0-based, +1 per message).
    pub seq: u32,
}

impl Stamp {
    /// Writes the stamp into the first [`STAMP_BYTES`] of `payload`.
    ///
    /// Returns `false` (and writes nothing) if `payload` is too short.
    pub fn write(&self, payload: &mut [u8]) -> bool {
        let Some(head) = payload.get_mut(..STAMP_BYTES) else {
            return false;
        };
        head[..8].copy_from_slice(&self.scheduled_ns.to_le_bytes());
        head[8..12].copy_from_slice(&self.publisher.to_le_bytes());
        head[12..16].copy_from_slice(&self.seq.to_le_bytes());
        true
    }

    /// Reads the stamp from the front of a received payload; `None` if it is too short.
    pub fn parse(payload: &[u8]) -> Option<Stamp> {
        let head = payload.get(..STAMP_BYTES)?;
        let mut ns = [0u8; 8];
        ns.copy_from_slice(&head[..8]);
        let mut publisher = [0u8; 4];
        publisher.copy_from_slice(&head[8..12]);
        let mut seq = [0u8; 4];
        seq.copy_from_slice(&head[12..16]);
        Some(Stamp {
            scheduled_ns: u64::from_le_bytes(ns),
            publisher: u32::from_le_bytes(publisher),
            seq: u32::from_le_bytes(seq),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let stamp = Stamp {
            scheduled_ns: 0x0102_0304_0506_0708,
            publisher: 77,
            seq: u32::MAX,
        };
        let mut buf = vec![b'x'; 40];
        assert!(stamp.write(&mut buf));
        assert_eq!(Stamp::parse(&buf), Some(stamp));
        assert_eq!(&buf[STAMP_BYTES..], &[b'x'; 24][..]);
    }

    #[test]
    fn short_payloads_are_rejected() {
        let stamp = Stamp {
            scheduled_ns: 1,
            publisher: 2,
            seq: 3,
        };
        let mut buf = [0u8; 15];
        assert!(!stamp.write(&mut buf));
        assert_eq!(Stamp::parse(&buf), None);
    }
}
