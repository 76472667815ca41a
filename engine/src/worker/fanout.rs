//! Matching and fan-out of plain publishes, with no I/O: written against a [`Sink`], so unit
//! tests drive it as they drive `chat::Shard::handle`, and the worker is one implementation.
//!
//! # Where a publish is matched
//! On the **publisher's own worker**, against the shared index snapshot. Local subscribers
//! are written at once; every other worker that holds subscribers of a matched set gets one
//! [`Envelope::Deliver`] per set on the FIFO ring publisher→that worker, and a chosen queue
//! member elsewhere one [`Envelope::DeliverOne`]. A connection's ops are handled in order and
//! each ring is FIFO, so every subscription sees one publisher's messages in publish order,
//! whatever the subjects and however the subscription matched them (literal, `*`, `>`, queue
//! group), as nats-server does. The alternative this replaced, matching on a per-subject
//! owner shard, gave one order per subject but reordered one publisher's messages across
//! subjects (they took different owners' rings); it also cost a second ring hop.

use std::sync::Arc;

use crate::envelope::{Envelope, Msg, MsgView, SubRef};
use crate::limits;
use crate::sublist::{Placed, QueueGroup, SubSet};

/// A matched subscriber set.
pub(crate) type Set = Arc<SubSet<SubRef>>;

/// What the fan-out core needs from the worker it runs on.
pub(crate) trait Sink {
    /// The index of this worker.
    fn worker(&self) -> usize;

    /// Appends the index's sets matching `subject` to `out`.
    fn matches(&self, subject: &[u8], out: &mut Vec<Set>);

