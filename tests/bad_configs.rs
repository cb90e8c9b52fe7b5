//! Configs that make no model: every field out of its range, absurd sizes, unsupported keys
//! (TOML and the official YAML) and models too large for the machine are refused with one
//! `error:` line naming the field, exit code 1, and every input file unchanged.
mod common;

use common::{assert_clean_error, root, run, tmp};
use std::path::{Path, PathBuf};

/// Which config a case edits, and the command that reads it.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// configs/tiny_32.toml through `init`.
    Tok,
    /// tests/data/official_gr_d64.yaml through `init`.
    Yaml,
    /// A train-tokenizer config through `train-tokenizer`.
    Train,
    /// configs/ar_fmnist_mergear.toml through `train-ar`.
    Ar,
}

/// A bad config: `from` replaced by `to` in the base text of `kind`; the error must name `needle`.
struct Case {
    kind: Kind,
    from: &'static str,
    to: &'static str,
    needle: &'static str,
}

const fn case(kind: Kind, from: &'static str, to: &'static str, needle: &'static str) -> Case {
    Case { kind, from, to, needle }
}

use Kind::*;

const CASES: &[Case] = &[
    // TOML syntax and type errors keep the line (and the key) in the message.
    case(Tok, "num_heads = 4", "num_heads = \"four\"", "line 12"),
    case(Tok, "num_heads = 4", "num_heads = 4\nnum_hedas = 4", "unknown field `num_hedas`"),
    case(Train, "lr = 3e-4", "lr = [1]", ", line "),
    case(Ar, "[gpt]", "[gpt\n", ", line "),
    // Tokenizer (TOML): zero, negative, absurd and inconsistent sizes.
    case(Tok, "num_heads = 4", "num_heads = 4\nhead_dim = 0", "ddconfig.head_dim"),
    case(
        Tok,
        "n_embed = 1024\nembed_dim = 10",
        "n_embed = 1\nembed_dim = 0",
        "embed_dim must be an integer from 1 to 32, got 0",
    ),
    case(Tok, "z_channels = 10", "z_channels = 0", "ddconfig.z_channels"),
    case(Tok, "resolution = 32", "resolution = 32\nout_ch = 1", "ddconfig.out_ch"),
    case(Tok, "resolution = 32", "resolution = 32\nin_channels = 0", "ddconfig.in_channels"),
    case(Tok, "embed_dim = 10", "embed_dim = 63", "embed_dim must be an integer from 1 to 32, got 63"),
    case(
        Tok,
        "n_embed = 1024\nembed_dim = 10",
        "n_embed = 1099511627776\nembed_dim = 40",
        "embed_dim must be an integer from 1 to 32, got 40",
    ),
    case(Tok, "n_embed = 1024", "n_embed = 1000", "n_embed"),
    case(Tok, "num_heads = 4", "num_heads = 3", "ddconfig.num_heads"),
    case(Tok, "num_heads = 4", "num_heads = 0", "ddconfig.num_heads"),
    case(Tok, "num_heads = 4", "num_heads = 100000", "ddconfig.num_heads"),
    case(Tok, "ch_mult = [1, 1, 2]", "ch_mult = [1, 0, 2]", "ddconfig.ch_mult[1]"),
    case(Tok, "ch_mult = [1, 1, 2]", "ch_mult = []", "ch_mult length"),
    case(Tok, "ch_mult = [1, 1, 2]", "ch_mult = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]", "ch_mult length"),
    case(Tok, "ch = 32", "ch = 0", "ddconfig.ch"),
    case(Tok, "ch = 32", "ch = 100000000000", "ddconfig.ch"),
    case(Tok, "ch = 32", "ch = 48", "ddconfig.ch*ch_mult[0]"),
    case(Tok, "resolution = 32", "resolution = 30", "ddconfig.resolution"),
    case(Tok, "resolution = 32", "resolution = 0", "ddconfig.resolution"),
    case(Tok, "resolution = 32", "resolution = 1000000000", "ddconfig.resolution"),
    case(Tok, "num_res_blocks = 1", "num_res_blocks = 0", "ddconfig.num_res_blocks"),
    case(Tok, "num_att_blocks = 3", "num_att_blocks = 1000000", "ddconfig.num_att_blocks"),
    case(Tok, "num_att_blocks = 3", "num_att_blocks = 0", "ddconfig.num_att_blocks"),
    case(Tok, "merge_num = 28", "merge_num = 64", "ddconfig.merge_num"),
    case(Tok, "merge_num = 28", "merge_num = -1", "ddconfig.merge_num"),
    case(Tok, "merge_num = 28", "merge_num = 27", "ddconfig.merge_num"),
    case(Tok, "merge_num = 28\ncand_distribution = \"gaussian-4\"", "merge_ratio = 64", "ddconfig.merge_ratio"),
    case(Tok, "merge_num = 28\ncand_distribution = \"gaussian-4\"", "merge_ratio = -3", "ddconfig.merge_ratio"),
    case(Tok, "merge_num = 28\ncand_distribution = \"gaussian-4\"", "", "ddconfig.merge_num"),
    case(Tok, "dist_head = \"layer3\"", "dist_head = \"layer7\"", "ddconfig.dist_head"),
    case(Tok, "gaussian-4", "gaussian-100", "ddconfig.cand_distribution"),
    case(Tok, "gaussian-4", "uniform-0", "cand_distribution"),
    case(Tok, "num_classes = 10", "num_classes = 0", "ddconfig.num_classes"),
    case(Tok, "num_heads = 4", "num_heads = 4\ndrop_path = 2.0", "ddconfig.drop_path"),
    case(Tok, "num_heads = 4", "num_heads = 4\nnum_res_extra = 1000", "ddconfig.num_res_extra"),
    case(Tok, "num_heads = 4", "num_heads = 4\nisotropic = 100", "ddconfig.isotropic"),
    case(Tok, "num_heads = 4", "num_heads = 4\nmystery = 1", "mystery"),
    case(Tok, "embed_dim = 10", "embed_dim = 10\nsample_minimization_weight = -1.0", "sample_minimization_weight"),
    case(Tok, "embed_dim = 10", "embed_dim = 10\nbatch_maximization_weight = nan", "batch_maximization_weight"),
    case(
        Tok,
        "embed_dim = 10",
        "embed_dim = 10\ntoken_factorization = true\nfactorized_bits = [3, 3]",
        "factorized_bits",
    ),
    case(Tok, "embed_dim = 10", "embed_dim = 10\nfactorized_bits = [0, 10]", "factorized_bits[0]"),
    case(
        Tok,
        "[ddconfig]",
        "[k2lconfig]\nlearn_source = true\nrec_embed_dim = 10\nnum_heads = 4\n[ddconfig]",
        "k2lconfig.rec_embed_dim",
    ),
    case(Tok, "[ddconfig]", "[k2lconfig]\nlearn_source = true\nnum_layers = 0\n[ddconfig]", "k2lconfig.num_layers"),
    case(Tok, "[ddconfig]", "[k2lconfig]\nfull_num = 5\n[ddconfig]", "k2lconfig.full_num"),
    case(Tok, "[ddconfig]", "[k2lconfig]\nembed_dim = 12\n[ddconfig]", "k2lconfig.embed_dim"),
    case(Tok, "[ddconfig]", "[k2lconfig]\nswitch = 1\n[ddconfig]", "switch"),
    // A model the machine cannot hold: refused with the estimate, before any allocation.
    case(Tok, "ch = 32", "ch = 8192", "--allow-large"),
    // Tokenizer (official YAML): unknown keys by name, fields by name.
    case(Yaml, "merge_num: 112", "merge_num: 112\n      mystery_knob: 3", "mystery_knob"),
    case(Yaml, "    n_embed: 262144", "    frobnicate: 1\n    n_embed: 262144", "model.init_args.frobnicate"),
    case(Yaml, "num_heads: 8", "num_heads: 0", "ddconfig.num_heads"),
    case(Yaml, "ch_mult: [1,1,2,4,8,]", "ch_mult: [1,1,2,0,8,]", "ddconfig.ch_mult[3]"),
    case(Yaml, "    embed_dim: 18", "    embed_dim: 0", "embed_dim"),
    case(Yaml, "    n_embed: 262144", "    n_embed: 1000", "n_embed"),
    case(Yaml, "    n_embed: 262144", "    n_embed: -5", "model.init_args.n_embed"),
    case(Yaml, "    use_ema: True", "    sample_minimization_weight: -2.0", "sample_minimization_weight"),
    case(Yaml, "    use_ema: True", "    batch_maximization_weight: .inf", "batch_maximization_weight"),
    case(Yaml, "    use_ema: True", "    token_factorization: maybe", "model.init_args.token_factorization"),
    case(Yaml, "    use_ema: True", "    token_factorization: True\n    factorized_bits: [6, 6]", "factorized_bits"),
    case(Yaml, "learn_source: False", "learn_source: True\n      num_layers: 0", "k2lconfig.num_layers"),
    case(Yaml, "learn_source: False", "learn_source: False\n      depth: 3", "depth"),
    // The train-tokenizer config.
    case(Train, "# more ddconfig fields", "head_dim = 0", "tokenizer: ddconfig.head_dim"),
    case(Train, "# more ddconfig fields", "drop_path = 0.1", "drop_path"),
    case(Train, "lr = 3e-4", "lr = 0.0", "optim.lr"),
    case(Train, "lr = 3e-4", "lr = nan", "optim.lr"),
    case(Train, "clip = 5.0", "clip = -1.0", "optim.clip"),
    case(Train, "clip = 5.0", "betas = [0.5, 1.0]", "optim.betas[1]"),
    case(Train, "clip = 5.0", "ema = 1.5", "optim.ema"),
    case(Train, "clip = 5.0", "accumulate = 0", "optim.accumulate"),
    case(Train, "clip = 5.0", "weight_decay = -0.1", "optim.weight_decay"),
    case(
        Train,
        "clip = 5.0",
        "schedule = { kind = \"warmup-cosine\", warmup = 5, min_lr = 1.0 }",
        "optim.schedule.min_lr",
    ),
    case(Train, "clip = 5.0", "schedule = { kind = \"step\", drops = [2], rate = -1.0 }", "optim.schedule.rate"),
    case(Train, "disc_ndf = 8", "disc_ndf = 0", "loss.disc_ndf"),
    case(Train, "disc_ndf = 8", "disc_layers = 0", "loss.disc_layers"),
    case(Train, "disc_ndf = 8", "commit_weight = -1.0", "loss.commit_weight"),
    case(Train, "disc_ndf = 8", "codebook_weight = inf", "loss.codebook_weight"),
    case(Train, "disc_ndf = 8", "source_weight = -1.0", "loss.source_weight"),
    case(Train, "disc_ndf = 8", "label_smoothing = 1.0", "loss.label_smoothing"),
    case(Train, "disc_ndf = 8", "codebook_enlarge_steps = 0", "loss.codebook_enlarge_steps"),
    case(Train, "batch_size = 3", "batch_size = 0", "data.batch_size"),
    case(Train, "batch_size = 3", "batch_size = 100000000", "data.batch_size"),
    case(Train, "batch_size = 3", "batch_size = 3\ncrop_scale = [0.0, 1.0]", "data.crop_scale"),
    case(Train, "batch_size = 3", "batch_size = 3\ncrop_scale = [0.5, 0.2]", "data.crop_scale"),
    case(Train, "batch_size = 3", "batch_size = 3\ncrop_scale = [0.5, 1.5]", "data.crop_scale"),
    case(Train, "batch_size = 3", "batch_size = 3\ncrop_scale = [0.5, nan]", "data.crop_scale"),
    case(Train, "batch_size = 3", "batch_size = 3\ncrop_scale = [0.5]", ", line "),
    case(Train, "steps = 6", "steps = 0", "run.steps"),
    case(Train, "steps = 6", "steps = 6\nlog_every = 0", "run.log_every"),
    case(Train, "steps = 6", "steps = 6\ncheckpoint_every = 0", "run.checkpoint_every"),
    case(Train, "steps = 6", "steps = 6\nsample_every = 0", "run.sample_every"),
    case(Train, "steps = 6", "steps = 6\nval_images = 0", "run.val_images"),
    case(Train, "steps = 6", "steps = 6\nmax_minutes = -5.0", "run.max_minutes"),
    case(Train, "ch = 32", "ch = 8192", "--allow-large"),
    // The train-ar config and its GPT.
    case(Ar, "n_head = 4", "n_head = 0", "gpt: n_head"),
    case(Ar, "n_head = 4", "n_head = 3", "heads"),
    case(Ar, "dim = 128", "dim = 0", "gpt: dim"),
    case(Ar, "block_size = 64", "block_size = 0", "gpt: block_size"),
    case(Ar, "block_size = 64", "block_size = 63", "block_size"),
    case(Ar, "factorized_bits = [5, 5]", "factorized_bits = [0, 10]", "gpt: factorized_bits[0]"),
    case(Ar, "factorized_bits = [5, 5]", "factorized_bits = [40, 40]", "gpt: factorized_bits[0]"),
    case(Ar, "spatial_n_layer = 4", "spatial_n_layer = 0", "gpt: spatial_n_layer"),
    case(Ar, "factorized_n_layer = 1", "factorized_n_layer = 0", "gpt: factorized_n_layer"),
    case(Ar, "class_num = 10", "class_num = 0", "gpt: class_num"),
    case(Ar, "merge_tokens = 4", "merge_tokens = 100", "gpt: merge_tokens"),
    case(Ar, "multiple_of = 64", "multiple_of = 0", "gpt: multiple_of"),
    case(Ar, "multiple_of = 64", "multiple_of = 64\nrope_base = 0.0", "gpt: rope_base"),
    case(Ar, "multiple_of = 64", "multiple_of = 64\nclass_dropout = 1.5", "gpt: class_dropout"),
    case(Ar, "window = 2", "window = 1000", "window"),
    case(Ar, "val_fraction = 0.05", "val_fraction = 1.0", "val_fraction"),
    case(Ar, "batch_size = 32", "batch_size = 0", "batch_size"),
    case(Ar, "lr = 1e-3", "lr = -1.0", "optim.lr"),
    case(Ar, "betas = [0.9, 0.95]", "betas = [0.9, -0.1]", "optim.betas[1]"),
    case(Ar, "ema = 0.995", "ema = 1.0", "optim.ema"),
    case(Ar, "steps = 1500", "steps = 0", "run.steps"),
    case(
        Ar,
        "dim = 128\nn_head = 4\nspatial_n_layer = 4",
        "dim = 16384\nn_head = 128\nspatial_n_layer = 256",
        "--allow-large",
    ),
];

