//! The prefix cache's index: which token prefixes have their KV saved, under a byte budget.
//!
//! A trie over token ids. Each entry is one engine snapshot of a sequence's first
//! `len` positions, ending at the trie node of its last token. GPT-2's positions are
//! learned and absolute, so only a true prefix (the same tokens from position 0) may be
//! reused, and any prefix of an entry can be: a restore keeps the first `n` positions.
//!
//! Eviction is least recently used first. Nothing in use can be evicted: a restore copies
//! the snapshot into the sequence's own KV before it returns, so a running request never
//! depends on an entry, and an entry is only ever read inside that call.

use std::collections::HashMap;

use super::thinning::Thinning;
use super::{SnapshotId, Token};

/// Index of a trie node; the root is 0.
type NodeId = u32;

const ROOT: NodeId = 0;

#[derive(Debug, Default)]
struct Node {
    parent: NodeId,
    token: Token,
    children: Vec<NodeId>,
    /// The entry that ends here, if any.
    entry: Option<SnapshotId>,
    /// Entries that end here or below.
    entries_below: u32,
}

#[derive(Debug)]
struct Entry {
    /// Node of its last token.
    end: NodeId,
    len: u32,
    bytes: usize,
    /// Logical time of its last use.
    used: u64,
}

/// Counters for `batchctl status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrefixStats {
    /// Requests that reused cached positions.
    pub hits: u64,
    /// Requests that found nothing worth reusing.
    pub misses: u64,
    /// Prompt positions reused instead of computed.
    pub reused_tokens: u64,
    /// Entries dropped to stay within the budget.
    pub evictions: u64,
}

/// Fewest positions worth reusing: restoring copies every position of a snapshot, which
/// costs more than computing a handful of tokens.
pub const MIN_REUSE: u32 = 32;

/// Saved prefixes by token, within a byte budget.
#[derive(Debug)]
pub struct PrefixCache {
    budget: usize,
    bytes: usize,
    nodes: Vec<Node>,
    free_nodes: Vec<NodeId>,
    entries: HashMap<SnapshotId, Entry>,
    next_id: SnapshotId,
    clock: u64,
    thinning: Thinning,
    pub stats: PrefixStats,
}

