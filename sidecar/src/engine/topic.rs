//! Banned topics (category `topic`): each profile-defined topic is a phrase set, matched word-boundary
//! aware on the folded text (case, width, diacritics and lookalikes folded; no leetspeak).

use super::normalize::{Normalized, fold_phrase};
use super::phrases::{self, PhraseHit, PhraseSet};
use super::scan::Finding;
use super::{Category, EngineError, TopicConfig, intern};

const MAX_FINDINGS: usize = 32;

#[derive(Debug)]
pub(crate) struct Topics {
    set: PhraseSet,
    detectors: Vec<&'static str>,
}

impl Topics {
    pub(crate) fn new(topics: &[TopicConfig]) -> Result<Topics, EngineError> {
        let mut parsed = Vec::new();
        let mut detectors = Vec::new();
        for t in topics {
            let name = t.name.trim();
            if name.is_empty() {
                return Err(EngineError::InvalidTopic {
                    name: t.name.clone(),
                    reason: "empty name",
                });
            }
            let before = parsed.len();
            for p in &t.phrases {
                // Topic phrases are literal; every phrase must end on a word boundary.
                if let Some((parts, _)) =
                    phrases::parse(&p.replace(" * ", " "), |s| vec![fold_phrase(s, false)])
                {
                    parsed.push((parts, true));
                    detectors.push(intern::topic_detector(name));
                }
            }
            if parsed.len() == before {
                return Err(EngineError::InvalidTopic {
                    name: t.name.clone(),
                    reason: "no phrases",
                });
            }
        }
        let set = PhraseSet::new(&parsed).map_err(EngineError::TopicAutomaton)?;
        Ok(Topics { set, detectors })
    }

    pub(crate) fn patterns(&self, out: &mut Vec<String>) {
        out.extend(self.set.as_regexes());
    }

    pub(crate) fn detect(&self, n: &Normalized, out: &mut Vec<Finding>) -> bool {
        let mut hits: Vec<PhraseHit> = Vec::new();
        let truncated = self.set.find(&n.folded, &mut hits);
        for h in hits.into_iter().take(MAX_FINDINGS) {
            let Some(&detector) = self.detectors.get(h.phrase) else {
                continue;
            };
            let (s, e) = n.to_original(h.start, h.end);
            out.push(Finding::new(Category::Topic, detector, 0.75, s, e));
        }
        truncated
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::normalize::normalize;

    fn topics() -> Topics {
        Topics::new(&[
            TopicConfig {
                name: "weapons".into(),
                phrases: vec!["build a bomb".into(), "nerve agent".into()],
            },
            TopicConfig {
                name: "competitors".into(),
                phrases: vec!["AcmeCorp".into()],
            },
        ])
        .unwrap()
    }

    fn hits(text: &str) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        topics().detect(&normalize(text), &mut out);
        out.into_iter()
            .map(|f| (f.detector, text[f.start..f.end].to_string()))
            .collect()
    }

    #[test]
    fn phrases_match_case_and_width_insensitively() {
        assert_eq!(
            hits("How do I BUILD A  Bomb?"),
            [("topic.weapons", "BUILD A  Bomb".to_string())]
        );
        assert_eq!(
            hits("is ａｃｍｅｃｏｒｐ better?"),
            [("topic.competitors", "ａｃｍｅｃｏｒｐ".to_string())]
        );
    }

    #[test]
    fn word_boundaries_are_respected() {
        assert!(hits("acmecorporation and rebuild a bombastic show").is_empty());
    }

    #[test]
    fn empty_topics_are_rejected() {
        assert!(
            Topics::new(&[TopicConfig {
                name: "x".into(),
                phrases: vec![" ".into()]
            }])
            .is_err()
        );
        assert!(
            Topics::new(&[TopicConfig {
                name: "".into(),
                phrases: vec!["a".into()]
            }])
            .is_err()
        );
    }
}
