//! Runs golden cases made from the authors' PyTorch code (case.json + weights.safetensors +
//! tensors.safetensors) through this crate and compares every output.
use crate::io::weights::{read_safetensors_typed, HostTensor, TypedTensor, Weights};
use crate::tokenizer::config::{DdConfig, K2lConfig, TokenizerConfig};
use crate::tokenizer::lfq::Lfq;
use crate::tokenizer::recovery::{groups_from_source, token_unmerge, SourceRecovery};
use crate::tokenizer::tome::{self, bipartite_soft_matching, KeepPlan, RSpec, Tracking};
use crate::tokenizer::Tokenizer;
use crate::tokenizer::{decoder::Decoder, encoder::Encoder};
use anyhow::{anyhow, bail, Context, Result};
use burn::prelude::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub struct Case {
    pub dir: PathBuf,
    pub name: String,
    pub symbol: String,
    pub config: Value,
    pub atol: f64,
    pub rtol: f64,
    pub json: Value,
    tensors: BTreeMap<String, TypedTensor>,
    device: Device,
}

/// One output the code produced; `exact` outputs must match bit for bit.
pub struct Got {
    pub name: String,
    pub value: TypedTensor,
    pub exact: bool,
}

pub struct Outcome {
    pub name: String,
    pub pass: bool,
    pub max_abs_err: f64,
    pub worst: String,
    pub failures: Vec<String>,
}

impl Case {
    pub fn open(dir: &Path, device: &Device) -> Result<Self> {
        let path = dir.join("case.json");
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let json: Value =
            serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?;
        let reference = json["reference"].as_str().ok_or_else(|| anyhow!("{}: no `reference`", path.display()))?;
        let symbol = reference.split(';').next().unwrap_or("").split(':').nth(1).unwrap_or("").trim().to_string();
        let tensors_path = dir.join("tensors.safetensors");
        let tensors = if tensors_path.exists() { read_safetensors_typed(&tensors_path)? } else { BTreeMap::new() };
        Ok(Self {
            dir: dir.to_path_buf(),
            name: json["name"].as_str().unwrap_or("?").to_string(),
            symbol,
            config: json["config"].clone(),
            atol: json["tolerance"]["atol"].as_f64().unwrap_or(0.0),
            rtol: json["tolerance"]["rtol"].as_f64().unwrap_or(0.0),
            json,
            tensors,
            device: device.clone(),
        })
    }

    fn input(&self, name: &str) -> Result<HostTensor> {
        self.tensors
            .get(&format!("in.{name}"))
            .cloned()
            .map(TypedTensor::to_f32)
            .ok_or_else(|| anyhow!("case has no input `in.{name}`"))
    }

    fn tensor<const D: usize>(&self, name: &str) -> Result<Tensor<D>> {
        to_tensor(self.input(name)?, &self.device)
    }

    /// The case's weights: weights.safetensors plus the tensors listed in `generated_weights`.
    fn weights(&self) -> Result<Weights> {
        let path = self.dir.join("weights.safetensors");
        let mut map = if path.exists() { crate::io::weights::read_safetensors(&path)? } else { BTreeMap::new() };
        for g in self.json["generated_weights"]["tensors"].as_array().into_iter().flatten() {
            let name = g["name"].as_str().ok_or_else(|| anyhow!("generated weight without a name"))?;
            let shape: Vec<usize> = ints(&g["shape"]).into_iter().map(|v| v as usize).collect();
            let data = generated(
                g["seed"].as_u64().unwrap_or(0),
                shape.iter().product(),
                g["lo"].as_f64().unwrap_or(0.0),
                g["hi"].as_f64().unwrap_or(0.0),
            );
            let sum: f64 = data.iter().map(|&v| v as f64).sum();
            if let Some(want) = g["check_sum_f64"].as_f64() {
                if (sum - want).abs() > 1e-6 * want.abs().max(1.0) {
                    bail!("generated weight {name}: checksum {sum} != {want}");
                }
            }
            map.insert(name.to_string(), HostTensor { shape, data });
        }
        Ok(Weights::from_map(map, &self.device))
    }

