//! Every file parser on damaged input: random truncations and byte flips of a valid file, and
//! headers that declare huge sizes, give `Ok` or an error naming the file — never a panic,
//! an allocation abort, or data that disagrees with itself. Fixed cases and seed, so a run is
//! reproducible (PROPTEST_CASES raises the count for a longer hunt).
mod common;
#[path = "parsers/fixtures.rs"]
mod fixtures;
#[path = "parsers/huge.rs"]
mod huge;

use anyhow::Result;
use mergevq::io::ckpt::read_checkpoint;
use mergevq::io::data::{ImageFolder, Source};
use mergevq::io::image::{decode_image, load_image};
use mergevq::io::preprocess::Preprocess;
use mergevq::io::safetensors::{is_safetensors, read_safetensors, read_safetensors_typed, TypedTensor};
use mergevq::io::tokens::{TokenSet, TokensFile};
use mergevq::io::weights::HostTensor;
use mergevq::train::checkpoint::Checkpoint;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The scratch folder these tests share (each test writes its own file names).
fn dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| common::tmp("parsers"))
}

/// 128 cases per property (or `PROPTEST_CASES`), from a fixed seed, nothing persisted.
fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(128);
    Config { cases, failure_persistence: None, rng_seed: RngSeed::Fixed(0x006d_6572_6765_7671), ..Config::default() }
}

/// `valid` damaged: up to 8 bytes flipped, then (half the time) cut short.
fn damaged(valid: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let n = valid.len();
    (prop::collection::vec((0..n, 1u8..=255), 0..8), prop::option::of(0..n)).prop_map(move |(flips, cut)| {
        let mut b = valid.clone();
        for (i, x) in flips {
            b[i] ^= x;
        }
        b.truncate(cut.unwrap_or(n));
        b
    })
}

/// Writes `bytes` to `name` in the scratch folder and parses it: `Ok` passes `ok`, an error
/// must name the file. A panic fails the case.
fn parses<T>(
    name: &str,
    bytes: &[u8],
    parse: impl Fn(&Path) -> Result<T>,
    ok: impl Fn(&T),
) -> Result<(), TestCaseError> {
    let path = dir().join(name);
    std::fs::write(&path, bytes).unwrap();
    match parse(&path) {
        Ok(v) => ok(&v),
        Err(e) => {
            let msg = format!("{e:#}");
            prop_assert!(msg.contains(name), "error `{msg}` does not name {name}");
        }
    }
    Ok(())
}

/// Every tensor holds as many values as its shape says.
fn consistent(t: &HostTensor) {
    assert_eq!(t.shape.iter().product::<usize>(), t.data.len(), "shape {:?}", t.shape);
}

