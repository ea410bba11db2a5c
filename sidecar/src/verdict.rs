//! The verdict: which action a scan result calls for under a profile's action table. Pure; no I/O.
//!
//! Every detection gets the action its rule names. The strongest action wins: `block`, then `mask`, then
//! `alert`, then `allow`. `mask` is only honoured for a span the engine can mask ([`Detection::maskable`]); a
//! detection whose rule says `mask` on a span that cannot be masked is blocked, because letting it through
//! unchanged would silently undo what the profile asked for. Detections whose action is `allow` are
//! dropped from the verdict: the profile says to record nothing about them.

use std::collections::HashMap;

use serde::Serialize;

use crate::engine::{Category, Detection, ScanResult};

/// What happens to a scanned prompt or response. Ordered weakest to strongest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Alert,
    Mask,
    Block,
}

/// How one family of detections is acted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// The same action whatever the score.
    Always(Action),
    /// `high` for [`Detection::is_high_confidence`] detections, `other` for the rest.
    ByConfidence { high: Action, other: Action },
}

impl Rule {
    fn action(self, detection: &Detection) -> Action {
        match self {
            Rule::Always(action) => action,
            Rule::ByConfidence { high, other } => {
                if detection.is_high_confidence() {
                    high
                } else {
                    other
                }
            }
        }
    }
}

/// A profile's actions, per detection family. Custom patterns and URL detectors can be singled out by
/// their full detector name (`dlp.custom.<name>`, `url.shortener`).
#[derive(Clone, Debug, PartialEq)]
pub struct ActionTable {
    pub injection: Rule,
    pub url: Rule,
    pub code: Rule,
    pub topic: Rule,
    pub pii: Rule,
    pub secret: Rule,
    /// Per-detector overrides, checked first.
    pub detectors: HashMap<String, Rule>,
    /// Custom patterns the table does not name (none in a well-formed profile).
    pub custom: Rule,
}

impl ActionTable {
    /// The same rule for every detection.
    pub fn uniform(rule: Rule) -> ActionTable {
        ActionTable {
            injection: rule,
            url: rule,
            code: rule,
            topic: rule,
            pii: rule,
            secret: rule,
            detectors: HashMap::new(),
            custom: rule,
        }
    }

    /// The action for one detection, before the maskability check.
    pub fn action_for(&self, detection: &Detection) -> Action {
        if let Some(rule) = self.detectors.get(detection.detector) {
            return rule.action(detection);
        }
        let rule = match detection.category {
            Category::Injection => self.injection,
            Category::Url => self.url,
            Category::Code => self.code,
            Category::Topic => self.topic,
            Category::Dlp if detection.detector.starts_with("secret.") => self.secret,
            Category::Dlp if detection.detector.starts_with("dlp.custom.") => self.custom,
            Category::Dlp => self.pii,
        };
        rule.action(detection)
    }
}

/// One detection with the action it calls for.
#[derive(Clone, Debug, PartialEq)]
pub struct Decided {
    pub detection: Detection,
    pub action: Action,
}

/// The outcome for one prompt or response.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub action: Action,
    /// Detections whose action is not `allow`, in scan order.
    pub detections: Vec<Decided>,
}

impl Verdict {
    /// The detections to mask; non-empty only when the verdict is [`Action::Mask`].
    pub fn to_mask(&self) -> impl Iterator<Item = &Detection> {
        let masking = self.action == Action::Mask;
        self.detections
            .iter()
            .filter(move |d| masking && d.action == Action::Mask)
            .map(|d| &d.detection)
    }
}

