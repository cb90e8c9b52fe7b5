//! The ragged KV cache of batched decoding on a GPU: per layer one key and one value tensor
//! [S·cap, H·hd] on the device, cap slots per sequence. Entries are written into free slots
//! (one `select_assign` per layer and tensor) and evicted by freeing their slots; nothing moves
//! and nothing is read back. Which slot holds which entry is host bookkeeping, the same for every
//! layer, decided from what the host already knows (positions, the eviction policy's choices),
//! and the queries see their sequence's live slots through an additive mask. Attention is
//! order-free once RoPE is in the keys, so slots need no order. The CPU build uses
//! [`RaggedKvCache`](super::ragged_cache::RaggedKvCache) with its own kernel instead.
use crate::ar::kv_cache::{Attend, KvCache, RaggedCache};
use burn::prelude::*;
use burn::tensor::IndexingUpdateOp;

/// One sequence's slots: `entries[i]` is the slot of its i-th held entry (prefix first).
#[derive(Clone, Debug, Default)]
struct Seq {
    entries: Vec<usize>,
    free: Vec<usize>,
}

/// Where the chunk being appended goes, shared by every layer.
#[derive(Clone)]
struct Chunk {
    /// Flat rows s·cap + slot of the chunk's entries, sequence-major ([S·n]).
    rows: Tensor<1, Int>,
    /// Additive mask [S, 1, n, cap].
    bias: Tensor<4>,
}

#[derive(Clone)]
pub struct SlotKvCache {
    layers: Vec<Option<(Tensor<2>, Tensor<2>)>>,
    seqs: Vec<Seq>,
    cap: usize,
    width: usize,
    heads: usize,
    device: Device,
    chunk: Option<Chunk>,
    /// Per sequence, entry indices the chunk sees but no later query does (`retire`).
    retired: Vec<Vec<usize>>,
    peak_bytes: usize,
}

impl SlotKvCache {
    /// A cache for `layers` layers of `heads` heads of width `hd`: cap = the largest of
    /// `capacity`, plus one slot for the entry a step writes before it frees a retired one.
    pub fn new(layers: usize, heads: usize, hd: usize, capacity: &[usize], device: &Device) -> Self {
        let cap = capacity.iter().copied().max().unwrap_or(1) + 1;
        let seqs = capacity.iter().map(|_| Seq { entries: Vec::new(), free: (0..cap).rev().collect() }).collect();
        let mut c = Self {
            layers: vec![None; layers],
            seqs,
            cap,
            width: heads * hd,
            heads,
            device: device.clone(),
            chunk: None,
            retired: vec![Vec::new(); capacity.len()],
            peak_bytes: 0,
        };
        c.peak_bytes = c.allocated_bytes();
        c
    }

    /// Bytes the keys and values of all layers take (f32).
    pub fn allocated_bytes(&self) -> usize {
        2 * self.layers.len() * self.seqs.len() * self.cap * self.width * 4
    }

    /// Gives every sequence's chunk of n entries its slots (growing the cache if one runs out),
    /// builds the chunk's mask, then frees the retired entries' slots: they stay visible to
    /// this chunk (its mask was built before) and take the next chunk's entries.
    fn place(&mut self, n: usize) -> Chunk {
        let need = self.seqs.iter().map(|s| s.entries.len() + n).max().unwrap_or(0);
        if need > self.cap {
            self.grow(need.max(2 * self.cap));
        }
        let cap = self.cap;
        let mut rows = Vec::with_capacity(self.seqs.len() * n);
        let mut bias = vec![f32::NEG_INFINITY; self.seqs.len() * n * cap];
        for (s, seq) in self.seqs.iter_mut().enumerate() {
            let held = seq.entries.len();
            let fresh: Vec<usize> = (0..n).map(|_| seq.free.pop().expect("a free slot after growing")).collect();
            for i in 0..n {
                let mask = &mut bias[(s * n + i) * cap..(s * n + i + 1) * cap];
                seq.entries.iter().chain(&fresh[..=i]).for_each(|&slot| mask[slot] = 0.0);
            }
            rows.extend(fresh.iter().map(|&slot| (s * cap + slot) as i64));
            seq.entries.extend(&fresh);
            let drop = std::mem::take(&mut self.retired[s]);
            free(seq, drop.iter().copied().filter(|&e| e < held + n).collect());
        }
        let device = &self.device;
        Chunk {
            rows: Tensor::from_data(TensorData::new(rows, [self.seqs.len() * n]), device),
            bias: Tensor::from_data(TensorData::new(bias, [self.seqs.len(), 1, n, cap]), device),
        }
    }

    /// More slots per sequence: every layer's tensors are padded, the new slots free.
    fn grow(&mut self, cap: usize) {
        let (s, old, d) = (self.seqs.len(), self.cap, self.width);
        for (k, v) in self.layers.iter_mut().flatten() {
            let pad = |t: Tensor<2>| {
                let zeros = Tensor::<3>::zeros([s, cap - old, d], &t.device());
                Tensor::cat(vec![t.reshape([s, old, d]), zeros], 1).reshape([s * cap, d])
            };
            *k = pad(k.clone());
            *v = pad(v.clone());
        }
        for seq in &mut self.seqs {
            seq.free.splice(0..0, (old..cap).rev());
        }
        self.cap = cap;
        self.peak_bytes = self.peak_bytes.max(self.allocated_bytes());
    }
}

/// Frees the slots of entry indices `drop` (ascending, counting held entries), keeping the order
/// of the others.
fn free(seq: &mut Seq, drop: Vec<usize>) {
    for &e in drop.iter().rev() {
        if e < seq.entries.len() {
            let slot = seq.entries.remove(e);
            seq.free.push(slot);
        }
    }
}

impl RaggedCache for SlotKvCache {
    /// They are freed when the chunk's slots are placed, after its mask was built.
    fn retire(&mut self, retired: &[Vec<usize>]) {
        self.retired = retired.to_vec();
    }

    fn peak_bytes(&self) -> usize {
        self.peak_bytes
    }
}

impl KvCache for SlotKvCache {
    fn append(&mut self, layer: usize, k: Tensor<4>, v: Tensor<4>) -> Attend {
        let [s, h, n, hd] = k.dims();
        if layer == 0 || self.chunk.is_none() {
            self.chunk = Some(self.place(n));
        }
        let chunk = self.chunk.clone().expect("placed");
        let (cap, d) = (self.cap, self.width);
        let (ck, cv) = self.layers[layer].take().unwrap_or_else(|| {
            let z = Tensor::<2>::zeros([s * cap, d], &self.device);
            (z.clone(), z)
        });
        let rows = |x: Tensor<4>| x.swap_dims(1, 2).reshape([s * n, d]);
        let ck = ck.select_assign(0, chunk.rows.clone(), rows(k), IndexingUpdateOp::Assign);
        let cv = cv.select_assign(0, chunk.rows, rows(v), IndexingUpdateOp::Assign);
        self.layers[layer] = Some((ck.clone(), cv.clone()));
        let heads = |x: Tensor<2>| x.reshape([s, cap, self.heads, hd]).swap_dims(1, 2);
        debug_assert_eq!(h, self.heads);
        Attend { k: heads(ck), v: heads(cv), bias: Some(chunk.bias) }
    }

    fn evict(&mut self, evicted: &[Vec<usize>]) {
        for (seq, drop) in self.seqs.iter_mut().zip(evicted) {
            free(seq, drop.clone());
        }
    }

    fn lens(&self) -> Vec<usize> {
        self.seqs.iter().map(|s| s.entries.len()).collect()
    }
}
