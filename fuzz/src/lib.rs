//! `fuzz`: the checks behind the cargo-fuzz targets, kept in a library so that the
//! stable toolchain can run them too (the crate's tests replay the seed corpus).
//!
//! # Layout
//! - [`check_parser`]: target `parser` (`fuzz_targets/parser.rs`).
//! - [`check_json`]: target `json` (`fuzz_targets/json.rs`).
//! - [`replay`]: runs a check over files, for the targets' non-libFuzzer `main`.
//! - `corpus/<target>/`: seed inputs; `run.sh SECONDS` fuzzes each target briefly.
//!
//! # Never
//! A check never accepts a panic, an op bigger than the caps, or a result that depends
//! on how the input was split. No unsafe code.
#![forbid(unsafe_code)]

use std::path::Path;

use net::proto::{
    encode_hpub, encode_pub, Connect, Info, Op, Parser, ParserLimits, ProtoError, Side,
};

/// Target `parser`. Input layout: byte 0 holds flags (bit 0: client side; bit 1: tiny
/// caps; bit 2: `HPUB` refused), byte 1 seeds the split points, the rest is the stream.
///
/// Checks: no panic; every op within the payload cap; the parser never needs more than
/// `max_buffered_bytes`; every `consumed` is within the buffer; the same ops and the
/// same ending whether the stream comes in one buffer, in seeded random chunks, one
/// byte at a time, or (for short inputs) split in two at every offset; and a `PUB`/`HPUB`
/// re-encoded by the encoder parses back to itself.
pub fn check_parser(data: &[u8]) {
    let (flags, seed, stream) = match data {
        [f, s, rest @ ..] => (*f, *s, rest),
        _ => return,
    };
    let cfg = Config {
        side: if flags & 1 == 0 {
            Side::Server
        } else {
            Side::Client
        },
        limits: if flags & 2 == 0 {
            ParserLimits {
                max_control_line_bytes: 4096,
                max_payload_bytes: 4096,
            }
        } else {
            ParserLimits {
                max_control_line_bytes: 40,
                max_payload_bytes: 8,
            }
        },
        headers: flags & 4 == 0,
    };
    let whole = cfg.run(stream, &[usize::MAX]);
    let mut rng = u32::from(seed) | 0x100;
    let random: Vec<usize> = (0..16)
        .map(|_| {
            rng ^= rng << 13;
            rng ^= rng >> 17;
            rng ^= rng << 5;
            (rng % 64) as usize + 1
        })
        .collect();
    assert_eq!(cfg.run(stream, &random), whole, "random chunks {random:?}");
    assert_eq!(cfg.run(stream, &[1]), whole, "one byte at a time");
    if stream.len() <= 64 {
        for k in 1..stream.len() {
            assert_eq!(cfg.run(stream, &[k, usize::MAX]), whole, "split at {k}");
        }
    }
}

/// Target `json`: arbitrary bytes as CONNECT and INFO arguments. Checks: no panic, and a
/// value that decodes re-encodes to JSON that decodes to the same value.
pub fn check_json(data: &[u8]) {
    if let Ok(c) = Connect::parse(data) {
        let again = serde_json::to_vec(&c).map(|j| Connect::parse(&j));
        assert!(
            matches!(again, Ok(Ok(ref d)) if *d == c),
            "CONNECT {c:?} -> {again:?}"
        );
        let mut twice = c.clone();
        assert_eq!(
            twice.update(data),
            Ok(()),
            "a second identical CONNECT is accepted"
        );
    }
    if let Ok(i) = Info::parse(data) {
        let again = serde_json::to_vec(&i).map(|j| Info::parse(&j));
        assert!(
            matches!(again, Ok(Ok(ref d)) if *d == i),
            "INFO {i:?} -> {again:?}"
        );
    }
}

/// Runs `check` over the contents of every file named on the command line (directories
/// are walked one level deep). The fuzz targets' `main` outside cargo-fuzz.
pub fn replay(check: fn(&[u8])) -> std::io::Result<()> {
    for arg in std::env::args_os().skip(1) {
        replay_path(Path::new(&arg), check)?;
    }
    Ok(())
}

