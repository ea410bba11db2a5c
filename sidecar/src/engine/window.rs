//! Anchored confirmation for the detectors that read the original text: a regex runs only in windows
//! around the bytes every one of its matches must contain (a digit for card, SSN, IBAN, phone and IPv4
//! numbers, `@` for e-mail, `:` for IPv6 and schemes, a `.` before a known TLD for bare domains). Single
//! trigger bytes are found with memchr, so text without them costs almost nothing, and prose with a few
//! numbers is confirmed in a few short windows instead of seven full regex passes.
//!
//! A window reaches `before` bytes back from its first trigger and `after` bytes on from its last, then on
//! to the next ASCII whitespace, and overlapping windows merge. Regexes search with [`Regex::find_at`] on
//! the text cut at the window's end, so look-behind context (`\b`) before the window is seen exactly and a
//! cut at whitespace reads like a word end, as the whole text would. As long as every match lies within
//! `before`/`after` of a trigger it contains, the matches are exactly those of a whole-text search (a
//! property test checks this against [`Windows::whole`]).

use regex::{Captures, Match, Regex};

/// Positions of `byte` in `text` (memchr's vectorised search).
pub(crate) fn byte_hits(text: &str, byte: u8) -> impl Iterator<Item = usize> + '_ {
    memchr::memchr_iter(byte, text.as_bytes())
}

/// Positions of ASCII digits in `text`. Prose has few: 32-byte chunks without one are skipped with a
/// branch-free test the compiler vectorises.
pub(crate) fn digit_hits(text: &str) -> impl Iterator<Item = usize> + '_ {
    const CHUNK: usize = 32;
    let bytes = text.as_bytes();
    bytes
        .chunks(CHUNK)
        .enumerate()
        .filter(|(_, chunk)| chunk.iter().fold(false, |any, b| any | b.is_ascii_digit()))
        .flat_map(|(k, chunk)| {
            chunk
                .iter()
                .enumerate()
                .filter(|(_, b)| b.is_ascii_digit())
                .map(move |(i, _)| k * CHUNK + i)
        })
}

/// As `before`: reach back to just after the previous ASCII whitespace (for tokens of unbounded length
/// that hold no whitespace, such as a domain's labels).
pub(crate) const TO_SPACE: usize = usize::MAX;

/// Byte ranges of one text to confirm in, ascending and disjoint, on char boundaries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Windows {
    ranges: Vec<(usize, usize)>,
}

impl Windows {
    /// One window over the whole text: the reference the property tests compare windowed detectors with.
    #[cfg(test)]
    pub(crate) fn whole(text: &str) -> Windows {
        Windows {
            ranges: if text.is_empty() {
                Vec::new()
            } else {
                vec![(0, text.len())]
            },
        }
    }

