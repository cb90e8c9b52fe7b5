//! Files that declare sizes far beyond what they hold — a 2^60-byte header, shapes whose
//! product overflows, offsets past the end, a 2^31-pixel-wide PNG, an extreme aspect ratio —
//! are refused (or read) without trying the allocation.
use super::{dir, fixtures};
use mergevq::io::ckpt::read_checkpoint;
use mergevq::io::image::{decode_image, load_image};
use mergevq::io::preprocess::Preprocess;
use mergevq::io::safetensors::{read_safetensors, read_safetensors_typed};
use mergevq::io::tokens::{TokenSet, TokensFile};
use mergevq::train::checkpoint::Checkpoint;
use proptest::prelude::*;
use std::path::Path;

/// A safetensors file: the u64 header length, the header, then `body`.
fn safetensors(header_len: u64, header: &str, body: &[u8]) -> Vec<u8> {
    let mut b = header_len.to_le_bytes().to_vec();
    b.extend(header.as_bytes());
    b.extend(body);
    b
}

/// Every safetensors reader refuses the file `name` holding `bytes`, naming it.
fn all_refuse(name: &str, bytes: &[u8]) {
    let p = dir().join(name);
    std::fs::write(&p, bytes).unwrap();
    let errors = [
        read_safetensors(&p).err(),
        read_safetensors_typed(&p).err(),
        TokensFile::load(&p).err(),
        TokenSet::load(&p).err(),
        Checkpoint::load(&p).err(),
    ];
    for (i, e) in errors.into_iter().enumerate() {
        let msg = format!("{:#}", e.unwrap_or_else(|| panic!("reader {i} must refuse the damaged file {name}")));
        assert!(msg.contains(name), "`{msg}` should name {name}");
    }
}

#[test]
fn safetensors_header_of_2_pow_60_bytes_is_refused() {
    all_refuse("huge-header.st", &safetensors(1 << 60, "{}", &[]));
    all_refuse("max-header.st", &safetensors(u64::MAX, "{}", &[]));
}

