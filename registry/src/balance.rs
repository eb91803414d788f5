//! [`P2cBalance`]: power of two choices on load (go-zero's p2c), skipping instances whose
//! breaker is open.
//!
//! Instances are cached per discovery key and refreshed only by `rebalance`, exactly like
//! Volo's `WeightedRandomBalance` (see [`crate::EtcdDiscover`] for why that is enough).

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Instant,
};

use volo::{
    context::Endpoint,
    discovery::{Change, Discover, Instance},
    loadbalance::{LoadBalance, error::LoadBalanceError},
    net::Address,
};

use crate::{
    health::{Availability, Health, InstanceStats},
    retry::CallState,
};

/// An instance not picked for this long (and idle) is picked next time it is one of the
/// two candidates, so its latency average learns that it healed.
const FORCED_PICK_MS: u64 = 1_000;

/// Added to every latency before comparing: below a millisecond, differences are noise (a
/// first call that also connected, a scheduler hiccup) that the average, fed only by the
/// calls an instance wins, might never unlearn. It also keeps every score above zero.
const LATENCY_SLACK_NS: f64 = 1e6;

/// One candidate's score must beat the other's by this factor to win outright. Closer
/// scores are noise (two healthy instances rarely answer in exactly the same time), and
/// letting noise decide would send nearly every call to whichever is a little faster.
const CLEARLY_BETTER: f64 = 1.5;

/// The balancer of [`crate::configure_client`], for any `Discover`.
///
/// Each pick takes two random instances among those whose breaker lets calls through and
/// keeps the one with the clearly lower load score, `(latency + 1 ms) × (in flight + 1) /
/// weight` (an instance never heard from borrows the other's latency); between scores within
/// 1.5× of each other it draws by weight, so that healthy instances share the load. One not
/// picked for ~1 s is picked the next time it is a candidate. A half-open instance gets its
/// probe first. When the picker is asked again (Volo's transport retry, or
/// [`crate::RetryLayer`] after a timeout) it yields another instance: first those with closed
/// breakers, then open ones (so that a client whose instances are all open still calls one),
/// and instances an earlier attempt of the same call tried come last.
///
/// Cost: a pick looks at every instance of the service once.
///
/// Clones share the cached lists (Volo requires `Clone` of a balancer).
#[derive(Debug)]
pub struct P2cBalance<K> {
    health: Health,
    lists: Arc<RwLock<HashMap<K, Arc<InstanceList>>>>,
}

impl<K> Clone for P2cBalance<K> {
    fn clone(&self) -> Self {
        Self {
            health: self.health.clone(),
            lists: self.lists.clone(),
        }
    }
}

/// The instances of one key with their stats, in discovery order.
#[derive(Debug)]
pub(crate) struct InstanceList {
    entries: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    address: Address,
    weight: u32,
    stats: Arc<InstanceStats>,
}

impl InstanceList {
    fn new(health: &Health, instances: &[Arc<Instance>]) -> Self {
        let stats = health.track(instances);
        Self {
            entries: instances
                .iter()
                .zip(stats)
                .map(|(i, stats)| Entry {
                    address: i.address.clone(),
                    weight: i.weight.max(1),
                    stats,
                })
                .collect(),
        }
    }

    /// Whether an instance not in `tried` would take a call now.
    pub(crate) fn has_untried(&self, tried: &[Address]) -> bool {
        self.entries.iter().any(|e| {
            !tried.contains(&e.address)
                && e.stats.availability(e.stats.now_ms()) != Availability::Open
        })
    }
}

impl<K> P2cBalance<K> {
    /// A balancer recording into and reading from `health` (share it with the
    /// [`crate::HealthLayer`] of the same client).
    pub fn new(health: Health) -> Self {
        Self {
            health,
            lists: Arc::new(RwLock::new(HashMap::new())),
        }
    }
}

impl<D> LoadBalance<D> for P2cBalance<D::Key>
where
    D: Discover,
{
    type InstanceIter = P2cPicker;

    async fn get_picker<'future>(
        &'future self,
        endpoint: &'future Endpoint,
        discover: &'future D,
    ) -> Result<P2cPicker, LoadBalanceError> {
        let key = discover.key(endpoint);
        let cached = self
            .lists
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        let list = match cached {
            Some(list) => list,
            None => {
                let instances = discover.discover(endpoint).await.map_err(Into::into)?;
                let list = Arc::new(InstanceList::new(&self.health, &instances));
                self.lists
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key, list.clone());
                list
            }
        };
        let call = endpoint.get::<CallState>().cloned();
        let earlier = call.as_ref().map(CallState::tried).unwrap_or_default();
        if let Some(call) = &call {
            call.set_list(list.clone());
        }
        Ok(P2cPicker {
            list,
            health: self.health.clone(),
            call,
            earlier,
            yielded: Vec::new(),
        })
    }

    fn rebalance(&self, change: Change<D::Key>) {
        let mut lists = self.lists.write().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = lists.get_mut(&change.key) {
            *list = Arc::new(InstanceList::new(&self.health, &change.all));
        }
    }
}

