//! Output formats and their markers: what an existing file must be for an output of that
//! format to replace it (`io::output`), and the image format an output's extension picks.
use anyhow::{bail, Result};
use std::io::{BufRead, Read};
use std::path::Path;

/// A format marker: `key` (equal to `value`, when given) in a safetensors file's metadata or
/// at the top level of a JSON object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Marker {
    pub key: &'static str,
    pub value: Option<&'static str>,
    /// What a file carrying the marker is ("mergevq tokens file").
    pub what: &'static str,
}

impl Marker {
    /// The marker `"format": value`.
    pub const fn format(value: &'static str, what: &'static str) -> Self {
        Self { key: "format", value: Some(value), what }
    }

    /// The metadata entry (or JSON member) that marks a file.
    pub fn entry(&self) -> (String, String) {
        (self.key.to_string(), self.value.unwrap_or_default().to_string())
    }

    /// Whether the JSON object `v` carries the marker.
    fn in_object(&self, v: &serde_json::Value) -> bool {
        match (v.get(self.key), self.value) {
            (Some(found), Some(want)) => found.as_str() == Some(want),
            (found, None) => found.is_some(),
            (None, Some(_)) => false,
        }
    }
}

/// What an output holds, and so which existing file it may replace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// PNG or JPEG, by the extension (.png, .jpg, .jpeg; a device or pipe without one takes
    /// PNG); replaces only an image.
    Image,
    /// A safetensors file with the marker in its metadata.
    Safetensors(Marker),
    /// A JSON object with the marker at its top level.
    Json(Marker),
    /// JSON lines, the first an object with the marker.
    JsonLines(Marker),
    /// Text that starts with `prefix`.
    Text { prefix: &'static str, what: &'static str },
}

impl Format {
    /// What a file of this format is, for messages.
    pub fn what(&self) -> &'static str {
        match self {
            Format::Image => "PNG or JPEG image",
            Format::Safetensors(m) | Format::Json(m) | Format::JsonLines(m) => m.what,
            Format::Text { what, .. } => what,
        }
    }

    /// Refuses an image output whose extension names no image format we write (a device or
    /// pipe, `stream`, may have none).
    pub(crate) fn extension_fits(&self, path: &Path, stream: bool) -> Result<()> {
        if *self != Format::Image || image_format(path).is_some() || (stream && path.extension().is_none()) {
            return Ok(());
        }
        bail!("output {}: an image file takes the extension .png, .jpg or .jpeg", path.display())
    }
}

/// The image format of an output path's extension (png, jpg, jpeg, in any case).
pub fn image_format(path: &Path) -> Option<image::ImageFormat> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "png" => Some(image::ImageFormat::Png),
        "jpg" | "jpeg" => Some(image::ImageFormat::Jpeg),
        _ => None,
    }
}

/// The largest header or JSON file read to look for a marker.
const MAX_READ: u64 = 64 << 20;

/// Whether the file at `path` is of `format` (any read error: no).
pub(crate) fn holds(path: &Path, format: Format) -> bool {
    let Ok(mut f) = std::fs::File::open(path) else { return false };
    match format {
        Format::Image => {
            let mut head = Vec::new();
            f.take(32).read_to_end(&mut head).is_ok() && image::guess_format(&head).is_ok()
        }
        Format::Safetensors(m) => safetensors_metadata(&mut f).is_some_and(|v| m.in_object(&v)),
        Format::Json(m) => {
            let mut text = Vec::new();
            f.take(MAX_READ).read_to_end(&mut text).is_ok()
                && serde_json::from_slice::<serde_json::Value>(&text).is_ok_and(|v| m.in_object(&v))
        }
        Format::JsonLines(m) => {
            let mut line = String::new();
            std::io::BufReader::new(f.take(MAX_READ)).read_line(&mut line).is_ok()
                && serde_json::from_str::<serde_json::Value>(&line).is_ok_and(|v| m.in_object(&v))
        }
        Format::Text { prefix, .. } => {
            let mut head = Vec::new();
            f.take(prefix.len() as u64).read_to_end(&mut head).is_ok() && head == prefix.as_bytes()
        }
    }
}

/// The `__metadata__` object of a safetensors file's header (`None`: not safetensors).
fn safetensors_metadata(f: &mut std::fs::File) -> Option<serde_json::Value> {
    let mut len = [0u8; 8];
    f.read_exact(&mut len).ok()?;
    let n = u64::from_le_bytes(len);
    if n > MAX_READ {
        return None;
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).ok()?;
    let mut v: serde_json::Value = serde_json::from_slice(&header).ok()?;
    Some(v.get_mut("__metadata__")?.take())
}