/// Runs `check` over one file, or over the files of one directory.
pub fn replay_path(path: &Path, check: fn(&[u8])) -> std::io::Result<()> {
    if path.is_dir() {
        for entry in std::fs::read_dir(path)? {
            let p = entry?.path();
            if p.is_file() {
                check(&std::fs::read(&p)?);
            }
        }
        Ok(())
    } else {
        check(&std::fs::read(path)?);
        Ok(())
    }
}

/// One parser configuration.
#[derive(Clone, Copy)]
struct Config {
    side: Side,
    limits: ParserLimits,
    headers: bool,
}

/// The ops (as `Debug` text) and how the stream ended: leftover bytes, or an error.
type Outcome = (Vec<String>, Result<usize, ProtoError>);

impl Config {
    /// Feeds `input` in chunks of the given sizes (cycled) the way a connection does:
    /// append, parse until `None`, drop the consumed prefix.
    fn run(&self, input: &[u8], chunks: &[usize]) -> Outcome {
        let mut p = Parser::new(self.side, self.limits);
        p.set_headers_allowed(self.headers);
        let bound = p.limits().max_buffered_bytes();
        let mut buf: Vec<u8> = Vec::new();
        let mut ops = Vec::new();
        let (mut at, mut i) = (0, 0);
        while at < input.len() {
            let n = chunks[i % chunks.len()].max(1);
            i += 1;
            let end = at.saturating_add(n).min(input.len());
            buf.extend_from_slice(&input[at..end]);
            at = end;
            let mut used = 0;
            loop {
                match p.parse(&buf[used..]) {
                    Ok(Some((op, n))) => {
                        assert!(n > 0 && n <= buf.len() - used, "consumed {n}");
                        self.check_op(&op);
                        ops.push(format!("{op:?}"));
                        used += n;
                    }
                    Ok(None) => {
                        assert!(buf.len() - used < bound, "wants more than {bound} bytes");
                        break;
                    }
                    Err(e) => return (ops, Err(e)),
                }
            }
            buf.drain(..used);
        }
        (ops, Ok(buf.len()))
    }

    /// Caps respected; JSON decoders do not panic; PUB/HPUB round-trip the encoder.
    fn check_op(&self, op: &Op<'_>) {
        let max = self.limits.max_payload_bytes;
        match op {
            Op::Pub(p) => {
                let size = p.payload.len() + p.headers.map_or(0, <[u8]>::len);
                assert!(size <= max, "payload {size} > {max}");
                let plain = |s: &[u8]| !s.iter().any(|b| b" \t\r\n".contains(b));
                if plain(p.subject) && p.reply.is_none_or(plain) {
                    let mut wire = Vec::new();
                    match p.headers {
                        Some(h) => encode_hpub(&mut wire, p.subject, p.reply, h, p.payload),
                        None => encode_pub(&mut wire, p.subject, p.reply, p.payload),
                    }
                    let mut q = Parser::new(Side::Server, ParserLimits::default());
                    let back = q.parse(&wire);
                    assert_eq!(back, Ok(Some((op.clone(), wire.len()))), "re-encoded");
                }
            }
            Op::Msg(m) => {
                let size = m.payload.len() + m.headers.map_or(0, <[u8]>::len);
                assert!(size <= max, "payload {size} > {max}");
            }
            Op::Connect(j) => {
                let _ = Connect::parse(j);
            }
            Op::Info(j) => {
                let _ = Info::parse(j);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays the seed corpus (and any regression inputs added to it) on stable.
    #[test]
    fn corpus_replays() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
        replay_path(&root.join("parser"), check_parser).unwrap();
        replay_path(&root.join("json"), check_json).unwrap();
    }

    #[test]
    fn short_inputs() {
        for flags in 0..8u8 {
            for b in 0..=255u8 {
                check_parser(&[flags, b, b]);
                check_parser(&[flags, 7, b'P', b]);
            }
        }
        check_json(b"");
        check_json(b"null");
    }
}