impl PrefixCache {
    /// An empty cache that may hold `budget` bytes of snapshots (0: the cache is off).
    pub fn new(budget: usize) -> Self {
        Self {
            budget,
            bytes: 0,
            nodes: vec![Node::default()],
            free_nodes: Vec::new(),
            entries: HashMap::new(),
            next_id: 1,
            clock: 0,
            thinning: Thinning::default(),
            stats: PrefixStats::default(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.budget > 0
    }

    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Bytes of snapshots held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Positions held over all entries.
    pub fn tokens(&self) -> u64 {
        self.entries.values().map(|e| e.len as u64).sum()
    }

    /// The entry sharing the longest prefix with `tokens`, and that prefix's length;
    /// marks it used.
    pub fn longest(&mut self, tokens: &[Token]) -> Option<(SnapshotId, u32)> {
        let mut node = ROOT;
        let mut depth = 0;
        for &t in tokens {
            match self.child(node, t) {
                Some(c) => {
                    node = c;
                    depth += 1;
                }
                None => break,
            }
        }
        if depth == 0 {
            return None;
        }
        let id = self.entry_at_or_below(node);
        self.clock += 1;
        self.entries.get_mut(&id).expect("indexed entry").used = self.clock;
        Some((id, depth))
    }

    /// True if some entry starts with all of `tokens` (saving them would add nothing).
    pub fn covers(&self, tokens: &[Token]) -> bool {
        let mut node = ROOT;
        for &t in tokens {
            match self.child(node, t) {
                Some(c) => node = c,
                None => return false,
            }
        }
        node != ROOT
    }

    /// Whether to save the KV of an ended sequence holding `tokens`, out of `window` in a
    /// row that nobody reused ([`Thinning::admits`]).
    pub fn admits_save(&mut self, window: u32, tokens: &[Token]) -> bool {
        self.thinning.admits(window, tokens)
    }

    /// Counts a request that reused `len` saved positions.
    pub fn hit(&mut self, len: u32) {
        self.stats.hits += 1;
        self.stats.reused_tokens += len as u64;
        self.thinning.reused();
    }

    /// Counts a request that found nothing to reuse; saving resumes if it would have
    /// reused a sequence that was not saved ([`Thinning::missed`]).
    pub fn miss(&mut self, prompt: &[Token]) {
        self.stats.misses += 1;
        if self.thinning.missed(prompt) {
            tracing::debug!("a prompt starts like an ended sequence not saved: saving resumes");
        }
    }

    /// A fresh id for a snapshot about to be saved.
    pub fn next_id(&mut self) -> SnapshotId {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Records snapshot `id` of the positions of `tokens`, taking `bytes`. Returns the
    /// snapshots the engine should now drop: entries it supersedes (strict prefixes of
    /// `tokens`), entries evicted to make room, or `id` itself when it does not fit or
    /// adds nothing.
    #[must_use]
    pub fn insert(&mut self, id: SnapshotId, tokens: &[Token], bytes: usize) -> Vec<SnapshotId> {
        if tokens.is_empty() || bytes > self.budget || self.covers(tokens) {
            return vec![id];
        }
        let mut dropped = Vec::new();
        // Entries that end on its path are prefixes of it: it serves them all.
        while let Some(old) = self.prefix_entry_on_path(tokens) {
            self.remove(old);
            dropped.push(old);
        }
        while self.bytes + bytes > self.budget {
            let lru = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(&k, _)| k)
                .expect("over budget means something is held");
            self.remove(lru);
            self.stats.evictions += 1;
            dropped.push(lru);
        }
        self.add(id, tokens, bytes);
        dropped
    }

    fn add(&mut self, id: SnapshotId, tokens: &[Token], bytes: usize) {
        let mut node = ROOT;
        for &t in tokens {
            node = match self.child(node, t) {
                Some(c) => c,
                None => self.add_child(node, t),
            };
            self.nodes[node as usize].entries_below += 1;
        }
        self.nodes[node as usize].entry = Some(id);
        self.clock += 1;
        self.entries.insert(
            id,
            Entry {
                end: node,
                len: tokens.len() as u32,
                bytes,
                used: self.clock,
            },
        );
        self.bytes += bytes;
    }

    /// An entry ending on the path of `tokens` (a prefix of them), if any.
    fn prefix_entry_on_path(&self, tokens: &[Token]) -> Option<SnapshotId> {
        let mut node = ROOT;
        for &t in tokens {
            node = self.child(node, t)?;
            if let Some(id) = self.nodes[node as usize].entry {
                return Some(id);
            }
        }
        None
    }

    fn child(&self, node: NodeId, token: Token) -> Option<NodeId> {
        self.nodes[node as usize]
            .children
            .iter()
            .copied()
            .find(|&c| self.nodes[c as usize].token == token)
    }

    fn add_child(&mut self, parent: NodeId, token: Token) -> NodeId {
        let node = Node {
            parent,
            token,
            ..Node::default()
        };
        let id = match self.free_nodes.pop() {
            Some(id) => {
                self.nodes[id as usize] = node;
                id
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as NodeId
            }
        };
        self.nodes[parent as usize].children.push(id);
        id
    }

    /// Some entry ending at `node` or below it (every node lies on an entry's path).
    fn entry_at_or_below(&self, mut node: NodeId) -> SnapshotId {
        loop {
            let n = &self.nodes[node as usize];
            if let Some(id) = n.entry {
                return id;
            }
            node = *n
                .children
                .first()
                .expect("a node without entry has children");
        }
    }

    /// Forgets entry `id`, pruning the trie nodes only it used.
    fn remove(&mut self, id: SnapshotId) {
        let entry = self.entries.remove(&id).expect("known entry");
        self.bytes -= entry.bytes;
        self.nodes[entry.end as usize].entry = None;
        let mut node = entry.end;
        while node != ROOT {
            let parent = self.nodes[node as usize].parent;
            let n = &mut self.nodes[node as usize];
            n.entries_below -= 1;
            if n.entries_below == 0 {
                self.nodes[parent as usize].children.retain(|&c| c != node);
                self.nodes[node as usize] = Node::default();
                self.free_nodes.push(node);
            }
            node = parent;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Vec<Token> {
        s.bytes().map(Token::from).collect()
    }

    #[test]
    fn finds_the_longest_shared_prefix() {
        let mut c = PrefixCache::new(1 << 20);
        assert!(c.insert(1, &t("abcdef"), 60).is_empty());
        assert!(c.insert(2, &t("abxyz"), 50).is_empty());
        assert_eq!(c.longest(&t("abcdQQ")), Some((1, 4)));
        assert_eq!(c.longest(&t("abxQ")), Some((2, 3)));
        assert_eq!(c.longest(&t("ab")).map(|h| h.1), Some(2));
        assert_eq!(c.longest(&t("zzz")), None);
        assert_eq!((c.len(), c.bytes(), c.tokens()), (2, 110, 11));
    }

    #[test]
    fn a_longer_entry_supersedes_its_prefixes_and_a_covered_one_is_refused() {
        let mut c = PrefixCache::new(1 << 20);
        assert!(c.insert(1, &t("abc"), 30).is_empty());
        assert_eq!(c.insert(2, &t("abcdef"), 60), vec![1]);
        assert_eq!(c.insert(3, &t("abcd"), 40), vec![3], "already covered");
        assert_eq!(c.longest(&t("abcdefg")), Some((2, 6)));
        assert_eq!((c.len(), c.bytes()), (1, 60));
    }

    #[test]
    fn evicts_least_recently_used_to_stay_within_budget() {
        let mut c = PrefixCache::new(100);
        assert!(c.insert(1, &t("aaaa"), 40).is_empty());
        assert!(c.insert(2, &t("bbbb"), 40).is_empty());
        c.longest(&t("aaaa")); // 1 is now the more recent
        assert_eq!(c.insert(3, &t("cccc"), 40), vec![2]);
        assert!(c.bytes() <= 100);
        assert_eq!(c.longest(&t("bbbb")), None);
        assert_eq!(c.longest(&t("aaaa")).map(|h| h.0), Some(1));
        assert_eq!(c.stats.evictions, 1);
        assert_eq!(
            c.insert(4, &t("dddd"), 101),
            vec![4],
            "larger than the budget"
        );
    }

    #[test]
    fn removing_entries_prunes_the_trie() {
        let mut c = PrefixCache::new(50);
        for i in 0..200u32 {
            let tokens: Vec<Token> = (0..20).map(|p| i * 1000 + p).collect();
            let dropped = c.insert(c.next_id, &tokens, 25);
            c.next_id += 1;
            assert!(dropped.len() <= 1);
            assert!(c.bytes() <= 50);
        }
        assert_eq!(c.len(), 2);
        // Only the live entries' paths (and the root) are in use.
        assert_eq!(c.nodes.len() - c.free_nodes.len(), 1 + 2 * 20);
    }

    #[test]
    fn an_off_cache_holds_nothing() {
        let mut c = PrefixCache::new(0);
        assert!(!c.enabled());
        assert_eq!(c.insert(1, &t("abc"), 1), vec![1]);
        assert_eq!(c.longest(&t("abc")), None);
    }
}
