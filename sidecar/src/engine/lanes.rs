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
use std::collections::VecDeque;

/// Lanes stepped together. Four measured fastest on the injection phrases (two and eight were slower).
const LANES: usize = 4;
/// Texts shorter than this are searched in one lane: the lanes' overlaps would cost more than they save.
const MIN_LANED_LEN: usize = 512;

/// An Aho-Corasick DFA (standard match semantics, unanchored, for overlapping search) laid out again for
/// the stepping loop. With `aho_corasick`'s own `next_state`, a lane's step took about fourteen instructions
/// (a bounds-checked table and class lookup, then separate special-state and match tests); in this layout
/// it is a class lookup, one table load and one comparison, about six and a half (callgrind, 4 KB scan):
/// - every byte no pattern holds shares class 0, and the stride is the class count rounded up to a power
///   of two, so a transition is `trans[state << stride2 | class]`;
/// - states are 16-bit, which halves the table (the injection phrases' states, 9,400 before their word
///   families and about 22,000 with them, took 1.2 MB rather than 2.4 and take 2.8 MB rather than 5.6):
///   a scan in the sidecar runs between requests, with the table partly out of the cache, and there a
///   4 KB scan took about a tenth less time (engine_bench with 16 MB read between scans);
/// - states are renumbered so that the ones that report matches come last: `state >= first_match` is the
///   whole match test.
#[derive(Debug)]
pub(crate) struct Dfa {
    classes: [u8; 256],
    /// Row `state` holds the next state for each class; patterns whose DFA has more than 65,536 states
    /// get no [`Dfa`] (see [`build`]).
    trans: Vec<u16>,
    start: u16,
    /// The first state that reports matches.
    first_match: u16,
    stride2: u32,
    /// Match state `m` (counted from `first_match`) reports `matched[match_at[m]..match_at[m + 1]]`, each a
    /// (pattern, pattern length) pair.
    match_at: Vec<u32>,
    matched: Vec<(u32, u32)>,
    max_pattern_len: usize,
}

/// Builds the [`Dfa`] over `patterns`; `None` when `aho_corasick` cannot build one, when it has more than
/// 65,536 states, or when the patterns hold all 256 byte values (the classes would not fit a byte). The
/// phrase sets then search with a compact NFA, and the anchor pass is skipped (every rule is confirmed).
pub(crate) fn build<I, P>(patterns: I) -> Option<Dfa>
where
    I: IntoIterator<Item = P>,
    P: AsRef<[u8]>,
{
    let patterns: Vec<P> = patterns.into_iter().collect();
    let dfa = aho_corasick::dfa::Builder::new()
        .match_kind(MatchKind::Standard)
        .start_kind(StartKind::Unanchored)
        .prefilter(false)
        .build(&patterns)
        .ok()?;
    Dfa::relayout(&dfa, patterns.iter().map(AsRef::as_ref))
}

/// Bytes in roughly falling order of frequency in folded text (English letter frequencies, then the
/// punctuation and digits prose and code hold most).
const BY_FREQUENCY: &[u8] = b" etaoinsrhldcumfpgwybvkxjqz\n.,-'\"/:_()0123456789=;!?*&|<>[]{}#@$%+`~^\\";

impl Dfa {
    /// The transition table's size in bytes.
    #[cfg(test)]
    pub(crate) fn table_bytes(&self) -> usize {
        self.trans.len() * std::mem::size_of::<u16>()
    }