/// The instances of one call, best first; see [`P2cBalance`].
#[derive(Debug)]
pub struct P2cPicker {
    list: Arc<InstanceList>,
    health: Health,
    /// Shared with the retry layer of this call, if there is one.
    call: Option<CallState>,
    /// Tried by earlier attempts of this call.
    earlier: Vec<Address>,
    /// Indices this picker already yielded.
    yielded: Vec<usize>,
}

impl Iterator for P2cPicker {
    type Item = Address;

    fn next(&mut self) -> Option<Address> {
        let now_ms = self.health.now_ms();
        let entries = &self.list.entries;
        let (mut closed, mut half_open, mut open, mut tried) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (i, e) in entries.iter().enumerate() {
            if self.yielded.contains(&i) {
                continue;
            }
            if self.earlier.contains(&e.address) {
                tried.push(i);
                continue;
            }
            match e.stats.availability(now_ms) {
                Availability::Closed => closed.push(i),
                Availability::HalfOpen => half_open.push(i),
                Availability::Open => open.push(i),
            }
        }
        let now = Instant::now();
        let probe = half_open
            .iter()
            .position(|&i| entries[i].stats.try_probe(now));
        let chosen = match probe {
            Some(p) => Some(half_open[p]),
            None => {
                open.extend(half_open);
                let rand = |n| fastrand::usize(..n);
                choose(entries, &closed, now_ms, rand)
                    .or_else(|| choose(entries, &open, now_ms, rand))
                    .or_else(|| choose(entries, &tried, now_ms, rand))
            }
        }?;
        let e = &entries[chosen];
        e.stats.mark_picked(now_ms);
        self.yielded.push(chosen);
        if let Some(call) = &self.call {
            call.add_tried(e.address.clone());
        }
        Some(e.address.clone())
    }
}

