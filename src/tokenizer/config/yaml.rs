//! The official Lightning configs (configs/gpu_s1/*.yaml): `model.init_args` holds the arguments
//! of the reference's MergeVQModel. The model's arguments are read; its training arguments are
//! known and left to the trainer; any other key is refused by name.
use super::{DdConfig, K2lConfig, TokenizerConfig};
use anyhow::{anyhow, bail, Result};
use serde::de::DeserializeOwned;
use serde_yaml::{Mapping, Value};

/// MergeVQModel arguments that shape the tokenizer (and its LFQ loss): read here.
const MODEL_ARGS: &[&str] = &[
    "ddconfig",
    "k2lconfig",
    "n_embed",
    "embed_dim",
    "sample_minimization_weight",
    "batch_maximization_weight",
    "token_factorization",
    "factorized_bits",
];

/// MergeVQModel arguments of the Lightning training run (optimizer, losses, data keys,
/// checkpoints): they do not change the tokenizer, so reading a tokenizer skips them.
const TRAINING_ARGS: &[&str] = &[
    "lossconfig",
    "ckpt_path",
    "ignore_keys",
    "image_key",
    "colorize_nlabels",
    "monitor",
    "learning_rate",
    "optimizer",
    "opt_betas",
    "resume_lr",
    "pretrain_decoder",
    "pretrain_teacher",
    "cls_loss_type",
    "warmup_epochs",
    "scheduler_type",
    "min_learning_rate",
    "use_ema",
    "stage",
    "lr_drop_epoch",
    "lr_drop_rate",
    "gradient_clip_val",
    "accumulate_grad_batches",
];

impl TokenizerConfig {
    /// Reads `model.init_args` of an official YAML config.
    pub(super) fn from_yaml(text: &str) -> Result<Self> {
        let v: Value = serde_yaml::from_str(text)?;
        let args = v
            .get("model")
            .and_then(|m| m.get("init_args"))
            .and_then(Value::as_mapping)
            .ok_or_else(|| anyhow!("no model.init_args section (is this a MergeVQ stage-1 config?)"))?;
        refuse_unknown(args)?;
        let ddconfig: DdConfig = required(args, "ddconfig")?;
        let k2lconfig: K2lConfig = optional(args, "k2lconfig")?.unwrap_or_default();
        let token_factorization = optional(args, "token_factorization")?.unwrap_or(false);
        let weight = |k: &str| optional(args, k).map(|w| w.unwrap_or(1.0));
        Ok(Self {
            ddconfig,
            k2lconfig,
            n_embed: required(args, "n_embed")?,
            embed_dim: required(args, "embed_dim")?,
            token_factorization,
            factorized_bits: optional(args, "factorized_bits")?,
            sample_minimization_weight: weight("sample_minimization_weight")?,
            batch_maximization_weight: weight("batch_maximization_weight")?,
            preprocess: Default::default(),
        })
    }
}

/// Names the first key of `init_args` that MergeVQModel does not take.
fn refuse_unknown(args: &Mapping) -> Result<()> {
    for key in args.keys() {
        let name = key.as_str().unwrap_or("?");
        if !MODEL_ARGS.contains(&name) && !TRAINING_ARGS.contains(&name) {
            bail!(
                "model.init_args.{name} is not supported (not an argument of the reference's MergeVQModel); \
                 the model arguments are {}",
                MODEL_ARGS.join(", ")
            );
        }
    }
    Ok(())
}

fn required<T: DeserializeOwned>(args: &Mapping, key: &str) -> Result<T> {
    optional(args, key)?.ok_or_else(|| anyhow!("model.init_args has no `{key}`"))
}

/// The value of `key`, `None` when absent or null; a value of the wrong type is refused by name.
fn optional<T: DeserializeOwned>(args: &Mapping, key: &str) -> Result<Option<T>> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_yaml::from_value(v.clone()).map(Some).map_err(|e| anyhow!("model.init_args.{key}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::TokenizerConfig;

    const OFFICIAL: &str = include_str!("../../../tests/data/official_gr_d64.yaml");

    #[test]
    fn reads_the_lfq_arguments_and_names_unknown_keys() {
        let text = OFFICIAL.replace(
            "    use_ema: True",
            "    use_ema: True\n    sample_minimization_weight: 0.5\n    token_factorization: True\n    factorized_bits: [6, 12]",
        );
        let cfg = TokenizerConfig::from_yaml(&text).unwrap();
        assert_eq!((cfg.sample_minimization_weight, cfg.batch_maximization_weight), (0.5, 1.0));
        assert_eq!((cfg.token_factorization, cfg.factorized_bits), (true, Some([6, 12])));
        let bad = OFFICIAL.replace("    use_ema: True", "    use_emma: True");
        let e = TokenizerConfig::from_yaml(&bad).unwrap_err().to_string();
        assert!(e.contains("model.init_args.use_emma"), "{e}");
    }
}