    /// Windows around the trigger positions `hits` (ascending byte offsets).
    pub(crate) fn around(
        text: &str,
        hits: impl IntoIterator<Item = usize>,
        before: usize,
        after: usize,
    ) -> Windows {
        let bytes = text.as_bytes();
        let mut raw: Vec<(usize, usize)> = Vec::new();
        let mut open: Option<(usize, usize)> = None;
        for p in hits {
            let s = if before == TO_SPACE {
                p
            } else {
                p.saturating_sub(before)
            };
            let e = (p + 1 + after).min(bytes.len());
            open = match open {
                Some((os, oe)) if s <= oe => Some((os, oe.max(e))),
                Some(o) => {
                    raw.push(o);
                    Some((s, e))
                }
                None => Some((s, e)),
            };
        }
        raw.extend(open);
        let mut ranges: Vec<(usize, usize)> = Vec::with_capacity(raw.len());
        for (k, &(mut s, mut e)) in raw.iter().enumerate() {
            if before == TO_SPACE {
                // Only back to the previous window's end, so the scans stay linear in the text.
                let floor = ranges.last().map_or(0, |l: &(usize, usize)| l.1.min(s));
                s = bytes[floor..s]
                    .iter()
                    .rposition(u8::is_ascii_whitespace)
                    .map_or(floor, |i| floor + i + 1);
            }
            while !text.is_char_boundary(s) {
                s -= 1;
            }
            // Only on to the next window's start (they merge there), so the scans stay linear too.
            let ceiling = raw.get(k + 1).map_or(bytes.len(), |next| next.0.max(e));
            e = bytes[e..ceiling]
                .iter()
                .position(u8::is_ascii_whitespace)
                .map_or(ceiling, |i| e + i);
            match ranges.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => ranges.push((s, e)),
            }
        }
        Windows { ranges }
    }

    /// The windows holding at least `min` bytes that `is_hit` selects (a match that needs `min` of them
    /// cannot lie in the others).
    pub(crate) fn with_at_least(&self, text: &str, is_hit: impl Fn(u8) -> bool, min: usize) -> Windows {
        let bytes = text.as_bytes();
        Windows {
            ranges: self
                .ranges
                .iter()
                .copied()
                .filter(|&(s, e)| bytes[s..e].iter().filter(|&&b| is_hit(b)).count() >= min)
                .collect(),
        }
    }

    /// Bytes covered, for tests and benchmarks.
    #[cfg(test)]
    pub(crate) fn covered(&self) -> usize {
        self.ranges.iter().map(|(s, e)| e - s).sum()
    }

    /// Leftmost-first, non-overlapping matches of `re` in the windows, in text order.
    pub(crate) fn find_iter<'a, 't>(
        &'a self,
        re: &'a Regex,
        text: &'t str,
    ) -> impl Iterator<Item = Match<'t>> + 'a
    where
        't: 'a,
    {
        self.search(
            text,
            move |hay, pos| re.find_at(hay, pos),
            |m| Some((m.start(), m.end())),
        )
    }

    /// Like [`Windows::find_iter`], with capture groups.
    pub(crate) fn captures_iter<'a, 't>(
        &'a self,
        re: &'a Regex,
        text: &'t str,
    ) -> impl Iterator<Item = Captures<'t>> + 'a
    where
        't: 'a,
    {
        self.search(
            text,
            move |hay, pos| re.captures_at(hay, pos),
            |c| c.get(0).map(|m| (m.start(), m.end())),
        )
    }

    /// Like [`Windows::captures_iter`], with a byte regex.
    pub(crate) fn captures_iter_bytes<'a, 't>(
        &'a self,
        re: &'a regex::bytes::Regex,
        text: &'t str,
    ) -> impl Iterator<Item = regex::bytes::Captures<'t>> + 'a
    where
        't: 'a,
    {
        self.search(
            text,
            move |hay, pos| re.captures_at(hay.as_bytes(), pos),
            |c| c.get(0).map(|m| (m.start(), m.end())),
        )
    }

    /// Runs `at` (a search from a position in a haystack cut at the window's end) repeatedly through each
    /// window; `span` gives a result's match bounds.
    fn search<'a, 't, T: 'a>(
        &'a self,
        text: &'t str,
        at: impl Fn(&'t str, usize) -> Option<T> + Copy + 'a,
        span: impl Fn(&T) -> Option<(usize, usize)> + Copy + 'a,
    ) -> impl Iterator<Item = T> + 'a
    where
        't: 'a,
    {
        self.ranges.iter().flat_map(move |&(s, e)| {
            let hay = &text[..e];
            let mut pos = s;
            std::iter::from_fn(move || {
                if pos > hay.len() {
                    return None;
                }
                let found = at(hay, pos)?;
                let (start, end) = span(&found)?;
                pos = next_pos(hay, start, end);
                Some(found)
            })
        })
    }
}

/// Where the next search starts: after the match, or one char on after an empty one.
fn next_pos(hay: &str, start: usize, end: usize) -> usize {
    if end > start {
        end
    } else {
        end + hay[end..].chars().next().map_or(1, char::len_utf8)
    }
}

