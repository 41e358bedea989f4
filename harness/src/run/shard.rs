//! `--shard k/n` (pure): a stable split of the scenario set over `n` CI runners. A scenario
//! goes to a shard by a hash of its name, so adding or removing one scenario moves no other;
//! every matrix cell of a scenario runs in its shard.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 1-based.
    pub k: u32,
    pub n: u32,
}

impl FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a shard; write k/n with 1 <= k <= n, e.g. `2/3`");
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let (k, n): (u32, u32) = (
            k.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if n == 0 || k == 0 || k > n || n > 64 {
            return Err(bad());
        }
        Ok(Shard { k, n })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.k, self.n)
    }
}

impl Shard {
    /// Does the scenario `name` run in this shard?
    pub fn holds(self, name: &str) -> bool {
        fnv1a(name) % u64::from(self.n) == u64::from(self.k - 1)
    }
}

/// FNV-1a, 64 bits: the same on every machine and every Rust release.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_in_exactly_one_shard_and_stable() {
        let names: Vec<String> = (0..22).map(|i| format!("scenario-{i}")).collect();
        for n in 1..=5u32 {
            for name in &names {
                let owners: Vec<u32> = (1..=n).filter(|&k| Shard { k, n }.holds(name)).collect();
                assert_eq!(owners.len(), 1, "{name} in {owners:?} of {n}");
            }
        }
        // Fixed across runs and machines (the hash is ours, not std's randomised one).
        assert_eq!(fnv1a("post1-structured"), fnv1a("post1-structured"));
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!("2/3".parse::<Shard>(), Ok(Shard { k: 2, n: 3 }));
        for bad in ["0/2", "3/2", "1/0", "x", "1/", "/2"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }
}
