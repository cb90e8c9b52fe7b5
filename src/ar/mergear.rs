//! MergeAR (MergeVQ §4.1, App. A.2): autoregressive generation over the L raster tokens of a
//! merged image, where a token sees the prefix, itself, the `window` most recent tokens and,
//! further back, only the first token of each merged group. At inference a duplicate (a code
//! already in the cache) keeps its K/V only while inside the window, so the cache holds about
//! K + window + prefix entries instead of L + prefix.
use burn::prelude::*;

/// Whether token `q` may attend to token `k` (0-based image-token positions, k ≤ q).
pub fn allowed(q: usize, k: usize, first: &[bool], window: usize) -> bool {
    k <= q && (k == q || q - k <= window || first[k])
}

/// First-of-group flags from a group map (`group[j]` = group id of position j).
pub fn first_of_group(group: &[usize]) -> Vec<bool> {
    let mut seen = std::collections::HashSet::new();
    group.iter().map(|g| seen.insert(*g)).collect()
}

/// The additive attention mask [1, 1, n, n] over the sequence [prefix][tokens 0..n−prefix):
/// prefix tokens see the prefix causally; image tokens see the whole prefix and the MergeAR
/// pattern among image tokens.
pub fn mergear_bias(prefix: usize, first: &[bool], window: usize, n: usize, device: &Device) -> Tensor<4> {
    let mut v = vec![f32::NEG_INFINITY; n * n];
    for q in 0..n {
        for k in 0..=q {
            let ok = k < prefix || (q >= prefix && allowed(q - prefix, k - prefix, first, window));
            if ok {
                v[q * n + k] = 0.0;
            }
        }
    }
    Tensor::from_data(TensorData::new(v, [1, 1, n, n]), device)
}

/// The inference-time cache policy: which cached tokens stay.
#[derive(Clone, Debug)]
pub struct EvictionPolicy {
    pub window: usize,
    /// Cached image tokens: (position, first of its group).
    pub entries: Vec<(usize, bool)>,
    seen: std::collections::HashSet<i64>,
}

impl EvictionPolicy {
    pub fn new(window: usize) -> Self {
        Self { window, entries: Vec::new(), seen: Default::default() }
    }

    /// Records that token `pos` with `code` entered the cache; returns the indices (among
    /// the cached image tokens, before removal) to evict before the next token is fed.
    pub fn push(&mut self, pos: usize, code: i64) -> Vec<usize> {
        let first = self.seen.insert(code);
        self.entries.push((pos, first));
        // The next query (position pos + 1) sees positions ≥ pos + 1 − window.
        let keep_from = (pos + 1).saturating_sub(self.window);
        let evict: Vec<usize> =
            self.entries.iter().enumerate().filter(|(_, (p, f))| !f && *p < keep_from).map(|(i, _)| i).collect();
        let mut i = 0;
        self.entries.retain(|_| {
            let keep = !evict.contains(&i);
            i += 1;
            keep
        });
        evict
    }

    /// Distinct codes seen so far.
    pub fn distinct(&self) -> usize {
        self.seen.len()
    }
}
