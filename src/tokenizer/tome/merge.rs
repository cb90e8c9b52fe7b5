//! Bipartite soft matching (ToMe §3): split tokens into alternating sets A (even) and B (odd),
//! link each A token to its most similar B token, merge the r strongest links.
//!
//! A merge is fully described by a row map: for every input row, the output row it lands in.
//! Output order is ToMe's: [unmerged A tokens][all B tokens]. Merging sums rows into their
//! targets (a scatter-add), unmerging copies each output row back (a gather). The map stays on
//! the device: GPUs match with tensor ops (max, argsort, scatter) and never wait for the host;
//! the CPU matches on the host, where reading the scores costs nothing.
use crate::io::readback;
use burn::prelude::*;
use burn::tensor::IndexingUpdateOp;

/// One merge step: `map[b, i]` is the output row of input row `i` in batch item `b`.
#[derive(Clone, Debug)]
pub struct Merge {
    pub rows_in: usize,
    pub rows_out: usize,
    pub map: Tensor<2, Int>,
}

/// Matches the rows of `metric` [B, T, C] and merges `r` of them (r clamped to
/// (T − protected)/2; the class token, row 0, is protected). `None` when nothing merges.
pub fn bipartite_soft_matching(metric: Tensor<3>, r: i64, class_token: bool) -> Option<Merge> {
    let [_, t, _] = metric.dims();
    let protected = class_token as usize;
    let r = r.min(((t - protected) / 2) as i64);
    if r <= 0 {
        return None;
    }
    let r = r as usize;
    let device = metric.device();
    let metric = metric.clone() / (metric.powi_scalar(2).sum_dim(2).sqrt());
    let (ta, tb) = (t.div_ceil(2), t / 2);
    let a = metric.clone().select(1, Tensor::arange_step(0..2 * ta as i64, 2, &device));
    let bb = metric.select(1, Tensor::arange_step(1..2 * tb as i64, 2, &device));
    // scores = a @ bᵀ  [B, Ta, Tb]
    let scores = a.matmul(bb.swap_dims(1, 2));
    let map = if crate::nn::fused::host_kernels(&device) {
        host_map(scores, r, class_token)
    } else {
        device_map(scores, r, class_token)
    };
    Some(Merge { rows_in: t, rows_out: t - r, map })
}

/// The row map [B, T] built on the device: best B partner of every A token (max), links ranked
/// by score (argsort), the r strongest merged into their partners (scatter). NaN scores rank
/// below every real score and the class token below them, so it is never merged.
fn device_map(scores: Tensor<3>, r: usize, class_token: bool) -> Tensor<2, Int> {
    let [b, ta, tb] = scores.dims();
    let device = scores.device();
    let (node_max, node_idx) = scores.max_dim_with_indices(2);
    let (node_max, node_idx) = (node_max.reshape([b, ta]), node_idx.reshape([b, ta]));
    let mut key = node_max.clone().mask_fill(node_max.is_nan(), -2.0);
    if class_token {
        key = key.slice_assign([0..b, 0..1], Tensor::full([b, 1], -3.0, &device));
    }
    let edge = key.argsort_descending(1);
    let n_unm = ta - r;
    let src = edge.clone().narrow(1, 0, r);
    let dst = node_idx.gather(1, src.clone()) + n_unm as i64;
    let rank = |lo: usize, n: usize| Tensor::<1, Int>::arange(lo as i64..(lo + n) as i64, &device).reshape([1, n]);
    let mut map_a = Tensor::<2, Int>::zeros([b, ta], &device).scatter(1, src, dst, IndexingUpdateOp::Add);
    if n_unm > 0 {
        // With a class token the unmerged A tokens keep their order, so [CLS] stays row 0.
        let unm = edge.narrow(1, r, n_unm);
        let unm = if class_token { unm.sort(1) } else { unm };
        map_a = map_a.scatter(1, unm, rank(0, n_unm).expand([b, n_unm]), IndexingUpdateOp::Add);
    }
    let map_b = rank(n_unm, tb).expand([b, tb]);
    // Interleave: row 2i from A, row 2i + 1 from B (and a last A row when T is odd).
    let pairs = Tensor::stack::<3>(vec![map_a.clone().narrow(1, 0, tb), map_b], 2).reshape([b, 2 * tb]);
    if ta > tb {
        Tensor::cat(vec![pairs, map_a.narrow(1, tb, 1)], 1)
    } else {
        pairs
    }
}

/// The same row map built on the host (stable ranking: equal scores keep token order).
fn host_map(scores: Tensor<3>, r: usize, class_token: bool) -> Tensor<2, Int> {
    let [b, ta, tb] = scores.dims();
    let device = scores.device();
    let scores = readback::floats(scores);
    let t = ta + tb;
    let map: Vec<i64> = (0..b)
        .flat_map(|bi| {
            let s = &scores[bi * ta * tb..(bi + 1) * ta * tb];
            // node_max / node_idx: best B partner of every A token.
            let mut node_max = vec![0f32; ta];
            let mut node_idx = vec![0usize; ta];
            for i in 0..ta {
                let row = &s[i * tb..(i + 1) * tb];
                let (mut best, mut arg) = (f32::NEG_INFINITY, 0);
                for (j, &v) in row.iter().enumerate() {
                    if v > best {
                        best = v;
                        arg = j;
                    }
                }
                node_max[i] = best;
                node_idx[i] = arg;
            }
            // Strongest links first; NaN scores rank last; the class token is never merged.
            let key = |i: usize| if node_max[i].is_nan() { f32::NEG_INFINITY } else { node_max[i] };
            let mut edge: Vec<usize> = (class_token as usize..ta).collect();
            edge.sort_by(|&x, &y| key(y).total_cmp(&key(x)));
            let (src, rest) = edge.split_at(r);
            let mut unm: Vec<usize> =
                if class_token { std::iter::once(0).chain(rest.iter().copied()).collect() } else { rest.to_vec() };
            if class_token {
                unm.sort_unstable();
            }
            let n_unm = unm.len();
            let mut m = vec![0i64; t];
            for (p, &i) in unm.iter().enumerate() {
                m[2 * i] = p as i64;
            }
            for &i in src {
                m[2 * i] = (n_unm + node_idx[i]) as i64;
            }
            for j in 0..tb {
                m[2 * j + 1] = (n_unm + j) as i64;
            }
            m
        })
        .collect();
    Tensor::from_data(TensorData::new(map, [b, t]), &device)
}

