//! When a set next needs looking at without any file event: the next threshold crossing of its
//! live material. Pure: `now` comes in, nothing reads a clock.

/// The crossings that matter for one set, Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Latest not-before along the chain.
    pub not_before: i64,
    /// Earliest not-after along the chain.
    pub not_after: i64,
    /// Warn this many seconds before `not_after`.
    pub warn_before: i64,
    /// Fail readiness this many seconds before `not_after`.
    pub fail_ready_before: i64,
}

/// The first crossing strictly after `now`: not-before of a future cert, the warning point,
/// the readiness point, or the moment just past expiry.
pub fn next_wakeup(t: &Thresholds, now: i64) -> Option<i64> {
    [
        t.not_before,
        t.not_after.saturating_sub(t.warn_before),
        t.not_after.saturating_sub(t.fail_ready_before),
        t.not_after.saturating_add(1),
    ]
    .into_iter()
    .filter(|&at| at > now)
    .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        not_before: 1_000,
        not_after: 100_000,
        warn_before: 7_000,
        fail_ready_before: 1_000,
    };

    #[test]
    fn walks_through_each_crossing_in_order() {
        assert_eq!(next_wakeup(&T, 0), Some(1_000));
        assert_eq!(next_wakeup(&T, 1_000), Some(93_000));
        assert_eq!(next_wakeup(&T, 93_000), Some(99_000));
        assert_eq!(next_wakeup(&T, 99_000), Some(100_001));
        assert_eq!(next_wakeup(&T, 100_001), None);
    }

    #[test]
    fn zero_thresholds_collapse_to_expiry() {
        let t = Thresholds {
            warn_before: 0,
            fail_ready_before: 0,
            ..T
        };
        assert_eq!(next_wakeup(&t, 50_000), Some(100_000));
        assert_eq!(next_wakeup(&t, 100_000), Some(100_001));
    }
}
