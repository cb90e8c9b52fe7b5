//! Tokenizer cases: LFQ, the encoder, the decoder, source recovery, token unmerging and the
//! whole MergeVQ encode + decode.
use super::{got, int, ints, Case, Got};
use crate::io::readback;
use crate::io::safetensors::TypedTensor;
use crate::io::weights::HostTensor;
use crate::tokenizer::config::{DdConfig, K2lConfig, TokenizerConfig};
use crate::tokenizer::lfq::Lfq;
use crate::tokenizer::recovery::{groups_from_source, token_unmerge, SourceRecovery};
use crate::tokenizer::tome::KeepPlan;
use crate::tokenizer::Tokenizer;
use crate::tokenizer::{decoder::Decoder, encoder::Encoder};
use anyhow::{Context, Result};
use burn::prelude::*;
use serde_json::Value;

impl Case {
    pub(super) fn lfq(&self) -> Result<Vec<Got>> {
        let dim = self.config["dim"].as_u64().unwrap_or(0) as usize;
        let factorized = if self.config["token_factorization"].as_bool().unwrap_or(false) {
            let f = ints(&self.config["factorized_bits"]);
            Some([f[0] as usize, f[1] as usize])
        } else {
            None
        };
        let weight = |k: &str| self.config[k].as_f64().unwrap_or(1.0);
        let entropy_weights = [weight("sample_minimization_weight"), weight("batch_maximization_weight")];
        let lfq = Lfq { factorized, entropy_weights, ..Lfq::new(dim) };
        let x: Tensor<4> = self.tensor("x")?;
        let [b, _, h, w] = x.dims();
        let q = lfq.quantize(x.clone());
        let l = lfq.losses(x);
        let mut out = vec![
            got("quantized".into(), q.quantized, false),
            got("per_sample_entropy".into(), l.per_sample_entropy.reshape([0usize; 0]), false),
            got("codebook_entropy".into(), l.codebook_entropy.reshape([0usize; 0]), false),
            got("entropy_aux_loss".into(), l.entropy_aux.reshape([0usize; 0]), false),
            got("commitment".into(), l.commitment.reshape([0usize; 0]), false),
        ];
        let decode = |idx: &[i64]| -> HostTensor {
            HostTensor {
                shape: vec![b, h * w, dim],
                data: idx.iter().flat_map(|&i| Lfq::index_to_code(i, dim)).collect(),
            }
        };
        let indices = readback::ints(q.indices);
        match (factorized, q.indices_post.map(readback::ints)) {
            (Some([a, c]), Some(post)) => {
                out.push(int("indices_pre", &indices));
                out.push(int("indices_post", &post));
                out.push(got("codes_pre".into(), Lfq::codes(&indices, a, b, h, w, &self.device), false));
                out.push(got("codes_post".into(), Lfq::codes(&post, c, b, h, w, &self.device), false));
                let full: Vec<i64> = indices.iter().zip(&post).map(|(p, s)| p + (s << a)).collect();
                out.push(Got {
                    name: "decode_full_index".into(),
                    value: TypedTensor::F32(decode(&full)),
                    exact: false,
                });
            }
            _ => {
                out.push(int("indices", &indices));
                out.push(got("codes_from_indices".into(), Lfq::codes(&indices, dim, b, h, w, &self.device), false));
                out.push(Got { name: "decode".into(), value: TypedTensor::F32(decode(&indices)), exact: false });
            }
        }
        Ok(out)
    }

    pub(super) fn tokenizer_config(&self, dd: Value, k2l: Option<Value>, embed_dim: usize) -> Result<TokenizerConfig> {
        let mut dd = dd;
        if let Some(o) = dd.as_object_mut() {
            o.entry("merge_num").or_insert(Value::from(0));
        }
        let ddconfig: DdConfig = serde_json::from_value(dd).context("case config")?;
        let k2lconfig: K2lConfig = match k2l {
            Some(v) => serde_json::from_value(v).context("case k2lconfig")?,
            None => K2lConfig::default(),
        };
        Ok(TokenizerConfig {
            ddconfig,
            k2lconfig,
            n_embed: 1 << embed_dim,
            embed_dim,
            token_factorization: false,
            factorized_bits: None,
            sample_minimization_weight: 1.0,
            batch_maximization_weight: 1.0,
            preprocess: Default::default(),
        })
    }

