//! The comparison of a case's outputs with the recorded ones, within the case's tolerance.
use super::{within, Case, Got, Outcome};
use crate::io::safetensors::TypedTensor;

impl Case {
    pub(super) fn compare(&self, got: Vec<Got>) -> Outcome {
        let mut max_abs = 0f64;
        let mut worst = (f64::NEG_INFINITY, String::new());
        let mut failures = Vec::new();
        let expected: Vec<&String> = self.tensors.keys().filter(|k| k.starts_with("out.")).collect();
        // An output `name@path` is the same value computed another way (say, the CPU's fused
        // host path): it is held to the recorded `name` too.
        let base = |g: &Got| g.name.split('@').next().unwrap_or_default().to_string();
        for key in &expected {
            let want_name = &key[4..];
            let all: Vec<&Got> = got.iter().filter(|g| base(g) == want_name).collect();
            if all.is_empty() {
                failures.push(format!("{want_name}: not produced"));
            }
            for g in all {
                if let Err(f) = self.check(&self.tensors[*key], g, &mut max_abs, &mut worst) {
                    failures.push(f);
                }
            }
        }
        Outcome {
            name: self.name.clone(),
            pass: failures.is_empty() && !expected.is_empty(),
            max_abs_err: max_abs,
            worst: worst.1,
            failures,
        }
    }
}

impl Case {
    /// One output against its recorded value: the shape, then every value within the tolerance
    /// (exactly for `exact` outputs and integers); tracks the largest error and the output with
    /// the largest error relative to its tolerance.
    fn check(&self, want: &TypedTensor, g: &Got, max_abs: &mut f64, worst: &mut (f64, String)) -> Result<(), String> {
        let name = &g.name;
        let (ws, gs) = (shape_of(want), shape_of(&g.value));
        if ws != gs {
            return Err(format!("{name}: shape {gs:?}, want {ws:?}"));
        }
        let (wv, gv) = (values(want), values(&g.value));
        let exact = g.exact || matches!(want, TypedTensor::I64 { .. });
        let mut bad = 0;
        for (w, v) in wv.iter().zip(&gv) {
            let err = (w - v).abs();
            let allowed = if exact { 0.0 } else { self.atol + self.rtol * w.abs() };
            let ratio = if allowed > 0.0 {
                err / allowed
            } else if err > 0.0 {
                f64::INFINITY
            } else {
                0.0
            };
            if !within(err, allowed) {
                bad += 1;
            }
            *max_abs = max_abs.max(err);
            if ratio > worst.0 || worst.1.is_empty() {
                *worst = (ratio, name.to_string());
            }
        }
        if bad > 0 {
            return Err(format!("{name}: {bad} of {} values out of tolerance", wv.len()));
        }
        Ok(())
    }
}

fn shape_of(t: &TypedTensor) -> Vec<usize> {
    match t {
        TypedTensor::F32(h) => h.shape.clone(),
        TypedTensor::I64 { shape, .. } => shape.clone(),
    }
}

fn values(t: &TypedTensor) -> Vec<f64> {
    match t {
        TypedTensor::F32(h) => h.data.iter().map(|&v| v as f64).collect(),
        TypedTensor::I64 { data, .. } => data.iter().map(|&v| v as f64).collect(),
    }
}
