//! Every golden case made from the authors' PyTorch code must pass through this crate.
mod common;

use common::{golden_dir, tmp};
use mergevq::parity::Case;

fn check(name: &str) {
    let dir = golden_dir().join(name);
    assert!(dir.join("case.json").exists(), "golden case {} is missing (set MERGEVQ_GOLDEN)", dir.display());
    let o = Case::open(&dir, &mergevq::device()).and_then(|c| c.run()).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    assert!(o.pass, "{name} failed (max_abs_err {:.3e}):\n{}", o.max_abs_err, o.failures.join("\n"));
}

macro_rules! golden {
    ($($name:ident),*) => { $( #[test] fn $name() { check(stringify!($name)); } )* };
}

golden!(
    inception,
    inception_resize,
    gpt,
    lpips,
    discriminator,
    tome_merge,
    tome_merge_nocls,
    tome_schedule,
    lfq,
    lfq_factorized,
    encoder,
    encoder_isotropic,
    decoder,
    source_recovery,
    token_unmerge,
    tokenizer
);

/// The comparison is not vacuous: a case whose expected output is nudged beyond tolerance fails.
#[test]
fn perturbed_case_fails() {
    use safetensors::tensor::TensorView;
    let src = golden_dir().join("decoder");
    let tmp = tmp("perturbed");
    for f in ["case.json", "weights.safetensors"] {
        std::fs::copy(src.join(f), tmp.join(f)).unwrap();
    }
    let bytes = std::fs::read(src.join("tensors.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut owned: Vec<(String, Vec<u8>, Vec<usize>)> = Vec::new();
    for (name, view) in st.tensors() {
        let mut data = view.data().to_vec();
        if name == "out.image" {
            let v = f32::from_le_bytes(data[0..4].try_into().unwrap()) + 0.01;
            data[0..4].copy_from_slice(&v.to_le_bytes());
        }
        owned.push((name, data, view.shape().to_vec()));
    }
    let views: Vec<(String, TensorView)> = owned
        .iter()
        .map(|(n, d, s)| (n.clone(), TensorView::new(safetensors::Dtype::F32, s.clone(), d).unwrap()))
        .collect();
    std::fs::write(tmp.join("tensors.safetensors"), safetensors::serialize(views, None).unwrap()).unwrap();
    let o = Case::open(&tmp, &mergevq::device()).unwrap().run().unwrap();
    std::fs::remove_dir_all(&tmp).ok();
    assert!(!o.pass, "a perturbed expected value must fail");
    assert!(o.failures[0].contains("1 of"), "{:?}", o.failures);
}
