//! Range checks for config fields: every config type's `validate` uses these, so each refusal
//! names the field (its dotted path) and the allowed range in the same words.
use anyhow::{bail, Result};

/// Refuses an integer outside `lo..=hi`.
pub fn int(name: &str, v: usize, lo: usize, hi: usize) -> Result<()> {
    if v < lo || v > hi {
        bail!("{name} = {v} is out of range: allowed {lo}..={hi}");
    }
    Ok(())
}

/// Refuses a number that is not finite or lies outside `[lo, hi]`.
pub fn real(name: &str, v: f64, lo: f64, hi: f64) -> Result<()> {
    if !(v.is_finite() && v >= lo && v <= hi) {
        bail!("{name} = {v} is out of range: allowed a finite number in [{lo}, {hi}]");
    }
    Ok(())
}

/// Refuses a number that is not finite or not > 0 (and ≤ `hi`, when `hi` is finite).
pub fn positive(name: &str, v: f64, hi: f64) -> Result<()> {
    if !(v.is_finite() && v > 0.0 && v <= hi) {
        let range = if hi.is_finite() { format!("in (0, {hi}]") } else { "> 0".to_string() };
        bail!("{name} = {v} is out of range: allowed a finite number {range}");
    }
    Ok(())
}

/// Refuses a number outside the half-open `[lo, hi)` (betas, EMA decay, fractions).
pub fn below(name: &str, v: f64, lo: f64, hi: f64) -> Result<()> {
    if !(v.is_finite() && v >= lo && v < hi) {
        bail!("{name} = {v} is out of range: allowed a finite number in [{lo}, {hi})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn messages_name_field_and_range() {
        let e = super::int("ddconfig.ch", 0, 1, 8).unwrap_err().to_string();
        assert_eq!(e, "ddconfig.ch = 0 is out of range: allowed 1..=8");
        assert!(super::real("w", f64::NAN, 0.0, 1.0).is_err());
        assert!(super::positive("lr", 0.0, 1.0).is_err());
        assert!(super::below("ema", 1.0, 0.0, 1.0).is_err());
        assert!(super::below("ema", 0.5, 0.0, 1.0).is_ok());
    }
}
