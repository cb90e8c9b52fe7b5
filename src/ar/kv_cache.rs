//! The KV cache of incremental decoding (`Gpt::step`): per spatial attention layer, the keys and
//! values of the entries (prefix, then image tokens in raster order) each sequence keeps. A batch
//! holds one sequence per image, or two with classifier-free guidance (cond, uncond). MergeAR
//! (MergeVQ §4.1, App. A.2) evicts duplicate tokens that left the window, so the entries a
//! sequence keeps are not a contiguous range of positions.
use crate::nn::attention;
use burn::prelude::*;

/// What the queries of one appended chunk attend over.
pub struct Attend {
    /// Keys and values [B, H, m, hd]: the held entries, the chunk's own last.
    pub k: Tensor<4>,
    pub v: Tensor<4>,
    /// Additive mask [B or 1, 1, n, m] for the chunk's n queries (0 where allowed, −inf
    /// elsewhere): causal within the chunk, and closed over slots a sequence does not hold.
    /// `None` when every query may see every entry.
    pub bias: Option<Tensor<4>>,
}

/// A KV cache over all spatial layers of one batch of sequences.
pub trait KvCache {
    /// Appends a chunk's keys and values [B, H, n, hd] to `layer` (every sequence gets its n
    /// new entries after those it holds); returns what the chunk's queries attend over.
    fn append(&mut self, layer: usize, k: Tensor<4>, v: Tensor<4>) -> Attend;

    /// Appends the chunk's keys and values and attends its queries q [B, H, n, hd] over what
    /// the cache then holds; returns [B, H, n, hd]. The default is the generic attention over
    /// `append`'s tensors; a cache may run its own kernel.
    fn attend(&mut self, layer: usize, q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
        let Attend { k, v, bias } = self.append(layer, k, v);
        attention(q, k, v, bias)
    }

    /// Drops entries from every layer: `evicted[s]` lists the entry indices of sequence s
    /// (0 = its first prefix entry, counting only the entries it holds), ascending.
    fn evict(&mut self, evicted: &[Vec<usize>]);

    /// Entries each sequence holds (prefix included).
    fn lens(&self) -> Vec<usize>;
}

/// A cache of sequences with their own lengths (batched decoding), whose entries a chunk may
/// still see before they are dropped.
pub trait RaggedCache: KvCache {
    /// Entries the next chunk's queries still attend to but no later query does: `retired[s]`
    /// lists sequence s's entry indices, ascending, counting its held entries and then the
    /// chunk's (index len + i is the chunk's i-th entry). Every layer drops them once that chunk
    /// attended.
    fn retire(&mut self, retired: &[Vec<usize>]);

    /// The most bytes the cache allocated at any point.
    fn peak_bytes(&self) -> usize;
}

/// Every sequence holds the same entries: one [B, H, m, hd] key and value tensor per layer,
/// appended by concatenation and evicted by selecting the kept entries.
#[derive(Clone, Debug)]
pub struct DenseKvCache {
    layers: Vec<Option<(Tensor<4>, Tensor<4>)>>,
    sequences: usize,
}

impl DenseKvCache {
    /// An empty cache for `layers` attention layers and `sequences` batch rows.
    pub fn new(layers: usize, sequences: usize) -> Self {
        Self { layers: vec![None; layers], sequences }
    }
}

impl KvCache for DenseKvCache {
    fn append(&mut self, layer: usize, k: Tensor<4>, v: Tensor<4>) -> Attend {
        let n = k.dims()[2];
        let (k, v) = match self.layers[layer].take() {
            Some((old_k, old_v)) => (Tensor::cat(vec![old_k, k], 2), Tensor::cat(vec![old_v, v], 2)),
            None => (k, v),
        };
        self.layers[layer] = Some((k.clone(), v.clone()));
        let bias = (n > 1).then(|| chunk_bias(n, k.dims()[2], &k.device()));
        Attend { k, v, bias }
    }

    /// A dense cache keeps one set of entries, so every sequence must evict the same ones.
    fn evict(&mut self, evicted: &[Vec<usize>]) {
        let Some(drop) = evicted.first() else { return };
        assert!(evicted.iter().all(|e| e == drop), "a dense KV cache evicts the same entries from every sequence");
        let Some((k, _)) = self.layers.first().and_then(|l| l.as_ref()) else { return };
        if drop.is_empty() {
            return;
        }
        let keep: Vec<i64> = (0..k.dims()[2]).filter(|i| !drop.contains(i)).map(|i| i as i64).collect();
        let n = keep.len();
        let idx = Tensor::<1, Int>::from_data(TensorData::new(keep, [n]), &k.device());
        for l in self.layers.iter_mut() {
            *l = l.take().map(|(k, v)| (k.select(2, idx.clone()), v.select(2, idx.clone())));
        }
    }

    fn lens(&self) -> Vec<usize> {
        let m = self.layers.first().and_then(|l| l.as_ref()).map_or(0, |(k, _)| k.dims()[2]);
        vec![m; self.sequences]
    }
}

/// The causal mask [1, 1, n, m] of a chunk of n queries that follows m − n held entries:
/// query i sees entries 0..=m − n + i.
fn chunk_bias(n: usize, m: usize, device: &Device) -> Tensor<4> {
    let v: Vec<f32> = (0..n * m).map(|i| if i % m <= m - n + i / m { 0.0 } else { f32::NEG_INFINITY }).collect();
    Tensor::from_data(TensorData::new(v, [1, 1, n, m]), device)
}
