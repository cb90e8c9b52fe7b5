//! How many tokens each ToMe layer merges (`parse_r`), how to pick r for a wanted total
//! (`check_parse_r`), and MergeVQ's list of kept-token candidates drawn during training.
use super::distribution::{CandDistribution, Distribution};
use anyhow::{bail, Result};

/// An r schedule as ToMe's `parse_r` takes it.
#[derive(Clone, Debug, PartialEq)]
pub enum RSpec {
    /// A constant r per layer.
    Const(i64),
    /// (r, inflection): +1 increasing, 0 constant, −1 decreasing.
    Inflect(i64, f64),
    /// Explicit per-layer counts (padded with zeros).
    List(Vec<i64>),
}

/// Per-layer merge counts; with `total`, the remainder goes to layer 0 for a negative
/// inflection and to the last layer otherwise.
pub fn parse_r(num_layers: usize, r: &RSpec, total: Option<i64>) -> Result<Vec<i64>> {
    let (r, inflect) = match r {
        RSpec::List(l) => {
            let mut l = l.clone();
            l.resize(l.len().max(num_layers), 0);
            return Ok(l);
        }
        RSpec::Const(r) => (*r, 0.0),
        RSpec::Inflect(r, i) => (*r, *i),
    };
    if num_layers < 2 {
        bail!("an (r, inflection) merge schedule needs at least 2 layers, got {num_layers}");
    }
    let min_val = (r as f64 * (1.0 - inflect)) as i64;
    let max_val = 2 * r - min_val;
    let step = (max_val - min_val) as f64 / (num_layers - 1) as f64;
    let mut list: Vec<i64> = (0..num_layers).map(|i| (min_val as f64 + step * i as f64) as i64).collect();
    if let Some(total) = total {
        let remainder = total - list.iter().sum::<i64>();
        if remainder != 0 {
            let at = if inflect < 0.0 { 0 } else { num_layers - 1 };
            list[at] += remainder;
        }
    }
    Ok(list)
}

/// The r (with `inflect`) whose schedule sum is closest to `merge_num`; with `sqrt`, only
/// those that keep a perfect-square number of the `total_num` tokens.
pub fn check_parse_r(num_layers: usize, merge_num: i64, total_num: i64, inflect: f64, sqrt: bool) -> Result<i64> {
    let mut gap = 1e10f64;
    let mut best = 0;
    for i in 0..merge_num.max(0) {
        let sum: i64 = parse_r(num_layers, &RSpec::Inflect(i, inflect), None)?.iter().sum();
        let g = (sum - merge_num) as f64;
        if gap > g.abs() {
            let keep = total_num - sum;
            if sqrt {
                if keep < 0 {
                    bail!("check_parse_r: r={i} would keep {keep} tokens (more merged than exist)");
                }
                let s = (keep as f64).sqrt() as i64;
                if s * s != keep {
                    continue;
                }
            }
            best = i;
            gap = g.abs();
        } else if gap < g.abs() {
            break;
        }
    }
    Ok(best)
}

/// Cumulative probabilities (rounded to 5 decimals) over `n` candidates indexed 0..n.
pub fn generate_prob_list(n: usize, distribution: Distribution, mean: f64, std: f64, lambd: f64) -> Vec<f64> {
    let p: Vec<f64> = (0..n)
        .map(|i| {
            let i = i as f64;
            match distribution {
                Distribution::Gaussian => (-((i - mean).powi(2)) / (2.0 * std * std)).exp() + 0.05,
                Distribution::Exponential => lambd * (-lambd * i).exp() + 0.1,
                Distribution::Uniform => 1.0 / n as f64,
            }
        })
        .collect();
    let total: f64 = p.iter().sum();
    let mut acc = 0.0;
    p.iter()
        .map(|v| {
            acc += v / total;
            (acc * 1e5).round_ties_even() / 1e5
        })
        .collect()
}

/// The inflection MergeVQ uses for every schedule ("decreasing").
pub const INFLECT: f64 = -0.5;

/// MergeVQEncoder's merge bookkeeping: the schedule in force and the candidate kept counts.
#[derive(Clone, Debug)]
pub struct KeepPlan {
    pub num_layers: usize,
    /// L, the number of image tokens before merging.
    pub embed_len: i64,
    /// The schedule's r (with inflection −0.5) and its total.
    pub r: i64,
    pub total_merge: Option<i64>,
    /// merge_num as the encoder records it.
    pub merge_num: i64,
    /// √K as the reference computes it (truncated).
    pub merge_res: i64,
    pub candidates: Option<Candidates>,
}

#[derive(Clone, Debug)]
pub struct Candidates {
    pub remain: Vec<i64>,
    pub r: Vec<i64>,
    pub cum_prob: Vec<f64>,
}

