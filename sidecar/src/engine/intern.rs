//! Detector names are `&'static str` so detections stay cheap to copy; names that come from a policy
//! (custom patterns, topics) are interned once per distinct name, so policy reloads do not grow memory.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

fn intern(name: String) -> &'static str {
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let names = NAMES.get_or_init(|| Mutex::new(HashSet::new()));
    let mut guard = match names.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some(existing) = guard.get(name.as_str()) {
        return existing;
    }
    let leaked: &'static str = Box::leak(name.into_boxed_str());
    guard.insert(leaked);
    leaked
}

/// `dlp.custom.<name>`.
pub(crate) fn custom_detector(name: &str) -> &'static str {
    intern(format!("dlp.custom.{name}"))
}

/// `topic.<name>`.
pub(crate) fn topic_detector(name: &str) -> &'static str {
    intern(format!("topic.{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_name_is_interned_once() {
        let a = topic_detector("weapons");
        let b = topic_detector("weapons");
        assert!(std::ptr::eq(a, b));
        assert_eq!(a, "topic.weapons");
    }
}