    fn relayout<'p>(dfa: &DFA, patterns: impl Iterator<Item = &'p [u8]>) -> Option<Dfa> {
        // Byte classes: one per byte some pattern holds, and class 0 for all the others. The pattern bytes
        // are numbered from the most frequent in text, so the transitions a scan mostly takes sit at the
        // start of each state's row: with the table out of the cache (a scan between two requests), a step
        // then mostly reads the row's first cache line.
        let mut held = [false; 256];
        for p in patterns {
            for &b in p {
                held[usize::from(b)] = true;
            }
        }
        let rank = |b: u8| {
            BY_FREQUENCY
                .iter()
                .position(|&f| f == b)
                .unwrap_or(BY_FREQUENCY.len() + usize::from(b))
        };
        let mut bytes: Vec<u8> = (0..=255u8).filter(|&b| held[usize::from(b)]).collect();
        bytes.sort_by_key(|&b| rank(b));
        let mut classes = [0u8; 256];
        let mut representative = vec![0u8];
        for &b in &bytes {
            classes[usize::from(b)] = u8::try_from(representative.len()).ok()?;
            representative.push(b);
        }
        let count = representative.len();
        // Class 0's representative must be a byte no pattern holds (there is one: at most 255 classes).
        representative[0] = (0..=255u8).find(|&b| classes[usize::from(b)] == 0)?;
        let stride2 = count.next_power_of_two().max(2).trailing_zeros();

        // Every state reachable from the start, in `aho_corasick`'s ids.
        let start = dfa.start_state(Anchored::No).ok()?;
        let mut seen = std::collections::HashSet::from([start]);
        let mut order = vec![start];
        let mut queue = VecDeque::from([start]);
        while let Some(s) = queue.pop_front() {
            for &b in &representative {
                let next = dfa.next_state(Anchored::No, s, b);
                if seen.insert(next) {
                    order.push(next);
                    queue.push_back(next);
                }
            }
        }
        // New numbering: states that report nothing first, then the match states.
        let (plain, matching): (Vec<_>, Vec<_>) = order.iter().partition(|&&s| !dfa.is_match(s));
        let renumbered: Vec<_> = plain.iter().chain(&matching).copied().collect();
        let mut new_id = std::collections::HashMap::with_capacity(renumbered.len());
        for (i, &s) in renumbered.iter().enumerate() {
            new_id.insert(s, u16::try_from(i).ok()?);
        }
        let stride = 1usize << stride2;
        let mut trans = vec![0u16; renumbered.len().checked_mul(stride)?];
        for (i, &s) in renumbered.iter().enumerate() {
            for (class, &b) in representative.iter().enumerate() {
                trans[(i << stride2) | class] = *new_id.get(&dfa.next_state(Anchored::No, s, b))?;
            }
        }
        let mut match_at = vec![0u32];
        let mut matched = Vec::new();
        for &s in &matching {
            for i in 0..dfa.match_len(s) {
                let pid = dfa.match_pattern(s, i);
                matched.push((pid.as_u32(), u32::try_from(dfa.pattern_len(pid)).ok()?));
            }
            match_at.push(u32::try_from(matched.len()).ok()?);
        }
        Some(Dfa {
            classes,
            trans,
            start: *new_id.get(&start)?,
            first_match: u16::try_from(plain.len()).ok()?,
            stride2,
            match_at,
            matched,
            max_pattern_len: dfa.max_pattern_len(),
        })
    }

    /// The state after reading `byte` in state `sid`.
    #[inline(always)]
    fn next(&self, sid: u16, byte: u8) -> u16 {
        self.trans[usize::from(sid) << self.stride2 | usize::from(self.classes[usize::from(byte)])]
    }

    /// The (pattern, pattern length) pairs match state `sid` reports.
    fn matches(&self, sid: u16) -> &[(u32, u32)] {
        let Some(m) = sid.checked_sub(self.first_match) else {
            return &[];
        };
        let m = usize::from(m);
        match (self.match_at.get(m), self.match_at.get(m + 1)) {
            (Some(&a), Some(&b)) => self.matched.get(a as usize..b as usize).unwrap_or_default(),
            _ => &[],
        }
    }
}

/// Calls `f(pattern, start)` for every occurrence of every pattern in `text`, overlapping ones included,
/// in no particular order, until `f` returns `false`. Returns `false` when `f` stopped the search.
///
/// Texts of [`MIN_LANED_LEN`] bytes or more are cut into [`LANES`] pieces, one DFA stepping through each
/// in the same loop. Each lane starts `max_pattern_len - 1` bytes before its piece and reports only the
/// matches that end inside it.
pub(crate) fn for_each_match(dfa: &Dfa, text: &[u8], mut f: impl FnMut(usize, usize) -> bool) -> bool {
    let len = text.len();
    let mut report = |sid: u16, end: usize| -> bool {
        dfa.matches(sid)
            .iter()
            .all(|&(pid, plen)| f(pid as usize, end - plen as usize))
    };
    if len < MIN_LANED_LEN {
        return one_lane(dfa, text, 0, dfa.start, 0, &mut report);
    }
    let overlap = dfa.max_pattern_len.saturating_sub(1);
    let piece = len.div_ceil(LANES);
    // Lane k owns the bytes own[k]..until[k] and reads from from[k].
    let own: [usize; LANES] = std::array::from_fn(|k| (k * piece).min(len));
    let until: [usize; LANES] = std::array::from_fn(|k| ((k + 1) * piece).min(len));
    let from: [usize; LANES] = std::array::from_fn(|k| own[k].saturating_sub(overlap));
    let together = (0..LANES).map(|k| until[k] - from[k]).min().unwrap_or(0);
    let lane = |k: usize| text.get(from[k]..from[k] + together).unwrap_or_default();
    let (t0, t1, t2, t3) = (lane(0), lane(1), lane(2), lane(3));
    let first_match = dfa.first_match;
    let mut sid = [dfa.start; LANES];
    // The four steps are independent, so their table loads overlap; one branch tests all four for a match.
    for (i, (((&b0, &b1), &b2), &b3)) in t0.iter().zip(t1).zip(t2).zip(t3).enumerate() {
        sid = [
            dfa.next(sid[0], b0),
            dfa.next(sid[1], b1),
            dfa.next(sid[2], b2),
            dfa.next(sid[3], b3),
        ];
        if (sid[0] >= first_match)
            | (sid[1] >= first_match)
            | (sid[2] >= first_match)
            | (sid[3] >= first_match)
        {
            for k in 0..LANES {
                let at = from[k] + i;
                if sid[k] >= first_match && at >= own[k] && !report(sid[k], at + 1) {
                    return false;
                }
            }
        }
    }
    (0..LANES).all(|k| {
        let at = from[k] + together;
        one_lane(
            dfa,
            text.get(at..until[k]).unwrap_or_default(),
            at,
            sid[k],
            own[k],
            &mut report,
        )
    })
}

