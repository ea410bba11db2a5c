//! What "high confidence" means. The sidecar's `balanced` profile blocks high-confidence detections and
//! only alerts on the rest, so this threshold is part of the policy contract.

use super::Detection;

/// Detections scoring at least this are high-confidence.
pub const HIGH_CONFIDENCE: f32 = 0.8;

impl Detection {
    /// `score >= HIGH_CONFIDENCE`.
    pub fn is_high_confidence(&self) -> bool {
        self.score >= HIGH_CONFIDENCE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Category;

    fn det(score: f32) -> Detection {
        Detection {
            category: Category::Dlp,
            detector: "dlp.email",
            score,
            segment: 0,
            start: 0,
            end: 1,
            maskable: true,
        }
    }

    #[test]
    fn threshold_is_inclusive() {
        assert!(det(0.8).is_high_confidence());
        assert!(det(1.0).is_high_confidence());
        assert!(!det(0.79).is_high_confidence());
    }
}
