//! [`Core`]: what every executor shares, and the checks and conversions they all use: the
//! error context (file, tensor), reading a plan's bytes, values made on the host, the one
//! fallback to the CPU reference, the report rows, and the file's [`Stamp`].

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use quant_core::cpu::{self, CpuPath, HostValues};
use quant_core::{OutputDType, QuantFormat};
use quant_gguf::{GgufFile, TensorInfo};
use quant_gpu::{Backend, GpuError};

use crate::error::LoadError;
use crate::options::{FallbackPolicy, LoadAs};
use crate::plan::{self, PlanError, Region, Spans, Target, TensorPlan, Trim};
use crate::report::{LoadPath, TensorLoad};

/// What every executor shares: the file, how it stood on disk when opened, and the fallback
/// policy.
#[derive(Clone, Copy)]
pub(crate) struct Core<'f> {
    pub file: &'f GgufFile,
    pub opened: Option<Stamp>,
    pub fallback: FallbackPolicy,
    /// The caller's flag that stops a load at its next step.
    pub cancel: Option<&'f AtomicBool>,
}

/// How a file stands on disk: its modification and status-change times, inode and device.
/// Recorded when the loader opens the file and compared with the file's path after every
/// read, so that a file rewritten in place at the same size is an error rather than a load
/// that mixes bytes of two versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    mtime: (i64, i64),
    ctime: (i64, i64),
    ino: u64,
    dev: u64,
}

impl Stamp {
    /// The stamp of the file at `path` now; `None` where it cannot be read.
    pub fn of(path: &std::path::Path) -> Option<Stamp> {
        std::fs::metadata(path).ok().map(|m| Stamp::from_meta(&m))
    }

    #[cfg(unix)]
    fn from_meta(m: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
            ino: m.ino(),
            dev: m.dev(),
        }
    }

    #[cfg(not(unix))]
    fn from_meta(m: &std::fs::Metadata) -> Stamp {
        let since = |t: std::io::Result<std::time::SystemTime>| {
            let d = t
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
            d.map_or((0, 0), |d| {
                (d.as_secs() as i64, i64::from(d.subsec_nanos()))
            })
        };
        Stamp {
            mtime: since(m.modified()),
            ctime: (0, 0),
            ino: 0,
            dev: 0,
        }
    }

    /// What differs between this stamp and `now`, if anything.
    fn differs(&self, now: &Stamp) -> Option<&'static str> {
        if (self.ino, self.dev) != (now.ino, now.dev) {
            Some("its path names another file: inode or device differ")
        } else if self.mtime != now.mtime {
            Some("modification time differs")
        } else if self.ctime != now.ctime {
            Some("status-change time differs")
        } else {
            None
        }
    }
}

impl<'f> Core<'f> {
    /// [`LoadError::Interrupted`] once the caller's cancellation flag is set. Checked before
    /// each tensor of a serial load and each batch of a pipelined one.
    pub fn check_cancel(&self) -> Result<(), LoadError> {
        match self.cancel {
            Some(flag) if flag.load(Ordering::Relaxed) => Err(LoadError::Interrupted {
                file: self.file.path().to_path_buf(),
            }),
            _ => Ok(()),
        }
    }

    /// Plans `t` (or `region` of it) as `as_` into `target`, with the error naming the tensor.
    pub fn plan(
        &self,
        t: &TensorInfo,
        as_: LoadAs,
        region: Option<&Region>,
        target: Target,
    ) -> Result<TensorPlan, LoadError> {
        plan::plan(t.ty, &t.dims, as_, region, target).map_err(|e| self.plan_err(t, e))
    }

