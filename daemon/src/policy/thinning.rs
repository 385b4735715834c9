//! Which ended sequences the prefix cache saves. A save copies the sequence's KV while
//! every other sequence waits for the next step (a few ms each on a GPU host), so saves
//! that no request reuses, unrelated prompts, are thinned out. What was passed over is
//! remembered by its first [`MIN_REUSE`] tokens only, at no cost to the steps, so that
//! prompts that start to share are still noticed.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};

use super::prefix::MIN_REUSE;
use super::Token;

/// Most unused saves in a row before thinning, however wide the window asked for: on a GPU
/// a wave of 64 unrelated prompts saved 64 snapshots nobody reused, a few ms each.
const MAX_UNUSED_SAVES: u32 = 16;
/// How many of the ended sequences passed over are remembered (the newest).
const REMEMBERED: usize = 1024;

/// Whether saves are paying off, and what was passed over while they were not.
#[derive(Debug, Default)]
pub struct Thinning {
    /// Saves admitted since a request last reused one.
    unused_saves: u32,
    /// Keys of the sequences passed over, oldest first...
    passed_over: VecDeque<u64>,
    /// ...and how many of them have each key.
    counts: HashMap<u64, u32>,
}

/// A sequence's identity for reuse: its first [`MIN_REUSE`] tokens (a request can only
/// reuse positions worth restoring if it starts with those).
fn key(tokens: &[Token]) -> Option<u64> {
    let head = tokens.get(..MIN_REUSE as usize)?;
    let mut h = DefaultHasher::new();
    head.hash(&mut h);
    Some(h.finish())
}

impl Thinning {
    /// Whether to save an ended sequence holding `tokens`. While requests reuse saves,
    /// every ended sequence is saved; after `window` saves in a row ([`MAX_UNUSED_SAVES`]
    /// at most) that no request reused, none is, and each one passed over is remembered
    /// instead. An admitted save counts at once: a wave that ends in one step is thinned
    /// too.
    pub fn admits(&mut self, window: u32, tokens: &[Token]) -> bool {
        if self.unused_saves < window.min(MAX_UNUSED_SAVES) {
            self.unused_saves += 1;
            return true;
        }
        if let Some(k) = key(tokens) {
            if self.passed_over.len() == REMEMBERED {
                let old = self.passed_over.pop_front().expect("full");
                if let Some(n) = self.counts.get_mut(&old) {
                    *n -= 1;
                    if *n == 0 {
                        self.counts.remove(&old);
                    }
                }
            }
            self.passed_over.push_back(k);
            *self.counts.entry(k).or_default() += 1;
        }
        false
    }

    /// A request reused saved positions: saving them all resumes.
    pub fn reused(&mut self) {
        self.unused_saves = 0;
    }

    /// Whether `prompt`, which found nothing to reuse, starts like a sequence that was
    /// passed over: it would have reused that one's positions, so saving resumes and the
    /// next request like it finds them.
    pub fn missed(&mut self, prompt: &[Token]) -> bool {
        // A prompt keeps its last token to compute: it must be longer than the key.
        let hit = prompt.len() > MIN_REUSE as usize
            && key(prompt).is_some_and(|k| self.counts.contains_key(&k));
        if hit {
            self.reused();
        }
        hit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sequence of `n` tokens starting with `first`.
    fn seq(first: Token, n: usize) -> Vec<Token> {
        let mut v = vec![7; n];
        v[0] = first;
        v
    }

    #[test]
    fn unused_saves_stop_after_the_window_and_a_reuse_brings_them_back() {
        let mut t = Thinning::default();
        let admitted = (0..64).filter(|&i| t.admits(4, &seq(i, 40))).count();
        assert_eq!(admitted, 4);
        t.reused();
        assert!(t.admits(4, &seq(1, 40)));
    }

    #[test]
    fn the_window_is_at_most_sixteen() {
        let mut t = Thinning::default();
        let admitted = (0..64).filter(|&i| t.admits(64, &seq(i, 40))).count();
        assert_eq!(admitted, MAX_UNUSED_SAVES as usize);
    }

    #[test]
    fn a_prompt_that_starts_like_one_passed_over_brings_saving_back() {
        let mut t = Thinning::default();
        assert!(t.admits(1, &seq(1, 40)));
        assert!(!t.admits(1, &seq(2, 40))); // passed over, remembered
                                            // Unrelated, or too short to reuse anything: still thinned.
        assert!(!t.missed(&seq(3, 50)));
        assert!(!t.missed(&seq(2, MIN_REUSE as usize)));
        assert!(!t.admits(1, &seq(4, 40)));
        // Sharing the first MIN_REUSE tokens and more: the next ended sequence is saved.
        assert!(t.missed(&seq(2, 60)));
        assert!(t.admits(1, &seq(5, 40)));
        assert!(!t.admits(1, &seq(6, 40)));
    }

    #[test]
    fn only_the_newest_passed_over_are_remembered() {
        let mut t = Thinning::default();
        assert!(t.admits(1, &seq(0, 40)));
        for i in 1..=REMEMBERED as Token + 1 {
            assert!(!t.admits(1, &seq(i, 40)));
        }
        assert!(!t.missed(&seq(1, 60)), "the oldest is forgotten");
        assert!(t.missed(&seq(2, 60)));
    }
}