impl Merge {
    /// Row indices into the batch-flattened output [B·rows_out, C], one per input row: the
    /// whole batch merges in one 1-D `select` (B·T indices, not one per element).
    fn flat_index(&self) -> Tensor<1, Int> {
        let [b, t] = self.map.dims();
        let device = self.map.device();
        let offset = Tensor::<1, Int>::arange_step(0..(b * self.rows_out) as i64, self.rows_out, &device);
        (self.map.clone() + offset.reshape([b, 1])).reshape([b * t])
    }

    /// The row map on the host: `map[b][i]` (the CPU kernels, tests).
    pub fn host_map(&self) -> Vec<Vec<usize>> {
        let t = self.rows_in;
        readback::ints(self.map.clone()).chunks(t).map(|m| m.iter().map(|&o| o as usize).collect()).collect()
    }

    /// merge(x, mode="sum"): every output row is the sum of its input rows.
    pub fn merge_sum(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, t, c] = x.dims();
        let zeros = Tensor::<2>::zeros([b * self.rows_out, c], &x.device());
        let sum = zeros.select_assign(0, self.flat_index(), x.reshape([b * t, c]), IndexingUpdateOp::Add);
        sum.reshape([b, self.rows_out, c])
    }

    /// merge_wavg (ToMe eq. 1): size-weighted average of the merged rows; `size` is [B, T, 1]
    /// before the merge. On the CPU one pass over x without index tensors.
    pub fn merge_wavg(&self, x: Tensor<3>, size: Tensor<3>) -> Tensor<3> {
        if crate::nn::fused::enabled(&x) && !size.is_tracked() {
            return super::cpu::merge_wavg(self, x, size);
        }
        let merged_size = self.merge_sum(size.clone());
        self.merge_sum(x * size) / merged_size
    }

    /// unmerge: every input row gets a copy of the output row it was merged into.
    pub fn unmerge(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, _, c] = x.dims();
        let rows = x.reshape([b * self.rows_out, c]).select(0, self.flat_index());
        rows.reshape([b, self.rows_in, c])
    }
}

/// Token sizes and sources across a chain of merges, on the device (no gradients):
/// `size` [B, T, 1] and `group` [B, L], the current row holding original token `j`; the source
/// matrix S has S[b, group[b, j], j] = 1 (ToMe's max-merged identity).
#[derive(Clone, Debug)]
pub struct Tracking {
    size: Tensor<3>,
    group: Tensor<2, Int>,
}

impl Tracking {
    pub fn new(batch: usize, tokens: usize, device: &Device) -> Self {
        let group = Tensor::<1, Int>::arange(0..tokens as i64, device).reshape([1, tokens]).repeat_dim(0, batch);
        Self { size: Tensor::ones([batch, tokens, 1], device), group }
    }

    pub fn rows(&self) -> usize {
        self.size.dims()[1]
    }

    pub fn apply(&mut self, m: &Merge) {
        self.size = m.merge_sum(self.size.clone());
        self.group = m.map.clone().gather(1, self.group.clone());
    }

    /// Sizes as a [B, T, 1] tensor.
    pub fn size_tensor(&self) -> Tensor<3> {
        self.size.clone()
    }

    /// The group map [B, L] as a tensor (row of every original token).
    pub fn group_tensor(&self) -> Tensor<2, Int> {
        self.group.clone()
    }

    /// Sizes on the host, `sizes[b][row]`.
    pub fn sizes(&self) -> Vec<Vec<f32>> {
        readback::floats(self.size.clone()).chunks(self.rows()).map(<[f32]>::to_vec).collect()
    }

    /// Groups on the host, `groups[b][j]`.
    pub fn groups(&self) -> Vec<Vec<usize>> {
        let l = self.group.dims()[1];
        readback::ints(self.group.clone()).chunks(l).map(|g| g.iter().map(|&r| r as usize).collect()).collect()
    }

    /// The source matrix S [B, T, L] as row-major 0/1 values.
    pub fn source(&self) -> Vec<f32> {
        source_matrix(&self.groups(), self.rows())
    }

    /// Groups without the class token: `group[b][j]` for the L image tokens, indexing the K
    /// kept image tokens (class row removed).
    pub fn image_groups(&self, class_token: bool) -> Vec<Vec<usize>> {
        let skip = class_token as usize;
        self.groups().iter().map(|g| g[skip..].iter().map(|&r| r - skip).collect()).collect()
    }
}

/// The 0/1 source matrix [B, rows, L] of group maps: S[b, group[b][j], j] = 1.
pub fn source_matrix(group: &[Vec<usize>], rows: usize) -> Vec<f32> {
    let l = group.first().map(|g| g.len()).unwrap_or(0);
    let mut s = vec![0f32; group.len() * rows * l];
    for (bi, g) in group.iter().enumerate() {
        for (j, &row) in g.iter().enumerate() {
            s[bi * rows * l + row * l + j] = 1.0;
        }
    }
    s
}