/// Texts for the property tests that compare windowed detectors with whole-text ones: fragments of every
/// shape the windowed patterns match, glued by the input's own (lossy) bytes.
#[cfg(test)]
pub(crate) fn tricky_text(bytes: &[u8]) -> String {
    const PIECES: &[&str] = &[
        "4111 1111 1111 1111",
        "4242-4242-4242-4242",
        "378282246310005",
        "123-45-6789",
        "078 05 1120",
        "DE89 3704 0044 0532 0130 00",
        "GB82WEST12345698765432",
        "+1 (415) 555-0100",
        "(212) 555-0199",
        "030 1234 5678",
        "0171/1234567",
        "10.1.2.3",
        "version 1.2.3.4",
        "2001:db8::1",
        "fe80::1%eth0",
        "jane.doe+tag@example.co.uk",
        "a@b.io",
        "https://user:pw@10.0.0.1:8080/x?y=1",
        "http://bit.ly/x",
        "javascript:alert(1)",
        "data:text/html;base64,PHA+",
        "evil.example.com/path",
        "xn--pypal-4ve.com",
        "ſite",
        "\u{212A}",
        "xamp.tK",
        "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z.example.org",
        "JavaScript:x",
        "DATA:text/html,x",
        ".com",
        "www.",
        "://",
        "@",
        ":",
        ".",
        "-",
        " ",
        "  ",
        "\n",
        "\t",
        "é",
        "1",
        "0",
        "é\u{3000}",
        "\u{00A0}",
    ];
    let mut s = String::new();
    for chunk in bytes.chunks(3) {
        s.push_str(PIECES[chunk[0] as usize % PIECES.len()]);
        if chunk.len() > 1 && chunk[1] % 4 == 0 {
            s.push_str(&String::from_utf8_lossy(&chunk[1..]));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digit_hits_are_every_digit_in_order() {
        bolero::check!().for_each(|bytes: &[u8]| {
            let text = String::from_utf8_lossy(bytes);
            let want: Vec<usize> = text
                .bytes()
                .enumerate()
                .filter(|(_, b)| b.is_ascii_digit())
                .map(|(i, _)| i)
                .collect();
            assert_eq!(digit_hits(&text).collect::<Vec<_>>(), want);
        });
        let text = format!("{}7{}12", "a".repeat(31), "b".repeat(32));
        assert_eq!(digit_hits(&text).collect::<Vec<_>>(), vec![31, 64, 65]);
    }

    #[test]
    fn windows_merge_and_end_at_whitespace() {
        let text = "aaaa 12 bbbb cccccccccccccccccccccccccccccc 3 dd";
        let w = Windows::around(text, digit_hits(text), 2, 2);
        let got: Vec<&str> = w.ranges.iter().map(|&(s, e)| &text[s..e]).collect();
        assert_eq!(got, vec!["a 12 bbbb", "c 3 dd"]);
    }

    #[test]
    fn windows_in_text_without_whitespace_merge_into_one() {
        // Every extension stops at the next window, so a long token costs one pass, not one per window.
        let text = format!(
            "{}x",
            "1xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx".repeat(10_000)
        );
        let w = Windows::around(&text, digit_hits(&text), 2, 2);
        assert_eq!(w.ranges, vec![(0, text.len())]);
    }

    #[test]
    fn text_without_triggers_has_no_windows() {
        let w = Windows::around("no numbers here", digit_hits("no numbers here"), 10, 10);
        assert_eq!(w, Windows::default());
        assert_eq!(w.covered(), 0);
    }

    #[test]
    fn window_starts_snap_to_char_boundaries() {
        let text = "ééé1";
        let w = Windows::around(text, digit_hits(text), 2, 2);
        assert!(text.is_char_boundary(w.ranges[0].0));
        assert_eq!(&text[w.ranges[0].0..w.ranges[0].1], "é1");
    }

    #[test]
    fn look_behind_before_a_window_is_seen() {
        // `\b` before "123" is false in the whole text ("x123"); the window starting at "1" must agree.
        let re = Regex::new(r"(?-u:\b)\d{3}").unwrap();
        let text = "x123 456";
        let w = Windows::around(text, digit_hits(text), 0, 0);
        let found: Vec<&str> = w.find_iter(&re, text).map(|m| m.as_str()).collect();
        let whole: Vec<&str> = re.find_iter(text).map(|m| m.as_str()).collect();
        assert_eq!(found, whole);
        assert_eq!(found, vec!["456"]);
    }

    #[test]
    fn empty_matches_advance() {
        let re = Regex::new(r"(?-u:\b)").unwrap();
        let text = "ab cd";
        let found = Windows::whole(text).find_iter(&re, text).count();
        assert_eq!(found, re.find_iter(text).count());
    }
}
