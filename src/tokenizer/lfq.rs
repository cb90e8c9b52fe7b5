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
    /// The reference's `sample_minimization_weight` and `batch_maximization_weight`: the weights
    /// of the per-sample entropy (minimized) and the codebook entropy (maximized) in the entropy loss.
    pub entropy_weights: [f64; 2],
}

/// Quantizer output for z [B, d, H, W].
pub struct Quantized {
    /// Straight-through ±1 codes, [B, d, H, W].
    pub quantized: Tensor<4>,
    /// Code indices [B, H·W] in (h, w) row-major order, on the device; the factorized pair when
    /// factorized.
    pub indices: Tensor<2, Int>,
    pub indices_post: Option<Tensor<2, Int>>,
}

/// The training losses of LFQ.
pub struct LfqLosses {
    pub per_sample_entropy: Tensor<1>,
    pub codebook_entropy: Tensor<1>,
    /// w_sample·per_sample − w_batch·codebook entropy (`entropy_weights`; both 1 in the reference configs).
    pub entropy_aux: Tensor<1>,
    /// mean((z − sign z)²).
    pub commitment: Tensor<1>,
}

impl Lfq {
    pub fn new(dim: usize) -> Self {
        Self { dim, factorized: None, entropy_weights: [1.0, 1.0] }
    }

