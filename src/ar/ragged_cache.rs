//! The ragged KV cache of batched decoding: every sequence has its own preallocated slots per
//! layer, keys and values slot-major [slots, H·hd] in host memory. A chunk's queries attend to
//! the held entries and to the chunk's own entries read from the step's activations; then the
//! entries [`RaggedKvCache::retire`] named (the ones only that chunk still needed) are dropped
//! and the chunk's entries written into the free slots in place. The cache therefore holds what
//! later queries need: prefix + K + w under MergeAR, prefix + L − 2 for plain decoding.
//! Eviction compacts each sequence by moving only the entries after the first evicted one
//! (MergeAR evicts at the trailing edge of the window, so about w entries move); nothing copies
//! a whole cache per step. Decoding steps (one query) run the CPU kernel [`attend_one`] over
//! the slots in place; chunks (the prefix) and GPU builds use the generic attention on a
//! padded copy with a mask.
use crate::ar::kv_cache::{Attend, KvCache, RaggedCache};
use crate::ar::ragged_attention::{attend_one, Held};
use crate::nn::attention;
use burn::prelude::*;

/// One layer's keys and values of one sequence.
#[derive(Clone, Debug)]
struct Slots {
    k: Vec<f32>,
    v: Vec<f32>,
    len: usize,
}

#[derive(Clone, Debug)]
pub struct RaggedKvCache {
    /// [layer][sequence].
    layers: Vec<Vec<Slots>>,
    heads: usize,
    hd: usize,
    /// Largest number of bytes allocated at any time.
    peak_bytes: usize,
    /// Per sequence, entries to drop once the next chunk attended (`retire`), and per layer
    /// whether that layer has still to drop them.
    retired: Vec<Vec<usize>>,
    retire_pending: Vec<bool>,
}

impl RaggedKvCache {
    /// A cache for `layers` layers of `heads` heads of width `hd`, with `capacity[s]` slots for
    /// sequence s (a sequence that outgrows them is given twice as many, and the bytes counted).
    pub fn new(layers: usize, heads: usize, hd: usize, capacity: &[usize]) -> Self {
        let d = heads * hd;
        let seq = |&c: &usize| Slots { k: vec![0.0; c.max(1) * d], v: vec![0.0; c.max(1) * d], len: 0 };
        let slots = (0..layers).map(|_| capacity.iter().map(seq).collect()).collect();
        let retired = vec![Vec::new(); capacity.len()];
        let mut c = Self { layers: slots, heads, hd, peak_bytes: 0, retired, retire_pending: vec![false; layers] };
        c.peak_bytes = c.allocated_bytes();
        c
    }

    /// Bytes the keys and values of all layers and sequences take now.
    pub fn allocated_bytes(&self) -> usize {
        self.layers.iter().flatten().map(|s| (s.k.capacity() + s.v.capacity()) * 4).sum()
    }

    /// Slots per sequence (layer 0; all layers grow together).
    pub fn capacity(&self) -> Vec<usize> {
        let d = self.heads * self.hd;
        self.layers.first().map_or(Vec::new(), |l| l.iter().map(|s| s.k.len() / d).collect())
    }

    /// One decoding step of `layer` on host rows q, k, v [S, H·hd] (one token per sequence):
    /// attends each query to its sequence's held entries and its own, then stores the entry;
    /// returns [S, H·hd].
    pub fn attend_step(&mut self, layer: usize, q: &[f32], k: &[f32], v: &[f32]) -> Vec<f32> {
        let d = self.heads * self.hd;
        let held: Vec<Held> = (0..self.layers[layer].len())
            .map(|s| self.held(layer, s, (&k[s * d..(s + 1) * d], &v[s * d..(s + 1) * d])))
            .collect();
        let o = attend_one(q, &held, self.heads, self.hd);
        self.store_step(layer, k, v);
        o
    }

    /// Sequence s's entries in `layer`, then `next` (the step's own entry).
    pub fn held<'a>(&'a self, layer: usize, s: usize, next: (&'a [f32], &'a [f32])) -> Held<'a> {
        let seq = &self.layers[layer][s];
        Held { k: &seq.k, v: &seq.v, len: seq.len, next: Some(next) }
    }

    /// After a step attended in `layer`: drops the retired entries, then stores its k, v [S, H·hd].
    pub fn store_step(&mut self, layer: usize, k: &[f32], v: &[f32]) {
        self.store(layer, k, v, 1);
    }

    /// Drops the retired entries of `layer` (once per `retire`), then writes the n entries of
    /// every sequence from kh, vh [S, H, n, hd] after those it holds (skipping retired ones).
    fn store(&mut self, layer: usize, kh: &[f32], vh: &[f32], n: usize) {
        let (h, hd) = (self.heads, self.hd);
        let d = h * hd;
        let pending = std::mem::take(&mut self.retire_pending[layer]);
        let mut grew = false;
        for (s, seq) in self.layers[layer].iter_mut().enumerate() {
            let drop: &[usize] = if pending { self.retired.get(s).map_or(&[], |r| r) } else { &[] };
            let held = seq.len;
            compact(seq, drop, d);
            let fresh: Vec<usize> = (0..n).filter(|t| !drop.contains(&(held + t))).collect();
            if seq.len + fresh.len() > seq.k.len() / d {
                let cap = (2 * seq.k.len() / d).max(seq.len + fresh.len());
                seq.k.resize(cap * d, 0.0);
                seq.v.resize(cap * d, 0.0);
                seq.k.shrink_to_fit();
                seq.v.shrink_to_fit();
                grew = true;
            }
            // [H, n, hd] of sequence s → the next free slots, [H·hd] each.
            for &t in &fresh {
                let slot = seq.len * d;
                for head in 0..h {
                    let src = ((s * h + head) * n + t) * hd;
                    seq.k[slot + head * hd..slot + (head + 1) * hd].copy_from_slice(&kh[src..src + hd]);
                    seq.v[slot + head * hd..slot + (head + 1) * hd].copy_from_slice(&vh[src..src + hd]);
                }
                seq.len += 1;
            }
        }
        if grew {
            self.peak_bytes = self.peak_bytes.max(self.allocated_bytes());
        }
    }
}