impl KeepPlan {
    /// As MergeVQEncoder.apply_merge: `merge_ratio` alone gives the schedule (r, −0.5);
    /// `merge_num` (or a candidate distribution like "gaussian-6") searches r with check_parse_r.
    pub fn new(
        embed_res: usize,
        num_layers: usize,
        merge_num: Option<i64>,
        merge_ratio: Option<i64>,
        cand_distribution: Option<CandDistribution>,
    ) -> Result<Self> {
        let embed_len = (embed_res * embed_res) as i64;
        let mut candidates = None;
        let (r, merge_n, total) = if let (Some(ratio), None) = (merge_ratio, merge_num) {
            if cand_distribution.is_some() {
                bail!("merge_ratio without merge_num cannot take a candidate distribution");
            }
            let n = parse_r(num_layers, &RSpec::Inflect(ratio, INFLECT), None)?.iter().sum();
            (ratio, n, None)
        } else if let Some(n) = merge_num.filter(|_| merge_ratio.is_none() || cand_distribution.is_some()) {
            let r = check_parse_r(num_layers, n, embed_len, INFLECT, false)?;
            if let Some(CandDistribution { distribution, count }) = cand_distribution {
                let bias = (distribution == Distribution::Gaussian) as i64;
                let root = ((embed_len - n) as f64).sqrt();
                let remain: Vec<i64> = (-bias..count as i64 - bias).map(|i| (root + i as f64).powi(2) as i64).collect();
                let cum_prob = generate_prob_list(remain.len(), distribution, bias as f64, 0.5, 2.0);
                let r = remain
                    .iter()
                    .map(|&k| check_parse_r(num_layers, embed_len - k, embed_len, INFLECT, false))
                    .collect::<Result<_>>()?;
                candidates = Some(Candidates { remain, r, cum_prob });
            }
            (r, n, Some(n))
        } else if let (Some(ratio), Some(n)) = (merge_ratio, merge_num) {
            (ratio, n, Some(n))
        } else {
            bail!("the encoder needs merge_num or merge_ratio");
        };
        let merge_res = ((embed_len - merge_n).max(0) as f64).sqrt() as i64;
        Ok(Self { num_layers, embed_len, r, total_merge: total, merge_num: merge_n, merge_res, candidates })
    }

    /// The per-layer r of the schedule in force.
    pub fn per_layer(&self) -> Result<Vec<i64>> {
        if self.r == 0 && self.total_merge.unwrap_or(0) == 0 {
            return Ok(vec![0; self.num_layers]);
        }
        parse_r(self.num_layers, &RSpec::Inflect(self.r, INFLECT), self.total_merge)
    }

    /// Kept tokens after each layer clamps r to (t − 1)/2 (class token protected).
    pub fn effective(&self, per_layer: &[i64]) -> (Vec<i64>, i64) {
        let mut t = self.embed_len + 1;
        let eff: Vec<i64> = per_layer
            .iter()
            .map(|&r| {
                let e = if r <= 0 { 0 } else { r.min((t - 1) / 2) };
                t -= e;
                e
            })
            .collect();
        (eff, t - 1)
    }

    /// Kept count K that the schedule in force produces.
    pub fn kept(&self) -> Result<i64> {
        Ok(self.effective(&self.per_layer()?).1)
    }

    /// As sampling_r_candidate: the candidate whose cumulative probability first reaches
    /// `rand`; the schedule changes only when its r differs from the current one.
    pub fn sample(&mut self, rand: f64) -> Option<usize> {
        let c = self.candidates.as_ref()?;
        let index = c.cum_prob.partition_point(|&p| p < rand).min(c.cum_prob.len() - 1);
        if self.r != c.r[index] {
            self.r = c.r[index];
            self.total_merge = Some(self.embed_len - c.remain[index]);
            self.merge_res = (c.remain[index] as f64).sqrt() as i64;
        }
        Some(index)
    }

    /// Sets the schedule that keeps exactly `keep` tokens, or says why it cannot (with the
    /// reachable values).
    pub fn set_keep(&mut self, keep: i64) -> Result<()> {
        let s = (keep.max(0) as f64).sqrt() as i64;
        if keep < 1 || s * s != keep {
            bail!(
                "kept token count K={keep} must be a positive perfect square (the decoder reshapes K tokens to √K×√K); {}",
                self.reachable_note()
            );
        }
        if keep > self.embed_len {
            bail!(
                "kept token count K={keep} exceeds the {} tokens the encoder makes; {}",
                self.embed_len,
                self.reachable_note()
            );
        }
        let (plan, got) = self.schedule_for(keep)?;
        if got != keep {
            bail!(
                "K={keep} cannot be reached with {} ToMe layers (each merges at most half its tokens; got {got}); {}",
                self.num_layers,
                self.reachable_note()
            );
        }
        *self = plan;
        Ok(())
    }

    /// This plan with the schedule that keeps exactly `keep` tokens (the plan itself is unchanged).
    pub fn with_keep(&self, keep: usize) -> Result<Self> {
        let mut plan = self.clone();
        plan.set_keep(i64::try_from(keep).unwrap_or(i64::MAX))?;
        Ok(plan)
    }

    /// Every K this encoder can keep: the perfect squares ≤ L that the schedule reaches.
    pub fn reachable(&self) -> Vec<i64> {
        let side = (self.embed_len as f64).sqrt() as i64;
        (1..=side).map(|s| s * s).filter(|&k| matches!(self.schedule_for(k), Ok((_, got)) if got == k)).collect()
    }

    /// This plan with the schedule that merges L − `keep` tokens, and the K it really keeps.
    fn schedule_for(&self, keep: i64) -> Result<(Self, i64)> {
        let merge = self.embed_len - keep;
        let r = check_parse_r(self.num_layers, merge, self.embed_len, INFLECT, false)?;
        let plan = Self { r, total_merge: Some(merge), merge_res: (keep as f64).sqrt() as i64, ..self.clone() };
        let got = plan.kept()?;
        Ok((plan, got))
    }

    fn reachable_note(&self) -> String {
        format!("reachable K with {} ToMe layers from L={}: {:?}", self.num_layers, self.embed_len, self.reachable())
    }
}
