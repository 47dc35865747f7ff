//! What the pool knows about its hosts, and the choice it makes from it.

use serde_json::value::RawValue;
use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

/// Whether a host can be sent requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Health {
    /// Not probed yet.
    Unknown,
    /// Answered its last probe or request.
    Up,
    /// Answered 503 (its queue is full): avoided until then.
    Busy { until: Instant },
    /// Refused or dropped a connection: avoided until a probe succeeds.
    Down,
}

/// Failures in a row after which a host is ejected.
pub(crate) const EJECT_AFTER: u32 = 3;
/// The first ejection's cool-down; each one in a row doubles it.
pub(crate) const EJECT_BASE: Duration = Duration::from_secs(2);
/// The longest cool-down.
pub(crate) const EJECT_MAX: Duration = Duration::from_secs(60);

/// Passive health, as Envoy's outlier detection keeps it: a host's
/// failures in a row (a 5xx, an answer that is not Ollama's, silence, a
/// stream that died) and its ejections in a row.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Outlier {
    /// Failures since its last success or ejection.
    failures: u32,
    /// Ejections since its last success: the next cool-down is
    /// `EJECT_BASE × 2^ejections`, at most `EJECT_MAX`.
    ejections: u32,
    /// When its last ejection ends (or ended).
    until: Option<Instant>,
}

impl Outlier {
    /// Whether it is ejected at `now`.
    pub(crate) fn ejected(&self, now: Instant) -> bool {
        self.until.is_some_and(|until| until > now)
    }

    /// Counts a failure; the cool-down if it ejects the host now.
    ///
    /// An ejected host's failures are not counted (it is out already). Back
    /// from an ejection, until it succeeds once, one failure ejects it again
    /// for twice as long; a minute after its last cool-down ended that is
    /// forgotten.
    pub(crate) fn fail(&mut self, now: Instant) -> Option<Duration> {
        if self.ejected(now) {
            return None;
        }
        if self
            .until
            .is_some_and(|until| now.saturating_duration_since(until) > EJECT_MAX)
        {
            self.ejections = 0;
        }
        self.failures = self.failures.saturating_add(1);
        if self.failures < EJECT_AFTER && self.ejections == 0 {
            return None;
        }
        let doubled = 1u32.checked_shl(self.ejections).unwrap_or(u32::MAX);
        let cooldown = EJECT_BASE.saturating_mul(doubled).min(EJECT_MAX);
        self.ejections = self.ejections.saturating_add(1);
        self.failures = 0;
        self.until = Some(now + cooldown);
        Some(cooldown)
    }

    /// Counts a success; whether it ends an ejection (or the probation
    /// after one).
    pub(crate) fn succeed(&mut self) -> bool {
        self.failures = 0;
        let was = self.ejections > 0;
        self.ejections = 0;
        self.until = None;
        was
    }
}

/// One entry of a host's `/api/tags` or `/api/ps`: its model's key and the
/// entry as Ollama wrote it.
pub(crate) type Entry = (String, Box<RawValue>);

/// One host's state.
#[derive(Debug)]
pub(crate) struct HostState {
    pub(crate) health: Health,
    /// Its failures and ejections.
    pub(crate) outlier: Outlier,
    /// `/api/tags`; `None` until it has answered.
    pub(crate) models: Option<Vec<Entry>>,
    /// `/api/ps`, as last read.
    pub(crate) running: Vec<Entry>,
    /// Keys of the models loaded: `/api/ps`, and every model
    /// this host has answered a generation for since.
    pub(crate) loaded: HashSet<String>,
}

impl HostState {
    pub(crate) fn new() -> HostState {
        HostState {
            health: Health::Unknown,
            outlier: Outlier::default(),
            models: None,
            running: Vec::new(),
            loaded: HashSet::new(),
        }
    }

    /// 0: usable; 1: cooling down after a 503; 2: ejected after failures;
    /// 3: down.
    fn tier(&self, now: Instant) -> u8 {
        match self.health {
            Health::Down => 3,
            _ if self.outlier.ejected(now) => 2,
            Health::Busy { until } if until > now => 1,
            Health::Unknown | Health::Up | Health::Busy { .. } => 0,
        }
    }

