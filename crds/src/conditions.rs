//! Helpers for `status.conditions`, shared by every controller that writes Airlock status.
//!
//! Conditions are a map-list keyed by `type`. [`set`] keeps `lastTransitionTime` when a condition's
//! status does not change, so a controller can rewrite its conditions on every reconcile without
//! making them look freshly changed. The functions are pure: callers pass the current time.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The condition every Airlock kind reports: `True` when the object is valid and in effect.
pub const READY: &str = "Ready";

/// The `status` of a condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// The controller cannot tell (yet).
    Unknown,
}

impl Status {
    /// The API spelling: `True`, `False` or `Unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

impl From<bool> for Status {
    fn from(holds: bool) -> Self {
        if holds { Self::True } else { Self::False }
    }
}

/// Builds a condition observed at `now` for `observed_generation`.
pub fn new(
    type_: &str,
    status: impl Into<Status>,
    reason: &str,
    message: impl Into<String>,
    observed_generation: Option<i64>,
    now: Time,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: status.into().as_str().to_owned(),
        reason: reason.to_owned(),
        message: message.into(),
        observed_generation,
        last_transition_time: now,
    }
}

/// Builds a `Ready` condition observed at `now`.
pub fn ready(
    status: impl Into<Status>,
    reason: &str,
    message: impl Into<String>,
    observed_generation: Option<i64>,
    now: Time,
) -> Condition {
    new(READY, status, reason, message, observed_generation, now)
}

/// Sets `condition` in `conditions`, replacing any condition of the same type.
///
/// When the status is unchanged, the existing `lastTransitionTime` is kept. Returns whether anything
/// visible changed, so callers can skip a status write when nothing did.
pub fn set(conditions: &mut Vec<Condition>, mut condition: Condition) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == condition.type_) {
        Some(existing) => {
            if existing.status == condition.status {
                condition.last_transition_time = existing.last_transition_time.clone();
            }
            let changed = *existing != condition;
            *existing = condition;
            changed
        }
        None => {
            conditions.push(condition);
            true
        }
    }
}

/// The condition of type `type_`, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of type `type_` is present with status `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == Status::True.as_str())
}

/// Whether the `Ready` condition is present with status `True`.
pub fn is_ready(conditions: &[Condition]) -> bool {
    is_true(conditions, READY)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).expect("valid timestamp"))
    }

    #[test]
    fn setting_a_new_type_appends_it() {
        let mut conditions = vec![new("Synced", true, "Synced", "", Some(1), at(10))];
        assert!(set(&mut conditions, ready(true, "Ready", "ok", Some(1), at(20))));
        assert_eq!(conditions.len(), 2);
        assert_eq!(conditions[1].type_, READY);
        assert_eq!(conditions[1].last_transition_time, at(20));
    }

    #[test]
    fn unchanged_status_keeps_the_transition_time() {
        let mut conditions = vec![ready(true, "Ready", "3 sidecars", Some(1), at(10))];
        let changed = set(
            &mut conditions,
            ready(true, "Ready", "4 sidecars", Some(2), at(20)),
        );
        assert!(changed, "message and generation changed");
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time, at(10));
        assert_eq!(conditions[0].message, "4 sidecars");
        assert_eq!(conditions[0].observed_generation, Some(2));
    }

    #[test]
    fn identical_condition_reports_no_change() {
        let mut conditions = vec![ready(true, "Ready", "ok", Some(1), at(10))];
        assert!(!set(&mut conditions, ready(true, "Ready", "ok", Some(1), at(99))));
        assert_eq!(conditions[0].last_transition_time, at(10));
    }

    #[test]
    fn changed_status_takes_the_new_transition_time() {
        let mut conditions = vec![ready(true, "Ready", "ok", Some(1), at(10))];
        assert!(set(
            &mut conditions,
            ready(false, "ProfileNotFound", "no profile strict", Some(1), at(20))
        ));
        assert_eq!(conditions[0].status, "False");
        assert_eq!(conditions[0].reason, "ProfileNotFound");
        assert_eq!(conditions[0].last_transition_time, at(20));
    }

    #[test]
    fn find_and_is_ready_look_at_the_ready_type_only() {
        let mut conditions = vec![new("Synced", true, "Synced", "", None, at(1))];
        assert!(!is_ready(&conditions));
        assert!(find(&conditions, READY).is_none());
        assert!(is_true(&conditions, "Synced"));

        set(
            &mut conditions,
            ready(Status::Unknown, "Pending", "", None, at(2)),
        );
        assert!(!is_ready(&conditions));
        set(&mut conditions, ready(true, "Ready", "", None, at(3)));
        assert!(is_ready(&conditions));
        assert_eq!(find(&conditions, READY).map(|c| c.reason.as_str()), Some("Ready"));
    }

    #[test]
    fn status_spellings_match_the_api() {
        assert_eq!(Status::from(true).as_str(), "True");
        assert_eq!(Status::from(false).as_str(), "False");
        assert_eq!(Status::Unknown.as_str(), "Unknown");
    }
}
