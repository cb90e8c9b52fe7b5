//! The AR generator: teacher-forced GPT logits, and the same logits decoded incrementally
//! with the KV cache.
use super::{got, ints, Case, Got};
use crate::ar::kv_cache::DenseKvCache;
use crate::io::safetensors::TypedTensor;
use crate::io::weights::HostTensor;
use anyhow::{bail, Result};
use burn::prelude::*;

impl Case {
    pub(super) fn gpt(&self) -> Result<Vec<Got>> {
        let c = &self.config;
        let u = |k: &str, d: u64| c[k].as_u64().unwrap_or(d) as usize;
        let bits = ints(&c["factorized_bits"]);
        let cfg = crate::ar::gpt::GptConfig {
            factorized_bits: [bits[0] as usize, bits[1] as usize],
            block_size: u("block_size", 256),
            dim: u("dim", 256),
            n_head: u("n_head", 8),
            spatial_n_layer: u("spatial_n_layer", 12),
            factorized_n_layer: u("factorized_n_layer", 2),
            class_num: u("class_num", 1000),
            merge_tokens: 0,
            multiple_of: u("multiple_of", 256),
            rope_base: c["rope_base"].as_f64().unwrap_or(10000.0),
            class_dropout: 0.0,
        };
        let w = self.weights()?;
        let gpt = crate::ar::gpt::Gpt::load(w.root(), &cfg)?;
        w.finish(&[])?;
        let ints_of = |name: &str| -> Result<(Vec<i64>, Vec<usize>)> {
            match self.tensors.get(&format!("in.{name}")) {
                Some(TypedTensor::I64 { shape, data }) => Ok((data.clone(), shape.clone())),
                _ => bail!("case has no int64 input `in.{name}`"),
            }
        };
        let (pre, shape) = ints_of("idx_pre")?;
        let (post, _) = ints_of("idx_post")?;
        let (labels, _) = ints_of("labels")?;
        let (b, t) = (shape[0], shape[1]);
        let l = gpt.forward(&pre, &post, &labels, None, None)?;
        // The same logits, incrementally with the KV cache (teacher-forced tokens).
        let mut cache = DenseKvCache::new(cfg.spatial_n_layer, b);
        let mut h = gpt.step(gpt.embed_prefix(&labels, None)?, &[0], &mut cache);
        let (mut kp, mut kq) = (Vec::new(), Vec::new());
        for n in 0..t {
            if n > 0 {
                let col = |v: &[i64]| (0..b).map(|i| v[i * t + n - 1]).collect::<Vec<_>>();
                h = gpt.step(gpt.embed_token(&col(&pre), &col(&post)), &[n], &mut cache);
            }
            let (logits, factor) = gpt.decode_pre(h.clone());
            kp.push(logits.unsqueeze_dim::<3>(1));
            let cur: Vec<i64> = (0..b).map(|i| pre[i * t + n]).collect();
            kq.push(gpt.decode_post(factor, &cur).unsqueeze_dim::<3>(1));
        }
        let mut out = vec![
            got("logits_pre".into(), l.pre, false),
            got("logits_post".into(), l.post, false),
            got("kv_logits_pre".into(), Tensor::cat(kp, 1), false),
            got("kv_logits_post".into(), Tensor::cat(kq, 1), false),
        ];
        #[cfg(feature = "flex")]
        if crate::nn::fused::host_kernels(&self.device) {
            out.extend(host_incremental(&gpt, &pre, &post, &labels, t));
        }
        Ok(out)
    }
}

/// The incremental logits of the fused host decoder that generation runs on the CPU
/// (`ar::host_step`), over the ragged cache: the same recorded values.
#[cfg(feature = "flex")]
fn host_incremental(gpt: &crate::ar::gpt::Gpt, pre: &[i64], post: &[i64], labels: &[i64], t: usize) -> Vec<Got> {
    use crate::ar::host_step::HostGpt;
    use crate::ar::ragged_cache::RaggedKvCache;
    let (b, cfg) = (labels.len(), &gpt.cfg);
    let host = HostGpt::new(gpt);
    let mut cache = RaggedKvCache::new(cfg.spatial_n_layer, cfg.n_head, cfg.dim / cfg.n_head, &vec![1 + t; b]);
    let prefix = gpt.embed_prefix(labels, None).expect("a plain GPT takes no merge instruction");
    let mut h = crate::io::readback::floats(gpt.step(prefix, &[0], &mut cache));
    let (mut kp, mut kq) = (Vec::new(), Vec::new());
    for n in 0..t {
        let col = |v: &[i64], at: usize| (0..b).map(|i| v[i * t + at]).collect::<Vec<_>>();
        if n > 0 {
            h = host.step(host.embed(&col(pre, n - 1), &col(post, n - 1)), n, &mut cache);
        }
        let (logits, factor) = host.decode_pre(&h);
        kp.push(logits);
        kq.push(host.decode_post(&factor, &col(pre, n)));
    }
    // [T][B, V] → [B, T, V].
    let grid = |steps: Vec<Vec<f32>>| {
        let v = steps[0].len() / b;
        let data: Vec<f32> =
            (0..b).flat_map(|i| steps.iter().flat_map(move |s| s[i * v..(i + 1) * v].to_vec())).collect();
        Got { name: String::new(), value: TypedTensor::F32(HostTensor { shape: vec![b, t, v], data }), exact: false }
    };
    vec![Got { name: "kv_logits_pre@host".into(), ..grid(kp) }, Got { name: "kv_logits_post@host".into(), ..grid(kq) }]
}