    /// `Some(true)` if it lists `model`, `Some(false)` if it lists others,
    /// `None` if its list is not known yet.
    pub(crate) fn has(&self, model: &str) -> Option<bool> {
        self.models
            .as_ref()
            .map(|list| list.iter().any(|(name, _)| name == model))
    }

    /// Whether the host is healthy: up, past a 503's cool-down and not
    /// ejected.
    pub(crate) fn healthy(&self, now: Instant) -> bool {
        self.health != Health::Unknown && self.tier(now) == 0
    }

    /// Forgets `model` (the host answered 404 for it).
    pub(crate) fn forget(&mut self, model: &str) {
        if let Some(list) = &mut self.models {
            list.retain(|(name, _)| name != model);
        }
        self.loaded.remove(model);
    }
}

/// What a request needs from a host.
#[derive(Clone, Debug, Default)]
pub(crate) struct Want {
    /// The model's key ([`model_key`](crate::ollama::model::model_key)),
    /// when the request names one.
    pub(crate) model: Option<String>,
    /// The conversation's key, for requests that continue one.
    pub(crate) session: Option<u64>,
}

/// The outcome of a choice.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Choice {
    /// Send it to this host.
    Host(usize),
    /// No host that answers has the model, and every other host's list
    /// is known: none has it. `unasked` (a bit per host) are the hosts that
    /// are down and have not listed their models: they may have it.
    NoModel { unasked: u64 },
    /// Hosts that may have it are all tried already or none is reachable.
    NoHost,
}

/// Chooses a host for `want` among those not in `tried` (a bit per host).
///
/// In order: hosts that are up before those cooling down after a 503, those
/// ejected and those down; hosts that list the model before those whose
/// list is not known; the conversation's host; hosts with the model loaded
/// and fewer than `warm` requests in flight; the fewest requests in flight
/// (`loads`, one per host); then by turns, starting at `turn`.
///
/// A host that is down and has not listed its models is not a candidate for
/// a model while another host answers with its list: a model none of those
/// has is [`Choice::NoModel`], not a wait for a host that cannot be asked.
#[allow(clippy::too_many_arguments)]
pub(crate) fn choose(
    hosts: &[HostState],
    want: &Want,
    tried: u64,
    now: Instant,
    pinned: Option<usize>,
    turn: usize,
    warm: usize,
    loads: impl Iterator<Item = usize>,
) -> Choice {
    let n = hosts.len();
    let mut best: Option<(usize, [usize; 6])> = None;
    let mut listed_anywhere = false;
    let mut unknown_lists = false;
    let mut unasked = 0u64;
    let answering = hosts
        .iter()
        .any(|h| h.models.is_some() && h.health != Health::Down);
    for ((i, host), load) in hosts.iter().enumerate().zip(loads) {
        let listed = match &want.model {
            None => Some(true),
            Some(model) => host.has(model),
        };
        match listed {
            Some(true) => listed_anywhere = true,
            Some(false) => continue,
            None if answering && host.health == Health::Down => {
                if i < 64 {
                    unasked |= 1 << i;
                }
                continue;
            }
            None => unknown_lists = true,
        }
        if i < 64 && tried & (1 << i) != 0 {
            continue;
        }
        let tier = host.tier(now);
        let warm = match &want.model {
            Some(model) => host.loaded.contains(model) && load < warm,
            None => true,
        };
        let rank = [
            usize::from(tier),
            usize::from(listed.is_none()),
            usize::from(!(pinned == Some(i) && tier == 0)),
            usize::from(!warm),
            load,
            (i + n - turn % n) % n,
        ];
        if best.as_ref().map_or(true, |(_, b)| rank < *b) {
            best = Some((i, rank));
        }
    }
    match best {
        Some((i, _)) => Choice::Host(i),
        None if !listed_anywhere && !unknown_lists => Choice::NoModel { unasked },
        None => Choice::NoHost,
    }
}

