//! The ragged KV cache of batched decoding: every sequence has its own preallocated slots per
//! layer (prefix + K + w + 1 under MergeAR, prefix + L − 1 for plain decoding), keys and values
//! slot-major [slots, H·hd] in host memory. A step writes its entry into the next free slot in
//! place; eviction compacts each sequence by moving only the entries after the first evicted
//! one (MergeAR evicts at the trailing edge of the window, so about w entries move). Nothing
//! copies a whole cache per step. Decoding steps (one query) run the CPU kernel
//! [`attend_one`] over the slots in place; chunks (the prefix) and GPU builds use the generic
//! attention on a padded copy with a mask.
use crate::ar::kv_cache::{Attend, KvCache};
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
}

impl RaggedKvCache {
    /// A cache for `layers` layers of `heads` heads of width `hd`, with `capacity[s]` slots for
    /// sequence s (a sequence that outgrows them is given twice as many, and the bytes counted).
    pub fn new(layers: usize, heads: usize, hd: usize, capacity: &[usize]) -> Self {
        let d = heads * hd;
        let seq = |&c: &usize| Slots { k: vec![0.0; c.max(1) * d], v: vec![0.0; c.max(1) * d], len: 0 };
        let layers = (0..layers).map(|_| capacity.iter().map(seq).collect()).collect();
        let mut c = Self { layers, heads, hd, peak_bytes: 0 };
        c.peak_bytes = c.allocated_bytes();
        c
    }

    /// Bytes the keys and values of all layers and sequences take now.
    pub fn allocated_bytes(&self) -> usize {
        self.layers.iter().flatten().map(|s| (s.k.capacity() + s.v.capacity()) * 4).sum()
    }

    /// The most bytes allocated at any point.
    pub fn peak_bytes(&self) -> usize {
        self.peak_bytes
    }

    /// Slots per sequence (layer 0; all layers grow together).
    pub fn capacity(&self) -> Vec<usize> {
        let d = self.heads * self.hd;
        self.layers.first().map_or(Vec::new(), |l| l.iter().map(|s| s.k.len() / d).collect())
    }

    /// Writes the n entries of every sequence from k, v [S, H, n, hd] after those it holds.
    fn write(&mut self, layer: usize, k: Tensor<4>, v: Tensor<4>) {
        let [s_count, h, n, hd] = k.dims();
        let d = h * hd;
        let (kh, vh) = (host(k), host(v));
        let mut grew = false;
        for (s, seq) in self.layers[layer].iter_mut().enumerate() {
            if seq.len + n > seq.k.len() / d {
                let cap = (2 * seq.k.len() / d).max(seq.len + n);
                seq.k.resize(cap * d, 0.0);
                seq.v.resize(cap * d, 0.0);
                seq.k.shrink_to_fit();
                seq.v.shrink_to_fit();
                grew = true;
            }
            // [H, n, hd] of sequence s → slots len..len+n, [H·hd] each.
            for t in 0..n {
                let slot = (seq.len + t) * d;
                for head in 0..h {
                    let src = ((s * h + head) * n + t) * hd;
                    seq.k[slot + head * hd..slot + (head + 1) * hd].copy_from_slice(&kh[src..src + hd]);
                    seq.v[slot + head * hd..slot + (head + 1) * hd].copy_from_slice(&vh[src..src + hd]);
                }
            }
            seq.len += n;
        }
        debug_assert!(s_count == self.layers[layer].len());
        if grew {
            self.peak_bytes = self.peak_bytes.max(self.allocated_bytes());
        }
    }
}

fn host(t: Tensor<4>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec().expect("f32 tensor data")
}

/// Whether one-query steps take the CPU kernel (the Flex backend; GPUs use the generic path).
const CPU_KERNEL: bool = cfg!(not(any(feature = "vulkan", feature = "cuda")));

impl KvCache for RaggedKvCache {
    /// The generic path: a padded copy [S, H, m, hd] (m the longest sequence) and a mask that
    /// closes the padding and keeps the chunk causal.
    fn append(&mut self, layer: usize, k: Tensor<4>, v: Tensor<4>) -> Attend {
        let [s_count, h, n, hd] = k.dims();
        let device = k.device();
        self.write(layer, k, v);
        let seqs = &self.layers[layer];
        let m = seqs.iter().map(|s| s.len).max().unwrap_or(0);
        let d = h * hd;
        let (mut kp, mut vp) = (vec![0f32; s_count * h * m * hd], vec![0f32; s_count * h * m * hd]);
        let mut bias = vec![f32::NEG_INFINITY; s_count * n * m];
        for (s, seq) in seqs.iter().enumerate() {
            for t in 0..seq.len {
                for head in 0..h {
                    let dst = ((s * h + head) * m + t) * hd;
                    kp[dst..dst + hd].copy_from_slice(&seq.k[t * d + head * hd..t * d + (head + 1) * hd]);
                    vp[dst..dst + hd].copy_from_slice(&seq.v[t * d + head * hd..t * d + (head + 1) * hd]);
                }
            }
            // Query i of the chunk sees slots 0..=len − n + i.
            for i in 0..n {
                bias[(s * n + i) * m..(s * n + i) * m + seq.len - n + i + 1].fill(0.0);
            }
        }
        let t = |x: Vec<f32>| Tensor::from_data(TensorData::new(x, [s_count, h, m, hd]), &device);
        let bias = Tensor::from_data(TensorData::new(bias, [s_count, 1, n, m]), &device);
        Attend { k: t(kp), v: t(vp), bias: Some(bias) }
    }

    fn attend(&mut self, layer: usize, q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
        let [s_count, h, n, hd] = q.dims();
        if n != 1 || !CPU_KERNEL {
            let Attend { k, v, bias } = self.append(layer, k, v);
            return attention(q, k, v, bias);
        }
        let device = q.device();
        self.write(layer, k, v);
        let held: Vec<Held> = self.layers[layer].iter().map(|s| Held { k: &s.k, v: &s.v, len: s.len }).collect();
        let o = attend_one(&host(q), &held, h, hd);
        Tensor::from_data(TensorData::new(o, [s_count, h, 1, hd]), &device)
    }

    /// Compaction: the kept entries after the first evicted one move down, in order.
    fn evict(&mut self, evicted: &[Vec<usize>]) {
        let d = self.heads * self.hd;
        for layer in self.layers.iter_mut() {
            for (seq, drop) in layer.iter_mut().zip(evicted) {
                let Some(&first) = drop.first() else { continue };
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
        }
    }

    fn lens(&self) -> Vec<usize> {
        self.layers.first().map_or(Vec::new(), |l| l.iter().map(|s| s.len).collect())
    }
}
