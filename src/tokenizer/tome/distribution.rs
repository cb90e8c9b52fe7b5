//! The distribution over kept-count candidates that MergeVQ samples from while training
//! (MergeVQEncoder's `cand_distribution`, e.g. "gaussian-6": six candidates around the
//! configured K, drawn with Gaussian weights).
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The weighting of candidate i in `generate_prob_list`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Distribution {
    /// exp(−(i − mean)² / 2σ²) + 0.05.
    Gaussian,
    /// λ·exp(−λ·i) + 0.1.
    Exponential,
    /// 1/n.
    Uniform,
}

const NAMES: &str = "gaussian, exponential or uniform";

impl FromStr for Distribution {
    type Err = String;

    /// The reference compares names in lower case, so "Gaussian" is accepted too.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_lowercase().as_str() {
            "gaussian" => Ok(Self::Gaussian),
            "exponential" => Ok(Self::Exponential),
            "uniform" => Ok(Self::Uniform),
            _ => Err(format!("unknown distribution `{s}`, expected {NAMES}")),
        }
    }
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Self::Gaussian => "gaussian",
            Self::Exponential => "exponential",
            Self::Uniform => "uniform",
        })
    }
}

/// `name-count` as the configs write it ("gaussian-6"); the count defaults to 5.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct CandDistribution {
    pub distribution: Distribution,
    /// Number of kept-count candidates.
    pub count: usize,
}

impl FromStr for CandDistribution {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (name, count) = s.split_once('-').map_or((s, None), |(n, c)| (n, Some(c)));
        let distribution = name.parse().map_err(|e| format!("bad cand_distribution `{s}`: {e}"))?;
        let count = match count {
            Some(c) => c.parse().ok().filter(|&c| c > 0).ok_or_else(|| {
                format!("bad cand_distribution `{s}`: the candidate count must be a positive integer (e.g. gaussian-6)")
            })?,
            None => 5,
        };
        Ok(Self { distribution, count })
    }
}

impl TryFrom<String> for CandDistribution {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<CandDistribution> for String {
    fn from(c: CandDistribution) -> String {
        format!("{}-{}", c.distribution, c.count)
    }
}
