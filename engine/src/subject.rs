//! Subjects and subscription patterns, validated exactly as nats-server 2.9 does.
//!
//! A subject is a sequence of tokens separated by `.`. In a subscription [`Pattern`] a token
//! that is exactly `*` matches any one token, and a last token that is exactly `>` matches one
//! or more trailing tokens. A wildcard character inside a longer token (`f*o`, `a>`) is an
//! ordinary literal byte.
//!
//! | input | `Pattern::parse` | `check_publish(_, true)` | `check_publish(_, false)` |
//! |---|---|---|---|
//! | `foo.bar`, `f*o` | literal | ok | ok |
//! | `foo.*`, `foo.>`, `>` | wildcard | `Invalid Publish Subject` | ok |
//! | empty, `foo..bar`, `.foo`, `foo.` | `Invalid Subject` | `Invalid Publish Subject` | ok |
//! | `foo.>.bar`, `>.foo` | `Invalid Subject` | `Invalid Publish Subject` | ok |
//!
//! Without pedantic mode nats-server accepts any publish subject and treats every token of it
//! as literal: a PUB to `a.*` reaches `SUB a.*` and `SUB a.>`, but not `SUB a.b`. A PUB to a
//! subject with an empty token (`foo.`, `foo..bar`, `.foo`) is accepted and delivered to
//! nobody, not even to `SUB >`; [`Pattern::matches`] and the sublist follow that.
//!
//! [`owner`] is the hash the router ([`crate::router`]) spreads conversations over workers
//! with: small, fixed and unseeded, so every worker (and every run) agrees on it.

use std::fmt;
use std::sync::Arc;

/// Why a subject or pattern was refused.
///
/// The engine answers a SUB refused here with `-ERR 'Invalid Subject'` and a pedantic PUB
/// refused here with `-ERR 'Invalid Publish Subject'`; both keep the connection open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    /// The subject has no bytes at all.
    #[error("empty subject")]
    Empty,
    /// Two separators in a row, or a separator at either end (`foo..bar`, `.foo`, `foo.`).
    #[error("empty token in subject")]
    EmptyToken,
    /// A `>` token that is not the last token (`foo.>.bar`, `>.foo`).
    #[error("full wildcard '>' not in last position")]
    MisplacedTail,
    /// A `*` or `>` token in a publish subject checked in pedantic mode.
    #[error("wildcard in publish subject")]
    Wildcard,
}

/// A validated subscription subject, literal or with wildcards.
///
/// Cloning is cheap: the bytes are shared behind an [`Arc`]. Equality, ordering and hashing
/// are those of the bytes.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pattern {
    bytes: Arc<[u8]>,
    literal: bool,
}

/// One token of a [`Pattern`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token<'a> {
    /// A token matched byte for byte (this includes tokens such as `f*o`).
    Literal(&'a [u8]),
    /// `*`: matches exactly one token.
    One,
    /// `>`: matches one or more tokens; always the last token of a pattern.
    Tail,
}

impl Pattern {
    /// Validates `raw` as a subscription subject.
    ///
    /// # Errors
    /// [`SubjectError::Empty`], [`SubjectError::EmptyToken`] or
    /// [`SubjectError::MisplacedTail`], as described on each variant.
    pub fn parse(raw: &[u8]) -> Result<Self, SubjectError> {
        if raw.is_empty() {
            return Err(SubjectError::Empty);
        }
        let mut literal = true;
        let mut after_tail = false;
        for token in raw.split(|&b| b == SEPARATOR) {
            if token.is_empty() {
                return Err(SubjectError::EmptyToken);
            }
            if after_tail {
                return Err(SubjectError::MisplacedTail);
            }
            match token {
                [ONE] => literal = false,
                [TAIL] => {
                    literal = false;
                    after_tail = true;
                }
                _ => {}
            }
        }
        Ok(Self {
            bytes: Arc::from(raw),
            literal,
        })
    }

    /// The pattern as it was subscribed.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// True when the pattern has no `*` or `>` token, so it matches only itself.
    pub fn is_literal(&self) -> bool {
        self.literal
    }

    /// The pattern's tokens, in order.
    pub fn tokens(&self) -> impl Iterator<Item = Token<'_>> + '_ {
        self.bytes
            .split(|&b| b == SEPARATOR)
            .map(|token| match token {
                [ONE] => Token::One,
                [TAIL] => Token::Tail,
                other => Token::Literal(other),
            })
    }

    /// Number of tokens (at least one).
    pub fn token_count(&self) -> usize {
        self.bytes.iter().filter(|&&b| b == SEPARATOR).count() + 1
    }