    /// Runs the case and compares. Errors mean the case could not be run at all.
    pub fn run(&self) -> Result<Outcome> {
        if self.symbol.starts_with("parse_r") {
            return self.run_schedule();
        }
        let got = match self.symbol.as_str() {
            "bipartite_soft_matching" => self.tome_merge()?,
            "LFQ" => self.lfq()?,
            "MergeVQEncoder" => self.encoder()?,
            "MergeVQDecoder" => self.decoder()?,
            "SourceRecovery" => self.source_recovery()?,
            "token_unmerge" => self.token_unmerge()?,
            "MergeVQModel.encode+decode" => self.tokenizer()?,
            "LPIPS" => self.lpips()?,
            "NLayerDiscriminator" => self.discriminator()?,
            "GPT" => self.gpt()?,
            "InceptionV3" => self.inception()?,
            other => bail!("case kind `{other}` is not implemented"),
        };
        Ok(self.compare(got))
    }

    fn compare(&self, got: Vec<Got>) -> Outcome {
        let mut max_abs = 0f64;
        let mut worst = (f64::NEG_INFINITY, String::new());
        let mut failures = Vec::new();
        let expected: Vec<&String> = self.tensors.keys().filter(|k| k.starts_with("out.")).collect();
        for key in &expected {
            let name = &key[4..];
            let Some(g) = got.iter().find(|g| g.name == name) else {
                failures.push(format!("{name}: not produced"));
                continue;
            };
            let want = &self.tensors[*key];
            let (ws, gs) = (shape_of(want), shape_of(&g.value));
            if ws != gs {
                failures.push(format!("{name}: shape {gs:?}, want {ws:?}"));
                continue;
            }
            let (wv, gv) = (values(want), values(&g.value));
            let exact = g.exact || matches!(want, TypedTensor::I64 { .. });
            let mut bad = 0;
            for (w, v) in wv.iter().zip(&gv) {
                let err = (w - v).abs();
                let allowed = if exact { 0.0 } else { self.atol + self.rtol * w.abs() };
                let ratio = if allowed > 0.0 {
                    err / allowed
                } else if err > 0.0 {
                    f64::INFINITY
                } else {
                    0.0
                };
                if !(err <= allowed) {
                    bad += 1;
                }
                max_abs = max_abs.max(err);
                if ratio > worst.0 || worst.1.is_empty() {
                    worst = (ratio, name.to_string());
                }
            }
            if bad > 0 {
                failures.push(format!("{name}: {bad} of {} values out of tolerance", wv.len()));
            }
        }
        Outcome {
            name: self.name.clone(),
            pass: failures.is_empty() && !expected.is_empty(),
            max_abs_err: max_abs,
            worst: worst.1,
            failures,
        }
    }

    fn tome_merge(&self) -> Result<Vec<Got>> {
        let class_token = self.config["class_token"].as_bool().unwrap_or(false);
        let metric: Tensor<3> = self.tensor("metric")?;
        let x: Tensor<3> = self.tensor("x")?;
        let [b, t, _] = x.dims();
        let mut out = Vec::new();
        for r in ints(&self.config["r_list"]) {
            let m = bipartite_soft_matching(metric.clone(), r, class_token)
                .ok_or_else(|| anyhow!("r={r} merges nothing"))?;
            let ones = Tensor::<3>::ones([b, t, 1], &self.device);
            let xw = m.merge_wavg(x.clone(), ones.clone());
            let mut track = Tracking::new(b, t);
            track.apply(&m);
            let x_mean = m.merge_sum(x.clone()) / m.merge_sum(ones);
            out.push(got(format!("r{r}.x"), xw.clone(), false));
            out.push(got(format!("r{r}.size"), track.size_tensor(&self.device), false));
            out.push(Got {
                name: format!("r{r}.source"),
                value: TypedTensor::F32(HostTensor { shape: vec![b, m.rows_out, t], data: track.source() }),
                exact: true,
            });
            out.push(got(format!("r{r}.x_mean"), x_mean, false));
            out.push(got(format!("r{r}.unmerge"), m.unmerge(xw), false));
        }
        let chain = ints(&self.config["chain_r"]);
        if chain.len() == 2 {
            let m1 = bipartite_soft_matching(metric, chain[0], class_token)
                .ok_or_else(|| anyhow!("chain step 1 merges nothing"))?;
            let mut track = Tracking::new(b, t);
            let x1 = m1.merge_wavg(x, track.size_tensor(&self.device));
            track.apply(&m1);
            let m2 = bipartite_soft_matching(self.tensor("chain_metric2")?, chain[1], class_token)
                .ok_or_else(|| anyhow!("chain step 2 merges nothing"))?;
            let x2 = m2.merge_wavg(x1, track.size_tensor(&self.device));
            track.apply(&m2);
            out.push(got("chain.x".into(), x2, false));
            out.push(got("chain.size".into(), track.size_tensor(&self.device), false));
            out.push(Got {
                name: "chain.source".into(),
                value: TypedTensor::F32(HostTensor { shape: vec![b, m2.rows_out, t], data: track.source() }),
                exact: true,
            });
        }
        Ok(out)
    }

