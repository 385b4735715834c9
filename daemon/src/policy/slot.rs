//! One slot's state: free, waiting for a shared prefix, prefilling a prompt, decoding, or
//! padding a static wave.

use super::sequence::Sequence;
use super::{RequestKey, Token};

/// What a slot holds. A sequence goes `Free → Prefilling → Decoding → Free`, through
/// `Waiting` first when another sequence is computing its prompt's prefix; under the
/// static policy a finished one goes to `Padding` until its wave ends.
#[derive(Debug, Default)]
pub(super) enum Slot {
    #[default]
    Free,
    /// Another running sequence (`source`) is computing the first `need` positions of this
    /// one's prompt; once it has, they are copied over instead of computed twice.
    Waiting {
        seq: Sequence,
        source: RequestKey,
        need: u32,
    },
    /// Its prompt is still going into the KV cache, chunk by chunk.
    Prefilling(Sequence),
    /// Its prompt is in; each step feeds back `next`, the token sampled last.
    Decoding { seq: Sequence, next: Token },
    /// Static policy: its sequence finished but its wave has not, so it keeps computing
    /// (and its logits are dropped), as a static batcher does.
    Padding(Pad),
}

/// A finished sequence kept computing to pad its wave.
#[derive(Clone, Copy, Debug)]
pub(super) struct Pad {
    pub key: RequestKey,
    /// The token fed at every step.
    pub token: Token,
    pub n_past: u32,
}

impl Slot {
    /// True unless free.
    pub fn is_busy(&self) -> bool {
        !matches!(self, Slot::Free)
    }

    /// The sequence running here, if any.
    pub fn sequence(&self) -> Option<&Sequence> {
        match self {
            Slot::Waiting { seq, .. } | Slot::Prefilling(seq) | Slot::Decoding { seq, .. } => {
                Some(seq)
            }
            Slot::Free | Slot::Padding(_) => None,
        }
    }

    /// The sequence here if it is computing its own KV (prefilling or decoding): one that
    /// others may take a prefix from.
    pub fn computing(&self) -> Option<&Sequence> {
        match self {
            Slot::Prefilling(seq) | Slot::Decoding { seq, .. } => Some(seq),
            _ => None,
        }
    }

    pub fn sequence_mut(&mut self) -> Option<&mut Sequence> {
        match self {
            Slot::Waiting { seq, .. } | Slot::Prefilling(seq) | Slot::Decoding { seq, .. } => {
                Some(seq)
            }
            Slot::Free | Slot::Padding(_) => None,
        }
    }

    /// KV cells this slot occupies.
    pub fn kv_used(&self) -> u32 {
        match self {
            Slot::Free => 0,
            Slot::Waiting { seq, .. } | Slot::Prefilling(seq) | Slot::Decoding { seq, .. } => {
                seq.n_past
            }
            Slot::Padding(pad) => pad.n_past,
        }
    }

    /// The sequence just sampled `token` and goes on: it decodes `token` next.
    pub fn decode_next(&mut self, token: Token) {
        *self = match std::mem::take(self) {
            Slot::Prefilling(seq) | Slot::Decoding { seq, .. } => {
                Slot::Decoding { seq, next: token }
            }
            other => other,
        };
    }

    /// Takes the running sequence out; the slot is left free.
    pub fn take_sequence(&mut self) -> Option<Sequence> {
        match std::mem::take(self) {
            Slot::Waiting { seq, .. } | Slot::Prefilling(seq) | Slot::Decoding { seq, .. } => {
                Some(seq)
            }
            other => {
                *self = other;
                None
            }
        }
    }
}