    /// Whether a message published to `subject` reaches a subscription to this pattern.
    ///
    /// Every token of `subject` is literal (a published `*` is just the byte `*`), and a
    /// subject with an empty token matches nothing, as in nats-server.
    pub fn matches(&self, subject: &[u8]) -> bool {
        if has_empty_token(subject) {
            return false;
        }
        let mut rest = subject.split(|&b| b == SEPARATOR);
        for token in self.tokens() {
            match token {
                // The subject has no empty token, so any remaining token satisfies `>`.
                Token::Tail => return rest.next().is_some(),
                Token::One => {
                    if rest.next().is_none() {
                        return false;
                    }
                }
                Token::Literal(want) => {
                    if rest.next() != Some(want) {
                        return false;
                    }
                }
            }
        }
        rest.next().is_none()
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", String::from_utf8_lossy(&self.bytes))
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.bytes))
    }
}

/// Checks the subject of a PUB/HPUB.
///
/// With `pedantic` the subject must be a valid literal subject: non-empty, no empty token, no
/// `*` or `>` token. Without it everything is accepted, as nats-server does; such subjects
/// simply match what their literal tokens match (see the module docs).
///
/// # Errors
/// Only in pedantic mode: [`SubjectError::Empty`], [`SubjectError::EmptyToken`] or
/// [`SubjectError::Wildcard`].
pub fn check_publish(subject: &[u8], pedantic: bool) -> Result<(), SubjectError> {
    if !pedantic {
        return Ok(());
    }
    if subject.is_empty() {
        return Err(SubjectError::Empty);
    }
    for token in subject.split(|&b| b == SEPARATOR) {
        match token {
            [] => return Err(SubjectError::EmptyToken),
            [ONE] | [TAIL] => return Err(SubjectError::Wildcard),
            _ => {}
        }
    }
    Ok(())
}

