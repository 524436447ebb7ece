//! [`DeviceSpec`]: the `--device auto|cpu|cuda[:N]|hip[:N]` syntax.

use std::fmt;
use std::str::FromStr;

/// GPU vendor API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    /// NVIDIA, through CUDA.
    Cuda,
    /// AMD, through HIP / ROCm.
    Hip,
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeviceKind::Cuda => "cuda",
            DeviceKind::Hip => "hip",
        })
    }
}

/// Where to run: the value of `--device`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceSpec {
    /// The first GPU found (CUDA, then HIP), else the CPU.
    Auto,
    /// The CPU.
    Cpu,
    /// One GPU.
    Gpu(DeviceKind, usize),
}

/// A `--device` value that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid device '{0}': expected auto, cpu, cuda[:N] or hip[:N]")]
pub struct DeviceSpecError(String);

impl FromStr for DeviceSpec {
    type Err = DeviceSpecError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || DeviceSpecError(s.to_string());
        let (name, ordinal) = match s.split_once(':') {
            Some((n, o)) => (n, Some(o.parse::<usize>().map_err(|_| err())?)),
            None => (s, None),
        };
        match (name.to_ascii_lowercase().as_str(), ordinal) {
            ("auto", None) => Ok(DeviceSpec::Auto),
            ("cpu", None) => Ok(DeviceSpec::Cpu),
            ("cuda", o) => Ok(DeviceSpec::Gpu(DeviceKind::Cuda, o.unwrap_or(0))),
            ("hip" | "rocm", o) => Ok(DeviceSpec::Gpu(DeviceKind::Hip, o.unwrap_or(0))),
            _ => Err(err()),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Auto => f.write_str("auto"),
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Gpu(k, n) => write!(f, "{k}:{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!("auto".parse::<DeviceSpec>().unwrap(), DeviceSpec::Auto);
        assert_eq!("cpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!(
            "cuda".parse::<DeviceSpec>().unwrap(),
            DeviceSpec::Gpu(DeviceKind::Cuda, 0)
        );
        assert_eq!(
            "cuda:3".parse::<DeviceSpec>().unwrap(),
            DeviceSpec::Gpu(DeviceKind::Cuda, 3)
        );
        assert_eq!(
            "hip:1".parse::<DeviceSpec>().unwrap(),
            DeviceSpec::Gpu(DeviceKind::Hip, 1)
        );
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
        assert!("tpu".parse::<DeviceSpec>().is_err());
        assert!("cpu:1".parse::<DeviceSpec>().is_err());
    }
}