/// Compaction of one sequence: the kept entries after the first dropped one move down, in
/// order (indices at or past its length are ignored).
fn compact(seq: &mut Slots, drop: &[usize], d: usize) {
    let Some(&first) = drop.first().filter(|&&f| f < seq.len) else { return };
    let mut write = first;
    let mut di = 0;
    for read in first..seq.len {
        if di < drop.len() && drop[di] == read {
            di += 1;
            continue;
        }
        seq.k.copy_within(read * d..(read + 1) * d, write * d);
        seq.v.copy_within(read * d..(read + 1) * d, write * d);
        write += 1;
    }
    seq.len = write;
}

fn host(t: Tensor<4>) -> Vec<f32> {
    crate::io::readback::floats(t)
}

impl RaggedCache for RaggedKvCache {
    /// Every layer drops them after that chunk attended and before the chunk's entries are
    /// written, so they never need a slot next to the chunk's.
    fn retire(&mut self, retired: &[Vec<usize>]) {
        self.retired = retired.to_vec();
        self.retire_pending.iter_mut().for_each(|p| *p = true);
    }

    fn peak_bytes(&self) -> usize {
        self.peak_bytes
    }
}

impl KvCache for RaggedKvCache {
    /// The generic path: a padded copy [S, H, m, hd] (m the longest sequence) and a mask that
    /// closes the padding and keeps the chunk causal.
    fn append(&mut self, layer: usize, k: Tensor<4>, v: Tensor<4>) -> Attend {
        let [s_count, h, n, hd] = k.dims();
        let device = k.device();
        let (kh, vh) = (host(k), host(v));
        let seqs = &self.layers[layer];
        let m = seqs.iter().map(|s| s.len).max().unwrap_or(0) + n;
        let d = h * hd;
        let (mut kp, mut vp) = (vec![0f32; s_count * h * m * hd], vec![0f32; s_count * h * m * hd]);
        let mut bias = vec![f32::NEG_INFINITY; s_count * n * m];
        for (s, seq) in seqs.iter().enumerate() {
            for head in 0..h {
                for t in 0..seq.len + n {
                    let dst = ((s * h + head) * m + t) * hd;
                    if t < seq.len {
                        kp[dst..dst + hd].copy_from_slice(&seq.k[t * d + head * hd..t * d + (head + 1) * hd]);
                        vp[dst..dst + hd].copy_from_slice(&seq.v[t * d + head * hd..t * d + (head + 1) * hd]);
                    } else {
                        let src = ((s * h + head) * n + t - seq.len) * hd;
                        kp[dst..dst + hd].copy_from_slice(&kh[src..src + hd]);
                        vp[dst..dst + hd].copy_from_slice(&vh[src..src + hd]);
                    }
                }
            }
            // Query i of the chunk sees slots 0..=len + i.
            for i in 0..n {
                bias[(s * n + i) * m..(s * n + i) * m + seq.len + i + 1].fill(0.0);
            }
        }
        self.store(layer, &kh, &vh, n);
        let t = |x: Vec<f32>| Tensor::from_data(TensorData::new(x, [s_count, h, m, hd]), &device);
        let bias = Tensor::from_data(TensorData::new(bias, [s_count, 1, n, m]), &device);
        Attend { k: t(kp), v: t(vp), bias: Some(bias) }
    }

    fn attend(&mut self, layer: usize, q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
        let [s_count, h, n, hd] = q.dims();
        // One-query steps on the Flex backend take the CPU kernel; GPUs use the generic path.
        if n != 1 || !crate::device::is_cpu(&q.device()) {
            let Attend { k, v, bias } = self.append(layer, k, v);
            return attention(q, k, v, bias);
        }
        let device = q.device();
        let o = self.attend_step(layer, &host(q), &host(k), &host(v));
        Tensor::from_data(TensorData::new(o, [s_count, h, 1, hd]), &device)
    }

    /// Drops the entries at once (see `retire` for dropping them after the next chunk).
    fn evict(&mut self, evicted: &[Vec<usize>]) {
        let d = self.heads * self.hd;
        for layer in self.layers.iter_mut() {
            for (seq, drop) in layer.iter_mut().zip(evicted) {
                compact(seq, drop, d);
            }
        }
    }

    fn lens(&self) -> Vec<usize> {
        self.layers.first().map_or(Vec::new(), |l| l.iter().map(|s| s.len).collect())
    }
}
