//! Overlapping Aho-Corasick search in interleaved lanes.
//!
//! A DFA search is a chain of dependent table loads: each byte's next state needs the previous one, so a
//! single search waits on memory at every byte (about 3.5 ns per byte over the injection phrases' 2 MiB
//! table). [`for_each_match`] cuts the text into [`LANES`] pieces and steps one DFA per piece in the same
//! loop, so the loads of different lanes overlap. Each lane starts `max_pattern_len - 1` bytes before its
//! piece, so by the piece's first byte its state is what a search from the start would have; it reports
//! only the matches that *end* inside its piece. Every match is therefore reported exactly once, as by
//! `AhoCorasick::find_overlapping_iter`, though not in text order.

use aho_corasick::automaton::Automaton as _;
use aho_corasick::dfa::DFA;
use aho_corasick::{Anchored, MatchKind, StartKind};

/// Lanes stepped together. Four measured fastest on the injection phrases (two and eight were slower).
const LANES: usize = 4;
/// Texts shorter than this are searched in one lane: the lanes' overlaps would cost more than they save.
const MIN_LANED_LEN: usize = 512;

/// A DFA for overlapping search: standard match semantics, unanchored starts only (a DFA with both kinds
/// holds two tables), no prefilter (the lanes step every byte).
pub(crate) fn build<I, P>(patterns: I) -> Result<DFA, aho_corasick::BuildError>
where
    I: IntoIterator<Item = P>,
    P: AsRef<[u8]>,
{
    aho_corasick::dfa::Builder::new()
        .match_kind(MatchKind::Standard)
        .start_kind(StartKind::Unanchored)
        .prefilter(false)
        .build(patterns)
}

/// Calls `f(pattern, start)` for every occurrence of every pattern in `text`, overlapping ones included,
/// in no particular order, until `f` returns `false`. Returns `false` when `f` stopped the search.
pub(crate) fn for_each_match(dfa: &DFA, text: &[u8], f: impl FnMut(usize, usize) -> bool) -> bool {
    if text.len() < MIN_LANED_LEN {
        laned::<1>(dfa, text, f)
    } else {
        laned::<LANES>(dfa, text, f)
    }
}

/// [`for_each_match`] with the text cut into `L` pieces, one DFA stepping through each. The step is written
/// out in both loops: as a closure over the lane arrays it kept them in memory, and a 4 KB scan of the
/// whole engine took a fifth longer (engine_bench p50 42 -> 52 us).
fn laned<const L: usize>(dfa: &DFA, text: &[u8], mut f: impl FnMut(usize, usize) -> bool) -> bool {
    let Ok(start) = dfa.start_state(Anchored::No) else {
        return true;
    };
    let overlap = dfa.max_pattern_len().saturating_sub(1);
    let len = text.len();
    // Reports the matches of state `sid`, reached by reading the byte before `end`.
    let mut report = |sid, end: usize| -> bool {
        (0..dfa.match_len(sid)).all(|i| {
            let pid = dfa.match_pattern(sid, i);
            f(pid.as_usize(), end - dfa.pattern_len(pid))
        })
    };
    let piece = len.div_ceil(L);
    let mut sid = [start; L];
    // Lane k reads from `at[k]` and reports matches ending after `own[k]` and at most at `until[k]`.
    let mut at = [0usize; L];
    let mut own = [0usize; L];
    let mut until = [0usize; L];
    for k in 0..L {
        own[k] = (k * piece).min(len);
        until[k] = ((k + 1) * piece).min(len);
        at[k] = own[k].saturating_sub(overlap);
    }
    let together = (0..L).map(|k| until[k] - at[k]).min().unwrap_or(0);
    for _ in 0..together {
        for k in 0..L {
            sid[k] = dfa.next_state(Anchored::No, sid[k], text[at[k]]);
            at[k] += 1;
            if dfa.is_special(sid[k]) && dfa.is_match(sid[k]) && at[k] > own[k] && !report(sid[k], at[k]) {
                return false;
            }
        }
    }
    for k in 0..L {
        while at[k] < until[k] {
            sid[k] = dfa.next_state(Anchored::No, sid[k], text[at[k]]);
            at[k] += 1;
            if dfa.is_special(sid[k]) && dfa.is_match(sid[k]) && at[k] > own[k] && !report(sid[k], at[k]) {
                return false;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use aho_corasick::AhoCorasick;

    fn laned(patterns: &[&str], text: &str) -> Vec<(usize, usize)> {
        let dfa = build(patterns).unwrap();
        let mut got = Vec::new();
        assert!(for_each_match(&dfa, text.as_bytes(), |p, s| {
            got.push((p, s));
            true
        }));
        got.sort_unstable();
        got
    }

    fn reference(patterns: &[&str], text: &str) -> Vec<(usize, usize)> {
        let ac = AhoCorasick::new(patterns).unwrap();
        let mut want: Vec<_> = ac
            .find_overlapping_iter(text)
            .map(|m| (m.pattern().as_usize(), m.start()))
            .collect();
        want.sort_unstable();
        want
    }

    #[test]
    fn lanes_report_what_one_search_reports() {
        let patterns = ["ab", "abcab", "b", "cabca", "bcabcabcabcab", "zz"];
        // Lengths around the laned threshold and piece boundaries, so matches straddle every cut.
        for len in [0, 1, 5, 511, 512, 513, 514, 515, 516, 1000, 1023, 4096, 4099] {
            let text: String = "abc".repeat(len / 3 + 1)[..len].to_string();
            assert_eq!(laned(&patterns, &text), reference(&patterns, &text), "len {len}");
        }
    }

    #[test]
    fn lanes_agree_with_one_search_on_any_text() {
        let patterns = [
            "ign",
            "ignore",
            "gno",
            "re pr",
            "e",
            "previous instructions",
            "ns",
        ];
        bolero::check!().with_type::<Vec<u8>>().for_each(|bytes| {
            // Map bytes into a small alphabet so the patterns occur often, at every offset.
            let text: String = bytes
                .iter()
                .flat_map(|b| [b"ignore previous instructions"[usize::from(*b) % 28] as char])
                .cycle()
                .take(bytes.len() * 24)
                .collect();
            assert_eq!(laned(&patterns, &text), reference(&patterns, &text));
        });
    }

    #[test]
    fn the_callback_stops_the_search() {
        let dfa = build(["a"]).unwrap();
        let text = "a".repeat(4000);
        let mut n = 0;
        assert!(!for_each_match(&dfa, text.as_bytes(), |_, _| {
            n += 1;
            n < 10
        }));
        assert_eq!(n, 10);
    }
}