    /// Writes one delivery to `sub`, a subscription of a connection on this worker. False
    /// when the subscription is gone (so a queue message can go to another member); true when
    /// it was written, or deliberately not (`check_echo` and the publisher's own connection
    /// with echo off).
    fn deliver(&mut self, sub: &SubRef, view: &MsgView<'_>, check_echo: bool) -> bool;

    /// Writes one delivery of `view` to each plain subscriber of `set` that lives on this
    /// worker. A worker overrides this to prepare the frame once for all of them.
    fn deliver_plain(&mut self, set: &SubSet<SubRef>, view: &MsgView<'_>) {
        let me = self.worker();
        for sub in set.plain.iter().filter(|s| s.worker() == me) {
            self.deliver(sub, view, true);
        }
    }

    /// Queues `env` for worker `to` (never this one), behind everything sent there before.
    fn send(&mut self, to: usize, env: Envelope);

    /// Queues, behind everything sent there before, a delivery of `view` to the plain
    /// subscribers of `set` on worker `to` (never this one): an [`Envelope::Deliver`]
    /// carrying `owned` (made on first use and shared between destinations), or, for a small
    /// message, a copy batched with others toward `to`.
    fn send_deliver(&mut self, to: usize, set: &Set, view: &MsgView<'_>, owned: &mut Option<Msg>) {
        let msg = shared(owned, view);
        self.send(
            to,
            Envelope::Deliver {
                msg,
                set: set.clone(),
            },
        );
    }

    /// Tells the publisher (on this worker) that nobody subscribes to its request.
    fn no_responders(&mut self, request: &MsgView<'_>);

    /// A pseudo-random number, to spread queue picks.
    fn random(&mut self) -> u64;
}

/// Matches a plain publish from a connection of this worker and fans it out. `scratch` is a
/// reused vector (left empty). Returns the workers that were sent something (bit `w`), so a
/// later `PING` can wait for them.
pub(crate) fn publish<S: Sink>(sink: &mut S, view: &MsgView<'_>, scratch: &mut Vec<Set>) -> u64 {
    sink.matches(view.subject, scratch);
    let sent = if nobody_answers(scratch, view) {
        if view.reply.is_some() && view.origin.no_responders {
            sink.no_responders(view);
        }
        0
    } else {
        fan_out(sink, scratch, view, &mut None, true)
    };
    scratch.clear();
    sent
}

/// Delivers `view` to every plain subscriber of `sets` and one member of each queue group.
/// `owned` is the message already copied out (or `None`: it is copied once, the first time
/// another worker needs it). A queue member found gone is replaced by another only when
/// `repick` (chat delivers to filtered sets, which a fresh match would not respect). Returns
/// the workers sent to.
pub(crate) fn fan_out<S: Sink>(
    sink: &mut S,
    sets: &[Set],
    view: &MsgView<'_>,
    owned: &mut Option<Msg>,
    repick: bool,
) -> u64 {
    let me = sink.worker();
    let mut sent = 0;
    let mut any_queue = false;
    for set in sets {
        any_queue |= !set.queues.is_empty();
        let mut mask = set.plain_workers;
        while mask != 0 {
            let w = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            if w == me {
                deliver_set(sink, set, view);
            } else {
                sink.send_deliver(w, set, view, owned);
                sent |= 1 << w;
            }
        }
    }
    if any_queue {
        sent |= pick_queue_members(sink, sets, view, owned, repick);
    }
    sent
}

/// Delivers to every plain subscriber of `set` that lives on this worker.
pub(crate) fn deliver_set<S: Sink>(sink: &mut S, set: &SubSet<SubRef>, view: &MsgView<'_>) {
    sink.deliver_plain(set, view);
}

/// Delivers to `sub`, the queue member chosen for `msg`; offers it to another member if that
/// one is gone and `tries` allows.
pub(crate) fn deliver_one<S: Sink>(sink: &mut S, sub: &SubRef, msg: &Msg, tries: u8) {
    let view = msg.view();
    if !sink.deliver(sub, &view, true) {
        repick(sink, sub, &view, msg, tries);
    }
}

/// Whether nobody would receive `view`: no match at all, or (echo off) only the requester
/// itself.
fn nobody_answers(sets: &[Set], view: &MsgView<'_>) -> bool {
    sets.is_empty()
        || (view.reply.is_some()
            && view.origin.no_responders
            && !view.origin.echo
            && sets.iter().all(|s| {
                s.plain
                    .iter()
                    .chain(s.queues.iter().flat_map(|g| g.members.iter()))
                    .all(|m| m.0.conn == view.origin.conn)
            }))
}

/// The message as an `Arc`, copied out of the view the first time it is needed.
pub(crate) fn shared(owned: &mut Option<Msg>, view: &MsgView<'_>) -> Msg {
    owned.get_or_insert_with(|| Msg::from_view(view)).clone()
}

/// Delivers to one member of each queue group, merging groups of the same name across the
/// matched sets (as nats-server does), chosen at random for an even spread. Allocates
/// nothing: a name's groups in later sets are found by a scan of the (few) matched sets.
fn pick_queue_members<S: Sink>(
    sink: &mut S,
    sets: &[Set],
    view: &MsgView<'_>,
    owned: &mut Option<Msg>,
    repick: bool,
) -> u64 {
    let mut sent = 0;
    for (i, set) in sets.iter().enumerate() {
        for group in set.queues.iter() {
            // The first set holding this name picks for all of them.
            let seen_before = sets[..i]
                .iter()
                .any(|s| s.queues.iter().any(|g| g.name == group.name));
            if seen_before {
                continue;
            }
            let groups = || {
                sets[i..]
                    .iter()
                    .flat_map(|s| s.queues.iter())
                    .filter(|g| g.name == group.name)
            };
            let chosen = if sets.len() == 1 {
                choose(sink, [group], view, None)
            } else {
                choose(sink, groups(), view, None)
            };
            if let Some(sub) = chosen {
                sent |= deliver_queued(sink, sub, view, owned, repick);
            }
        }
    }
    sent
}

/// One member, at random, among `groups` (one name's groups, possibly from several sets),
/// skipping `exclude`, members already ended (a closed connection's subscriptions leave the
/// index over several loop iterations, marked by one flag meanwhile), and the publisher when
/// it does not want its own messages. One pass in the common case: a random index over all
/// members, taken as is when eligible; a second, counting pass only when it hit an
/// ineligible member.
fn choose<'g, S: Sink, I>(
    sink: &mut S,
    groups: I,
    view: &MsgView<'_>,
    exclude: Option<&SubRef>,
) -> Option<SubRef>
where
    I: IntoIterator<Item = &'g QueueGroup<SubRef>> + Clone,
{
    let eligible = |s: &SubRef| {
        (view.origin.echo || s.0.conn != view.origin.conn) && Some(s) != exclude && !s.0.is_closed()
    };
    let total: usize = groups.clone().into_iter().map(|g| g.members.len()).sum();
    if total == 0 {
        return None;
    }
    let mut k = (sink.random() % total as u64) as usize;
    for g in groups.clone() {
        if k < g.members.len() {
            let sub = &g.members[k];
            if eligible(sub) {
                return Some(sub.clone());
            }
            break;
        }
        k -= g.members.len();
    }
    // Rare: the pick was the publisher itself (echo off) or the excluded member.
    let members = || groups.clone().into_iter().flat_map(|g| g.members.iter());
    let eligible_count = members().filter(|s| eligible(s)).count();
    if eligible_count == 0 {
        return None;
    }
    let k = (sink.random() % eligible_count as u64) as usize;
    members().filter(|s| eligible(s)).nth(k).cloned()
}

fn deliver_queued<S: Sink>(
    sink: &mut S,
    sub: SubRef,
    view: &MsgView<'_>,
    owned: &mut Option<Msg>,
    repick_gone: bool,
) -> u64 {
    let w = sub.worker();
    if w == sink.worker() {
        if !sink.deliver(&sub, view, true) && repick_gone {
            let msg = shared(owned, view);
            return repick(sink, &sub, view, &msg, 0);
        }
        return 0;
    }
    let tries = if repick_gone {
        0
    } else {
        limits::QUEUE_REPICKS
    };
    let msg = shared(owned, view);
    sink.send(w, Envelope::DeliverOne { msg, sub, tries });
    1 << w
}

/// The chosen queue member is gone: offer the message to another member of its group, from
/// a fresh snapshot, as nats-server would have (it picks among live members).
fn repick<S: Sink>(sink: &mut S, gone: &SubRef, view: &MsgView<'_>, msg: &Msg, tries: u8) -> u64 {
    let Some(queue) = gone.0.queue.as_deref() else {
        return 0;
    };
    if tries >= limits::QUEUE_REPICKS {
        return 0;
    }
    let mut sets = Vec::new();
    sink.matches(view.subject, &mut sets);
    let groups = sets
        .iter()
        .flat_map(|s| s.queues.iter())
        .filter(|g| *g.name == *queue);
    let Some(sub) = choose(sink, groups, view, Some(gone)) else {
        return 0;
    };
    let w = sub.worker();
    if w == sink.worker() {
        if !sink.deliver(&sub, view, true) {
            return repick(sink, &sub, view, msg, tries + 1);
        }
        return 0;
    }
    sink.send(
        w,
        Envelope::DeliverOne {
            msg: msg.clone(),
            sub,
            tries: tries + 1,
        },
    );
    1 << w
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::envelope::{ConnKey, Origin, SubState};
    use crate::subject::Pattern;
    use crate::sublist::Sublist;

    /// A worker with no sockets: deliveries and sends are recorded.
    struct Recorder {
        me: usize,
        index: Sublist<SubRef>,
        /// (connection slot, sid, payload) per delivery written here.
        delivered: Vec<(u32, String, String)>,
        /// (destination, what) per envelope sent.
        sent: Vec<(usize, String)>,
        /// Connections that are gone (deliveries to them fail).
        gone: HashSet<u32>,
        no_responders: usize,
        rng: u64,
    }

    impl Recorder {
        fn new(me: usize) -> Recorder {
            Recorder {
                me,
                index: Sublist::new(),
                delivered: Vec::new(),
                sent: Vec::new(),
                gone: HashSet::new(),
                no_responders: 0,
                rng: 1,
            }
        }

        fn sub(&self, worker: u16, slot: u32, sid: &str, pattern: &str, queue: Option<&str>) {
            let conn = ConnKey {
                worker,
                slot,
                gen: 0,
            };
            let pattern = Pattern::parse(pattern.as_bytes()).unwrap();
            let q = queue.map(str::as_bytes);
            let sub = SubRef(Arc::new(SubState::new(
                conn,
                sid.as_bytes(),
                pattern.clone(),
                q,
            )));
            self.index.insert(&pattern, q, sub);
        }
    }

    impl Sink for Recorder {
        fn worker(&self) -> usize {
            self.me
        }
        fn matches(&self, subject: &[u8], out: &mut Vec<Set>) {
            self.index.matches(subject, out);
        }
        fn deliver(&mut self, sub: &SubRef, view: &MsgView<'_>, check_echo: bool) -> bool {
            assert_eq!(
                usize::from(sub.0.conn.worker),
                self.me,
                "local deliveries only"
            );
            if self.gone.contains(&sub.0.conn.slot) {
                return false;
            }
            if check_echo && !view.origin.echo && view.origin.conn == sub.0.conn {
                return true;
            }
            self.delivered.push((
                sub.0.conn.slot,
                String::from_utf8(sub.0.sid.to_vec()).unwrap(),
                String::from_utf8(view.payload.to_vec()).unwrap(),
            ));
            true
        }
        fn send(&mut self, to: usize, env: Envelope) {
            assert_ne!(to, self.me);
            let what = match env {
                Envelope::Deliver { msg, set } => format!(
                    "deliver {} to {}",
                    String::from_utf8_lossy(msg.view().payload),
                    set.pattern
                ),
                Envelope::DeliverOne { msg, sub, tries } => format!(
                    "one {} to {} try {tries}",
                    String::from_utf8_lossy(msg.view().payload),
                    String::from_utf8_lossy(&sub.0.sid)
                ),
                other => format!("{other:?}"),
            };
            self.sent.push((to, what));
        }
        fn no_responders(&mut self, _: &MsgView<'_>) {
            self.no_responders += 1;
        }
        fn random(&mut self) -> u64 {
            self.rng = self.rng.wrapping_mul(6364136223846793005).wrapping_add(1);
            self.rng >> 33
        }
    }

    fn view<'a>(subject: &'a str, payload: &'a str, reply: Option<&'a str>) -> MsgView<'a> {
        MsgView {
            subject: subject.as_bytes(),
            reply: reply.map(str::as_bytes),
            headers: None,
            payload: payload.as_bytes(),
            origin: Origin {
                conn: ConnKey {
                    worker: 0,
                    slot: 99,
                    gen: 0,
                },
                no_responders: true,
                echo: true,
            },
        }
    }

    #[test]
    fn local_subscribers_are_written_and_each_other_worker_gets_one_envelope_per_set() {
        let mut r = Recorder::new(0);
        r.sub(0, 1, "a", "orders.*", None);
        r.sub(0, 2, "b", "orders.created", None);
        r.sub(1, 3, "c", "orders.*", None);
        r.sub(1, 4, "d", "orders.*", None);
        r.sub(2, 5, "e", ">", None);
        let mut scratch = Vec::new();
        let sent = publish(&mut r, &view("orders.created", "1", None), &mut scratch);
        assert_eq!(sent, 0b110);
        let mut local = r.delivered.clone();
        local.sort();
        assert_eq!(
            local,
            [(1, "a".into(), "1".into()), (2, "b".into(), "1".into())]
        );
        let mut remote = r.sent.clone();
        remote.sort();
        assert_eq!(
            remote,
            [
                (1, "deliver 1 to orders.*".to_string()),
                (2, "deliver 1 to >".to_string())
            ]
        );
        assert!(scratch.is_empty());
    }

    #[test]
    fn one_publisher_reaches_each_worker_in_publish_order_across_subjects() {
        let mut r = Recorder::new(0);
        r.sub(1, 1, "w", ">", None);
        r.sub(1, 2, "l", "s.7", None);
        let mut scratch = Vec::new();
        for i in 0..20 {
            let subject = format!("s.{}", i % 10);
            publish(&mut r, &view(&subject, &i.to_string(), None), &mut scratch);
        }
        // Everything for worker 1 went onto its one FIFO ring, in publish order.
        let to_1: Vec<&str> = r.sent.iter().map(|(_, w)| w.as_str()).collect();
        let mut want = Vec::new();
        for i in 0..20 {
            // Within one message, the literal set comes before the wildcard ones.
            if i % 10 == 7 {
                want.push(format!("deliver {i} to s.7"));
            }
            want.push(format!("deliver {i} to >"));
        }
        assert_eq!(to_1, want);
        assert!(r.sent.iter().all(|(w, _)| *w == 1));
    }

    #[test]
    fn a_queue_group_gets_one_copy_merged_across_sets_and_spread_over_members() {
        let mut r = Recorder::new(0);
        r.sub(0, 1, "x", "jobs.*", Some("q"));
        r.sub(0, 2, "y", "jobs.>", Some("q"));
        r.sub(0, 3, "z", "jobs.*", Some("other"));
        let mut scratch = Vec::new();
        for i in 0..1000 {
            publish(&mut r, &view("jobs.a", &i.to_string(), None), &mut scratch);
        }
        let count = |slot| r.delivered.iter().filter(|d| d.0 == slot).count();
        // Group q (two sets, one name): one copy per message, split between its members.
        assert_eq!(count(1) + count(2), 1000);
        assert!(
            count(1) > 350 && count(2) > 350,
            "{} {}",
            count(1),
            count(2)
        );
        assert_eq!(count(3), 1000);
        assert!(r.sent.is_empty());
    }

    #[test]
    fn a_remote_queue_member_gets_a_deliver_one_and_a_gone_local_one_is_repicked() {
        let mut r = Recorder::new(0);
        r.sub(0, 1, "gone", "work", Some("q"));
        r.sub(1, 2, "far", "work", Some("q"));
        r.gone.insert(1);
        let mut scratch = Vec::new();
        for i in 0..50 {
            publish(&mut r, &view("work", &i.to_string(), None), &mut scratch);
        }
        // Every message ends at the remote member: picked at once, or re-offered from the
        // gone local one.
        assert!(r.delivered.is_empty());
        assert_eq!(r.sent.len(), 50);
        for (i, (w, what)) in r.sent.iter().enumerate() {
            assert_eq!(*w, 1);
            assert!(what.starts_with(&format!("one {i} to far try ")), "{what}");
        }
    }

    #[test]
    fn echo_off_the_publisher_is_never_the_queue_pick() {
        let mut r = Recorder::new(0);
        r.sub(0, 99, "self", "work", Some("q"));
        r.sub(0, 2, "peer", "work", Some("q"));
        let mut scratch = Vec::new();
        for i in 0..200 {
            let mut v = view("work", "m", None);
            v.origin.echo = false;
            let _ = i;
            publish(&mut r, &v, &mut scratch);
        }
        assert_eq!(r.delivered.len(), 200);
        assert!(r.delivered.iter().all(|d| d.0 == 2));
    }

    #[test]
    fn a_request_nobody_answers_gets_no_responders() {
        let mut r = Recorder::new(0);
        r.sub(0, 99, "own", "other", None);
        let mut scratch = Vec::new();
        assert_eq!(
            publish(&mut r, &view("svc", "", Some("_INBOX.1")), &mut scratch),
            0
        );
        assert_eq!(r.no_responders, 1);
        // Echo off and only the requester subscribes: still nobody.
        r.sub(0, 99, "mine", "svc", None);
        let mut v = view("svc", "", Some("_INBOX.1"));
        v.origin.echo = false;
        publish(&mut r, &v, &mut scratch);
        assert_eq!(r.no_responders, 2);
        assert!(r.delivered.is_empty());
        // Without a reply subject, nobody is told.
        publish(&mut r, &view("nobody", "", None), &mut scratch);
        assert_eq!(r.no_responders, 2);
    }

    #[test]
    fn a_deliver_one_to_a_gone_member_is_offered_once_more_at_most_the_repick_limit() {
        let mut r = Recorder::new(1);
        r.sub(1, 1, "a", "work", Some("q"));
        r.sub(1, 2, "b", "work", Some("q"));
        r.gone.insert(1);
        r.gone.insert(2);
        let mut sets = Vec::new();
        r.index.matches(b"work", &mut sets);
        let gone = sets[0].queues[0].members[0].clone();
        let msg = Msg::from_view(&view("work", "m", None));
        deliver_one(&mut r, &gone, &msg, 0);
        assert!(r.delivered.is_empty(), "both members are gone");
        assert!(r.sent.is_empty());
        // With the other member back, the re-offer lands there.
        r.gone.remove(&2);
        deliver_one(&mut r, &gone, &msg, 0);
        assert_eq!(r.delivered, [(2, "b".into(), "m".into())]);
        // Past the limit, no re-offer.
        deliver_one(&mut r, &gone, &msg, limits::QUEUE_REPICKS);
        assert_eq!(r.delivered.len(), 1);
    }
}