    fn lfq(&self) -> Result<Vec<Got>> {
        let dim = self.config["dim"].as_u64().unwrap_or(0) as usize;
        let factorized = if self.config["token_factorization"].as_bool().unwrap_or(false) {
            let f = ints(&self.config["factorized_bits"]);
            Some([f[0] as usize, f[1] as usize])
        } else {
            None
        };
        let lfq = Lfq { dim, factorized };
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
        match (factorized, q.indices_post) {
            (Some([a, c]), Some(post)) => {
                out.push(int("indices_pre", &q.indices));
                out.push(int("indices_post", &post));
                out.push(got("codes_pre".into(), Lfq::codes(&q.indices, a, b, h, w, &self.device), false));
                out.push(got("codes_post".into(), Lfq::codes(&post, c, b, h, w, &self.device), false));
                let full: Vec<i64> = q.indices.iter().zip(&post).map(|(p, s)| p + (s << a)).collect();
                out.push(Got {
                    name: "decode_full_index".into(),
                    value: TypedTensor::F32(decode(&full)),
                    exact: false,
                });
            }
            _ => {
                out.push(int("indices", &q.indices));
                out.push(got("codes_from_indices".into(), Lfq::codes(&q.indices, dim, b, h, w, &self.device), false));
                out.push(Got { name: "decode".into(), value: TypedTensor::F32(decode(&q.indices)), exact: false });
            }
        }
        Ok(out)
    }

