//! Kubelet's restart and image-pull backoff (client-go's `flowcontrol.Backoff`): 10 s doubling
//! to 5 min, forgotten once 10 min (twice the maximum) passed since it last grew, so a
//! container that ran for 10 min restarts after 10 s again.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

/// The first delay.
pub const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
/// The longest delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A backoff untouched for this long starts again from [`BACKOFF_INITIAL`].
pub const BACKOFF_RESET: Duration = Duration::from_secs(600);

/// The backoff of one container (or image).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The current delay.
    pub delay: Duration,
    /// When it last grew: the event (a container's exit, a failed pull) it was computed for.
    pub last_update: Timestamp,
}

/// `later - earlier`, zero when negative.
pub fn elapsed(later: Timestamp, earlier: Timestamp) -> Duration {
    Duration::try_from(later.duration_since(earlier)).unwrap_or_default()
}

/// `t + d`, saturating.
pub fn add(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(d).unwrap_or(Timestamp::MAX)
}

impl Backoff {
    /// The backoff after an event at `event_time`: the initial delay the first time (or when
    /// `prev` expired), else twice `prev`'s, at most [`BACKOFF_MAX`].
    pub fn next(prev: Option<&Backoff>, event_time: Timestamp) -> Backoff {
        let delay = match prev {
            Some(p) if elapsed(event_time, p.last_update) <= BACKOFF_RESET => (p.delay * 2).min(BACKOFF_MAX),
            _ => BACKOFF_INITIAL,
        };
        Backoff { delay, last_update: event_time }
    }

    /// Until when a retry after an event at `event_time` must wait (`None`: retry now).
    pub fn wait_until(prev: Option<&Backoff>, event_time: Timestamp, now: Timestamp) -> Option<Timestamp> {
        let p = prev?;
        if elapsed(now, p.last_update) > BACKOFF_RESET {
            return None;
        }
        let until = add(event_time, p.delay);
        (now < until).then_some(until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("a valid second")
    }

    #[test]
    fn doubles_to_the_maximum() {
        let mut b: Option<Backoff> = None;
        let mut delays = Vec::new();
        for i in 0..8 {
            let n = Backoff::next(b.as_ref(), at(1000 + i * 10));
            delays.push(n.delay.as_secs());
            b = Some(n);
        }
        assert_eq!(delays, vec![10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn resets_after_ten_minutes() {
        let b = Backoff { delay: Duration::from_secs(160), last_update: at(1000) };
        assert_eq!(Backoff::next(Some(&b), at(1600)).delay, Duration::from_secs(300));
        assert_eq!(Backoff::next(Some(&b), at(1601)).delay, BACKOFF_INITIAL);
        assert_eq!(Backoff::wait_until(Some(&b), at(1601), at(1602)), None);
    }

    #[test]
    fn waits_from_the_event() {
        let table: Vec<(Option<Backoff>, i64, i64, Option<i64>)> = vec![
            (None, 100, 100, None),
            (Some(Backoff { delay: BACKOFF_INITIAL, last_update: at(90) }), 100, 100, Some(110)),
            (Some(Backoff { delay: BACKOFF_INITIAL, last_update: at(90) }), 100, 109, Some(110)),
            (Some(Backoff { delay: BACKOFF_INITIAL, last_update: at(90) }), 100, 110, None),
            (Some(Backoff { delay: Duration::from_secs(40), last_update: at(90) }), 100, 139, Some(140)),
        ];
        for (b, event, now, want) in table {
            assert_eq!(
                Backoff::wait_until(b.as_ref(), at(event), at(now)),
                want.map(at),
                "{b:?} {event} {now}"
            );
        }
    }
}
