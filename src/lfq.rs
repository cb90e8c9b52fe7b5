//! Lookup-free quantization (MAGVIT-v2, Yu et al. 2024): every channel is quantized to its
//! sign, the code index is Σ_i 2^i·[z_i > 0] (channel 0 is the least significant bit).
use burn::prelude::*;
use burn::tensor::activation::{log_sigmoid, sigmoid};

/// Entropy-loss temperature of the reference.
pub const TEMPERATURE: f64 = 0.01;

#[derive(Clone, Debug)]
pub struct Lfq {
    /// Bits per token d (codebook size 2^d).
    pub dim: usize,
    /// Factorized index split (e.g. [6, 12]); `None` for one index per token.
    pub factorized: Option<[usize; 2]>,
}

/// Quantizer output for z [B, d, H, W].
pub struct Quantized {
    /// Straight-through ±1 codes, [B, d, H, W].
    pub quantized: Tensor<4>,
    /// Code indices in (b, h, w) row-major order; the factorized pair when factorized.
    pub indices: Vec<i64>,
    pub indices_post: Option<Vec<i64>>,
}

/// The training losses of LFQ.
pub struct LfqLosses {
    pub per_sample_entropy: Tensor<1>,
    pub codebook_entropy: Tensor<1>,
    /// per_sample − codebook entropy (both weights 1 as in the reference configs).
    pub entropy_aux: Tensor<1>,
    /// mean((z − sign z)²).
    pub commitment: Tensor<1>,
}

impl Lfq {
    pub fn new(dim: usize) -> Self {
        Self { dim, factorized: None }
    }

    /// Sign quantization with a straight-through gradient (Eq. LFQ: q = sign(z)).
    pub fn quantize(&self, z: Tensor<4>) -> Quantized {
        let [b, d, h, w] = z.dims();
        assert_eq!(d, self.dim, "LFQ expects {} channels", self.dim);
        let q = z.clone().greater_elem(0.0).float() * 2.0 - 1.0;
        let bits: Vec<f32> = q.clone().into_data().convert::<f32>().try_into_vec().expect("f32");
        let per_token = |lo: usize, hi: usize| -> Vec<i64> {
            let mut out = Vec::with_capacity(b * h * w);
            for bi in 0..b {
                for p in 0..h * w {
                    let mut idx = 0i64;
                    for c in lo..hi {
                        if bits[(bi * d + c) * h * w + p] > 0.0 {
                            idx |= 1 << (c - lo);
                        }
                    }
                    out.push(idx);
                }
            }
            out
        };
        let (indices, indices_post) = match self.factorized {
            Some([a, _]) => (per_token(0, a), Some(per_token(a, d))),
            None => (per_token(0, d), None),
        };
        let quantized = z.clone() + (q - z).detach();
        Quantized { quantized, indices, indices_post }
    }

    /// Index → ±1 bits (LSB first), as `bits` values per index.
    pub fn index_to_code(index: i64, bits: usize) -> Vec<f32> {
        (0..bits).map(|i| if (index >> i) & 1 == 1 { 1.0 } else { -1.0 }).collect()
    }

    /// Bits → index (LSB first).
    pub fn code_to_index(code: &[f32]) -> i64 {
        code.iter().enumerate().filter(|(_, v)| **v > 0.0).map(|(i, _)| 1i64 << i).sum()
    }

    /// get_codebook_entry: indices [B·H·W] (row-major) → codes [B, bits, H, W].
    pub fn codes(indices: &[i64], bits: usize, b: usize, h: usize, w: usize, device: &Device) -> Tensor<4> {
        let mut out = vec![0f32; b * bits * h * w];
        for bi in 0..b {
            for p in 0..h * w {
                let code = Self::index_to_code(indices[bi * h * w + p], bits);
                for (c, v) in code.into_iter().enumerate() {
                    out[(bi * bits + c) * h * w + p] = v;
                }
            }
        }
        Tensor::from_data(TensorData::new(out, [b, bits, h, w]), device)
    }

    /// The entropy and commitment losses for z [B, d, H, W].
    ///
    /// The code distribution p(c|z) = softmax(2 z·c / T) factorises over bits:
    /// p(c_i = +1) = σ(4 z_i / T). Per-sample entropy is then the sum of bit entropies, exactly;
    /// the codebook entropy H(mean_n p(·|z_n)) is computed over all 2^d codes in chunks, so the
    /// B·N×2^d logits are never held at once.
    pub fn losses(&self, z: Tensor<4>) -> LfqLosses {
        let [b, d, h, w] = z.dims();
        let n = b * h * w;
        let device = z.device();
        let x = z.clone().swap_dims(1, 3).swap_dims(1, 2).reshape([n, d]); // [N, d] in (b,h,w) order
        let logit = x.clone() * (4.0 / TEMPERATURE);
        let p_pos = sigmoid(logit.clone());
        let lp_pos = log_sigmoid(logit.clone());
        let lp_neg = log_sigmoid(logit.neg());
        // H(bit) = −p log p − (1−p) log(1−p)
        let bit_entropy = -(p_pos.clone() * lp_pos.clone() + (p_pos.neg() + 1.0) * lp_neg.clone());
        let per_sample_entropy = bit_entropy.sum_dim(1).mean().reshape([1]);

        let codebook_entropy = self.codebook_entropy(lp_pos, lp_neg, n, &device);
        let entropy_aux = per_sample_entropy.clone() - codebook_entropy.clone();
        let q = z.clone().greater_elem(0.0).float() * 2.0 - 1.0;
        let commitment = (z - q.detach()).powi_scalar(2).mean().reshape([1]);
        LfqLosses { per_sample_entropy, codebook_entropy, entropy_aux, commitment }
    }

    /// −Σ_c p̄(c) log(p̄(c) + 1e-5), p̄ = mean over tokens, codes visited 2^12 at a time.
    fn codebook_entropy(&self, lp_pos: Tensor<2>, lp_neg: Tensor<2>, n: usize, device: &Device) -> Tensor<1> {
        let d = self.dim;
        let total = 1usize << d;
        let chunk = total.min(1 << 12);
        let mut acc: Option<Tensor<1>> = None;
        for start in (0..total).step_by(chunk) {
            // bits [d, chunk] (1 for +1)
            let mut bits = vec![0f32; d * chunk];
            for j in 0..chunk {
                for i in 0..d {
                    if ((start + j) >> i) & 1 == 1 {
                        bits[i * chunk + j] = 1.0;
                    }
                }
            }
            let bits = Tensor::<2>::from_data(TensorData::new(bits, [d, chunk]), device);
            let not_bits = bits.clone().neg() + 1.0;
            // log p(c|z_n) = Σ_i bit_i log σ⁺ + (1 − bit_i) log σ⁻   [N, chunk]
            let logp = lp_pos.clone().matmul(bits) + lp_neg.clone().matmul(not_bits);
            let avg = logp.exp().sum_dim(0).reshape([chunk]) / n as f64;
            let part = -(avg.clone() * (avg + 1e-5).log()).sum();
            acc = Some(match acc {
                Some(a) => a + part,
                None => part,
            });
        }
        acc.expect("at least one chunk").reshape([1])
    }
}