/// The training sections of a train-tokenizer config on a data folder that is never read (the
/// config is refused first); its [tokenizer] is configs/tiny_32.toml.
const TRAIN: &str = r#"
[run]
out_dir = "OUT_DIR"
steps = 6
[optim]
lr = 3e-4
clip = 5.0
[loss]
perceptual_weight = 0.0
disc_ndf = 8
[data]
source = "folder"
path = "data"
batch_size = 3
"#;

fn base(kind: Kind) -> (String, &'static str) {
    let read = |p: &str| std::fs::read_to_string(root().join(p)).unwrap();
    match kind {
        Tok => (read("configs/tiny_32.toml"), "toml"),
        Yaml => (read("tests/data/official_gr_d64.yaml"), "yaml"),
        Train => {
            let tok =
                read("configs/tiny_32.toml").replace("[ddconfig]", "[tokenizer.ddconfig]\n# more ddconfig fields");
            (format!("[tokenizer]\n{tok}{TRAIN}"), "toml")
        }
        Ar => (read("configs/ar_fmnist_mergear.toml").replace("runs/ar_mergear", "OUT_DIR"), "toml"),
    }
}

/// The command that reads the config, and the output it must not create (`OUT_DIR` in the bases).
fn command(kind: Kind, cfg: &Path, dir: &Path) -> (Vec<String>, PathBuf) {
    let cfg = cfg.to_str().unwrap().to_string();
    let s = |a: &str| a.to_string();
    match kind {
        Tok | Yaml => {
            let out = dir.join("out.safetensors");
            (vec![s("init"), s("--config"), cfg, s("-o"), out.to_str().unwrap().to_string()], out)
        }
        Train => (vec![s("train-tokenizer"), s("--config"), cfg], dir.join("run")),
        Ar => (vec![s("train-ar"), s("--config"), cfg], dir.join("run")),
    }
}