    /// Sign quantization with a straight-through gradient (Eq. LFQ: q = sign(z)).
    pub fn quantize(&self, z: Tensor<4>) -> Quantized {
        let [b, d, h, w] = z.dims();
        assert_eq!(d, self.dim, "LFQ expects {} channels", self.dim);
        let q = z.clone().greater_elem(0.0).float() * 2.0 - 1.0;
        // index = Σ_i 2^i·[bit i] (Eq. LFQ), over the channels lo..hi.
        let bits = z.clone().greater_elem(0.0).int();
        let device = z.device();
        let per_token = |lo: usize, hi: usize| -> Tensor<2, Int> {
            let n = hi - lo;
            let powers =
                Tensor::<1, Int>::from_data(TensorData::new((0..n).map(|i| 1i64 << i).collect(), [n]), &device);
            let weighted = bits.clone().narrow(1, lo, n) * powers.reshape([1, n, 1, 1]);
            weighted.sum_dim(1).reshape([b, h * w])
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

    /// Entropy and commitment losses of z [B, d, H, W] (MAGVIT-v2 eq. 5, temperature 0.01).
    ///
    /// The code distribution p(c|z) = softmax(2 z·c / T) factorises over bits:
    /// p(c_i = +1) = σ(4 z_i / T). Per-sample entropy is then the sum of bit entropies, exactly;
    /// the codebook entropy H(mean_n p(·|z_n)) is exact over all 2^d codes, from two half-width
    /// factors, so the B·N×2^d logits are never formed (nor kept for the backward pass).
    pub fn losses(&self, z: Tensor<4>) -> LfqLosses {
        let [b, d, h, w] = z.dims();
        let n = b * h * w;
        let x = z.clone().swap_dims(1, 3).swap_dims(1, 2).reshape([n, d]); // [N, d] in (b,h,w) order
        let logit = x * (4.0 / TEMPERATURE);
        let p_pos = sigmoid(logit.clone());
        let lp_pos = log_sigmoid(logit.clone());
        let lp_neg = log_sigmoid(logit.clone().neg());
        // H(bit) = −p log p − (1−p) log(1−p)
        let bit_entropy = -(p_pos.clone() * lp_pos + (p_pos.neg() + 1.0) * lp_neg);
        let per_sample_entropy = bit_entropy.sum_dim(1).mean().reshape([1]);

        let codebook_entropy = self.codebook_entropy(logit);
        let [w_sample, w_batch] = self.entropy_weights;
        let entropy_aux = per_sample_entropy.clone() * w_sample - codebook_entropy.clone() * w_batch;
        let q = z.clone().greater_elem(0.0).float() * 2.0 - 1.0;
        let commitment = (z - q.detach()).powi_scalar(2).mean().reshape([1]);
        LfqLosses { per_sample_entropy, codebook_entropy, entropy_aux, commitment }
    }

    /// H(p̄) = −Σ_c p̄_c log(p̄_c + 1e-5), p̄ = mean over the N tokens of p(c|z_n), for bit
    /// logits ℓ [N, d]. p(c|z_n) = Π_i σ(±ℓ_ni) factorises over the low a = d/2 bits and the high
    /// d − a bits, so p̄ = P_loᵀ·P_hi / N with P [N, 2^a] and [N, 2^(d−a)]: one product gives all
    /// 2^d averaged probabilities exactly, from N·(2^a + 2^(d−a)) exponentials instead of N·2^d.
    /// The gradient is formed here from the same factors and attached through the surrogate
    /// H + ⟨ℓ, ∂H/∂ℓ⟩ − ⟨ℓ, ∂H/∂ℓ⟩.detach(), so the backward pass keeps nothing of size N·2^a.
    fn codebook_entropy(&self, logit: Tensor<2>) -> Tensor<1> {
        let [n, d] = logit.dims();
        let a = d / 2;
        let l = logit.clone().detach();
        // Per half: its 0/1 code bits c [bits, 2^bits] and P_nc = exp(log σ(ℓ)·c + log σ(−ℓ)·(1 − c)).
        let half = |from: usize, bits: usize| -> (Tensor<2>, Tensor<2>) {
            let l = l.clone().narrow(1, from, bits);
            let codes: Vec<f32> =
                (0..bits).flat_map(|i| (0..1usize << bits).map(move |c| ((c >> i) & 1) as f32)).collect();
            let c = Tensor::<2>::from_data(TensorData::new(codes, [bits, 1 << bits]), &l.device());
            let logp = log_sigmoid(l.clone()).matmul(c.clone()) + log_sigmoid(l.neg()).matmul(c.clone().neg() + 1.0);
            // Probabilities below e^−40 are set to 0: their products would be denormal floats,
            // which CPUs multiply a hundred times slower; they change H by < 1e-15.
            let keep = logp.clone().greater_elem(-40.0).float();
            (c, logp.clamp_min(-40.0).exp() * keep)
        };
        let ((c_lo, p_lo), (c_hi, p_hi)) = (half(0, a), half(a, d - a));
        let avg = p_lo.clone().transpose().matmul(p_hi.clone()) / n as f64; // [2^a, 2^(d−a)]
        let value = (avg.clone() * (avg.clone() + 1e-5).log()).sum().neg();
        if !logit.is_tracked() {
            return value;
        }
        // g = ∂H/∂p̄ / N = −(log(p̄ + ε) + p̄/(p̄ + ε)) / N; through p̄ = P_loᵀP_hi/N to each P, and
        // through P = exp(log P) to M = ∂H/∂log P; ∂log P_nc/∂ℓ_ni = c_i − σ(ℓ_ni) then gives
        // ∂H/∂ℓ = M·cᵀ − σ(ℓ)∘(M·1).
        let g = -((avg.clone() + 1e-5).log() + avg.clone() / (avg + 1e-5)) / n as f64;
        let m_lo = p_hi.clone().matmul(g.clone().transpose()) * p_lo.clone();
        let m_hi = p_lo.matmul(g) * p_hi;
        let grad_half = |m: Tensor<2>, c: Tensor<2>, from: usize, bits: usize| -> Tensor<2> {
            let sig = sigmoid(l.clone().narrow(1, from, bits));
            m.clone().matmul(c.transpose()) - sig * m.sum_dim(1)
        };
        let grad = Tensor::cat(vec![grad_half(m_lo, c_lo, 0, a), grad_half(m_hi, c_hi, a, d - a)], 1);
        let surrogate = (logit * grad).sum();
        value + surrogate.clone() - surrogate.detach()
    }
}