    /// The format that gives `t` its values.
    pub fn value_format(&self, t: &TensorInfo) -> Result<&'static dyn QuantFormat, LoadError> {
        plan::value_format(t.ty).map_err(|e| self.plan_err(t, e))
    }

    /// A planning failure as the loader's error, naming the file and tensor.
    pub fn plan_err(&self, t: &TensorInfo, e: PlanError) -> LoadError {
        let (file, tensor) = (self.file.path().to_path_buf(), t.name.clone());
        match e {
            PlanError::Integer(ty) => LoadError::IntegerTensor { file, tensor, ty },
            PlanError::Unsupported(ty) => LoadError::Unsupported { file, tensor, ty },
            PlanError::TooLarge(elements) => LoadError::TooLarge {
                file,
                tensor,
                elements,
            },
            source => LoadError::Plan {
                file,
                tensor,
                source,
            },
        }
    }

    /// A device failure on `t`.
    pub fn gpu_err(&self, t: &TensorInfo, backend: &dyn Backend, e: GpuError) -> LoadError {
        LoadError::Gpu {
            file: self.file.path().to_path_buf(),
            tensor: t.name.clone(),
            device: backend.info().label(),
            source: Box::new(e),
        }
    }

    /// A failure reading `t`'s bytes.
    pub fn read_err(&self, t: &TensorInfo, reason: &str) -> LoadError {
        LoadError::Read {
            file: self.file.path().to_path_buf(),
            tensor: t.name.clone(),
            reason: reason.to_string(),
        }
    }

    /// [`LoadError::FileChanged`] if the file on disk no longer has the size it had when
    /// opened: a mapped file that shrank would raise SIGBUS on the lost pages, and an
    /// unmapped one would give bytes of two versions of the file. [`LoadError::FileModified`]
    /// if it has that size but was rewritten since the loader opened it (its [`Stamp`]
    /// differs). Called before and after reads.
    pub fn check_unchanged(&self) -> Result<(), LoadError> {
        let Ok(meta) = std::fs::metadata(self.file.path()) else {
            return Ok(());
        };
        let was = self.file.file_len();
        if meta.len() != was {
            return Err(LoadError::FileChanged {
                file: self.file.path().to_path_buf(),
                was,
                now: meta.len(),
            });
        }
        match self
            .opened
            .and_then(|s| s.differs(&Stamp::from_meta(&meta)))
        {
            Some(what) => Err(LoadError::FileModified {
                file: self.file.path().to_path_buf(),
                what: what.to_string(),
            }),
            None => Ok(()),
        }
    }

    /// The bytes `spans` of `t`'s data: borrowed from the mapping when they are one run of
    /// it, else read (or gathered) into a buffer of exactly their size. The file is checked
    /// before and after ([`Core::check_unchanged`]).
    pub fn read(&self, t: &TensorInfo, spans: &Spans) -> Result<Cow<'f, [u8]>, LoadError> {
        self.check_unchanged()?;
        let bytes = self.read_spans(t, spans)?;
        self.check_unchanged()?;
        Ok(bytes)
    }

    fn read_spans(&self, t: &TensorInfo, spans: &Spans) -> Result<Cow<'f, [u8]>, LoadError> {
        if spans.first == 0 && spans.total() == t.n_bytes {
            return Ok(self.file.tensor_data(t)?);
        }
        let total = usize::try_from(spans.total()).map_err(|_| self.too_large(t))?;
        let mut out = vec![0u8; total];
        let mut at = 0usize;
        for (offset, len) in spans.segments(0, spans.total()) {
            let dst = &mut out[at..at + len as usize];
            self.file.read_tensor_at(t, offset, dst)?;
            at += len as usize;
        }
        Ok(Cow::Owned(out))
    }

    fn too_large(&self, t: &TensorInfo) -> LoadError {
        LoadError::TooLarge {
            file: self.file.path().to_path_buf(),
            tensor: t.name.clone(),
            elements: t.n_elements,
        }
    }

    /// Values of `bytes` (whole blocks of `format`) by the CPU `path`, rounded to `dtype` and
    /// cut by `trim`.
    pub fn host_values(
        &self,
        t: &TensorInfo,
        format: &dyn QuantFormat,
        bytes: &[u8],
        dtype: OutputDType,
        trim: Option<Trim>,
        path: CpuPath,
    ) -> Result<HostValues, LoadError> {
        let values =
            cpu::dequantize_to_vec(format, bytes, path).map_err(|source| LoadError::Core {
                file: self.file.path().to_path_buf(),
                tensor: t.name.clone(),
                source,
            })?;
        let values = match trim {
            Some(trim) => trimmed(values, trim),
            None => values,
        };
        Ok(HostValues::round(values, dtype))
    }

    /// The one fallback: a kernel of `plan` failed with `e`. Under [`FallbackPolicy::Deny`]
    /// that is the error; otherwise a warning, and the CPU reference's values of `bytes` as
    /// the plan's output bytes, with the path that says why.
    pub fn fall_back(
        &self,
        t: &TensorInfo,
        backend: &dyn Backend,
        plan: &TensorPlan,
        bytes: &[u8],
        e: GpuError,
    ) -> Result<(Vec<u8>, LoadPath), LoadError> {
        let plan::Work::Kernel { format, dtype, .. } = plan.work else {
            return Err(self.gpu_err(t, backend, e));
        };
        if self.fallback == FallbackPolicy::Deny {
            return Err(self.gpu_err(t, backend, e));
        }
        tracing::warn!(
            tensor = %t.name,
            device = %backend.info().label(),
            "the {} kernel could not run ({e}); falling back to the CPU reference",
            t.ty
        );
        let values = self.host_values(t, format, bytes, dtype, plan.trim, CpuPath::Reference)?;
        Ok((values.to_le_bytes(), LoadPath::Fallback(e.to_string())))
    }

    /// The report row of `t` loaded by `plan`: `bytes` are (uploaded, produced).
    pub fn row(
        &self,
        t: &TensorInfo,
        plan: &TensorPlan,
        (uploaded, produced): (u64, u64),
        time: Duration,
        path: LoadPath,
    ) -> TensorLoad {
        TensorLoad {
            name: t.name.clone(),
            ty: t.ty,
            shape: plan.shape.clone(),
            dtype: plan.dtype,
            bytes_uploaded: uploaded,
            bytes_produced: produced,
            time,
            path,
        }
    }
}

/// Whether a device error means "this format's kernel cannot run here" (the fallback applies)
/// rather than a device fault that a CPU fallback would not cure (out of memory, lost device).
pub(crate) fn is_kernel_failure(e: &GpuError) -> bool {
    matches!(
        e,
        GpuError::Compile { .. }
            | GpuError::CodeObject { .. }
            | GpuError::NoKernel { .. }
            | GpuError::Launch { .. }
    )
}

/// The `skip..skip + keep` values of each row of `covered` values.
fn trimmed(values: Vec<f32>, trim: Trim) -> Vec<f32> {
    let (covered, skip, keep) = (
        trim.covered as usize,
        trim.skip as usize,
        trim.keep as usize,
    );
    values
        .chunks_exact(covered)
        .flat_map(|row| &row[skip..skip + keep])
        .copied()
        .collect()
}
