//! Token merging cases: bipartite soft matching with size and source tracking, and the
//! JSON-only merge schedule (parse_r, check_parse_r, candidate probabilities, apply_merge).
use super::{floats, got, ints, within, Case, Got, Outcome};
use crate::io::safetensors::TypedTensor;
use crate::io::weights::HostTensor;
use crate::tokenizer::tome::{self, bipartite_soft_matching, KeepPlan, RSpec, Tracking};
use anyhow::{anyhow, bail, Result};
use burn::prelude::*;
use serde_json::Value;

impl Case {
    pub(super) fn tome_merge(&self) -> Result<Vec<Got>> {
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
            let mut track = Tracking::new(b, t, &self.device);
            track.apply(&m);
            let x_mean = m.merge_sum(x.clone()) / m.merge_sum(ones);
            out.push(got(format!("r{r}.x"), xw.clone(), false));
            out.push(got(format!("r{r}.size"), track.size_tensor(), false));
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
            let mut track = Tracking::new(b, t, &self.device);
            let x1 = m1.merge_wavg(x, track.size_tensor());
            track.apply(&m1);
            let m2 = bipartite_soft_matching(self.tensor("chain_metric2")?, chain[1], class_token)
                .ok_or_else(|| anyhow!("chain step 2 merges nothing"))?;
            let x2 = m2.merge_wavg(x1, track.size_tensor());
            track.apply(&m2);
            out.push(got("chain.x".into(), x2, false));
            out.push(got("chain.size".into(), track.size_tensor(), false));
            out.push(Got {
                name: "chain.source".into(),
                value: TypedTensor::F32(HostTensor { shape: vec![b, m2.rows_out, t], data: track.source() }),
                exact: true,
            });
        }
        Ok(out)
    }

    /// The JSON-only schedule case: every recorded call must give the recorded result or error.
    pub(super) fn run_schedule(&self) -> Result<Outcome> {
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
            check_entry(&mut failures, "parse_r", e, got.ok().map(Value::from));
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
                e["distribution"].as_str().unwrap_or("").parse().map_err(|e: String| anyhow!(e))?,
                kw["mean"].as_f64().unwrap_or(0.0),
                kw["std"].as_f64().unwrap_or(1.0),
                kw["lambd"].as_f64().unwrap_or(1.0),
            );
            let want = floats(&e["result"]);
            let err = max_diff(&got, &want);
            max_err = max_err.max(err);
            if !within(err, prob_atol) {
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

    pub(super) fn check_apply_merge(&self, e: &Value, prob_atol: f64, max_err: &mut f64) -> Result<()> {
        let s = &e["setting"];
        let layers = s["num_layers"].as_u64().unwrap_or(0) as usize;
        let mut plan = KeepPlan::new(
            s["embed_res"].as_u64().unwrap_or(0) as usize,
            layers,
            s["merge_num"].as_i64(),
            s["merge_ratio"].as_i64(),
            s["cand_distribution"].as_str().map(str::parse).transpose().map_err(|e: String| anyhow!(e))?,
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
            if !within(err, prob_atol) {
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

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}