fn typed_consistent(t: &TypedTensor) {
    match t {
        TypedTensor::F32(t) => consistent(t),
        TypedTensor::I64 { shape, data } => assert_eq!(shape.iter().product::<usize>(), data.len()),
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn safetensors_survive_damage(b in damaged(fixtures::safetensors_f32(dir()))) {
        parses("f32.st", &b, read_safetensors, |m| m.values().for_each(consistent))?;
        parses("f32t.st", &b, read_safetensors_typed, |m| m.values().for_each(typed_consistent))?;
        parses("f32h.st", &b, is_safetensors, |_| ())?;
    }

    #[test]
    fn tokens_files_survive_damage(b in damaged(fixtures::tokens_file(dir()))) {
        parses("tokens.st", &b, TokensFile::load, |f| {
            assert_eq!(f.indices.len(), f.group.len());
            for (idx, grp) in f.indices.iter().zip(&f.group) {
                assert!(idx.iter().all(|&v| v >= 0 && v < 1 << f.bits), "{idx:?}");
                assert!(grp.iter().all(|&g| g < idx.len()), "{grp:?}");
            }
        })?;
        parses("tokens_typed.st", &b, read_safetensors_typed, |m| m.values().for_each(typed_consistent))?;
    }

    #[test]
    fn token_sets_survive_damage(b in damaged(fixtures::token_set(dir()))) {
        parses("set.st", &b, TokenSet::load, |s| {
            let n = s.len();
            assert!(s.group.len() == n && s.keep.len() == n && s.labels.len() == n);
            for i in 0..n {
                assert!(s.candidates.contains(&s.keep[i]) && s.labels[i] < s.classes);
                assert!(s.codes[i].iter().all(|&c| c >= 0 && c < 1 << s.bits));
                assert!(s.group[i].len() == s.codes[i].len() && s.group[i].iter().all(|&g| g < s.keep[i]));
            }
        })?;
    }

    #[test]
    fn training_checkpoints_survive_damage(b in damaged(fixtures::train_checkpoint(dir()))) {
        parses("checkpoint.st", &b, Checkpoint::load, |c| {
            c.groups.values().flat_map(|g| g.values()).for_each(|t| {
                consistent(t);
                assert!(t.data.iter().all(|v| v.is_finite()));
            })
        })?;
    }

    #[test]
    fn lightning_checkpoints_survive_damage(
        b in damaged(fixtures::lightning_checkpoint(&[("enc.w", &[2, 3], vec![0.5; 6]), ("b", &[4], vec![1.0; 4])], None))
    ) {
        parses("model.ckpt", &b, |p| read_checkpoint(p, false), |m| m.values().for_each(consistent))?;
    }

    #[test]
    fn png_images_survive_damage(b in damaged(fixtures::image(image::ImageFormat::Png))) {
        images_parse("img.png", &b)?;
    }

    #[test]
    fn jpeg_images_survive_damage(b in damaged(fixtures::image(image::ImageFormat::Jpeg))) {
        images_parse("img.jpg", &b)?;
    }
}

/// An image file through every way in: decoding, `load_image` at R = 16, and a data folder.
fn images_parse(name: &str, b: &[u8]) -> Result<(), TestCaseError> {
    parses(name, b, decode_image, |img| assert!(img.width() > 0 && img.height() > 0))?;
    let device = mergevq::device();
    parses(name, b, |p| load_image(p, 16, Preprocess::Resize, &device), |(t, _)| assert_eq!(t.dims(), [1, 3, 16, 16]))?;
    let folder = dir().join(format!("folder-{name}"));
    std::fs::create_dir_all(&folder).unwrap();
    parses(
        &format!("folder-{name}/{name}"),
        b,
        |_| ImageFolder::open(&folder)?.get(0),
        |(img, label)| assert!(img.width() > 0 && *label == 0),
    )
}

#[test]
fn valid_files_read_back() {
    let d = dir();
    let read = |name: &str, bytes: Vec<u8>| -> PathBuf {
        let p = d.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let st = read_safetensors(&read("ok.st", fixtures::safetensors_f32(d))).unwrap();
    assert_eq!(st["a"].shape, [2, 3]);
    assert_eq!(TokensFile::load(&read("ok-tokens.st", fixtures::tokens_file(d))).unwrap().indices[0], [3, 15, 0, 7]);
    assert_eq!(TokenSet::load(&read("ok-set.st", fixtures::token_set(d))).unwrap().keep, [2, 4, 2]);
    assert_eq!(Checkpoint::load(&read("ok-ckpt.st", fixtures::train_checkpoint(d))).unwrap().meta["step"], 7);
    let ckpt = fixtures::lightning_checkpoint(&[("enc.w", &[2, 3], vec![0.5; 6])], None);
    let m = read_checkpoint(&read("ok.ckpt", ckpt), false).unwrap();
    assert_eq!((m["enc.w"].shape.as_slice(), m["enc.w"].data.as_slice()), ([2, 3].as_slice(), [0.5; 6].as_slice()));
    for (name, format) in [("ok.png", image::ImageFormat::Png), ("ok.jpg", image::ImageFormat::Jpeg)] {
        assert_eq!(decode_image(&read(name, fixtures::image(format))).unwrap().dimensions(), (8, 6));
    }
}