/// Conversations and the host that served them: an LRU map (`lru`) with a
/// TTL, kept to `capacity` entries by evicting the least recently used.
#[derive(Debug)]
pub(crate) struct Sessions {
    /// Each conversation's host and when it was last sent there; `None`
    /// when stickiness is off (a capacity of 0).
    pins: Option<lru::LruCache<u64, (usize, Instant)>>,
    ttl: Duration,
}

impl Sessions {
    pub(crate) fn new(capacity: usize, ttl: Duration) -> Sessions {
        Sessions {
            pins: NonZeroUsize::new(capacity).map(lru::LruCache::new),
            ttl,
        }
    }

    /// The host `key` was last sent to, unless that is older than the TTL.
    pub(crate) fn get(&mut self, key: u64, now: Instant) -> Option<usize> {
        let pins = self.pins.as_mut()?;
        let &(host, at) = pins.peek(&key)?;
        if now.saturating_duration_since(at) > self.ttl {
            pins.pop(&key);
            return None;
        }
        Some(host)
    }

    /// Pins `key` to `host` (again), as most recently used.
    pub(crate) fn set(&mut self, key: u64, host: usize, now: Instant) {
        if let Some(pins) = self.pins.as_mut() {
            pins.put(key, (host, now));
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.pins.as_ref().map_or(0, lru::LruCache::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ollama::model::model_key as canonical;

    fn host(health: Health, models: Option<&[&str]>, loaded: &[&str]) -> HostState {
        let entry = |m: &&str| {
            let raw = RawValue::from_string(format!(r#"{{"name":"{m}"}}"#)).unwrap();
            (canonical(m), raw)
        };
        HostState {
            health,
            outlier: Outlier::default(),
            models: models.map(|ms| ms.iter().map(entry).collect()),
            running: Vec::new(),
            loaded: loaded.iter().map(|m| canonical(m)).collect(),
        }
    }

    fn idle() -> std::iter::Repeat<usize> {
        std::iter::repeat(0)
    }

    fn want(model: &str) -> Want {
        Want {
            model: Some(canonical(model)),
            session: None,
        }
    }

    #[test]
    fn only_hosts_with_the_model_are_candidates() {
        let now = Instant::now();
        let hosts = [
            host(Health::Up, Some(&["a"]), &[]),
            host(Health::Up, Some(&["b"]), &[]),
        ];
        let choice = choose(&hosts, &want("b"), 0, now, None, 0, 1, idle());
        assert_eq!(choice, Choice::Host(1));
        let choice = choose(&hosts, &want("c"), 0, now, None, 0, 1, idle());
        assert_eq!(choice, Choice::NoModel { unasked: 0 });
    }

    #[test]
    fn loaded_beats_idle_and_idle_beats_busy() {
        let now = Instant::now();
        let hosts = [
            host(Health::Up, Some(&["a"]), &[]),
            host(Health::Up, Some(&["a"]), &["a"]),
            host(Health::Up, Some(&["a"]), &[]),
        ];
        // Host 1 has it loaded, even with more in flight.
        let choice = choose(
            &hosts,
            &want("a"),
            0,
            now,
            None,
            0,
            9,
            [0, 5, 1].into_iter(),
        );
        assert_eq!(choice, Choice::Host(1));
        // Tried already: then the least busy of the others.
        let choice = choose(
            &hosts,
            &want("a"),
            0b10,
            now,
            None,
            0,
            9,
            [3, 5, 1].into_iter(),
        );
        assert_eq!(choice, Choice::Host(2));
        // With its one slot taken, the loaded host is no better than idle
        // cold ones: the least busy wins.
        let choice = choose(
            &hosts,
            &want("a"),
            0,
            now,
            None,
            0,
            1,
            [1, 1, 0].into_iter(),
        );
        assert_eq!(choice, Choice::Host(2));
        let choice = choose(
            &hosts,
            &want("a"),
            0,
            now,
            None,
            0,
            1,
            [1, 0, 1].into_iter(),
        );
        assert_eq!(choice, Choice::Host(1));
    }

    #[test]
    fn ties_go_round_by_turns() {
        let now = Instant::now();
        let hosts = [
            host(Health::Up, Some(&["a"]), &[]),
            host(Health::Up, Some(&["a"]), &[]),
            host(Health::Up, Some(&["a"]), &[]),
        ];
        let picks: Vec<_> = (0..6)
            .map(|turn| choose(&hosts, &want("a"), 0, now, None, turn, 9, idle()))
            .collect();
        let expect: Vec<_> = [0, 1, 2, 0, 1, 2].map(Choice::Host).into();
        assert_eq!(picks, expect);
    }

    #[test]
    fn the_conversation_s_host_wins_while_it_is_up() {
        let now = Instant::now();
        let mut hosts = [
            host(Health::Up, Some(&["a"]), &["a"]),
            host(Health::Up, Some(&["a"]), &[]),
        ];
        let choice = choose(
            &hosts,
            &want("a"),
            0,
            now,
            Some(1),
            0,
            9,
            [0, 9].into_iter(),
        );
        assert_eq!(choice, Choice::Host(1));
        hosts[1].health = Health::Down;
        let choice = choose(&hosts, &want("a"), 0, now, Some(1), 0, 9, idle());
        assert_eq!(choice, Choice::Host(0));
    }

    #[test]
    fn busy_and_down_hosts_are_the_last_resort() {
        let now = Instant::now();
        let later = now + Duration::from_secs(5);
        let hosts = [
            host(Health::Down, Some(&["a"]), &["a"]),
            host(Health::Busy { until: later }, Some(&["a"]), &[]),
        ];
        assert_eq!(
            choose(&hosts, &want("a"), 0, now, None, 0, 9, idle()),
            Choice::Host(1)
        );
        // Once the cool-down is over it is a host like any other.
        let hosts = [
            host(Health::Up, Some(&["a"]), &[]),
            host(Health::Busy { until: now }, Some(&["a"]), &["a"]),
        ];
        assert_eq!(
            choose(&hosts, &want("a"), 0, now, None, 0, 9, idle()),
            Choice::Host(1)
        );
        assert_eq!(
            choose(&hosts, &want("a"), 0b11, now, None, 0, 9, idle()),
            Choice::NoHost
        );
    }

    #[test]
    fn unknown_lists_come_after_known_ones_and_keep_unknown_models_possible() {
        let now = Instant::now();
        let hosts = [
            host(Health::Unknown, None, &[]),
            host(Health::Up, Some(&["a"]), &[]),
        ];
        assert_eq!(
            choose(&hosts, &want("a"), 0, now, None, 0, 9, idle()),
            Choice::Host(1)
        );
        assert_eq!(
            choose(&hosts, &want("zzz"), 0, now, None, 0, 9, idle()),
            Choice::Host(0)
        );
        assert_eq!(
            choose(&hosts, &want("zzz"), 0b1, now, None, 0, 9, idle()),
            Choice::NoHost
        );
    }

    #[test]
    fn failures_in_a_row_eject_for_a_cool_down_that_doubles() {
        let t0 = Instant::now();
        let mut o = Outlier::default();
        let secs = Duration::from_secs;
        assert_eq!(o.fail(t0), None);
        assert_eq!(o.fail(t0), None);
        assert_eq!(o.fail(t0), Some(secs(2)), "the third in a row");
        assert!(o.ejected(t0 + secs(1)));
        assert!(!o.ejected(t0 + secs(2)));
        // While out, failures do not count.
        assert_eq!(o.fail(t0 + secs(1)), None);
        // Back, one failure is enough, for twice as long, up to a minute.
        let mut at = t0 + secs(2);
        for want in [4, 8, 16, 32, 60, 60] {
            assert_eq!(o.fail(at), Some(secs(want)));
            at += secs(want);
        }
        // A success forgets it all.
        assert!(o.succeed());
        assert!(!o.ejected(at));
        assert_eq!(o.fail(at), None);
        assert_eq!(o.fail(at), None);
        assert!(!o.succeed(), "it was not ejected");
        assert_eq!(o.fail(at), None, "the count started again");
        // A host back from a cool-down long ago starts afresh too.
        let mut o = Outlier::default();
        for _ in 0..3 {
            o.fail(t0);
        }
        assert_eq!(o.fail(t0 + secs(2)), Some(secs(4)));
        let long_after = t0 + secs(6) + EJECT_MAX + secs(1);
        assert_eq!(o.fail(long_after), None);
    }

    #[test]
    fn ejected_hosts_come_after_busy_ones_and_before_down_ones() {
        let now = Instant::now();
        let later = now + Duration::from_secs(5);
        let mut ejected = host(Health::Up, Some(&["a"]), &["a"]);
        for _ in 0..EJECT_AFTER {
            ejected.outlier.fail(now);
        }
        assert!(!ejected.healthy(now));
        let hosts = [
            host(Health::Down, Some(&["a"]), &["a"]),
            ejected,
            host(Health::Busy { until: later }, Some(&["a"]), &[]),
            host(Health::Up, Some(&["a"]), &[]),
        ];
        let pick = |tried| choose(&hosts, &want("a"), tried, now, Some(1), 0, 9, idle());
        assert_eq!(pick(0), Choice::Host(3), "pinned and warm, but ejected");
        assert_eq!(pick(0b1000), Choice::Host(2));
        assert_eq!(pick(0b1100), Choice::Host(1));
        assert_eq!(pick(0b1110), Choice::Host(0));
        // Its cool-down over, it is a host like any other (and pinned).
        let back = now + EJECT_BASE;
        assert!(hosts[1].healthy(back));
        assert_eq!(
            choose(&hosts, &want("a"), 0, back, Some(1), 0, 9, idle()),
            Choice::Host(1)
        );
    }

    #[test]
    fn a_down_host_that_never_listed_its_models_is_not_waited_for() {
        let now = Instant::now();
        let hosts = [
            host(Health::Up, Some(&["a"]), &[]),
            host(Health::Down, None, &[]),
        ];
        assert_eq!(
            choose(&hosts, &want("zzz"), 0, now, None, 0, 9, idle()),
            Choice::NoModel { unasked: 0b10 }
        );
        assert_eq!(
            choose(&hosts, &want("a"), 0b1, now, None, 0, 9, idle()),
            Choice::NoHost,
            "the host that has it was tried: no other"
        );
        // Requests that name no model may still try it.
        assert_eq!(
            choose(&hosts, &Want::default(), 0b1, now, None, 0, 9, idle()),
            Choice::Host(1)
        );
        // With no host that answers, down hosts are all there is.
        let hosts = [
            host(Health::Down, Some(&["a"]), &[]),
            host(Health::Down, None, &[]),
        ];
        assert_eq!(
            choose(&hosts, &want("zzz"), 0, now, None, 0, 9, idle()),
            Choice::Host(1)
        );
    }

    #[test]
    fn sessions_expire_and_stay_bounded() {
        let t0 = Instant::now();
        let mut s = Sessions::new(3, Duration::from_secs(10));
        s.set(1, 0, t0);
        assert_eq!(s.get(1, t0 + Duration::from_secs(10)), Some(0));
        assert_eq!(s.get(1, t0 + Duration::from_secs(11)), None);
        for k in 0..100 {
            s.set(k % 5, 1, t0);
            s.set(k, 2, t0);
            assert!(s.len() <= 3);
        }
        // The most recently used survive.
        assert_eq!(s.get(99, t0), Some(2));
        assert_eq!(s.get(98, t0), Some(2));
        assert_eq!(s.get(0, t0), None);
        // Reading a conversation does not make it recent; pinning does.
        s.set(1, 0, t0);
        s.set(2, 0, t0);
        s.set(3, 0, t0);
        assert_eq!(s.get(1, t0), Some(0));
        s.set(5, 0, t0);
        assert_eq!(s.get(1, t0), None, "the least recently pinned went");
        assert_eq!(s.get(2, t0), Some(0));
        // An expired one is gone for good, even once time is back.
        s.set(4, 1, t0);
        assert_eq!(s.get(4, t0 + Duration::from_secs(11)), None);
        assert_eq!(s.get(4, t0), None);
        let mut off = Sessions::new(0, Duration::from_secs(10));
        off.set(1, 1, t0);
        assert_eq!(off.get(1, t0), None);
        assert_eq!(off.len(), 0);
    }
}
