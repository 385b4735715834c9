//! Sequence ids for slots, kept consecutive so a step is one llama.cpp pass.

/// A range of sequence ids `base..base + ids.len()`, dense whenever a step runs.
///
/// A sequence that ends leaves a hole, which the next one to begin fills; holes still open
/// when a step is decoded are closed then by moving the highest ids down (a whole KV
/// stream copy that llama.cpp defers to that decode). Moving only there, and never on
/// release, means no stream copy is ever pending while a snapshot is saved or restored:
/// llama.cpp reads and writes snapshots at once, ahead of any pending copy.
pub struct SeqPool {
    pub base: i32,
    /// Slot of each sequence id, in id order; `None` is a hole.
    pub ids: Vec<Option<usize>>,
}

impl SeqPool {
    pub fn new(base: u32, capacity: u32) -> Self {
        Self {
            base: base as i32,
            ids: Vec::with_capacity(capacity as usize),
        }
    }

    /// Gives `slot` the lowest free id.
    pub fn take(&mut self, slot: usize) -> i32 {
        let i = match self.ids.iter().position(Option::is_none) {
            Some(hole) => hole,
            None => {
                self.ids.push(None);
                self.ids.len() - 1
            }
        };
        self.ids[i] = Some(slot);
        self.base + i as i32
    }

    /// Gives `slot` the id `id`, a hole.
    pub fn put(&mut self, id: i32, slot: usize) {
        self.ids[(id - self.base) as usize] = Some(slot);
    }

    /// Frees `id`, leaving a hole unless it was the highest.
    pub fn free(&mut self, id: i32) {
        self.ids[(id - self.base) as usize] = None;
        while self.ids.last().is_some_and(Option::is_none) {
            self.ids.pop();
        }
    }

    /// The next move that closes a hole: `(from, to, slot)`, the highest id into the
    /// lowest hole.
    pub fn next_move(&self) -> Option<(i32, i32, usize)> {
        let hole = self.ids.iter().position(Option::is_none)?;
        let last = self.ids.len() - 1;
        let slot = self.ids[last].expect("the highest id is live");
        Some((self.base + last as i32, self.base + hole as i32, slot))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_fill_holes_then_grow() {
        let mut p = SeqPool::new(10, 4);
        assert_eq!((p.take(0), p.take(1), p.take(2)), (10, 11, 12));
        p.free(11);
        assert_eq!(p.next_move(), Some((12, 11, 2)));
        assert_eq!(p.take(5), 11, "the hole is filled first");
        assert_eq!(p.next_move(), None);
        p.free(12);
        assert_eq!(p.take(6), 12);
    }

    #[test]
    fn moves_close_every_hole() {
        let mut p = SeqPool::new(0, 4);
        for slot in 0..4 {
            p.take(slot);
        }
        p.free(0);
        p.free(2);
        while let Some((from, to, slot)) = p.next_move() {
            p.put(to, slot);
            p.free(from);
        }
        assert_eq!(p.ids, vec![Some(3), Some(1)]);
    }
}
