//! Bipartite soft matching (ToMe §3): split tokens into alternating sets A (even) and B (odd),
//! link each A token to its most similar B token, merge the r strongest links.
//!
//! A merge is fully described by a row map: for every input row, the output row it lands in.
//! Output order is ToMe's: [unmerged A tokens][all B tokens]. Merging sums rows into their
//! targets (a scatter-add), unmerging copies each output row back (a gather).
use burn::prelude::*;
use burn::tensor::IndexingUpdateOp;

/// One merge step: `map[b][i]` is the output row of input row `i` in batch item `b`.
#[derive(Clone, Debug)]
pub struct Merge {
    pub rows_in: usize,
    pub rows_out: usize,
    pub map: Vec<Vec<usize>>,
}

/// Matches the rows of `metric` [B, T, C] and merges `r` of them (r clamped to
/// (T − protected)/2; the class token, row 0, is protected). `None` when nothing merges.
pub fn bipartite_soft_matching(metric: Tensor<3>, r: i64, class_token: bool) -> Option<Merge> {
    let [b, t, _] = metric.dims();
    let protected = class_token as usize;
    let r = r.min(((t - protected) / 2) as i64);
    if r <= 0 {
        return None;
    }
    let r = r as usize;
    let device = metric.device();
    let metric = metric.clone() / (metric.powi_scalar(2).sum_dim(2).sqrt());
    let (ta, tb) = (t.div_ceil(2), t / 2);
    let idx = |start: usize, n: usize| {
        Tensor::<1, Int>::from_data(
            TensorData::new((0..n).map(|i| (start + 2 * i) as i64).collect::<Vec<_>>(), [n]),
            &device,
        )
    };
    let a = metric.clone().select(1, idx(0, ta));
    let bb = metric.select(1, idx(1, tb));
    // scores = a @ bᵀ  [B, Ta, Tb]
    let scores: Vec<f32> = a.matmul(bb.swap_dims(1, 2)).into_data().convert::<f32>().try_into_vec().expect("f32");

    let map = (0..b)
        .map(|bi| {
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
            let mut m = vec![0usize; t];
            for (p, &i) in unm.iter().enumerate() {
                m[2 * i] = p;
            }
            for &i in src {
                m[2 * i] = n_unm + node_idx[i];
            }
            for j in 0..tb {
                m[2 * j + 1] = n_unm + j;
            }
            m
        })
        .collect();
    Some(Merge { rows_in: t, rows_out: t - r, map })
}

impl Merge {
    /// Row indices into the batch-flattened output [B·rows_out, C], one per input row: the
    /// whole batch merges in one 1-D `select` (B·T indices, not one per element).
    fn flat_index(&self, device: &Device) -> Tensor<1, Int> {
        let flat: Vec<i64> = (self.map.iter().enumerate())
            .flat_map(|(b, m)| m.iter().map(move |&o| (b * self.rows_out + o) as i64))
            .collect();
        Tensor::from_data(TensorData::new(flat, [self.map.len() * self.rows_in]), device)
    }

    /// merge(x, mode="sum"): every output row is the sum of its input rows.
    pub fn merge_sum(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, t, c] = x.dims();
        let device = x.device();
        let zeros = Tensor::<2>::zeros([b * self.rows_out, c], &device);
        let sum = zeros.select_assign(0, self.flat_index(&device), x.reshape([b * t, c]), IndexingUpdateOp::Add);
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
        let device = x.device();
        let rows = x.reshape([b * self.rows_out, c]).select(0, self.flat_index(&device));
        rows.reshape([b, self.rows_in, c])
    }
}

/// Token sizes and sources across a chain of merges, kept on the host (no gradients).
/// `group[b][j]` is the current row holding original token `j`; the source matrix S has
/// S[b, group[b][j], j] = 1 (ToMe's max-merged identity).
#[derive(Clone, Debug)]
pub struct Tracking {
    pub size: Vec<Vec<f32>>,
    pub group: Vec<Vec<usize>>,
}

impl Tracking {
    pub fn new(batch: usize, tokens: usize) -> Self {
        Self { size: vec![vec![1.0; tokens]; batch], group: vec![(0..tokens).collect(); batch] }
    }

    pub fn rows(&self) -> usize {
        self.size[0].len()
    }

    pub fn apply(&mut self, m: &Merge) {
        for (bi, map) in m.map.iter().enumerate() {
            let mut size = vec![0.0; m.rows_out];
            for (i, &o) in map.iter().enumerate() {
                size[o] += self.size[bi][i];
            }
            self.size[bi] = size;
            for g in self.group[bi].iter_mut() {
                *g = map[*g];
            }
        }
    }

    /// Sizes as a [B, T, 1] tensor.
    pub fn size_tensor(&self, device: &Device) -> Tensor<3> {
        let (b, t) = (self.size.len(), self.rows());
        Tensor::from_data(TensorData::new(self.size.concat(), [b, t, 1]), device)
    }

    /// The source matrix S [B, T, L] as row-major 0/1 values.
    pub fn source(&self) -> Vec<f32> {
        source_matrix(&self.group, self.rows())
    }

    /// Groups without the class token: `group[b][j]` for the L image tokens, indexing the K
    /// kept image tokens (class row removed).
    pub fn image_groups(&self, class_token: bool) -> Vec<Vec<usize>> {
        let skip = class_token as usize;
        self.group.iter().map(|g| g[skip..].iter().map(|&r| r - skip).collect()).collect()
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