/// Applies `table` to `result`.
pub fn decide(table: &ActionTable, result: &ScanResult) -> Verdict {
    let detections: Vec<Decided> = result
        .detections
        .iter()
        .filter_map(|detection| {
            let action = match table.action_for(detection) {
                Action::Mask if !detection.maskable => Action::Block,
                action => action,
            };
            (action != Action::Allow).then(|| Decided {
                detection: detection.clone(),
                action,
            })
        })
        .collect();
    let action = detections.iter().map(|d| d.action).max().unwrap_or(Action::Allow);
    Verdict { action, detections }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::HIGH_CONFIDENCE;

    const ALL: [Action; 4] = [Action::Allow, Action::Alert, Action::Mask, Action::Block];

    fn det(category: Category, detector: &'static str, score: f32, maskable: bool) -> Detection {
        Detection {
            category,
            detector,
            score,
            segment: 0,
            start: 0,
            end: 4,
            maskable,
        }
    }

    fn result(detections: Vec<Detection>) -> ScanResult {
        ScanResult {
            detections,
            truncated: false,
        }
    }

    #[test]
    fn no_detections_means_allow() {
        let v = decide(
            &ActionTable::uniform(Rule::Always(Action::Block)),
            &result(vec![]),
        );
        assert_eq!(v.action, Action::Allow);
        assert!(v.detections.is_empty());
    }

    #[test]
    fn the_strongest_action_wins_for_every_pair() {
        // Two maskable PII detections with per-detector rules: every pair of actions.
        for a in ALL {
            for b in ALL {
                let mut table = ActionTable::uniform(Rule::Always(Action::Allow));
                table.detectors.insert("dlp.email".into(), Rule::Always(a));
                table.detectors.insert("dlp.phone".into(), Rule::Always(b));
                let v = decide(
                    &table,
                    &result(vec![
                        det(Category::Dlp, "dlp.email", 0.9, true),
                        det(Category::Dlp, "dlp.phone", 0.9, true),
                    ]),
                );
                assert_eq!(v.action, a.max(b), "{a:?} + {b:?}");
                let kept = [a, b].iter().filter(|x| **x != Action::Allow).count();
                assert_eq!(v.detections.len(), kept, "{a:?} + {b:?}");
            }
        }
    }

    #[test]
    fn precedence_is_block_mask_alert_allow() {
        assert!(Action::Block > Action::Mask);
        assert!(Action::Mask > Action::Alert);
        assert!(Action::Alert > Action::Allow);
    }

    #[test]
    fn mask_on_an_unmaskable_span_blocks() {
        let table = ActionTable::uniform(Rule::Always(Action::Mask));
        let v = decide(
            &table,
            &result(vec![det(Category::Injection, "injection.override", 0.9, false)]),
        );
        assert_eq!(v.action, Action::Block);
        assert_eq!(v.detections[0].action, Action::Block);
        assert_eq!(v.to_mask().count(), 0);
    }

    #[test]
    fn mask_on_a_maskable_span_masks() {
        let table = ActionTable::uniform(Rule::Always(Action::Mask));
        let v = decide(
            &table,
            &result(vec![det(Category::Dlp, "dlp.credit_card", 0.95, true)]),
        );
        assert_eq!(v.action, Action::Mask);
        assert_eq!(v.to_mask().count(), 1);
    }

    #[test]
    fn nothing_is_masked_when_another_detection_blocks() {
        let mut table = ActionTable::uniform(Rule::Always(Action::Mask));
        table.injection = Rule::Always(Action::Block);
        let v = decide(
            &table,
            &result(vec![
                det(Category::Dlp, "dlp.credit_card", 0.95, true),
                det(Category::Injection, "injection.override", 0.95, false),
            ]),
        );
        assert_eq!(v.action, Action::Block);
        assert_eq!(v.to_mask().count(), 0);
    }

    #[test]
    fn alert_beside_mask_still_masks_only_the_mask_spans() {
        let mut table = ActionTable::uniform(Rule::Always(Action::Alert));
        table.secret = Rule::Always(Action::Mask);
        let v = decide(
            &table,
            &result(vec![
                det(Category::Dlp, "dlp.email", 0.9, true),
                det(Category::Dlp, "secret.aws_access_key", 0.99, true),
            ]),
        );
        assert_eq!(v.action, Action::Mask);
        let masked: Vec<_> = v.to_mask().map(|d| d.detector).collect();
        assert_eq!(masked, ["secret.aws_access_key"]);
    }

    #[test]
    fn by_confidence_splits_at_the_engine_threshold() {
        let table = ActionTable::uniform(Rule::ByConfidence {
            high: Action::Block,
            other: Action::Alert,
        });
        let high = decide(
            &table,
            &result(vec![det(
                Category::Code,
                "code.reverse_shell",
                HIGH_CONFIDENCE,
                false,
            )]),
        );
        assert_eq!(high.action, Action::Block);
        let low = decide(
            &table,
            &result(vec![det(
                Category::Code,
                "code.reverse_shell",
                HIGH_CONFIDENCE - 0.01,
                false,
            )]),
        );
        assert_eq!(low.action, Action::Alert);
    }

    #[test]
    fn families_are_routed_by_category_and_detector_prefix() {
        let table = ActionTable {
            injection: Rule::Always(Action::Block),
            url: Rule::Always(Action::Alert),
            code: Rule::Always(Action::Block),
            topic: Rule::Always(Action::Alert),
            pii: Rule::Always(Action::Alert),
            secret: Rule::Always(Action::Mask),
            detectors: HashMap::from([("dlp.custom.ticket".to_string(), Rule::Always(Action::Block))]),
            custom: Rule::Always(Action::Allow),
        };
        let cases = [
            (
                det(Category::Injection, "injection.override", 0.5, false),
                Action::Block,
            ),
            (det(Category::Url, "url.shortener", 0.5, false), Action::Alert),
            (
                det(Category::Code, "code.download_exec", 0.5, false),
                Action::Block,
            ),
            (det(Category::Topic, "topic.weapons", 0.5, false), Action::Alert),
            (det(Category::Dlp, "dlp.email", 0.5, true), Action::Alert),
            (det(Category::Dlp, "secret.jwt", 0.5, true), Action::Mask),
            (det(Category::Dlp, "dlp.custom.ticket", 0.5, true), Action::Block),
            (det(Category::Dlp, "dlp.custom.other", 0.5, true), Action::Allow),
        ];
        for (d, want) in cases {
            assert_eq!(table.action_for(&d), want, "{}", d.detector);
        }
    }

    #[test]
    fn action_serialises_lowercase() {
        let json = serde_json::to_string(&ALL).unwrap();
        assert_eq!(json, r#"["allow","alert","mask","block"]"#);
    }
}
