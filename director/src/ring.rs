//! Consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam,
//! SODA 2018): a key (a stream's variant) starts at its point on a ring of
//! edges and takes the first edge, clockwise, whose load is under its bound,
//! `ceil((1 + ε) × (total + 1) × weight / total weight)`. So a stream's
//! viewers go to its home edge until that one is full, then to the next edges
//! on the ring, always the same ones: each edge holds few streams' segments,
//! a popular stream spreads over as many edges as its audience needs, no
//! edge carries more than (1 + ε) times its share, and when an edge leaves
//! only its viewers move (to its ring neighbours).

use std::hash::{Hash, Hasher};

/// Points of the heaviest edge on the ring (more: a smoother split); the
/// others get their weight's share of it, at least one. Weights are edges'
/// capacities in viewers (1000 by default), so points per unit of weight
/// would put tens of thousands of points per edge on a ring rebuilt at every
/// change of the farm.
pub const POINTS_OF_HEAVIEST: u32 = 64;

/// One edge on the ring.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    /// Stable id (the node id).
    pub id: String,
    /// Where viewers reach it (`http://HOST:PORT`).
    pub url: String,
    /// Relative capacity (viewers it can hold); at least 1.
    pub weight: u32,
}

/// The ring over a set of edges.
#[derive(Clone, Debug, Default)]
pub struct Ring {
    members: Vec<Member>,
    /// (point, member index), sorted by point.
    points: Vec<(u64, usize)>,
}

