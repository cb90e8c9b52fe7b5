//! Token Merging (ToMe, Bolya et al. 2023) as MergeVQ uses it: bipartite soft matching,
//! size-weighted merging with source tracking, and the per-layer merge schedules.
mod cpu;
pub mod distribution;
pub mod merge;
pub mod schedule;

pub use distribution::{CandDistribution, Distribution};
pub use merge::{bipartite_soft_matching, source_matrix, Merge, Tracking};
pub use schedule::{check_parse_r, generate_prob_list, parse_r, KeepPlan, RSpec};