#[test]
fn safetensors_shapes_and_offsets_beyond_the_file_are_refused() {
    let t = |dtype: &str, shape: &str, offsets: &str| {
        format!(r#"{{"t":{{"dtype":"{dtype}","shape":{shape},"data_offsets":{offsets}}}}}"#)
    };
    let cases = [
        t("F32", "[4294967296,4294967296,16]", "[0,16]"),
        t("I64", "[18446744073709551615,2]", "[0,16]"),
        t("F32", "[1152921504606846976]", "[0,4611686018427387904]"),
        t("F32", "[4]", "[0,18446744073709551615]"),
        t("F32", "[4]", "[18446744073709551600,18446744073709551615]"),
        t("F32", "[4]", "[16,0]"),
    ];
    for (i, h) in cases.iter().enumerate() {
        all_refuse(&format!("huge-{i}.st"), &safetensors(h.len() as u64, h, &[0; 16]));
    }
}

#[test]
fn token_tables_of_2_pow_40_empty_rows_are_refused() {
    let t = |name: &str, shape: &str| format!(r#""{name}":{{"dtype":"I64","shape":{shape},"data_offsets":[0,0]}}"#);
    let (rows, col) = ("[1099511627776,0]", "[0]");
    let meta =
        r#""__metadata__":{"format":"mergevq-tokenset-1","bits":"4","resolution":"32","classes":"2","candidates":"1"}"#;
    let tables = [t("indices", rows), t("group", rows), t("codes", rows), t("keep", col), t("labels", col)];
    let h = format!("{{{},{meta}}}", tables.join(","));
    // A generic reader may hold the (empty) tensors; the token readers must refuse 2^40 rows
    // before making them.
    let p = dir().join("empty-rows.st");
    std::fs::write(&p, safetensors(h.len() as u64, &h, &[])).unwrap();
    for e in [TokensFile::load(&p).err(), TokenSet::load(&p).err()] {
        let msg = format!("{:#}", e.expect("the token readers must refuse 2^40 rows"));
        assert!(msg.contains("empty-rows.st"), "`{msg}` should name the file");
    }
}

proptest! {
    #![proptest_config(super::config())]

    /// Any shape, offsets and dtype in the header: refused or consistent, never a panic.
    #[test]
    fn safetensors_headers_with_any_numbers(
        dtype in prop::sample::select(vec!["F32", "F64", "I64", "I32", "F16", "BOOL", "U8"]),
        shape in prop::collection::vec(prop_oneof![0u64..8, any::<u64>()], 0..4),
        start in prop_oneof![0u64..64, any::<u64>()],
        end in prop_oneof![0u64..64, any::<u64>()],
        body in 0usize..64,
    ) {
        let h = format!(r#"{{"t":{{"dtype":"{dtype}","shape":{shape:?},"data_offsets":[{start},{end}]}}}}"#);
        let p = dir().join("any.st");
        std::fs::write(&p, safetensors(h.len() as u64, &h, &vec![0; body])).unwrap();
        if let Ok(m) = read_safetensors_typed(&p) {
            m.values().for_each(super::typed_consistent);
        }
    }
}

#[test]
fn lightning_storage_larger_than_the_file_is_refused() {
    let cases: [(&[u64], Option<u64>); 3] =
        [(&[1 << 30, 1 << 30], Some(1 << 60)), (&[1 << 40, 1 << 40, 1 << 40], None), (&[4], Some(u64::MAX >> 1))];
    for (i, (shape, numel)) in cases.into_iter().enumerate() {
        let name = format!("huge-{i}.ckpt");
        let p = dir().join(&name);
        std::fs::write(&p, fixtures::lightning_checkpoint(&[("w", shape, vec![1.0; 4])], numel)).unwrap();
        let msg = format!("{:#}", read_checkpoint(&p, false).expect_err("must be refused"));
        assert!(msg.contains(&name), "`{msg}` should name {name}");
    }
}

/// A PNG of `w`×`h` RGB pixels whose image data is one empty zlib stream.
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let chunk = |b: &mut Vec<u8>, kind: &[u8], data: &[u8]| {
        b.extend((data.len() as u32).to_be_bytes());
        let body: Vec<u8> = kind.iter().chain(data).copied().collect();
        b.extend(&body);
        b.extend(crc32(&body).to_be_bytes());
    };
    let mut b = b"\x89PNG\r\n\x1a\n".to_vec();
    let ihdr: Vec<u8> = [w.to_be_bytes(), h.to_be_bytes()].concat().into_iter().chain([8, 2, 0, 0, 0]).collect();
    chunk(&mut b, b"IHDR", &ihdr);
    chunk(&mut b, b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    chunk(&mut b, b"IEND", &[]);
    b
}

/// CRC-32 (IEEE), as PNG chunks carry it.
fn crc32(bytes: &[u8]) -> u32 {
    !bytes
        .iter()
        .fold(!0u32, |c, &b| (0..8).fold(c ^ b as u32, |c, _| (c >> 1) ^ (0xEDB8_8320 & (c & 1).wrapping_neg())))
}

#[test]
fn png_declaring_2_pow_31_pixels_a_side_is_refused() {
    for (w, h) in [(0x7fff_ffff, 0x7fff_ffff), (1 << 20, 1 << 20), (1, 0x7fff_ffff)] {
        let p = dir().join("huge.png");
        std::fs::write(&p, png_claiming(w, h)).unwrap();
        let msg = format!("{:#}", decode_image(&p).expect_err("must be refused"));
        assert!(msg.contains("huge.png"), "{msg}");
    }
}

#[test]
fn extreme_aspect_ratio_is_read_without_a_giant_resize() {
    let p = dir().join("strip.png");
    image::RgbImage::from_pixel(200_000, 1, image::Rgb([9, 99, 199])).save(&p).unwrap();
    let (t, note) = load_image(Path::new(&p), 64, Preprocess::Resize, &mergevq::device()).unwrap();
    assert_eq!(t.dims(), [1, 3, 64, 64]);
    assert!(note.is_some());
}
