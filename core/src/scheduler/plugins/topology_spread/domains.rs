//! Matching pods per topology domain: a short list while there are few domains (zones), a hash
//! map once there are many (hostnames).

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

/// Up to this many domains are kept in a list searched in order: comparing a few short
/// strings is cheaper than hashing one.
const FEW: usize = 8;

/// The matching pods in each domain (a value of the constraint's topology key), kube-scheduler's
/// `TpValueToMatchNum`. A domain is present once a node of it was counted, even with no
/// matching pod. `K` is a borrowed `&str` while a cycle counts over the snapshot and an owned
/// `Box<str>` in the cycle state.
#[derive(Clone, Debug)]
pub(super) enum Domains<K> {
    /// At most [`FEW`] domains, in the order first seen.
    Few(Vec<(K, i64)>),
    /// More domains.
    Many(HashMap<K, i64>),
}

impl<K> Default for Domains<K> {
    fn default() -> Self {
        Domains::Few(Vec::new())
    }
}

/// A domain's name, whether borrowed or owned.
fn name<K: Borrow<str>>(k: &K) -> &str {
    k.borrow()
}

impl<K: Borrow<str> + Eq + Hash> Domains<K> {
    /// The matching pods in `domain`, `None` if no node of it was counted.
    pub(super) fn get(&self, domain: &str) -> Option<i64> {
        match self {
            Domains::Few(list) => list.iter().find(|(k, _)| name(k) == domain).map(|&(_, n)| n),
            Domains::Many(map) => map.get(domain).copied(),
        }
    }

    /// Adds `n` matching pods to `domain`, adding the domain if new.
    pub(super) fn add(&mut self, domain: K, n: i64) {
        match self {
            Domains::Few(list) => {
                if let Some((_, count)) = list.iter_mut().find(|(k, _)| name(k) == name(&domain)) {
                    *count += n;
                } else if list.len() < FEW {
                    list.push((domain, n));
                } else {
                    let mut map: HashMap<K, i64> = std::mem::take(list).into_iter().collect();
                    map.insert(domain, n);
                    *self = Domains::Many(map);
                }
            }
            Domains::Many(map) => *map.entry(domain).or_insert(0) += n,
        }
    }

    /// Adds `n` matching pods to `domain` if present; false if it is not.
    pub(super) fn adjust(&mut self, domain: &str, n: i64) -> bool {
        let count = match self {
            Domains::Few(list) => list.iter_mut().find(|(k, _)| name(k) == domain).map(|(_, count)| count),
            Domains::Many(map) => map.get_mut(domain),
        };
        count.map(|c| *c += n).is_some()
    }

    /// How many domains there are.
    pub(super) fn len(&self) -> usize {
        match self {
            Domains::Few(list) => list.len(),
            Domains::Many(map) => map.len(),
        }
    }

    /// The fewest matching pods in a domain, `None` without domains.
    pub(super) fn fewest(&self) -> Option<i64> {
        match self {
            Domains::Few(list) => list.iter().map(|&(_, n)| n).min(),
            Domains::Many(map) => map.values().copied().min(),
        }
    }
}

impl Domains<&str> {
    /// The same counts with owned domain names, to keep in the cycle state.
    pub(super) fn into_owned(self) -> Domains<Box<str>> {
        match self {
            Domains::Few(list) => Domains::Few(list.into_iter().map(|(k, n)| (Box::from(k), n)).collect()),
            Domains::Many(map) => Domains::Many(map.into_iter().map(|(k, n)| (Box::from(k), n)).collect()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    /// Compares every query on `counts` with `model`.
    fn compare<K: Borrow<str> + Eq + Hash>(
        counts: &Domains<K>,
        model: &BTreeMap<String, i64>,
    ) -> Result<(), TestCaseError> {
        prop_assert_eq!(counts.len(), model.len());
        prop_assert_eq!(counts.fewest(), model.values().copied().min());
        for d in 0..DOMAINS {
            let name = format!("zone-{d}");
            prop_assert_eq!(counts.get(&name), model.get(&name).copied(), "{}", name);
        }
        prop_assert_eq!(matches!(counts, Domains::Few(_)), model.len() <= FEW, "representation");
        Ok(())
    }

    const DOMAINS: u8 = 30;

    /// Adds each `(domain, n)` to borrowed and owned `Domains` and to a map, and compares them.
    fn check(adds: &[(u8, i64)]) -> Result<(), TestCaseError> {
        let names: Vec<String> = adds.iter().map(|&(d, _)| format!("zone-{d}")).collect();
        let mut borrowed: Domains<&str> = Domains::default();
        // The preemption hooks add to the owned counts directly.
        let mut owned: Domains<Box<str>> = Domains::default();
        let mut model = BTreeMap::new();
        for (name, &(_, n)) in names.iter().zip(adds) {
            borrowed.add(name.as_str(), n);
            owned.add(Box::from(name.as_str()), n);
            *model.entry(name.clone()).or_insert(0) += n;
        }
        compare(&borrowed, &model)?;
        compare(&owned, &model)?;
        compare(&borrowed.into_owned(), &model)
    }

    proptest! {
        #[test]
        fn counts_match_a_map(adds in proptest::collection::vec((0..DOMAINS, -3i64..5), 0..60)) {
            check(&adds)?;
        }
    }

    #[test]
    fn the_ninth_domain_switches_to_a_map_keeping_the_counts() {
        let names: Vec<String> = (0..=FEW).map(|i| format!("z{i}")).collect();
        let mut d: Domains<&str> = Domains::default();
        for (i, name) in names.iter().enumerate() {
            d.add(name, i64::try_from(i).expect("small"));
            assert_eq!(matches!(d, Domains::Few(_)), i < FEW, "after {} domains", i + 1);
        }
        d.add("z0", 7);
        assert_eq!(
            (d.len(), d.get("z0"), d.get(&names[FEW]), d.fewest()),
            (FEW + 1, Some(7), Some(8), Some(1))
        );
        assert_eq!(d.get("elsewhere"), None);
    }
}
