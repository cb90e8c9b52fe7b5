//! Range checks for numeric options, one place for the command line and library callers.
//!
//! The `check_*` functions take a value and its name and say, in one line, what is allowed;
//! the parser factories ([`int_in`], [`square_in`], [`float_in`]) wrap them for text input and
//! plug into clap as `value_parser = …` (clap then names the flag at fault).
use anyhow::{anyhow, Result};
use std::path::Path;

/// The largest count or size any option takes: beyond it a value is a typo, and products of
/// sizes stay far from overflow.
pub const MAX_SIZE: usize = 1 << 30;

/// The allowed values of a real option: `lo`..=`hi`, the lower end excluded when `open_lo`,
/// the upper when `open_hi`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FloatRange {
    pub lo: f64,
    pub hi: f64,
    pub open_lo: bool,
    pub open_hi: bool,
}

impl FloatRange {
    /// Any finite number.
    pub const FINITE: Self = Self::closed(f64::MIN, f64::MAX);
    /// A probability that keeps something: (0, 1].
    pub const PROBABILITY: Self = Self::positive_to(1.0);
    /// A positive finite number.
    pub const POSITIVE: Self = Self::positive_to(f64::MAX);

    /// [lo, hi].
    pub const fn closed(lo: f64, hi: f64) -> Self {
        Self { lo, hi, open_lo: false, open_hi: false }
    }

    /// (0, hi].
    pub const fn positive_to(hi: f64) -> Self {
        Self { lo: 0.0, hi, open_lo: true, open_hi: false }
    }

    /// [lo, hi): decay rates, betas, fractions.
    pub const fn below(lo: f64, hi: f64) -> Self {
        Self { lo, hi, open_lo: false, open_hi: true }
    }

    fn contains(&self, v: f64) -> bool {
        v.is_finite()
            && (v < self.hi || (!self.open_hi && v == self.hi))
            && (v > self.lo || (!self.open_lo && v == self.lo))
    }

    fn describe(&self) -> String {
        match (self.lo == f64::MIN, self.hi == f64::MAX) {
            (true, true) => "a finite number".into(),
            (false, true) => format!("a finite number {} {}", if self.open_lo { ">" } else { "≥" }, self.lo),
            _ => format!(
                "a number in {}{}, {}{}",
                if self.open_lo { "(" } else { "[" },
                self.lo,
                self.hi,
                if self.open_hi { ")" } else { "]" }
            ),
        }
    }
}

/// `v` if it lies in `lo..=hi`, else an error naming `name` and the range.
pub fn check_int(name: &str, v: usize, lo: usize, hi: usize) -> Result<usize> {
    int_rule(v, lo, hi).map_err(|m| anyhow!("{name} {m}"))
}

/// `v` if it is a perfect square in `lo..=hi`, else an error naming `name`.
pub fn check_square(name: &str, v: usize, lo: usize, hi: usize) -> Result<usize> {
    square_rule(v, lo, hi).map_err(|m| anyhow!("{name} {m}"))
}

/// `v` if it is finite and in `range`, else an error naming `name` and the range.
pub fn check_float(name: &str, v: f64, range: FloatRange) -> Result<f64> {
    float_rule(v, range).map_err(|m| anyhow!("{name} {m}"))
}

/// Parses an integer in `lo..=hi` (clap names the flag; the message gives the range).
pub fn int_in(lo: usize, hi: usize) -> impl Fn(&str) -> Result<usize, String> + Clone + Send + Sync + 'static {
    move |s| int_rule(parse_int(s, &format!("an integer from {lo} to {hi}"))?, lo, hi)
}

/// Parses a perfect square in `lo..=hi`.
pub fn square_in(lo: usize, hi: usize) -> impl Fn(&str) -> Result<usize, String> + Clone + Send + Sync + 'static {
    move |s| square_rule(parse_int(s, &format!("a perfect square from {lo} to {hi}"))?, lo, hi)
}

/// Parses a finite number in `range` (NaN and ±inf are refused).
pub fn float_in(range: FloatRange) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync + 'static {
    move |s| float_rule(s.trim().parse().map_err(|_| format!("must be {}, got `{s}`", range.describe()))?, range)
}

fn int_rule(v: usize, lo: usize, hi: usize) -> Result<usize, String> {
    if v < lo || v > hi {
        return Err(format!("must be an integer from {lo} to {hi}, got {v}"));
    }
    Ok(v)
}

fn square_rule(v: usize, lo: usize, hi: usize) -> Result<usize, String> {
    let side = (v as f64).sqrt().round() as usize;
    if v < lo || v > hi || side * side != v {
        return Err(format!("must be a perfect square from {lo} to {hi}, got {v}"));
    }
    Ok(v)
}

fn float_rule(v: f64, range: FloatRange) -> Result<f64, String> {
    if !range.contains(v) {
        return Err(format!("must be {}, got {v}", range.describe()));
    }
    Ok(v)
}

/// A TOML parse error on one line: the file, the line and column, and toml's message (which
/// names the key), e.g. `bad config a.toml, line 3, column 1: unknown field `x``.
pub fn toml_error(path: &Path, text: &str, e: &toml::de::Error) -> anyhow::Error {
    let at = e.span().map(|s| {
        let before = text.get(..s.start).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!(", line {line}, column {column}")
    });
    anyhow!("bad config {}{}: {}", path.display(), at.unwrap_or_default(), e.message().trim())
}

/// A non-negative integer, or a message saying what `expected` is.
fn parse_int(s: &str, expected: &str) -> Result<usize, String> {
    s.trim().parse::<usize>().map_err(|_| format!("must be {expected}, got `{s}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_refuse_what_they_should() {
        assert!(int_in(1, 8)("0").unwrap_err().contains("from 1 to 8"));
        assert!(int_in(1, 8)("-3").is_err() && int_in(1, 8)("18446744073709551616").is_err());
        assert_eq!(int_in(1, 8)("8"), Ok(8));
        assert!(square_in(1, 64)("8").is_err());
        assert_eq!(square_in(1, 64)("49"), Ok(49));
        for bad in ["NaN", "inf", "-inf", "0", "1.5", "x"] {
            assert!(float_in(FloatRange::PROBABILITY)(bad).is_err(), "{bad}");
        }
        assert_eq!(float_in(FloatRange::PROBABILITY)("1"), Ok(1.0));
        assert_eq!(float_in(FloatRange::FINITE)("-3"), Ok(-3.0));
        assert!(float_in(FloatRange::POSITIVE)("0").unwrap_err().contains("> 0"));
        let e = check_float("optim.ema", 1.0, FloatRange::below(0.0, 1.0)).unwrap_err().to_string();
        assert_eq!(e, "optim.ema must be a number in [0, 1), got 1");
        assert!(check_float("w", f64::NAN, FloatRange::closed(0.0, 1.0)).is_err());
    }
}
