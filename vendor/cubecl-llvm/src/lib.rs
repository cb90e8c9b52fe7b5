//! LLVM-free stand-in for cubecl-llvm 0.11.3 (`[patch.crates-io]` in the workspace Cargo.toml):
//! only the items cubecl-cuda 0.11.3 names. With cubecl-cuda's `cpp` feature its LLVM backend is
//! never selected; were it selected, `compile` returns an error instead of code.
use core::fmt::{Display, Formatter, Result as FmtResult};
use cubecl_core::{ir::amd::GfxArch, ir::nvidia::SmArch, prelude::KernelDefinition, Compiler};
use cubecl_runtime::{compiler::CompilationError, kernel::BufferIOAttr};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LlvmTarget {
    #[default]
    Cpu,
    Nvptx,
}

#[derive(Clone, Debug, Default)]
pub struct PlironCompiler {
    pub target: LlvmTarget,
}

#[derive(Clone, Debug, Default)]
pub struct PlironOptions {
    pub cpu_buffer_alignment: Option<u32>,
    pub arch: Option<GfxArch>,
    pub sm_arch: Option<SmArch>,
    pub ptx_version: Option<nvptx::ptx_version::PtxVersion>,
    pub grid_constants: bool,
}

/// Never constructed: cubecl-cuda only matches on it.
#[derive(Clone, Debug)]
pub struct NvptxModule {
    pub ptx: Vec<core::ffi::c_char>,
    pub entrypoint: String,
    pub ir: String,
    pub shared_memory_size: usize,
    pub io: Vec<BufferIOAttr>,
}

#[derive(Clone, Debug)]
pub enum PlironArtifact {
    NvptxCode(NvptxModule),
}

impl Display for PlironArtifact {
    fn fmt(&self, f: &mut Formatter<'_>) -> FmtResult {
        let Self::NvptxCode(m) = self;
        f.write_str(&m.ir)
    }
}

impl Compiler for PlironCompiler {
    type Representation = PlironArtifact;
    type CompilationOptions = PlironOptions;

    fn compile(&mut self, _: KernelDefinition, _: &PlironOptions) -> Result<PlironArtifact, CompilationError> {
        let reason = "no LLVM in this build: cubecl-cuda's `cpp` feature (NVRTC) compiles the kernels".into();
        Err(CompilationError::Generic { reason, backtrace: cubecl_environment::backtrace::BackTrace::capture() })
    }

    fn extension(&self) -> &'static str {
        "ll"
    }

    fn lang_tag(&self) -> &'static str {
        "llvm"
    }
}

pub mod nvptx {
    pub mod ptx_version {
        use crate::{Display, FmtResult, Formatter};

        /// Upstream maps the driver to a PTX ISA version; the C++ path only puts it in cache keys.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub struct PtxVersion(i32);

        impl PtxVersion {
            pub fn for_driver(driver: i32) -> Option<Self> {
                Some(Self(driver))
            }
        }

        impl Display for PtxVersion {
            fn fmt(&self, f: &mut Formatter<'_>) -> FmtResult {
                write!(f, "drv{}", self.0)
            }
        }
    }
}

pub mod shared {
    pub mod lowered_features {
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum GpuTarget {
            Nvptx,
        }

        /// Called by cubecl-cuda only when its LLVM backend is the selected one.
        pub fn restrict_features(_: &mut cubecl_core::ir::DeviceProperties, _: GpuTarget) {}
    }
}
