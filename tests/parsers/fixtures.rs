//! Small valid files of every format the library reads, built in memory: safetensors (f32 and
//! int64), a tokens file, a token set, a training checkpoint, a Lightning checkpoint (zip +
//! pickle, as `torch.save` writes it) and PNG / JPEG images.
use mergevq::io::output::Outputs;
use mergevq::io::safetensors::{write_safetensors, WEIGHTS};
use mergevq::io::tokens::{TokenSet, TokensFile};
use mergevq::io::weights::HostTensor;
use mergevq::train::checkpoint::Checkpoint;
use std::collections::BTreeMap;
use std::io::{Cursor, Write};
use std::path::Path;

/// The bytes `save` wrote to a scratch file in `dir`.
fn saved(dir: &Path, name: &str, save: impl FnOnce(&Path) -> anyhow::Result<()>) -> Vec<u8> {
    let path = dir.join(name);
    save(&path).unwrap();
    std::fs::read(&path).unwrap()
}

fn host(shape: &[usize]) -> HostTensor {
    let n = shape.iter().product::<usize>();
    HostTensor { shape: shape.to_vec(), data: (0..n).map(|i| i as f32 * 0.25 - 1.0).collect() }
}

/// A safetensors file of two f32 tensors, `a` [2, 3] and `b.c` [4].
pub fn safetensors_f32(dir: &Path) -> Vec<u8> {
    let map: BTreeMap<String, HostTensor> = [("a".into(), host(&[2, 3])), ("b.c".into(), host(&[4]))].into();
    saved(dir, "f32.safetensors", |p| write_safetensors(p, &map, WEIGHTS, &Outputs::new::<&Path>([])))
}

/// A tokens file (`encode`) of two images with K = 4 of L = 9 tokens.
pub fn tokens_file(dir: &Path) -> Vec<u8> {
    let f = TokensFile {
        bits: 4,
        resolution: 32,
        indices: vec![vec![3, 15, 0, 7], vec![1, 2, 3, 4]],
        group: vec![vec![0, 1, 1, 0, 2, 3, 3, 2, 0], vec![1, 1, 0, 0, 2, 2, 3, 3, 3]],
    };
    saved(dir, "tokens.safetensors", |p| f.save(p, &Outputs::new::<&Path>([])))
}

/// A token set (`extract-tokens`) of three images with L = 4 and candidates K ∈ {2, 4}.
pub fn token_set(dir: &Path) -> Vec<u8> {
    let s = TokenSet {
        bits: 4,
        candidates: vec![2, 4],
        codes: vec![vec![1, 2, 2, 1], vec![0, 5, 9, 15], vec![3, 3, 4, 4]],
        group: vec![vec![0, 1, 1, 0], vec![0, 1, 2, 3], vec![0, 0, 1, 1]],
        keep: vec![2, 4, 2],
        labels: vec![0, 1, 1],
        classes: 2,
    };
    saved(dir, "set.safetensors", |p| s.save(p, &Outputs::new::<&Path>([])))
}

/// A training checkpoint with a model group, its EMA and optimizer moments.
pub fn train_checkpoint(dir: &Path) -> Vec<u8> {
    let group = |shape: &[usize]| -> BTreeMap<String, HostTensor> {
        [("w".into(), host(shape)), ("blk.b".into(), host(&[3]))].into()
    };
    let c = Checkpoint {
        groups: [("model".into(), group(&[2, 2])), ("ema".into(), group(&[2, 2])), ("opt.m".into(), group(&[2, 2]))]
            .into(),
        meta: serde_json::json!({ "step": 7, "opt_t": 7, "ema_updates": 3 }),
    };
    saved(dir, "checkpoint.safetensors", |p| c.save(p, &Outputs::new::<&Path>([])))
}

/// A Lightning checkpoint: `{"state_dict": {name: tensor}}` pickled (protocol 2) into
/// `archive/data.pkl`, each storage in `archive/data/<key>`, in a stored (uncompressed) zip.
/// `tensors` gives each tensor's name, shape and f32 values; `numel` overrides the element
/// count the pickle declares for every storage (to declare more than the file holds).
pub fn lightning_checkpoint(tensors: &[(&str, &[u64], Vec<f32>)], numel: Option<u64>) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    z.start_file("archive/data.pkl", stored).unwrap();
    z.write_all(&state_dict_pickle(tensors, numel)).unwrap();
    z.start_file("archive/version", stored).unwrap();
    z.write_all(b"3\n").unwrap();
    for (key, (_, _, values)) in tensors.iter().enumerate() {
        z.start_file(format!("archive/data/{key}"), stored).unwrap();
        z.write_all(&values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
    }
    z.finish().unwrap().into_inner()
}

/// The pickle of `{"state_dict": {name: torch._utils._rebuild_tensor_v2(storage, 0, shape,
/// stride, False, OrderedDict())}}` with persistent-id storages, as `torch.save` writes it.
fn state_dict_pickle(tensors: &[(&str, &[u64], Vec<f32>)], numel: Option<u64>) -> Vec<u8> {
    let mut p = vec![0x80, 2, b'}'];
    text(&mut p, "state_dict");
    p.extend(b"}(");
    for (key, (name, shape, values)) in tensors.iter().enumerate() {
        text(&mut p, name);
        p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        p.push(b'(');
        text(&mut p, "storage");
        p.extend(b"ctorch\nFloatStorage\n");
        text(&mut p, &key.to_string());
        text(&mut p, "cpu");
        int(&mut p, numel.unwrap_or(values.len() as u64));
        p.extend(b"tQ");
        int(&mut p, 0);
        tuple(&mut p, shape);
        let mut stride: Vec<u64> = vec![1; shape.len()];
        for i in (0..shape.len().saturating_sub(1)).rev() {
            stride[i] = stride[i + 1].wrapping_mul(shape[i + 1]);
        }
        tuple(&mut p, &stride);
        p.push(0x89);
        p.extend(b"ccollections\nOrderedDict\n)RtR");
    }
    p.extend(b"us.");
    p
}

/// BINUNICODE.
fn text(p: &mut Vec<u8>, s: &str) {
    p.push(b'X');
    p.extend((s.len() as u32).to_le_bytes());
    p.extend(s.as_bytes());
}

/// LONG1 with 9 bytes, so any u64 stays positive.
fn int(p: &mut Vec<u8>, v: u64) {
    p.extend([0x8a, 9]);
    p.extend(v.to_le_bytes());
    p.push(0);
}

fn tuple(p: &mut Vec<u8>, v: &[u64]) {
    p.push(b'(');
    for &x in v {
        int(p, x);
    }
    p.push(b't');
}

/// An 8×6 RGB gradient encoded as PNG or JPEG.
pub fn image(format: image::ImageFormat) -> Vec<u8> {
    let img = image::RgbImage::from_fn(8, 6, |x, y| image::Rgb([(x * 30) as u8, (y * 40) as u8, 128]));
    let mut buf = Cursor::new(Vec::new());
    img.write_to(&mut buf, format).unwrap();
    buf.into_inner()
}