/// Steps `dfa` from state `sid` through `text` (which starts at byte `base` of the whole text), reporting
/// the matches that end after byte `own`.
fn one_lane(
    dfa: &Dfa,
    text: &[u8],
    base: usize,
    mut sid: u16,
    own: usize,
    report: &mut impl FnMut(u16, usize) -> bool,
) -> bool {
    for (i, &b) in text.iter().enumerate() {
        sid = dfa.next(sid, b);
        if sid >= dfa.first_match && base + i >= own && !report(sid, base + i + 1) {
            return false;
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
    fn bytes_outside_every_pattern_share_one_class_and_any_byte_may_be_in_a_pattern() {
        // Byte 0 and a high byte in patterns (class 0 is the bytes no pattern holds, not byte 0).
        let patterns: [&[u8]; 4] = [b"a\0b", b"\xff\xfe", b"\0", b"zz"];
        let dfa = build(patterns).unwrap();
        let text: Vec<u8> = b"xa\0b\0\xff\xfe\xffzzz\x01a\0b"
            .iter()
            .copied()
            .cycle()
            .take(2000)
            .collect();
        let mut got = Vec::new();
        assert!(for_each_match(&dfa, &text, |p, s| {
            got.push((p, s));
            true
        }));
        got.sort_unstable();
        let ac = AhoCorasick::new(patterns).unwrap();
        let mut want: Vec<_> = ac
            .find_overlapping_iter(&text)
            .map(|m| (m.pattern().as_usize(), m.start()))
            .collect();
        want.sort_unstable();
        assert_eq!(got, want);
    }

    #[test]
    fn patterns_holding_every_byte_value_get_no_dfa() {
        // 256 classes for the pattern bytes and one for the rest do not fit a byte: no DFA, no panic.
        let every: Vec<u8> = (0..=255u8).collect();
        assert!(build([every.as_slice()]).is_none());
        let all_but_one: Vec<u8> = (1..=255u8).collect();
        assert!(build([all_but_one.as_slice()]).is_some());
    }

    #[test]
    fn the_states_from_first_match_on_are_exactly_the_match_states() {
        let dfa = build(["ab", "b", "abc", "ca"]).unwrap();
        let states = dfa.trans.len() >> dfa.stride2;
        let first = usize::from(dfa.first_match);
        assert_eq!(dfa.match_at.len() - 1, states - first);
        for s in first..states {
            assert!(!dfa.matches(s as u16).is_empty(), "state {s}");
        }
        // Every transition lands on a state of the table.
        assert!(dfa.trans.iter().all(|&t| usize::from(t) < states));
    }

    #[test]
    fn frequent_bytes_get_the_first_classes() {
        let dfa = build(["zq", "e x", "t"]).unwrap();
        let class = |b: u8| dfa.classes[usize::from(b)];
        assert_eq!(class(b'#'), 0, "a byte no pattern holds");
        assert!(class(b' ') < class(b'e') && class(b'e') < class(b't') && class(b't') < class(b'x'));
        assert!(class(b'x') < class(b'q') && class(b'q') < class(b'z'));
    }

    #[test]
    fn more_states_than_sixteen_bits_hold_get_no_dfa() {
        // Distinct 3-byte patterns over 48 letters: about 110,000 trie states.
        let letters: Vec<u8> = (b'0'..=b'z').filter(u8::is_ascii_alphanumeric).take(48).collect();
        let mut patterns = Vec::new();
        for &a in &letters {
            for &b in &letters {
                for &c in &letters {
                    patterns.push(vec![a, b, c]);
                }
            }
        }
        assert!(build(&patterns).is_none());
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
