//! Executors: they carry out [`TensorPlan`](crate::plan::TensorPlan)s and return what they load.
//!
//! Each strategy is a small type over one shared [`Core`]: [`Serial`] (tensor by tensor onto a
//! device), [`Host`] (into host memory), [`IntoCaller`] (into device memory the caller owns)
//! and the pipeline (module `pipeline`). The core holds the parsed file and the fallback
//! policy, and writes once what they all need: the error context (file, tensor), reading a
//! plan's bytes, values made on the host, the one fallback to the CPU reference, and the
//! report rows. Executors take the parsed file, never the loader.

mod core;
mod host;
mod into;
mod serial;

pub(crate) use self::core::{is_kernel_failure, Core, Stamp};
pub use host::{Host, HostData, HostTensor};
pub(crate) use into::IntoCaller;
pub(crate) use serial::Serial;