/// A stable 64-bit hash (FNV-1a then a finaliser), the same in every
/// director process, so several directors agree on every key's home.
pub fn hash(value: impl Hash) -> u64 {
    struct Fnv(u64);
    impl Hasher for Fnv {
        fn finish(&self) -> u64 {
            // splitmix64 finaliser: spreads FNV's low-entropy high bits.
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn write(&mut self, bytes: &[u8]) {
            for &b in bytes {
                self.0 ^= u64::from(b);
                self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    value.hash(&mut h);
    h.finish()
}

impl Ring {
    /// A ring over `members` (in any order: the ring depends only on ids and weights).
    pub fn new(members: Vec<Member>) -> Ring {
        let heaviest = members.iter().map(|m| m.weight.max(1)).max();
        let mut points = Vec::new();
        for (i, m) in members.iter().enumerate() {
            let share = u64::from(m.weight.max(1)) * u64::from(POINTS_OF_HEAVIEST)
                / u64::from(heaviest.unwrap_or(1));
            for p in 0..u32::try_from(share.max(1)).unwrap_or(POINTS_OF_HEAVIEST) {
                points.push((hash((&m.id, p)), i));
            }
        }
        points.sort_unstable();
        Ring { members, points }
    }

    /// The edges.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Whether there is no edge.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The bound of member `i` when `total` viewers are placed (counting the
    /// one being placed).
    pub fn bound(&self, i: usize, total: u64, epsilon: f64) -> u64 {
        let weights: u64 = self
            .members
            .iter()
            .map(|m| u64::from(m.weight.max(1)))
            .sum();
        let share = total as f64 * f64::from(self.members[i].weight.max(1)) / weights.max(1) as f64;
        ((1.0 + epsilon.max(0.0)) * share).ceil().max(1.0) as u64
    }

    /// Members in ring order from `key`'s point, each once; it stops as soon
    /// as every member was named (a ring has up to
    /// [`POINTS_OF_HEAVIEST`] points per edge).
    pub fn walk(&self, key: u64) -> impl Iterator<Item = usize> + '_ {
        let start = self.points.partition_point(|&(p, _)| p < key);
        let mut seen = vec![false; self.members.len()];
        let mut left = self.members.len();
        let mut k = 0;
        std::iter::from_fn(move || {
            while left > 0 && k < self.points.len() {
                let i = self.points[(start + k) % self.points.len()].1;
                k += 1;
                if !std::mem::replace(&mut seen[i], true) {
                    left -= 1;
                    return Some(i);
                }
            }
            None
        })
    }

    /// The first member from `key` whose `load` is under its `bound`; the
    /// key's home when every member is full.
    pub fn choose(
        &self,
        key: u64,
        load: impl Fn(usize) -> u64,
        bound: impl Fn(usize) -> u64,
    ) -> Option<usize> {
        let mut first = None;
        for i in self.walk(key) {
            first.get_or_insert(i);
            if load(i) < bound(i) {
                return Some(i);
            }
        }
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(n: usize) -> Ring {
        Ring::new(
            (0..n)
                .map(|i| Member {
                    id: format!("edge-{i}"),
                    url: format!("http://edge-{i}"),
                    weight: 1,
                })
                .collect(),
        )
    }

    /// Places `audiences[s]` viewers of stream `s`, one at a time, interleaved.
    fn place(ring: &Ring, audiences: &[u64], epsilon: f64) -> (Vec<u64>, Vec<Vec<u64>>) {
        let mut load = vec![0u64; ring.members().len()];
        let mut per_stream = vec![vec![0u64; ring.members().len()]; audiences.len()];
        let mut left = audiences.to_vec();
        let mut total = 0;
        while left.iter().any(|&l| l > 0) {
            for (s, l) in left.iter_mut().enumerate() {
                if *l == 0 {
                    continue;
                }
                *l -= 1;
                let i = ring
                    .choose(
                        hash(format!("stream-{s}")),
                        |i| load[i],
                        |i| ring.bound(i, total + 1, epsilon),
                    )
                    .expect("an edge");
                load[i] += 1;
                per_stream[s][i] += 1;
                total += 1;
            }
        }
        (load, per_stream)
    }

    #[test]
    fn every_edge_stays_within_its_bound_and_streams_spread_only_as_needed() {
        let r = ring(6);
        // One stream with half the audience, a long tail.
        let audiences = [300, 100, 60, 40, 30, 20, 20, 10, 10, 5, 5];
        let total: u64 = audiences.iter().sum();
        let (load, per_stream) = place(&r, &audiences, 0.25);
        let avg = total as f64 / 6.0;
        for (i, l) in load.iter().enumerate() {
            assert!(
                *l as f64 <= (1.25 * avg).ceil() + 1.0,
                "edge {i}: {l} > 1.25 x {avg}"
            );
        }
        let edges_of = |s: usize| per_stream[s].iter().filter(|&&n| n > 0).count();
        // The big stream needs several edges; the tail stays on one or two.
        assert!(edges_of(0) >= 3, "{:?}", per_stream[0]);
        let tail: usize = (3..audiences.len()).map(edges_of).sum();
        assert!(
            tail <= 2 * (audiences.len() - 3),
            "tail spread over {tail} edges"
        );
        let all: usize = (0..audiences.len()).map(edges_of).sum();
        assert!(
            all < audiences.len() * 6 / 2,
            "streams on {all} edges in all"
        );
    }

    #[test]
    fn a_lost_edge_moves_only_its_own_keys() {
        let full = ring(5);
        let mut members = full.members().to_vec();
        members.remove(2);
        let less = Ring::new(members);
        let mut moved = 0;
        for k in 0..2000u64 {
            let key = hash(k);
            let a = &full.members()[full.walk(key).next().expect("one")].id;
            let b = &less.members()[less.walk(key).next().expect("one")].id;
            if a != "edge-2" {
                assert_eq!(a, b, "key {k} moved though its edge stayed");
            } else {
                moved += 1;
            }
        }
        assert!(
            (200..=700).contains(&moved),
            "{moved} of 2000 keys were on one of 5 edges"
        );
    }

    #[test]
    fn weights_shift_the_share() {
        let r = Ring::new(vec![
            Member {
                id: "big".into(),
                url: "http://big".into(),
                weight: 3,
            },
            Member {
                id: "small".into(),
                url: "http://small".into(),
                weight: 1,
            },
        ]);
        assert_eq!(r.bound(0, 100, 0.0), 75);
        assert_eq!(r.bound(1, 100, 0.0), 25);
        let (load, _) = place(&r, &[400], 0.1);
        assert!(load[0] > load[1] * 2, "{load:?}");
    }

    #[test]
    fn an_empty_ring_chooses_nothing() {
        assert_eq!(Ring::new(vec![]).choose(1, |_| 0, |_| 1), None);
    }
}