    pub(super) fn encoder(&self) -> Result<Vec<Got>> {
        let z_channels = self.config["z_channels"].as_u64().unwrap_or(18) as usize;
        let cfg = self.tokenizer_config(self.config.clone(), None, z_channels)?;
        let w = self.weights()?;
        let enc = Encoder::load(w.root(), &cfg)?;
        w.finish(&[])?;
        let d = &cfg.ddconfig;
        let plan = KeepPlan::new(cfg.embed_res(), d.num_att_blocks, d.merge_num, d.merge_ratio, d.cand_distribution)?;
        let x: Tensor<4> = self.tensor("x")?;
        let e = enc.forward(x.clone(), &plan)?;
        let [b, l] = e.track.group_tensor().dims();
        let rows = e.track.rows();
        let mut out = vec![
            got("z".into(), e.z, false),
            Got {
                name: "source".into(),
                value: TypedTensor::F32(HostTensor { shape: vec![b, rows, l], data: e.track.source() }),
                exact: true,
            },
            got("size".into(), e.track.size_tensor(), false),
        ];
        if enc.dist_head.is_some() {
            out.push(got("head".into(), enc.head(x, &plan)?, false));
        }
        Ok(out)
    }

    pub(super) fn decoder(&self) -> Result<Vec<Got>> {
        let z_channels = self.config["z_channels"].as_u64().unwrap_or(18) as usize;
        let cfg = self.tokenizer_config(self.config.clone(), None, z_channels)?;
        let w = self.weights()?;
        let dec = Decoder::load(w.root(), &cfg)?;
        w.finish(&[])?;
        Ok(vec![got("image".into(), dec.forward(self.tensor("z")?), false)])
    }

    pub(super) fn source_recovery(&self) -> Result<Vec<Got>> {
        let c = &self.config;
        let u = |k: &str, d: u64| c[k].as_u64().unwrap_or(d) as usize;
        let w = self.weights()?;
        let rec = SourceRecovery::load(
            w.root(),
            u("embed_dim", 18),
            u("full_num", 256),
            u("rec_embed_dim", 384),
            u("num_layers", 2),
            u("num_heads", 8),
        )?;
        w.finish(&[])?;
        let r = rec.forward(self.tensor("x")?);
        let [b, k, l] = r.source.dims();
        let hard: Vec<i64> = crate::tokenizer::tome::source_matrix(&r.group, k).into_iter().map(|v| v as i64).collect();
        Ok(vec![
            got("x_full".into(), r.full, false),
            got("source".into(), r.source, false),
            Got {
                name: "source_hard".into(),
                value: TypedTensor::I64 { shape: vec![b, k, l], data: hard },
                exact: true,
            },
        ])
    }

    pub(super) fn token_unmerge(&self) -> Result<Vec<Got>> {
        let s = self.input("source")?;
        let (b, k, l) = (s.shape[0], s.shape[1], s.shape[2]);
        let groups = groups_from_source(&s.data, b, k, l);
        Ok(vec![got("full".into(), token_unmerge(self.tensor("keep_tokens")?, &groups), true)])
    }

    pub(super) fn tokenizer(&self) -> Result<Vec<Got>> {
        let embed_dim = self.config["embed_dim"].as_u64().unwrap_or(18) as usize;
        let cfg =
            self.tokenizer_config(self.config["ddconfig"].clone(), Some(self.config["k2lconfig"].clone()), embed_dim)?;
        let w = self.weights()?;
        let tok = Tokenizer::load(&w, &cfg)?;
        w.finish(&[])?;
        let t = tok.encode(self.tensor("image")?, &tok.plan)?;
        let b = t.group.len();
        let rows = t.k + 1;
        // Full source with the class token row/column, as the reference records it.
        let l = t.group[0].len();
        let mut source = vec![0f32; b * rows * (l + 1)];
        for (bi, g) in t.group.iter().enumerate() {
            source[bi * rows * (l + 1)] = 1.0;
            for (j, &i) in g.iter().enumerate() {
                source[bi * rows * (l + 1) + (i + 1) * (l + 1) + j + 1] = 1.0;
            }
        }
        let unmerged = tok.unmerge(t.quantized.clone(), &t.group);
        let rec = tok.decoder.forward(unmerged.clone());
        Ok(vec![
            got("h".into(), t.h, false),
            got("quant".into(), t.quantized, false),
            int("indices", &t.indices),
            Got {
                name: "source".into(),
                value: TypedTensor::F32(HostTensor { shape: vec![b, rows, l + 1], data: source }),
                exact: true,
            },
            got("quant_unmerged".into(), unmerged, false),
            got("reconstruction".into(), rec, false),
        ])
    }
}