/// The p2c choice among `candidates` (indices into `entries`); `rand(n)` is uniform in 0..n.
fn choose(
    entries: &[Entry],
    candidates: &[usize],
    now_ms: u64,
    mut rand: impl FnMut(usize) -> usize,
) -> Option<usize> {
    match candidates.len() {
        0 => return None,
        1 => return Some(candidates[0]),
        _ => {}
    }
    let a = rand(candidates.len());
    let mut b = rand(candidates.len() - 1);
    if b >= a {
        b += 1;
    }
    let (a, b) = (candidates[a], candidates[b]);
    for i in [a, b] {
        let s = &entries[i].stats;
        let seen = s.last_pick_ms();
        if s.in_flight() == 0
            && now_ms.saturating_sub(seen) >= FORCED_PICK_MS
            && s.claim_pick(seen, now_ms)
        {
            return Some(i);
        }
    }
    let (la, lb) = (entries[a].stats.latency_ns(), entries[b].stats.latency_ns());
    let (la, lb) = match (la, lb) {
        (Some(x), Some(y)) => (x, y),
        (Some(x), None) => (x, x),
        (None, Some(y)) => (y, y),
        // Neither heard from: only load counts.
        (None, None) => (0.0, 0.0),
    };
    let score = |i: usize, latency: f64| {
        let e = &entries[i];
        (latency + LATENCY_SLACK_NS) * f64::from(e.stats.in_flight() + 1) / f64::from(e.weight)
    };
    let (sa, sb) = (score(a, la), score(b, lb));
    if sb * CLEARLY_BETTER < sa {
        return Some(b);
    }
    if sa * CLEARLY_BETTER < sb {
        return Some(a);
    }
    // As good as each other: by weight, at random.
    let (wa, wb) = (entries[a].weight as usize, entries[b].weight as usize);
    Some(if rand(wa + wb) < wa { a } else { b })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::options::BreakerOptions;

    fn list(weights: &[u32]) -> (Health, InstanceList) {
        let health = Health::new(BreakerOptions::default());
        let instances: Vec<_> = weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| {
                Arc::new(Instance {
                    address: Address::Ip(format!("10.0.0.{}:80", i + 1).parse().unwrap()),
                    weight,
                    tags: Default::default(),
                })
            })
            .collect();
        let list = InstanceList::new(&health, &instances);
        (health, list)
    }

    /// Gives `e` a latency average of `ms` and `in_flight` calls in flight, picked at `now_ms`.
    fn load(e: &Entry, ms: u64, in_flight: u32, now_ms: u64) {
        e.stats
            .set_for_test(Some(Duration::from_millis(ms)), in_flight);
        e.stats.mark_picked(now_ms);
    }

    /// Always the first two candidates, in order (and the first on a draw).
    fn first_two() -> impl FnMut(usize) -> usize {
        |_| 0
    }

    /// The first two candidates, in order, then `draw` for the draw by weight.
    fn pair_then(draw: usize) -> impl FnMut(usize) -> usize {
        let mut calls = 0;
        move |_| {
            calls += 1;
            if calls > 2 { draw } else { 0 }
        }
    }

    #[test]
    fn lower_latency_times_load_wins() {
        let (_h, l) = list(&[10, 10]);
        load(&l.entries[0], 50, 0, 5_000);
        load(&l.entries[1], 10, 0, 5_000);
        assert_eq!(choose(&l.entries, &[0, 1], 5_000, first_two()), Some(1));
        // Five calls in flight make 10 ms worse than 30 ms idle.
        load(&l.entries[0], 30, 0, 5_000);
        load(&l.entries[1], 10, 5, 5_000);
        assert_eq!(choose(&l.entries, &[0, 1], 5_000, first_two()), Some(0));
    }

    #[test]
    fn close_scores_share_the_load_by_weight() {
        let (_h, l) = list(&[30, 10]);
        load(&l.entries[0], 33, 0, 5_000);
        load(&l.entries[1], 10, 0, 5_000);
        // Within 1.5× of each other: drawn by weight, 30 to 10.
        let draws = [0, 29, 30, 39];
        let chosen: Vec<_> = draws
            .iter()
            .map(|&d| choose(&l.entries, &[0, 1], 5_000, pair_then(d)))
            .collect();
        assert_eq!(chosen, [Some(0), Some(0), Some(1), Some(1)]);
        // Weight divides the score: 30 ms at weight 30 clearly beats 20 ms at weight 10.
        load(&l.entries[0], 30, 0, 5_000);
        load(&l.entries[1], 20, 0, 5_000);
        assert_eq!(choose(&l.entries, &[0, 1], 5_000, pair_then(39)), Some(0));
    }

    #[test]
    fn an_unknown_instance_borrows_the_others_latency() {
        let (_h, l) = list(&[10, 10]);
        load(&l.entries[0], 10, 0, 5_000);
        l.entries[1].stats.mark_picked(5_000);
        // Idle and unknown: as good as the known one; ties go to the first candidate.
        assert_eq!(choose(&l.entries, &[1, 0], 5_000, first_two()), Some(1));
        // Loaded and unknown: loses.
        l.entries[1].stats.set_for_test(None, 2);
        assert_eq!(choose(&l.entries, &[1, 0], 5_000, first_two()), Some(0));
    }

    #[test]
    fn an_instance_not_picked_for_a_second_is_forced_once() {
        let (_h, l) = list(&[10, 10]);
        load(&l.entries[0], 500, 0, 1_000);
        load(&l.entries[1], 1, 0, 1_999);
        assert_eq!(choose(&l.entries, &[0, 1], 1_999, first_two()), Some(1));
        // 1 s after its last pick the slow one is forced, once.
        assert_eq!(choose(&l.entries, &[0, 1], 2_000, first_two()), Some(0));
        assert_eq!(choose(&l.entries, &[0, 1], 2_001, first_two()), Some(1));
    }

    #[test]
    fn random_pairs_are_distinct() {
        let (_h, l) = list(&[10, 10, 10]);
        for e in &l.entries {
            load(e, 10, 0, 0);
        }
        // rand returning 0 twice must still compare two different candidates.
        let mut calls = Vec::new();
        let chosen = choose(&l.entries, &[0, 1, 2], 10, |n| {
            calls.push(n);
            0
        });
        assert_eq!(calls[..2], [3, 2]);
        assert!(matches!(chosen, Some(0 | 1)));
    }

    #[test]
    fn picker_yields_each_instance_once_open_ones_last() {
        let (health, l) = list(&[10, 10, 10]);
        // Instance 2's breaker is open.
        l.entries[2].stats.refuse_for_test();
        let list = Arc::new(l);
        let picker = P2cPicker {
            list: list.clone(),
            health,
            call: None,
            earlier: Vec::new(),
            yielded: Vec::new(),
        };
        let picked: Vec<_> = picker.collect();
        assert_eq!(picked.len(), 3);
        assert_eq!(picked[2], list.entries[2].address);
        assert_ne!(picked[0], picked[1]);
    }

    #[test]
    fn picker_puts_earlier_attempts_last() {
        let (health, l) = list(&[10, 10]);
        let list = Arc::new(l);
        let first = list.entries[0].address.clone();
        let picker = P2cPicker {
            list: list.clone(),
            health,
            call: None,
            earlier: vec![first.clone()],
            yielded: Vec::new(),
        };
        let picked: Vec<_> = picker.collect();
        assert_eq!(picked, [list.entries[1].address.clone(), first]);
    }
}
