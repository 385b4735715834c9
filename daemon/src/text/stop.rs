//! Stop strings: end generation before the first occurrence of any of them, and never
//! stream text that might turn out to be the start of one.

/// What feeding text to a [`StopMatcher`] produced.
#[derive(Debug, PartialEq, Eq)]
pub enum StopOutcome {
    /// Text that is safe to release; generation goes on.
    Continue(String),
    /// A stop string was found: release this text (what came before it) and stop.
    Stopped(String),
}

/// Finds stop strings across token boundaries.
#[derive(Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

impl StopMatcher {
    /// A matcher for `stops`; empty strings are ignored.
    pub fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            held: String::new(),
        }
    }

    /// Feeds newly decoded text.
    pub fn push(&mut self, text: &str) -> StopOutcome {
        if self.stops.is_empty() {
            return StopOutcome::Continue(text.to_owned());
        }
        self.held.push_str(text);
        let first_stop = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min();
        if let Some(at) = first_stop {
            let out = self.held[..at].to_owned();
            self.held.clear();
            return StopOutcome::Stopped(out);
        }
        let keep = self.longest_partial_suffix();
        let out = self.held[..self.held.len() - keep].to_owned();
        self.held.drain(..self.held.len() - keep);
        StopOutcome::Continue(out)
    }

    /// Releases held-back text at the end of generation.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// Length in bytes of the longest suffix of `held` that is a proper prefix of a stop.
    fn longest_partial_suffix(&self) -> usize {
        let held = self.held.as_str();
        let mut best = 0;
        for stop in &self.stops {
            let max = stop.len().saturating_sub(1).min(held.len());
            for len in (best + 1..=max).rev() {
                let start = held.len() - len;
                if held.is_char_boundary(start) && stop.starts_with(&held[start..]) {
                    best = len;
                    break;
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(stops: &[&str]) -> StopMatcher {
        StopMatcher::new(&stops.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn no_stops_passes_through() {
        let mut s = m(&[]);
        assert_eq!(s.push("abc"), StopOutcome::Continue("abc".into()));
    }

    #[test]
    fn stop_inside_one_piece() {
        let mut s = m(&["END"]);
        assert_eq!(s.push("abcENDxyz"), StopOutcome::Stopped("abc".into()));
    }

    #[test]
    fn stop_across_pieces_is_held_then_found() {
        let mut s = m(&["\n\n"]);
        assert_eq!(s.push("hello\n"), StopOutcome::Continue("hello".into()));
        assert_eq!(s.push("\nworld"), StopOutcome::Stopped("".into()));
    }

    #[test]
    fn false_alarm_is_released() {
        let mut s = m(&["STOP"]);
        assert_eq!(s.push("ST"), StopOutcome::Continue("".into()));
        assert_eq!(s.push("OR"), StopOutcome::Continue("STOR".into()));
        assert_eq!(s.push("ST"), StopOutcome::Continue("".into()));
        assert_eq!(s.finish(), "ST");
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        let mut s = m(&["world", "lo"]);
        assert_eq!(s.push("hello world"), StopOutcome::Stopped("hel".into()));
    }

    #[test]
    fn multibyte_prefixes() {
        let mut s = m(&["é!"]);
        assert_eq!(s.push("café"), StopOutcome::Continue("caf".into()));
        assert_eq!(s.push("?"), StopOutcome::Continue("é?".into()));
    }
}