#[test]
fn bad_configs_give_one_clear_error_and_change_nothing() {
    let d = tmp("cases");
    assert!(CASES.len() >= 25);
    for (i, c) in CASES.iter().enumerate() {
        let (text, ext) = base(c.kind);
        assert!(text.contains(c.from), "case {i}: `{}` not in the {:?} base", c.from, c.kind);
        let dir = d.join(i.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join(format!("config.{ext}"));
        let bad = text.replace(c.from, c.to).replace("OUT_DIR", dir.join("run").to_str().unwrap());
        std::fs::write(&cfg, &bad).unwrap();
        let (args, out) = command(c.kind, &cfg, &dir);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = run(&args);
        println!("case {i} ({:?} `{}`): {}", c.kind, c.to, String::from_utf8_lossy(&o.stderr).trim());
        assert_clean_error(&o, c.needle);
        assert_eq!(std::fs::read_to_string(&cfg).unwrap(), bad, "case {i}: the config was changed");
        assert!(!out.exists(), "case {i}: {} was written", out.display());
    }
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn every_shipped_config_loads() {
    use mergevq::ar::gpt::GptConfig;
    use mergevq::tokenizer::config::TokenizerConfig;
    use mergevq::train::{ar::ArConfig, config::TrainConfig};
    let mut n = 0;
    for dir in ["configs", "tests/data", "assets/demo"] {
        for e in std::fs::read_dir(root().join(dir)).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            let loaded = match name.as_str() {
                "unknown_field.yaml" => continue,
                "gpt.toml" => {
                    let v: toml::Value = toml::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
                    v["gpt"].clone().try_into::<GptConfig>().map_err(Into::into).and_then(|g| g.validate())
                }
                _ if name.starts_with("train_") => TrainConfig::load(&p).map(drop),
                _ if name.starts_with("ar_") => ArConfig::load(&p).map(drop),
                _ if name.ends_with(".toml") || name.ends_with(".yaml") => TokenizerConfig::load(&p).map(drop),
                _ => continue,
            };
            loaded.unwrap_or_else(|e| panic!("{}: {e:#}", p.display()));
            n += 1;
        }
    }
    assert!(n >= 10, "{n} configs");
}

/// A training config is also a tokenizer config (its `[tokenizer]` table): `eval-recon`,
/// `reconstruct` and the other model commands take the file a model was trained with.
#[test]
fn training_configs_are_tokenizer_configs() {
    use mergevq::tokenizer::config::TokenizerConfig;
    use mergevq::train::config::TrainConfig;
    let mut n = 0;
    for dir in ["configs", "configs/science"] {
        for e in std::fs::read_dir(root().join(dir)).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            if dir.ends_with("science") && name.starts_with("ar_") {
                mergevq::train::ar::ArConfig::load(&p).unwrap_or_else(|e| panic!("{}: {e:#}", p.display()));
                continue;
            }
            if !(name.starts_with("train_") || dir.ends_with("science")) || !name.ends_with(".toml") {
                continue;
            }
            let train = TrainConfig::load(&p).unwrap_or_else(|e| panic!("{}: {e:#}", p.display()));
            let tok = TokenizerConfig::load(&p).unwrap_or_else(|e| panic!("{}: {e:#}", p.display()));
            assert_eq!(toml::to_string(&tok).unwrap(), toml::to_string(&train.tokenizer).unwrap(), "{}", p.display());
            n += 1;
        }
    }
    assert!(n >= 4, "{n} training configs");
    // A bad field inside the table is still named with its line.
    let d = tmp("train-as-tok");
    let text = std::fs::read_to_string(root().join("configs/science/fmnist_grid16.toml")).unwrap();
    let bad = d.join("bad.toml");
    std::fs::write(&bad, text.replace("num_res_blocks = 1", "num_res_block = 1")).unwrap();
    let err = format!("{:#}", TokenizerConfig::load(&bad).unwrap_err());
    assert!(err.contains("num_res_block") && err.contains("line"), "{err}");
}

/// `--allow-large` is accepted by the commands that build models and changes nothing for a
/// model that fits.
#[test]
fn allow_large_is_accepted() {
    let d = tmp("allow-large");
    let out = d.join("tok.safetensors");
    let cfg = root().join("configs/tiny_32.toml");
    let o = run(&["init", "--config", cfg.to_str().unwrap(), "-o", out.to_str().unwrap(), "--allow-large"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.exists());
    std::fs::remove_dir_all(&d).ok();
}