    fn tokenizer_config(&self, dd: Value, k2l: Option<Value>, embed_dim: usize) -> Result<TokenizerConfig> {
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
            preprocess: Default::default(),
        })
    }

    fn encoder(&self) -> Result<Vec<Got>> {
        let z_channels = self.config["z_channels"].as_u64().unwrap_or(18) as usize;
        let cfg = self.tokenizer_config(self.config.clone(), None, z_channels)?;
        let w = self.weights()?;
        let enc = Encoder::load(&w, "", &cfg)?;
        w.finish(&[])?;
        let d = &cfg.ddconfig;
        let plan = KeepPlan::new(
            cfg.embed_res(),
            d.num_att_blocks,
            d.merge_num,
            d.merge_ratio,
            d.cand_distribution.as_deref(),
        )?;
        let x: Tensor<4> = self.tensor("x")?;
        let e = enc.forward(x.clone(), &plan)?;
        let [b, rows, l] = [e.track.group.len(), e.track.rows(), e.track.group[0].len()];
        let mut out = vec![
            got("z".into(), e.z, false),
            Got {
                name: "source".into(),
                value: TypedTensor::F32(HostTensor { shape: vec![b, rows, l], data: e.track.source() }),
                exact: true,
            },
            got("size".into(), e.track.size_tensor(&self.device), false),
        ];
        if enc.dist_head.is_some() {
            out.push(got("head".into(), enc.head(x, &plan)?, false));
        }
        Ok(out)
    }

    fn decoder(&self) -> Result<Vec<Got>> {
        let z_channels = self.config["z_channels"].as_u64().unwrap_or(18) as usize;
        let cfg = self.tokenizer_config(self.config.clone(), None, z_channels)?;
        let w = self.weights()?;
        let dec = Decoder::load(&w, "", &cfg)?;
        w.finish(&[])?;
        Ok(vec![got("image".into(), dec.forward(self.tensor("z")?), false)])
    }

    fn source_recovery(&self) -> Result<Vec<Got>> {
        let c = &self.config;
        let u = |k: &str, d: u64| c[k].as_u64().unwrap_or(d) as usize;
        let w = self.weights()?;
        let rec = SourceRecovery::load(
            &w,
            "",
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

    fn lpips(&self) -> Result<Vec<Got>> {
        let w = self.weights()?;
        let net = crate::loss::lpips::Lpips::load(&w, "")?;
        w.finish(&[])?;
        Ok(vec![got("distance".into(), net.forward(self.tensor("input")?, self.tensor("target")?), false)])
    }

    fn discriminator(&self) -> Result<Vec<Got>> {
        let c = &self.config;
        let w = self.weights()?;
        let d = crate::loss::gan::Discriminator::load(
            &w,
            "",
            c["input_nc"].as_u64().unwrap_or(3) as usize,
            c["ndf"].as_u64().unwrap_or(64) as usize,
            c["n_layers"].as_u64().unwrap_or(3) as usize,
        )?;
        w.finish(&[])?;
        Ok(vec![got("logits".into(), d.forward(self.tensor("image")?, false), false)])
    }

    fn gpt(&self) -> Result<Vec<Got>> {
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
        let gpt = crate::ar::gpt::Gpt::load(&w, "", &cfg)?;
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
        let mut caches = vec![crate::ar::gpt::LayerCache { k: None, v: None }; cfg.spatial_n_layer];
        let mut h = gpt.step(gpt.embed_prefix(&labels, None)?, &[0], &mut caches);
        let (mut kp, mut kq) = (Vec::new(), Vec::new());
        for n in 0..t {
            if n > 0 {
                let col = |v: &[i64]| (0..b).map(|i| v[i * t + n - 1]).collect::<Vec<_>>();
                h = gpt.step(gpt.embed_token(&col(&pre), &col(&post)), &[n], &mut caches);
            }
            kp.push(gpt.decode_pre(h.clone()).unsqueeze_dim::<3>(1));
            let cur: Vec<i64> = (0..b).map(|i| pre[i * t + n]).collect();
            kq.push(gpt.decode_post(h.clone(), &cur).unsqueeze_dim::<3>(1));
        }
        Ok(vec![
            got("logits_pre".into(), l.pre, false),
            got("logits_post".into(), l.post, false),
            got("kv_logits_pre".into(), Tensor::cat(kp, 1), false),
            got("kv_logits_post".into(), Tensor::cat(kq, 1), false),
        ])
    }

    fn inception(&self) -> Result<Vec<Got>> {
        let w = self.weights()?;
        let net = crate::eval::inception::InceptionV3::load(&w, crate::eval::inception::InputRange::Torch)?;
        w.finish(&[])?;
        let f = net.features(self.tensor("images")?);
        let [b, d] = f.dims();
        Ok(vec![got("features".into(), f.reshape([b, d, 1, 1]), false)])
    }

    fn token_unmerge(&self) -> Result<Vec<Got>> {
        let s = self.input("source")?;
        let (b, k, l) = (s.shape[0], s.shape[1], s.shape[2]);
        let groups = groups_from_source(&s.data, b, k, l);
        Ok(vec![got("full".into(), token_unmerge(self.tensor("keep_tokens")?, &groups), true)])
    }

    fn tokenizer(&self) -> Result<Vec<Got>> {
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

    /// The JSON-only schedule case: every recorded call must give the recorded result or error.
    fn run_schedule(&self) -> Result<Outcome> {
        let o = &self.json["outputs"];
        let prob_atol = self.json["tolerance"]["prob_list_atol"].as_f64().unwrap_or(1e-9);
        let mut failures = Vec::new();
        let mut max_err = 0f64;
        let mut checked = 0;
        for e in o["parse_r"].as_array().into_iter().flatten() {
            checked += 1;
            let layers = e["num_layers"].as_u64().unwrap_or(0) as usize;
            let spec = match (&e["r"], e["inflect"].as_f64()) {
                (Value::Array(l), _) => RSpec::List(l.iter().filter_map(|v| v.as_i64()).collect()),
                (r, Some(i)) => RSpec::Inflect(r.as_i64().unwrap_or(0), i),
                (r, None) => RSpec::Const(r.as_i64().unwrap_or(0)),
            };
            let got = tome::parse_r(layers, &spec, e["total"].as_i64());
            check_entry(&mut failures, "parse_r", e, got.ok().map(|v| Value::from(v)));
        }
        for e in o["check_parse_r"].as_array().into_iter().flatten() {
            checked += 1;
            let got = tome::check_parse_r(
                e["num_layers"].as_u64().unwrap_or(0) as usize,
                e["merge_num"].as_i64().unwrap_or(0),
                e["total_num"].as_i64().unwrap_or(0),
                e["r_inflect"].as_f64().unwrap_or(0.0),
                e["sqrt"].as_bool().unwrap_or(false),
            );
            check_entry(&mut failures, "check_parse_r", e, got.ok().map(Value::from));
        }
        for e in o["generate_prob_list"].as_array().into_iter().flatten() {
            checked += 1;
            let n = e["r_cand_list"].as_array().map(|a| a.len()).unwrap_or(0);
            let kw = &e["kwargs"];
            let got = tome::generate_prob_list(
                n,
                e["distribution"].as_str().unwrap_or(""),
                kw["mean"].as_f64().unwrap_or(0.0),
                kw["std"].as_f64().unwrap_or(1.0),
                kw["lambd"].as_f64().unwrap_or(1.0),
            );
            let want = floats(&e["result"]);
            let err = max_diff(&got, &want);
            max_err = max_err.max(err);
            if !(err <= prob_atol) {
                failures.push(format!("generate_prob_list {}: got {got:?}, want {want:?}", e["distribution"]));
            }
        }
        for e in o["apply_merge"].as_array().into_iter().flatten() {
            checked += 1;
            if let Err(err) = self.check_apply_merge(e, prob_atol, &mut max_err) {
                failures.push(format!("apply_merge {}: {err}", e["setting"]));
            }
        }
        Ok(Outcome {
            name: self.name.clone(),
            pass: failures.is_empty() && checked > 0,
            max_abs_err: max_err,
            worst: failures
                .first()
                .map(|f| f.split(':').next().unwrap_or("").to_string())
                .unwrap_or_else(|| "-".into()),
            failures,
        })
    }

    fn check_apply_merge(&self, e: &Value, prob_atol: f64, max_err: &mut f64) -> Result<()> {
        let s = &e["setting"];
        let layers = s["num_layers"].as_u64().unwrap_or(0) as usize;
        let mut plan = KeepPlan::new(
            s["embed_res"].as_u64().unwrap_or(0) as usize,
            layers,
            s["merge_num"].as_i64(),
            s["merge_ratio"].as_i64(),
            s["cand_distribution"].as_str(),
        )?;
        let eq = |what: &str, got: Value, want: &Value| -> Result<()> {
            if &got != want {
                bail!("{what}: got {got}, want {want}");
            }
            Ok(())
        };
        eq("embed_len", Value::from(plan.embed_len), &e["embed_len"])?;
        eq("model_r", Value::from(vec![Value::from(plan.r), Value::from(-0.5)]), &e["model_r"])?;
        eq("total_merge", plan.total_merge.map(Value::from).unwrap_or(Value::Null), &e["total_merge"])?;
        eq("merge_num_attr", Value::from(plan.merge_num), &e["merge_num_attr"])?;
        eq("merge_res", Value::from(plan.merge_res), &e["merge_res"])?;
        let per = plan.per_layer()?;
        eq("per_layer_r", Value::from(per.clone()), &e["per_layer_r"])?;
        let (eff, kept) = plan.effective(&per);
        eq("per_layer_r_effective", Value::from(eff), &e["per_layer_r_effective"])?;
        eq("final_kept_tokens", Value::from(kept), &e["final_kept_tokens"])?;
        if let Some(c) = &plan.candidates {
            eq("remain_list", Value::from(c.remain.clone()), &e["remain_list"])?;
            eq("r_cand_list", Value::from(c.r.clone()), &e["r_cand_list"])?;
            let err = max_diff(&c.cum_prob, &floats(&e["r_prob_list"]));
            *max_err = max_err.max(err);
            if !(err <= prob_atol) {
                bail!("r_prob_list: got {:?}, want {}", c.cum_prob, e["r_prob_list"]);
            }
            for (i, cand) in e["candidates"].as_array().into_iter().flatten().enumerate() {
                let mut p = plan.clone();
                p.r = c.r[i];
                p.total_merge = Some(p.embed_len - c.remain[i]);
                let per = p.per_layer()?;
                eq("candidate per_layer_r", Value::from(per.clone()), &cand["per_layer_r"])?;
                let (eff, kept) = p.effective(&per);
                eq("candidate per_layer_r_effective", Value::from(eff), &cand["per_layer_r_effective"])?;
                eq("candidate final_kept_tokens", Value::from(kept), &cand["final_kept_tokens"])?;
            }
        }
        for step in e["sampling_sequence"].as_array().into_iter().flatten() {
            plan.sample(step["rand"].as_f64().unwrap_or(0.0));
            eq("sampled model_r", Value::from(vec![Value::from(plan.r), Value::from(-0.5)]), &step["model_r"])?;
            eq("sampled total_merge", plan.total_merge.map(Value::from).unwrap_or(Value::Null), &step["total_merge"])?;
            eq("sampled merge_res", Value::from(plan.merge_res), &step["merge_res"])?;
        }
        Ok(())
    }
}

/// The golden README's weight generator: splitmix64 of seed + (i+1)·φ, top 24 bits, mapped
/// to [lo, hi) in f64 and rounded once to f32.
pub fn generated(seed: u64, n: usize, lo: f64, hi: f64) -> Vec<f32> {
    (0..n as u64)
        .map(|i| {
            let mut z = seed.wrapping_add((i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let k = z >> 40;
            (lo + (hi - lo) * (k as f64 * 2f64.powi(-24))) as f32
        })
        .collect()
}

fn check_entry(failures: &mut Vec<String>, what: &str, e: &Value, got: Option<Value>) {
    let ok = match (&e["error"], got.as_ref()) {
        (Value::String(_), None) => true,
        (Value::String(_), Some(_)) => false,
        (_, Some(g)) => g == &e["result"],
        (_, None) => false,
    };
    if !ok {
        failures.push(format!("{what} {e}: got {}", got.map(|g| g.to_string()).unwrap_or_else(|| "an error".into())));
    }
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array().into_iter().flatten().filter_map(|x| x.as_i64()).collect()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().into_iter().flatten().filter_map(|x| x.as_f64()).collect()
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

fn shape_of(t: &TypedTensor) -> Vec<usize> {
    match t {
        TypedTensor::F32(h) => h.shape.clone(),
        TypedTensor::I64 { shape, .. } => shape.clone(),
    }
}

fn values(t: &TypedTensor) -> Vec<f64> {
    match t {
        TypedTensor::F32(h) => h.data.iter().map(|&v| v as f64).collect(),
        TypedTensor::I64 { data, .. } => data.iter().map(|&v| v as f64).collect(),
    }
}

pub fn to_tensor<const D: usize>(h: HostTensor, device: &Device) -> Result<Tensor<D>> {
    if h.shape.len() != D {
        bail!("expected a {D}-d tensor, got shape {:?}", h.shape);
    }
    Ok(Tensor::from_data(TensorData::new(h.data, h.shape), device))
}

fn got<const D: usize>(name: String, t: Tensor<D>, exact: bool) -> Got {
    let shape = t.dims().to_vec();
    let data = t.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32");
    Got { name, value: TypedTensor::F32(HostTensor { shape, data }), exact }
}

fn int(name: &str, v: &[i64]) -> Got {
    Got { name: name.into(), value: TypedTensor::I64 { shape: vec![v.len()], data: v.to_vec() }, exact: true }
}