/// The worker, in `0..workers`, that a name hashes to (the router's hash).
///
/// The hash is fixed (no per-process seed) so the answer is the same on every thread and in
/// every run; it reads the bytes eight at a time, FxHash-style, then spreads the result over
/// `workers` with a multiply-shift rather than a division. `workers == 0` yields 0.
pub fn owner(subject: &[u8], workers: usize) -> usize {
    let mut hash = subject.len() as u64;
    let mut chunks = subject.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        hash = (hash.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(FX_MUL);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        hash = (hash.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(FX_MUL);
    }
    // FxHash's low bits are weak; fold the high half in before the range reduction.
    hash ^= hash >> 29;
    hash = hash.wrapping_mul(FINAL_MUL);
    hash ^= hash >> 32;
    ((u128::from(hash) * workers as u128) >> 64) as usize
}

/// True if `subject` is empty or has an empty token (`foo..bar`, `.foo`, `foo.`).
fn has_empty_token(subject: &[u8]) -> bool {
    subject.first().is_none_or(|&b| b == SEPARATOR)
        || subject.last() == Some(&SEPARATOR)
        || subject.windows(2).any(|w| w == [SEPARATOR, SEPARATOR])
}

/// Token separator.
pub(crate) const SEPARATOR: u8 = b'.';

/// The single-token wildcard, when it is a whole token.
pub(crate) const ONE: u8 = b'*';

/// The tail wildcard, when it is a whole token.
pub(crate) const TAIL: u8 = b'>';

/// FxHash's multiplier (rustc-hash).
const FX_MUL: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// A 64-bit finaliser multiplier (from splitmix64/murmur3's fmix64).
const FINAL_MUL: u64 = 0xff51_afd7_ed55_8ccd;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let valid_literal: &[&[u8]] = &[
            b"foo", b"foo.bar", b"f*o", b"a>", b"*a", b"a.b.c.d", b"a\x0cb",
        ];
        for raw in valid_literal {
            let p = Pattern::parse(raw).unwrap();
            assert!(p.is_literal(), "{p:?}");
            assert_eq!(p.as_bytes(), *raw);
        }
        let valid_wild: &[&[u8]] = &[b"*", b">", b"foo.*", b"foo.>", b"*.foo", b"*.*.>", b"a.*.b"];
        for raw in valid_wild {
            let p = Pattern::parse(raw).unwrap();
            assert!(!p.is_literal(), "{p:?}");
        }
        let invalid: &[(&[u8], SubjectError)] = &[
            (b"", SubjectError::Empty),
            (b".", SubjectError::EmptyToken),
            (b"foo..bar", SubjectError::EmptyToken),
            (b".foo", SubjectError::EmptyToken),
            (b"foo.", SubjectError::EmptyToken),
            (b"foo.>.bar", SubjectError::MisplacedTail),
            (b">.foo", SubjectError::MisplacedTail),
            (b">.>", SubjectError::MisplacedTail),
        ];
        for (raw, err) in invalid {
            assert_eq!(
                Pattern::parse(raw),
                Err(*err),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn tokens_and_count() {
        let p = Pattern::parse(b"a.*.f*o.>").unwrap();
        let tokens: Vec<_> = p.tokens().collect();
        assert_eq!(
            tokens,
            [
                Token::Literal(b"a"),
                Token::One,
                Token::Literal(b"f*o"),
                Token::Tail
            ]
        );
        assert_eq!(p.token_count(), 4);
        assert_eq!(Pattern::parse(b"x").unwrap().token_count(), 1);
    }

    #[test]
    fn matches_table() {
        let cases: &[(&[u8], &[u8], bool)] = &[
            (b"foo", b"foo", true),
            (b"foo", b"foo.bar", false),
            (b"foo.bar", b"foo", false),
            (b"*", b"foo", true),
            (b"*", b"foo.bar", false),
            (b"foo.*", b"foo.bar", true),
            (b"foo.*", b"foo", false),
            (b"foo.*", b"foo.bar.baz", false),
            (b"foo.>", b"foo.bar", true),
            (b"foo.>", b"foo.bar.baz", true),
            (b"foo.>", b"foo", false),
            (b">", b"foo", true),
            (b">", b"foo.bar", true),
            (b"*.bar", b"foo.bar", true),
            (b"*.bar", b"foo.baz", false),
            (b"a.*.c", b"a.b.c", true),
            (b"a.*.>", b"a.b", false),
            (b"a.*.>", b"a.b.c.d", true),
            (b"f*o", b"foo", false),
            (b"f*o", b"f*o", true),
            // Published wildcards are literal tokens.
            (b"a.*", b"a.*", true),
            (b"a.*", b"a.>", true),
            (b"a.>", b"a.*", true),
            (b"a.b", b"a.*", false),
            // Subjects with empty tokens reach nobody.
            (b">", b"foo.", false),
            (b">", b"foo..bar", false),
            (b">", b".foo", false),
            (b">", b"", false),
            (b"foo.>", b"foo.", false),
            (b"*.*", b"foo.", false),
        ];
        for (pattern, subject, want) in cases {
            let p = Pattern::parse(pattern).unwrap();
            assert_eq!(
                p.matches(subject),
                *want,
                "{p:?} vs {:?}",
                String::from_utf8_lossy(subject)
            );
        }
    }

    #[test]
    fn check_publish_table() {
        let cases: &[(&[u8], Result<(), SubjectError>)] = &[
            (b"foo", Ok(())),
            (b"foo.bar", Ok(())),
            (b"f*o.a>", Ok(())),
            (b"", Err(SubjectError::Empty)),
            (b"foo..bar", Err(SubjectError::EmptyToken)),
            (b"foo.", Err(SubjectError::EmptyToken)),
            (b".foo", Err(SubjectError::EmptyToken)),
            (b"foo.*", Err(SubjectError::Wildcard)),
            (b"foo.>", Err(SubjectError::Wildcard)),
            (b">", Err(SubjectError::Wildcard)),
        ];
        for (subject, want) in cases {
            assert_eq!(check_publish(subject, true), *want);
            assert_eq!(check_publish(subject, false), Ok(()));
        }
    }

    #[test]
    fn owner_is_stable_and_spread() {
        // Pinned values: a change of the hash moves subjects between workers, which must be
        // a deliberate decision.
        assert_eq!(owner(b"foo", 1), 0);
        assert_eq!(owner(b"", 0), 0);
        let pinned: Vec<usize> = [&b"foo"[..], b"foo.bar", b"_INBOX.abcdefgh.1"]
            .iter()
            .map(|s| owner(s, 64))
            .collect();
        assert_eq!(pinned, PINNED_OWNERS);
        let workers = 8;
        let mut counts = [0usize; 8];
        for i in 0..8000 {
            let subject = format!("orders.{i}.created");
            let w = owner(subject.as_bytes(), workers);
            assert!(w < workers);
            assert_eq!(w, owner(subject.as_bytes(), workers));
            counts[w] += 1;
        }
        for c in counts {
            assert!((800..1200).contains(&c), "{counts:?}");
        }
    }

    const PINNED_OWNERS: [usize; 3] = [6, 27, 63];
}
