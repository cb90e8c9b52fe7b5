//! A run's plots, rebuilt from its whole `metrics.jsonl` (so a resumed run's plots cover every
//! step): `loss_curve.png`, the training loss per logged step with its moving average, and one
//! plot per validation metric (`val_psnr.png`, `val_lpips.png`, `val_ce.png`, …).
use crate::eval::plot::LinePlot;
use crate::io::image::save_image;
use crate::io::output::Outputs;
use anyhow::Result;
use std::collections::BTreeMap;
use std::path::Path;

/// Logged points averaged by the loss curve's smooth line.
const WINDOW: usize = 25;

/// Every logged value of `metrics.jsonl` by key and step (a step logged twice, as after a
/// crash and resume, keeps its last value); the final-validation line is left out.
pub fn series(metrics: &Path) -> Result<BTreeMap<String, BTreeMap<usize, f64>>> {
    let mut out: BTreeMap<String, BTreeMap<usize, f64>> = BTreeMap::new();
    for line in std::fs::read_to_string(metrics)?.lines() {
        let Ok(serde_json::Value::Object(m)) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let Some(step) = m.get("step").and_then(|s| s.as_u64()) else { continue };
        if m.contains_key("final") {
            continue;
        }
        for (k, v) in m.iter().filter(|(k, _)| *k != "step") {
            if let Some(v) = v.as_f64().filter(|v| v.is_finite()) {
                out.entry(k.clone()).or_default().insert(step as usize, v);
            }
        }
    }
    Ok(out)
}

/// A series as plot points (step, value).
fn points(s: &BTreeMap<usize, f64>) -> Vec<(f64, f64)> {
    s.iter().map(|(&step, &v)| (step as f64, v)).collect()
}

/// Writes the run folder's plots for the training loss `loss_key`.
pub fn write(dir: &Path, loss_key: &str, outputs: &Outputs) -> Result<()> {
    let all = series(&dir.join("metrics.jsonl"))?;
    if let Some(loss) = all.get(loss_key).filter(|s| s.len() > 1) {
        let raw = points(loss);
        let smooth: Vec<(f64, f64)> = (0..raw.len())
            .map(|i| {
                let w = &raw[i.saturating_sub(WINDOW - 1)..=i];
                (raw[i].0, w.iter().map(|p| p.1).sum::<f64>() / w.len() as f64)
            })
            .collect();
        let plot = LinePlot::new("step", loss_key)
            .with(&format!("training {loss_key}"), raw)
            .with(&format!("moving average of {WINDOW} logs"), smooth)
            .render(640, 360)?;
        save_image(&plot, &dir.join("loss_curve.png"), outputs)?;
    }
    for (key, s) in all.iter().filter(|(k, s)| k.starts_with("val_") && s.len() > 1) {
        let plot = LinePlot::new("step", key).with(&format!("{key} (EMA weights)"), points(s)).render(640, 360)?;
        save_image(&plot, &dir.join(format!("{key}.png")), outputs)?;
    }
    Ok(())
}
