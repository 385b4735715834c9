//! Prefix reuse: a new sequence starts from KV that is already computed, either saved in
//! the prefix cache or being computed right now by a running sequence, instead of
//! prefilling the same positions again.

use batchd_protocol::PrefixCacheStatus;

use super::super::prefix::MIN_REUSE;
use super::super::sequence::Sequence;
use super::super::slot::Slot;
use super::super::{Engine, RequestKey, SnapshotId, Token};
use super::Scheduler;

/// Where a new sequence's prefix can come from.
enum Source {
    /// Nothing worth reusing.
    None,
    /// A cache entry holding the first `len` positions.
    Cached { id: SnapshotId, len: u32 },
    /// A running sequence whose prompt starts with the same `len` tokens.
    Live { key: RequestKey, len: u32 },
}

impl Scheduler {
    /// The prefix cache's size and counters, for status.
    pub fn prefix_status(&self) -> PrefixCacheStatus {
        let c = &self.prefix;
        PrefixCacheStatus {
            budget_bytes: c.budget() as u64,
            bytes: c.bytes() as u64,
            entries: c.len() as u32,
            tokens: c.tokens(),
            hits: c.stats.hits,
            misses: c.stats.misses,
            reused_tokens: c.stats.reused_tokens,
            evictions: c.stats.evictions,
        }
    }

    /// The slot state a newly admitted sequence starts in: restored from the cache,
    /// waiting for a running sequence that computes its prefix, or prefilling from 0.
    pub(super) fn start<E: Engine>(&mut self, mut seq: Sequence, engine: &mut E) -> Slot {
        if !self.prefix.enabled() {
            return Slot::Prefilling(seq);
        }
        match self.best_source(&seq.prompt, seq.key) {
            Source::None => {
                self.prefix.miss(&seq.prompt);
                Slot::Prefilling(seq)
            }
            Source::Cached { id, len } => {
                self.restore(&mut seq, id, len, engine);
                Slot::Prefilling(seq)
            }
            Source::Live { key, len } => {
                let ready = self
                    .active()
                    .find(|s| s.key == key)
                    .is_some_and(|s| s.n_past >= len);
                if ready {
                    self.join(&mut seq, key, len, engine);
                    Slot::Prefilling(seq)
                } else {
                    Slot::Waiting {
                        seq,
                        source: key,
                        need: len,
                    }
                }
            }
        }
    }

    /// Moves waiting sequences on once their source has computed what they need (or has
    /// gone, in which case they look again).
    pub(super) fn resolve_waiting<E: Engine>(&mut self, engine: &mut E) {
        for slot in 0..self.slots.len() {
            let Slot::Waiting { source, need, .. } = self.slots[slot] else {
                continue;
            };
            let source_state = self
                .slots
                .iter()
                .filter_map(Slot::computing)
                .find(|q| q.key == source)
                .map(|q| q.n_past);
            if source_state.is_some_and(|n| n < need) {
                continue;
            }
            let Some(mut seq) = self.slots[slot].take_sequence() else {
                continue;
            };
            self.slots[slot] = if source_state.is_some() {
                self.join(&mut seq, source, need, engine);
                Slot::Prefilling(seq)
            } else {
                // The source ended before getting there: whatever it saved is in the
                // cache now, or another sequence may do.
                self.start(seq, engine)
            };
        }
    }

    /// Saves `slot`'s KV into the cache, unless it is too short or already held.
    pub(super) fn remember<E: Engine>(&mut self, slot: usize, engine: &mut E) {
        if let Some(tokens) = self.worth_saving(slot) {
            self.save(slot, &tokens, engine);
        }
    }

    /// The tokens whose KV `slot` holds, if the cache would keep them.
    pub(super) fn worth_saving(&self, slot: usize) -> Option<Vec<Token>> {
        if !self.prefix.enabled() {
            return None;
        }
        let tokens = self.slots[slot].sequence()?.kv_tokens();
        let keep = (tokens.len() as u32) >= MIN_REUSE && !self.prefix.covers(&tokens);
        keep.then_some(tokens)
    }

    /// Saves `slot`'s KV, which holds `tokens`, into the cache.
    pub(super) fn save<E: Engine>(&mut self, slot: usize, tokens: &[Token], engine: &mut E) {
        let _save = tracing::trace_span!("save", tokens = tokens.len()).entered();
        let id = self.prefix.next_id();
        if let Some(bytes) = engine.save(slot, id) {
            for dropped in self.prefix.insert(id, tokens, bytes) {
                engine.forget(dropped);
            }
        }
    }

    /// Saves the sequences that ended in the last step, then frees their KV. Deferred
    /// until that step's events are out, so that a request's last token and its end
    /// reach the client before a copy of its KV is made (a few ms for each sequence, and
    /// a wave of sequences often ends together); the next step starts with it anyway.
    pub fn save_ended<E: Engine>(&mut self, engine: &mut E) {
        for (slot, tokens) in std::mem::take(&mut self.ended) {
            if !self.prefix.covers(&tokens) {
                self.save(slot, &tokens, engine); // (another that ended with it may hold them)
            }
            engine.release(slot);
        }
    }

    /// The longest reusable prefix of `prompt`, from the cache or a running sequence
    /// (which wins ties: it needs no snapshot yet). At least the last prompt token is
    /// always left to compute, for the logits of the first sampled token.
    fn best_source(&mut self, prompt: &[Token], own: RequestKey) -> Source {
        let cap = prompt.len() as u32 - 1;
        let cached = self
            .prefix
            .longest(prompt)
            .map(|(id, len)| (id, len.min(cap)));
        let live = self
            .slots
            .iter()
            .filter_map(Slot::computing)
            .filter(|q| q.key != own)
            .map(|q| (q.key, common_prefix(prompt, &q.prompt).min(cap)))
            .max_by_key(|&(_, len)| len);
        let cached_len = cached.map_or(0, |c| c.1);
        match (cached, live) {
            (_, Some((key, len))) if len >= MIN_REUSE && len > cached_len => {
                Source::Live { key, len }
            }
            (Some((id, len)), _) if len >= MIN_REUSE => Source::Cached { id, len },
            _ => Source::None,
        }
    }

    /// Copies `len` positions of running sequence `source` into `seq`, through a snapshot
    /// that the cache keeps for the next request too.
    fn join<E: Engine>(
        &mut self,
        seq: &mut Sequence,
        source: RequestKey,
        len: u32,
        engine: &mut E,
    ) {
        let src = self
            .active()
            .find(|s| s.key == source)
            .map(|s| s.slot)
            .expect("the source is running");
        self.remember(src, engine);
        let src_tokens = self.slots[src].sequence().expect("running").kv_tokens();
        match self.prefix.longest(&src_tokens[..len as usize]) {
            Some((id, n)) if n >= len => self.restore(seq, id, len, engine),
            // The snapshot did not fit in the budget: compute the prefix instead.
            _ => self.prefix.stats.misses += 1,
        }
    }

    /// Restores `len` positions of entry `id` into `seq`'s slot.
    fn restore<E: Engine>(&mut self, seq: &mut Sequence, id: SnapshotId, len: u32, engine: &mut E) {
        if engine.restore(seq.slot, id, len) {
            seq.n_past = len;
            seq.cached = len;
            self.prefix.hit(len);
        } else {
            self.prefix.stats.misses += 1;
        }
    }
}

/// How many leading tokens `a` and `b` share.
fn common_prefix(a: &[Token], b: &[Token]) -> u32 {
    a.iter().zip(b).take_while(|(x, y)| x == y).count() as u32
}
