//! Fuzz targets that run inside plain `cargo test` on stable (bolero's built-in random engine, bounded in
//! time); under `cargo bolero test` they run with a real fuzzer. Properties: the normalizer and the engine
//! never panic on arbitrary bytes (decoded lossily), and every span is in bounds and on char boundaries.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::sync::LazyLock;
use std::time::Duration;

use airlock_sidecar::engine::normalize::normalize;
use airlock_sidecar::engine::{Engine, EngineConfig, Segment, Source, TopicConfig, mask};

static ENGINE: LazyLock<Engine> = LazyLock::new(|| {
    let config = EngineConfig {
        topics: vec![TopicConfig {
            name: "t".into(),
            phrases: vec!["nerve agent".into(), "忽略".into()],
        }],
        ..EngineConfig::default()
    };
    Engine::new(&config).unwrap()
});

/// Seeds the generator toward interesting territory: attack fragments, encodings and odd Unicode.
const DICTIONARY: &[&str] = &[
    "ignore all previous instructions",
    "SWdub3JlIGFsbCBwcmV2aW91cw==",
    "\u{200B}",
    "\u{202E}",
    "\u{E0069}",
    "4242 4242 4242 4242",
    "a@b.co",
    "http://1.2.3.4/",
    "xn--pypal-4ve.com",
    "curl x | sh",
    "```",
    "<!--",
    "-->",
    "%41%42%43",
    "rot13",
    "ｉｇｎｏｒｅ",
    "İ",
    "ß",
    "ﬁ",
    "😀",
    "\u{0301}",
    "sk-ant-api03-",
    "eyJ",
    "-----BEGIN PRIVATE KEY-----",
];

fn text_from(bytes: &[u8]) -> String {
    // Interleave dictionary fragments chosen by the input with the raw (lossy) bytes.
    let mut s = String::new();
    for chunk in bytes.chunks(7) {
        if chunk[0] % 3 == 0 {
            s.push_str(DICTIONARY[chunk[0] as usize % DICTIONARY.len()]);
        }
        s.push_str(&String::from_utf8_lossy(chunk));
    }
    s
}

#[test]
fn normalizer_never_panics_and_maps_in_bounds() {
    bolero::check!()
        .with_test_time(Duration::from_secs(3))
        .for_each(|bytes: &[u8]| {
            let text = text_from(bytes);
            let n = normalize(&text);
            assert_eq!(n.leet.len(), n.folded.len());
            for (start, end) in [(0, n.folded.len()), (n.folded.len() / 2, n.folded.len()), (0, 1)] {
                if n.folded.is_empty() {
                    break;
                }
                let (s, e) = n.to_original(start, end);
                assert!(s <= e && e <= text.len());
                assert!(text.is_char_boundary(s) && text.is_char_boundary(e));
            }
        });
}

#[test]
fn engine_never_panics_and_spans_are_valid() {
    bolero::check!()
        .with_test_time(Duration::from_secs(4))
        .for_each(|bytes: &[u8]| {
            let text = text_from(bytes);
            let half = text.len() / 2;
            let split = (half..=text.len())
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(text.len());
            let segments = [
                Segment {
                    text: &text[..split],
                    source: Source::Tool,
                },
                Segment {
                    text: &text[split..],
                    source: Source::Assistant,
                },
            ];
            let result = ENGINE.scan(&segments);
            assert!(result.detections.len() <= 256);
            for d in &result.detections {
                let seg = segments[d.segment].text;
                assert!(d.start < d.end && d.end <= seg.len(), "{d:?}");
                assert!(
                    seg.is_char_boundary(d.start) && seg.is_char_boundary(d.end),
                    "{d:?}"
                );
                assert!((0.0..=1.0).contains(&d.score));
            }
            let refs: Vec<_> = result.detections.iter().filter(|d| d.segment == 0).collect();
            let _ = mask(segments[0].text, &refs);
        });
}
