//! Where a command may write. Every file the program writes goes through `Outputs`, which
//! holds the command's inputs and refuses to lose a file:
//! - an output never replaces one of the inputs (the same file by device and inode, so hard
//!   and symbolic links count) and never lands inside an input folder;
//! - a device or pipe (`/dev/null`) is written through, never renamed over;
//! - an existing file is replaced only when it is of the kind being written (an image, or a
//!   file carrying the format marker of `Format`); an empty file may always be replaced;
//! - regular files are written atomically (`io::atomic`), through symbolic links.
use super::atomic::atomic_write;
use super::marker::{holds, Format};
use anyhow::{bail, Context, Result};
use std::fs::{File, Metadata};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The places a command may write: anywhere but its inputs.
#[derive(Clone, Debug, Default)]
pub struct Outputs {
    inputs: Vec<Input>,
}

/// One input of a command: a file or a folder.
#[derive(Clone, Debug)]
struct Input {
    path: PathBuf,
    id: Identity,
    /// The canonical path of an input folder (outputs may not land inside it).
    folder: Option<PathBuf>,
}

/// What makes two paths the same file.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Identity {
    #[cfg(unix)]
    Inode(u64, u64),
    #[cfg(not(unix))]
    Path(PathBuf),
}

#[cfg(unix)]
fn identity(_path: &Path, meta: &Metadata) -> Option<Identity> {
    use std::os::unix::fs::MetadataExt;
    Some(Identity::Inode(meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn identity(path: &Path, _meta: &Metadata) -> Option<Identity> {
    std::fs::canonicalize(path).ok().map(Identity::Path)
}

/// Where the bytes of an output go.
enum Target {
    /// A regular file (existing or new), by its real path: written atomically.
    File(PathBuf),
    /// A device or pipe: written through.
    Stream(PathBuf),
}

impl Outputs {
    /// The outputs of a command that reads `inputs` (files or folders; paths that do not exist
    /// are left out: their readers report them).
    pub fn new<P: AsRef<Path>>(inputs: impl IntoIterator<Item = P>) -> Self {
        let mut me = Self::default();
        for p in inputs {
            me.add(p.as_ref());
        }
        me
    }

    /// Adds an input (skipped when `path` does not exist).
    pub fn add(&mut self, path: &Path) {
        let Ok(meta) = std::fs::metadata(path) else { return };
        let Some(id) = identity(path, &meta) else { return };
        let folder = meta.is_dir().then(|| std::fs::canonicalize(path).ok()).flatten();
        self.inputs.push(Input { path: path.to_path_buf(), id, folder });
    }

    /// Checks that `path` may be written as `format`, without writing.
    pub fn check(&self, path: &Path, format: Format) -> Result<()> {
        self.target(path, format).map(drop)
    }

    /// Writes `bytes` to `path` as `format` (checked again now).
    pub fn write(&self, path: &Path, format: Format, bytes: &[u8]) -> Result<()> {
        match self.target(path, format)? {
            Target::File(real) => atomic_write(&real, bytes),
            Target::Stream(p) => std::fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .and_then(|mut f| f.write_all(bytes))
                .with_context(|| format!("cannot write {}", p.display())),
        }
    }

    /// Opens `path` for appending lines of `format` (created when missing).
    pub fn append(&self, path: &Path, format: Format) -> Result<File> {
        self.check(path, format)?;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// Creates the output folder `dir` (and its parents) unless it exists; refuses a file, an
    /// input folder or a folder inside one.
    pub fn dir(&self, dir: &Path) -> Result<()> {
        self.outside_inputs(dir, "output folder")?;
        super::fs::create_output_dir(dir)
    }

    /// The destination of `path` as `format`, or why it may not be written.
    fn target(&self, path: &Path, format: Format) -> Result<Target> {
        let shown = path.display();
        let meta = match std::fs::metadata(path) {
            Ok(m) => Some(m),
            Err(_) if path.is_symlink() => bail!("output {shown} is a broken symbolic link"),
            Err(_) => None,
        };
        let Some(meta) = meta else {
            self.outside_inputs(path, "output")?;
            format.extension_fits(path, false)?;
            return Ok(Target::File(path.to_path_buf()));
        };
        if meta.is_dir() {
            bail!("output {shown} is a folder: give a file name");
        }
        if let Some(input) = identity(path, &meta).and_then(|id| self.inputs.iter().find(|i| i.id == id)) {
            bail!("output {shown} is the input {}: choose another output path", input.path.display());
        }
        self.outside_inputs(path, "output")?;
        if !meta.is_file() {
            format.extension_fits(path, true)?;
            return Ok(Target::Stream(path.to_path_buf()));
        }
        format.extension_fits(path, false)?;
        if meta.len() > 0 && !holds(path, format) {
            bail!(
                "refusing to replace {shown}: it is not a {} (remove it or choose another output path)",
                format.what()
            );
        }
        let real = std::fs::canonicalize(path).with_context(|| format!("cannot resolve output {shown}"))?;
        Ok(Target::File(real))
    }

    /// Refuses `path` (a `what`) when it is, or lies inside, an input folder.
    fn outside_inputs(&self, path: &Path, what: &str) -> Result<()> {
        let real = resolve(path);
        match self.inputs.iter().find(|i| i.folder.as_ref().is_some_and(|f| real.starts_with(f))) {
            Some(i) => {
                bail!("{what} {} is inside the input folder {}: choose another path", path.display(), i.path.display())
            }
            None => Ok(()),
        }
    }
}

/// `path` with its longest existing ancestor made canonical (symbolic links and `..`
/// resolved), so that paths not yet created compare with canonical folders.
fn resolve(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut rest = Vec::new();
    let mut cur = abs.as_path();
    loop {
        if let Ok(real) = std::fs::canonicalize(cur) {
            return rest.iter().rev().fold(real, |p, c| p.join(c));
        }
        match (cur.parent(), cur.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                cur = parent;
            }
            _ => return abs,
        }
    }
}
