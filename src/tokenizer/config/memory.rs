//! The tokenizer's memory estimate from its config (see [`crate::memory`]): parameters counted
//! layer by layer as the encoder, decoder and source recovery build them; activations from the
//! feature maps of the CNN levels and the ViT blocks.
use super::TokenizerConfig;
use crate::memory::{Estimate, Use, INFERENCE_FACTOR, TRAINING_FACTOR};

fn conv(cin: f64, cout: f64, k: f64) -> f64 {
    cin * cout * k * k + cout
}

fn resblock(cin: f64, cout: f64) -> f64 {
    let shortcut = if cin == cout { 0.0 } else { conv(cin, cout, 1.0) };
    2.0 * cin + conv(cin, cout, 3.0) + 2.0 * cout + conv(cout, cout, 3.0) + shortcut
}

/// Attention (qkv + projection) and a 4× MLP, with norms and biases.
fn vit_block(d: f64) -> f64 {
    12.0 * d * d + 13.0 * d
}

/// A level of the CNN: its width, its side and its ResBlocks.
struct Level {
    width: f64,
    side: f64,
    blocks: f64,
}

impl TokenizerConfig {
    /// Memory to build the tokenizer and run `batch` images through it (or train on them).
    pub fn memory(&self, batch: usize, usage: Use) -> Estimate {
        let levels = self.levels();
        let (params, maps) = (self.encoder_params(&levels) + self.decoder_params(&levels), self.maps(&levels));
        let b = batch as f64;
        let activations = match usage {
            Use::Inference => maps.iter().cloned().fold(0.0, f64::max) * b * INFERENCE_FACTOR,
            Use::Training => maps.iter().sum::<f64>() * b * TRAINING_FACTOR,
        };
        Estimate::new(params + self.recovery_params(), activations, batch, usage)
    }

    fn levels(&self) -> Vec<Level> {
        let d = &self.ddconfig;
        let (ch, r) = (d.ch as f64, d.resolution as f64);
        let blocks = (d.num_res_blocks + d.num_res_extra) as f64;
        d.ch_mult
            .iter()
            .enumerate()
            .map(|(i, &m)| Level { width: ch * m as f64, side: r / 2f64.powi(i as i32), blocks })
            .collect()
    }

    fn encoder_params(&self, levels: &[Level]) -> f64 {
        let d = &self.ddconfig;
        let dim = self.encoder_dim() as f64;
        let stem = if self.isotropic() {
            let patch = (d.resolution / self.embed_res()) as f64;
            conv(3.0, dim, patch)
        } else {
            let cnn: f64 =
                levels.iter().map(|l| l.blocks * resblock(l.width, l.width) + conv(l.width, l.width, 3.0)).sum();
            conv(3.0, d.ch as f64, 3.0) + cnn
        };
        let classes = d.num_classes.unwrap_or(self.encoder_dim()) as f64;
        let head = 20.0 * dim * dim + 4.0 * dim * classes;
        let blocks = (d.num_att_blocks + d.num_rep_blocks) as f64 * vit_block(dim);
        stem + blocks + head + conv(dim, d.z_channels as f64, 1.0)
    }

    fn decoder_params(&self, levels: &[Level]) -> f64 {
        let d = &self.ddconfig;
        let z = d.z_channels as f64;
        let top = levels[levels.len() - 1].width;
        let attn = d.num_att_blocks as f64 * (vit_block(top) + 46.0 * top);
        let up: f64 = levels
            .iter()
            .map(|l| l.blocks * resblock(l.width, l.width) + conv(l.width, 4.0 * l.width, 3.0) + 4.0 * z * l.width)
            .sum();
        conv(z, top, 3.0) + attn + up + conv(d.ch as f64, 3.0, 3.0)
    }

    fn recovery_params(&self) -> f64 {
        let k = &self.k2lconfig;
        if !k.learn_source {
            return 0.0;
        }
        let r = k.rec_embed_dim.unwrap_or(384) as f64;
        let full = self.embed_res().pow(2) as f64;
        k.num_layers.unwrap_or(2) as f64 * vit_block(r) + r * (full + self.embed_dim as f64 + r)
    }

    /// f32 values of one image's feature maps: per CNN level (encoder and decoder) a map per
    /// ResBlock; per ViT block its tokens × the MLP width and the attention matrix.
    fn maps(&self, levels: &[Level]) -> Vec<f64> {
        let d = &self.ddconfig;
        let mut maps: Vec<f64> = Vec::new();
        for l in levels {
            let map = l.width * l.side * l.side;
            maps.extend(std::iter::repeat_n(map, 2 * l.blocks as usize + 1));
        }
        let tokens = self.embed_res().pow(2) as f64 + 1.0;
        let dim = self.encoder_dim() as f64;
        let heads = self.heads_for(self.encoder_dim()) as f64;
        let block = 4.0 * tokens * dim + heads * tokens * tokens;
        maps.extend(std::iter::repeat_n(block, 2 * d.num_att_blocks + d.num_rep_blocks));
        maps
    }
}

#[cfg(test)]
mod tests {
    use crate::memory::Use;
    use crate::tokenizer::{config::TokenizerConfig, Tokenizer};
    use burn::module::Module;

    /// The estimate's parameter count is within 25 % of the built model's.
    #[test]
    fn parameter_estimate_matches_the_built_model() {
        let cfg = TokenizerConfig::load(std::path::Path::new("configs/tiny_32.toml")).unwrap();
        let tok = Tokenizer::init(&cfg, 0, &crate::device()).unwrap();
        let real = tok.num_params() as f64;
        let est = cfg.memory(1, Use::Inference).parameters / 4.0;
        assert!((est / real - 1.0).abs() < 0.25, "estimate {est} vs {real} parameters");
        let train = cfg.memory(8, Use::Training);
        assert!(train.parameters > 4.0 * est * 4.0 && train.activations > cfg.memory(8, Use::Inference).activations);
    }
}
