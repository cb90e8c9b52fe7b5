//! Reading and checking the int64 tensors of token files: every code within the codebook, every
//! group-map entry a kept token, rows of one length. A problem is reported as the first
//! offending entry (image, position, value); the loaders add the file's name.
use anyhow::{bail, Result};
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;

/// The most LFQ bits a code may have (codes are int64).
pub const MAX_BITS: usize = 62;

/// The int64 tensor `name` of `st` with its shape, which must have `rank` dimensions.
pub fn read_i64(st: &SafeTensors, name: &str, rank: usize) -> Result<(Vec<i64>, Vec<usize>)> {
    let Ok(t) = st.tensor(name) else { bail!("no `{name}` tensor") };
    if t.dtype() != Dtype::I64 || t.shape().len() != rank {
        bail!("`{name}` must be a {rank}-d int64 tensor, it is {:?} {:?}", t.dtype(), t.shape());
    }
    let v = t.data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))).collect();
    Ok((v, t.shape().to_vec()))
}

/// The rows of the [rows, cols] tensor `what`. Rows of no entries are refused: the file holds
/// no bytes for them, so their count could be anything (2^40 empty rows would exhaust memory).
pub fn rows(v: &[i64], shape: &[usize], what: &str) -> Result<Vec<Vec<i64>>> {
    let (n, c) = (shape[0], shape[1]);
    if c == 0 && n > 0 {
        bail!("`{what}` has shape {shape:?}: {n} images of no tokens");
    }
    Ok(v.chunks_exact(c.max(1)).map(<[i64]>::to_vec).collect())
}

/// The metadata entry `key` as a number.
pub fn meta_num(meta: &HashMap<String, String>, key: &str) -> Result<usize> {
    match meta.get(key) {
        None => bail!("no `{key}` in the metadata"),
        Some(v) => v.trim().parse().map_err(|_| anyhow::anyhow!("metadata `{key}` = `{v}` is not a whole number")),
    }
}

/// Checks the code width.
pub fn check_bits(bits: usize) -> Result<()> {
    if !(1..=MAX_BITS).contains(&bits) {
        bail!("bits = {bits} is outside 1..={MAX_BITS}");
    }
    Ok(())
}

/// Checks every row of `what` has `len` entries (the first image's count of its field).
pub fn check_len<T>(rows: &[Vec<T>], len: usize, what: &str) -> Result<()> {
    if let Some((i, r)) = rows.iter().enumerate().find(|(_, r)| r.len() != len) {
        bail!("image {i}: `{what}` has {} entries, expected {len}", r.len());
    }
    Ok(())
}

/// Checks every code of `what` is in 0..2^bits.
pub fn check_codes(rows: &[Vec<i64>], bits: usize, what: &str) -> Result<()> {
    let limit = 1i64 << bits;
    for (i, r) in rows.iter().enumerate() {
        if let Some((j, c)) = r.iter().enumerate().find(|(_, &c)| !(0..limit).contains(&c)) {
            bail!("image {i}, token {j}: `{what}` code {c} is outside the codebook 0..{limit} ({bits} bits)");
        }
    }
    Ok(())
}

/// Group maps as kept-token numbers, refusing negative entries.
pub fn to_groups(rows: Vec<Vec<i64>>) -> Result<Vec<Vec<usize>>> {
    rows.into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.into_iter()
                .enumerate()
                .map(|(p, g)| {
                    usize::try_from(g).map_err(|_| anyhow::anyhow!("image {i}, position {p}: `group` {g} is negative"))
                })
                .collect()
        })
        .collect()
}

/// Checks image `i`'s group map refers only to kept tokens 0..k.
pub fn check_group(i: usize, group: &[usize], k: usize) -> Result<()> {
    if let Some((p, g)) = group.iter().enumerate().find(|(_, &g)| g >= k) {
        bail!("image {i}, position {p}: `group` refers to kept token {g}, but K = {k}");
    }
    Ok(())
}

/// Checks `n` is a perfect square ≥ 1 (a token grid side²).
pub fn check_square(n: usize, what: &str) -> Result<()> {
    let s = (n as f64).sqrt().round() as usize;
    if n == 0 || s * s != n {
        bail!("{what} = {n} tokens per image is not a square grid");
    }
    Ok(())
}
