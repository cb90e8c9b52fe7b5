//! The int64 tables of token files and token sets, read and checked: a table has the shape
//! and value range its reader relies on, or the file is refused with what is wrong. Errors
//! are plain strings; the loaders put the file's name in front.
use crate::io::safetensors::i64_values;
use safetensors::SafeTensors;
use std::collections::HashMap;

/// The most code bits a token file may declare (codes are int64: 2^62 still fits).
pub const MAX_BITS: usize = 62;

/// The int64 tensor `name`: its values and shape.
pub fn table(st: &SafeTensors, name: &str) -> Result<(Vec<i64>, Vec<usize>), String> {
    let t = st.tensor(name).map_err(|_| format!("no `{name}` tensor"))?;
    let values = i64_values(&t).ok_or_else(|| format!("`{name}` must be int64, not {:?}", t.dtype()))?;
    Ok((values, t.shape().to_vec()))
}

/// The int64 tensor `name` as `rows` rows (any number when `None`) of equal length.
pub fn rows(st: &SafeTensors, name: &str, rows: Option<usize>) -> Result<Vec<Vec<i64>>, String> {
    let (values, shape) = table(st, name)?;
    let &[n, l] = shape.as_slice() else {
        return Err(format!("`{name}` must be 2-d, it has shape {shape:?}"));
    };
    if rows.is_some_and(|r| r != n) {
        return Err(format!("`{name}` has {n} rows, expected {}", rows.unwrap_or_default()));
    }
    if l == 0 && n > 0 {
        return Err(format!("`{name}` has shape {shape:?}: rows without values"));
    }
    Ok(values.chunks_exact(l.max(1)).map(<[i64]>::to_vec).collect())
}

/// The 1-d int64 tensor `name` of `n` values.
pub fn column(st: &SafeTensors, name: &str, n: usize) -> Result<Vec<i64>, String> {
    let (values, shape) = table(st, name)?;
    if shape != [n] {
        return Err(format!("`{name}` has shape {shape:?}, expected [{n}]"));
    }
    Ok(values)
}

/// `values` as indices below `bound` (`what` names them in the error).
pub fn below(values: &[i64], bound: usize, what: &str) -> Result<Vec<usize>, String> {
    values
        .iter()
        .map(|&v| {
            usize::try_from(v).ok().filter(|&u| u < bound).ok_or_else(|| format!("{what} {v} is not in 0..{bound}"))
        })
        .collect()
}

/// Checks that every code fits in `bits` bits.
pub fn codes_fit(rows: &[Vec<i64>], bits: usize, what: &str) -> Result<(), String> {
    rows.iter().try_for_each(|r| below(r, 1 << bits, what).map(drop))
}

/// The metadata number `key`, at least `min` and at most `max`.
pub fn number(meta: &HashMap<String, String>, key: &str, min: usize, max: usize) -> Result<usize, String> {
    let v = meta.get(key).ok_or_else(|| format!("no `{key}` in metadata"))?;
    v.parse().ok().filter(|n| (min..=max).contains(n)).ok_or_else(|| format!("`{key}` = `{v}` is not in {min}..={max}"))
}

/// The comma-separated kept counts of `candidates`: at least one, each at least 1.
pub fn candidates(meta: &HashMap<String, String>) -> Result<Vec<usize>, String> {
    let c = meta.get("candidates").filter(|c| !c.is_empty()).ok_or("no kept-count candidates in metadata")?;
    c.split(',')
        .map(|v| v.parse().ok().filter(|&k| k > 0).ok_or_else(|| format!("bad kept-count candidate `{v}` in `{c}`")))
        .collect()
}
