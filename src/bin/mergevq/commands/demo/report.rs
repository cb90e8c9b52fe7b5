//! The demo's self-contained report.html: the PNGs the demo wrote, inlined as data URIs, with
//! the reconstruction and decoding tables and the models' provenance.
use super::{asset, Decoding, KRow, Models};
use anyhow::Result;
use mergevq::io::marker::Format;
use mergevq::io::output::Outputs;
use std::path::Path;

/// The start of every report.html (a re-run replaces only a file that starts so).
const MARK: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><title>MergeVQ demo</title>";

/// report.html: a re-run replaces only a demo report.
pub(super) const FORMAT: Format = Format::Text { prefix: MARK, what: "MergeVQ demo report" };

const STYLE: &str = "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}img{image-rendering:pixelated;max-width:100%}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:4px 10px;text-align:right}code{background:#f3f3f3;padding:1px 4px}</style></head><body>";

const INTRO: &str = "<h1>MergeVQ demo</h1><p>A MergeVQ tokenizer and a MergeAR generator trained on Fashion-MNIST (32×32, L = 64 tokens, 10-bit LFQ codes), and a colour tokenizer trained on free photos, all with this program's own <code>train-tokenizer</code> and <code>train-ar</code>.</p>";

/// Records, once the page has loaded, how many images and tables it shows and whether every
/// image decoded (the demo test reads these from the rendered page).
const FOOT: &str = "<script>window.addEventListener('load',()=>{const i=[...document.images];document.body.dataset.images=i.length;document.body.dataset.imagesOk=i.every(x=>x.complete&&x.naturalWidth>0);document.body.dataset.tables=document.querySelectorAll('table').length;});</script></body></html>";

/// Writes `out`/report.html from the PNGs already in `out`, through `outs`.
pub(super) fn write(
    out: &Path,
    m: &Models,
    rows: &[KRow],
    stats: &[Decoding],
    photo: &[KRow],
    merge: usize,
    outs: &Outputs,
) -> Result<()> {
    let mut html = String::from(MARK) + STYLE + INTRO;
    html += &reconstruction_section(out, rows, m.tok.full_len())?;
    html += &generation_section(out, m, stats, merge)?;
    html += &photo_section(out, photo, m.photo.full_len())?;
    let provenance = |f: &str| std::fs::read_to_string(asset(f).unwrap_or_default()).unwrap_or_default();
    html += &format!(
        "<h2>Provenance</h2><pre>{}\n{}\n{}</pre>",
        provenance("assets/demo/tokenizer.provenance"),
        provenance("assets/demo/gpt.provenance"),
        provenance("assets/photo/tokenizer.provenance")
    );
    html += FOOT;
    outs.write(&out.join("report.html"), FORMAT, html.as_bytes())
}

/// The reconstruction grid, the PSNR/SSIM table per K and the rate–distortion plot.
fn reconstruction_section(out: &Path, rows: &[KRow], l: usize) -> Result<String> {
    let mut html = format!("<h2>Reconstruction at several kept counts K</h2><p>Top row: inputs. Then for each K: reconstructions and merge maps (each kept token's group in its own colour).</p><img alt=\"reconstructions\" src=\"{}\">", png_data_uri(&out.join("reconstructions.png"))?);
    html += &k_table("recon", rows, l);
    html += &format!(
        "<p>Rate–distortion (PSNR against K):</p><img alt=\"rate-distortion\" src=\"{}\">",
        png_data_uri(&out.join("rate_distortion.png"))?
    );
    Ok(html)
}

/// The decoding table (MergeAR vs plain) and both sample grids.
fn generation_section(out: &Path, m: &Models, stats: &[Decoding], merge: usize) -> Result<String> {
    let l = m.tok.full_len();
    let mut html = format!("<h2>Class-conditional generation</h2><p>One column per class, CFG 2.0, merge instruction K = {}. MergeAR keeps duplicate tokens in the KV cache only inside a window of {}; plain AR decoding of the same model keeps all {} entries.</p>", m.generator.cfg.candidates[merge], m.generator.cfg.window, l + 2);
    html += "<table id=\"ar\"><tr><th>decoding</th><th>tokens/s</th><th>peak KV-cache entries</th></tr>";
    for d in stats {
        html += &format!(
            "<tr><td>{}</td><td>{:.1}</td><td>{}</td></tr>",
            if d.name == "mergear" { "MergeAR" } else { "plain AR" },
            d.tokens_per_s,
            d.peak_kv
        );
    }
    html += &format!("</table><h3>MergeAR</h3><img alt=\"MergeAR samples\" src=\"{}\"><h3>Plain AR</h3><img alt=\"plain samples\" src=\"{}\">", png_data_uri(&out.join("samples_mergear.png"))?, png_data_uri(&out.join("samples_plain.png"))?);
    Ok(html)
}

/// The colour tokenizer on the bundled photo: the image and its PSNR/SSIM table per K.
fn photo_section(out: &Path, rows: &[KRow], l: usize) -> Result<String> {
    let html = format!("<h2>Colour tokenizer on a photo</h2><p>A MergeVQ tokenizer trained on 64² crops of 8 free photos, run on a held-out CC0 photo at 256² (L = {l} tokens: the model is convolutional). Left: the input; then for each K the reconstruction above its merge map.</p><img alt=\"photo\" src=\"{}\">", png_data_uri(&out.join("photo.png"))?);
    Ok(html + &k_table("photo", rows, l))
}

/// A table (HTML id `id`) of PSNR and SSIM per kept count K of L.
fn k_table(id: &str, rows: &[KRow], l: usize) -> String {
    let mut html = format!("<table id=\"{id}\"><tr><th>K (of L = {l})</th><th>PSNR (dB)</th><th>SSIM</th></tr>");
    for r in rows {
        html += &format!("<tr><td>{}</td><td>{:.2}</td><td>{:.4}</td></tr>", r.k, r.psnr, r.ssim);
    }
    html + "</table>"
}

/// A PNG file as a base64 `data:` URI.
fn png_data_uri(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path)?;
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(bytes.len() * 4 / 3 + 32);
    s.push_str("data:image/png;base64,");
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                s.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    Ok(s)
}
