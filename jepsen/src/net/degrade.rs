//! Degraded links: packets dropped at random ([`Degradation::Loss`]) or above a rate
//! ([`Degradation::RateLimit`]), by iptables rules in the same chain as cuts, so
//! [`Network::heal`] removes them too. The kernel here has no netem, so there is no added
//! delay; a lossy or throttled TCP link is slow because TCP retransmits what was dropped.

use serde::{Deserialize, Serialize};

use super::{CUT_CHAIN, NetError, Network, iptables};

/// How a link is degraded, in each direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Degradation {
    /// Each packet is dropped with probability `per_mille / 1000` (1 to 999).
    Loss {
        /// Dropped packets per thousand.
        per_mille: u16,
    },
    /// Packets beyond this many a second (after a burst of as many) are dropped.
    RateLimit {
        /// Packets a second that pass.
        packets_per_sec: u32,
    },
}

impl Degradation {
    /// `lose 25.0%`, `throttle to 100 packets/s`.
    pub fn describe(self) -> String {
        match self {
            Degradation::Loss { per_mille } => format!("lose {:.1}%", f64::from(per_mille) / 10.0),
            Degradation::RateLimit { packets_per_sec } => format!("throttle to {packets_per_sec} packets/s"),
        }
    }

    /// The iptables match arguments (after `-s <peer>`) of a rule that drops what this
    /// degradation drops; `name` names a rate limit's bucket (unique per rule in a namespace).
    fn rule(self, name: &str) -> Result<Vec<String>, NetError> {
        let owned = |args: &[&str]| args.iter().map(|a| a.to_string()).collect();
        match self {
            Degradation::Loss { per_mille } if (1..1000).contains(&per_mille) => {
                let p = format!("{:.3}", f64::from(per_mille) / 1000.0);
                Ok(owned(&["-m", "statistic", "--mode", "random", "--probability", &p]))
            }
            Degradation::RateLimit { packets_per_sec } if packets_per_sec > 0 => {
                let rate = format!("{packets_per_sec}/sec");
                let burst = packets_per_sec.to_string();
                Ok(owned(&[
                    "-m",
                    "hashlimit",
                    "--hashlimit-above",
                    &rate,
                    "--hashlimit-burst",
                    &burst,
                    "--hashlimit-name",
                    name,
                ]))
            }
            other => Err(NetError::Degradation(format!("{other:?} is out of range"))),
        }
    }
}

impl Network {
    /// Degrades the link between hosts `a` and `b` in both directions (each host drops what
    /// it receives from the other). Degrading a link twice adds both rules.
    pub async fn degrade(&self, a: usize, b: usize, how: Degradation) -> Result<(), NetError> {
        let (ha, hb) = (self.host(a)?, self.host(b)?);
        if a == b {
            return Err(NetError::SameHost(a));
        }
        // Checked before anything is recorded or changed.
        how.rule("")?;
        // Recorded before the rules go in: heal flushes every namespace whatever happens here.
        self.lock_degraded().insert((a.min(b), a.max(b)));
        for (ns, peer, (from, to)) in [(&ha.ns, hb.ip, (b, a)), (&hb.ns, ha.ip, (a, b))] {
            let peer = peer.to_string();
            let mut args: Vec<String> =
                ["-A", CUT_CHAIN, "-s", &peer].iter().map(|a| a.to_string()).collect();
            args.extend(how.rule(&format!("fj{from}to{to}"))?);
            args.extend(["-j".to_string(), "DROP".to_string()]);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            iptables(ns, &args).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_what_each_degradation_drops() -> Result<(), NetError> {
        assert_eq!(
            Degradation::Loss { per_mille: 250 }.rule("x")?,
            ["-m", "statistic", "--mode", "random", "--probability", "0.250"]
        );
        assert_eq!(
            Degradation::RateLimit { packets_per_sec: 80 }.rule("fj0to1")?,
            [
                "-m",
                "hashlimit",
                "--hashlimit-above",
                "80/sec",
                "--hashlimit-burst",
                "80",
                "--hashlimit-name",
                "fj0to1"
            ]
        );
        for bad in [
            Degradation::Loss { per_mille: 0 },
            Degradation::Loss { per_mille: 1000 },
            Degradation::RateLimit { packets_per_sec: 0 },
        ] {
            assert!(matches!(bad.rule("x"), Err(NetError::Degradation(_))), "{bad:?}");
        }
        assert_eq!(Degradation::Loss { per_mille: 125 }.describe(), "lose 12.5%");
        assert_eq!(Degradation::RateLimit { packets_per_sec: 50 }.describe(), "throttle to 50 packets/s");
        Ok(())
    }
}
