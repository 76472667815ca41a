//! A connection's subscriptions by sid.
//!
//! One `HashMap` of a million sids stalled its worker for ~150 ms each time it grew (a rehash
//! moves every entry at once). Past `SPLIT_AT` sids the map is split into `SHARDS` maps by a
//! keyed hash of the sid, so a growth rehashes a sixty-fourth of them; a connection with a
//! few subscriptions keeps one small map.

use std::collections::hash_map::{IntoValues, RandomState};
use std::collections::HashMap;
use std::hash::BuildHasher;

use crate::envelope::SubRef;

/// Maps a connection's sids to its subscriptions.
#[derive(Debug, Default)]
pub(super) struct Sids {
    shards: Vec<HashMap<Box<[u8]>, SubRef>>,
    /// Picks a sid's shard; keyed, so a client cannot aim every sid at one shard.
    state: RandomState,
    len: usize,
}

impl Sids {
    /// Subscriptions held.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Whether `sid` is in use.
    pub(super) fn contains_key(&self, sid: &[u8]) -> bool {
        self.shard(sid).is_some_and(|m| m.contains_key(sid))
    }

    /// The subscription of `sid`.
    pub(super) fn get(&self, sid: &[u8]) -> Option<&SubRef> {
        self.shard(sid)?.get(sid)
    }

    /// Adds (or replaces) `sid`'s subscription.
    pub(super) fn insert(&mut self, sid: Box<[u8]>, sub: SubRef) {
        if self.shards.is_empty() {
            self.shards.push(HashMap::new());
        }
        if self.shards.len() == 1 && self.len >= SPLIT_AT {
            self.split();
        }
        let i = self.index(&sid);
        if self.shards[i].insert(sid, sub).is_none() {
            self.len += 1;
        }
    }

    /// Takes `sid`'s subscription out.
    pub(super) fn remove(&mut self, sid: &[u8]) -> Option<SubRef> {
        let i = self.index(sid);
        let sub = self.shards.get_mut(i)?.remove(sid)?;
        self.len -= 1;
        Some(sub)
    }

    /// Every subscription, in no particular order.
    pub(super) fn values(&self) -> impl Iterator<Item = &SubRef> {
        self.shards.iter().flat_map(HashMap::values)
    }

    /// Every subscription, by value, consuming the map as it goes (the caller can stop and
    /// resume: nothing is walked or freed ahead of what it takes).
    pub(super) fn into_values(self) -> SidsIntoValues {
        SidsIntoValues {
            shards: self.shards,
            current: None,
        }
    }

    fn shard(&self, sid: &[u8]) -> Option<&HashMap<Box<[u8]>, SubRef>> {
        self.shards.get(self.index(sid))
    }

    fn index(&self, sid: &[u8]) -> usize {
        if self.shards.len() <= 1 {
            return 0;
        }
        (self.state.hash_one(sid) % SHARDS as u64) as usize
    }

    /// From one map to `SHARDS` (once, at `SPLIT_AT` sids: a bounded cost).
    fn split(&mut self) {
        let one = std::mem::take(&mut self.shards);
        self.shards = (0..SHARDS).map(|_| HashMap::new()).collect();
        for (sid, sub) in one.into_iter().flatten() {
            let i = self.index(&sid);
            self.shards[i].insert(sid, sub);
        }
    }
}

/// [`Sids::into_values`]'s iterator.
#[derive(Debug)]
pub(super) struct SidsIntoValues {
    shards: Vec<HashMap<Box<[u8]>, SubRef>>,
    current: Option<IntoValues<Box<[u8]>, SubRef>>,
}

impl Iterator for SidsIntoValues {
    type Item = SubRef;

    fn next(&mut self) -> Option<SubRef> {
        loop {
            if let Some(sub) = self.current.as_mut().and_then(Iterator::next) {
                return Some(sub);
            }
            self.current = Some(self.shards.pop()?.into_values());
        }
    }
}

/// Sids past which one map becomes `SHARDS`: below it a growth moves at most 8,192 entries.
const SPLIT_AT: usize = 8192;

/// Maps a large connection's sids are spread over.
const SHARDS: usize = 64;

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::envelope::{ConnKey, SubState};
    use crate::subject::Pattern;

    fn sub(sid: &[u8]) -> SubRef {
        let conn = ConnKey {
            worker: 0,
            slot: 0,
            gen: 0,
        };
        let pattern = Pattern::parse(b"s").unwrap();
        SubRef(Arc::new(SubState::new(conn, sid, pattern, None)))
    }

    #[test]
    fn behaves_as_one_map_across_the_split() {
        let mut sids = Sids::default();
        for i in 0..(SPLIT_AT * 3) {
            let sid = i.to_string().into_bytes().into_boxed_slice();
            sids.insert(sid.clone(), sub(&sid));
        }
        assert_eq!(sids.len(), SPLIT_AT * 3);
        assert_eq!(sids.shards.len(), SHARDS);
        for i in 0..(SPLIT_AT * 3) {
            let sid = i.to_string();
            assert!(sids.contains_key(sid.as_bytes()));
            assert_eq!(&*sids.get(sid.as_bytes()).unwrap().0.sid, sid.as_bytes());
        }
        // A replaced sid is not counted twice; a removed one is gone.
        sids.insert(b"7".to_vec().into(), sub(b"7"));
        assert_eq!(sids.len(), SPLIT_AT * 3);
        assert!(sids.remove(b"7").is_some());
        assert!(sids.remove(b"7").is_none());
        assert!(!sids.contains_key(b"7"));
        assert_eq!(sids.len(), SPLIT_AT * 3 - 1);
        assert_eq!(sids.values().count(), SPLIT_AT * 3 - 1);
        let mut drain = sids.into_values();
        let first: Vec<SubRef> = drain.by_ref().take(10).collect();
        assert_eq!(first.len(), 10);
        assert_eq!(drain.count(), SPLIT_AT * 3 - 11);
    }

    #[test]
    fn an_empty_map_answers_without_allocating_shards() {
        let mut sids = Sids::default();
        assert!(!sids.contains_key(b"1"));
        assert!(sids.get(b"1").is_none());
        assert!(sids.remove(b"1").is_none());
        assert_eq!(sids.into_values().count(), 0);
    }
}
