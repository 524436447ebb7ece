//! [`DeviceInfo`] and [`MemInfo`]: what a backend says about its device.

use std::fmt;

use crate::spec::DeviceKind;

/// What a backend knows about its device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Vendor API.
    pub kind: DeviceKind,
    /// Device ordinal within that API.
    pub ordinal: usize,
    /// Marketing name (`"NVIDIA H100 80GB HBM3"`).
    pub name: String,
    /// Architecture the kernels are built for (`"sm_90"`, `"gfx90a"`).
    pub arch: String,
    /// Total device memory in bytes.
    pub total_memory: u64,
    /// Threads per warp / wavefront (32 on NVIDIA and RDNA, 64 on CDNA).
    pub warp_size: u32,
    /// Multiprocessors (SMs / CUs).
    pub multiprocessors: u32,
}

impl DeviceInfo {
    /// The short label reports and errors use: `cuda:0 (NVIDIA H200)`.
    pub fn label(&self) -> String {
        format!("{}:{} ({})", self.kind, self.ordinal, self.name)
    }
}

impl fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{} {} ({}, {:.1} GiB)",
            self.kind,
            self.ordinal,
            self.name,
            self.arch,
            self.total_memory as f64 / (1u64 << 30) as f64
        )
    }
}

/// Device memory figures, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemInfo {
    /// Free now.
    pub free: u64,
    /// Total.
    pub total: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_and_display_name_the_device() {
        let i = DeviceInfo {
            kind: DeviceKind::Cuda,
            ordinal: 1,
            name: "NVIDIA H200".into(),
            arch: "sm_90".into(),
            total_memory: 3 << 30,
            warp_size: 32,
            multiprocessors: 132,
        };
        assert_eq!(i.label(), "cuda:1 (NVIDIA H200)");
        assert_eq!(i.to_string(), "cuda:1 NVIDIA H200 (sm_90, 3.0 GiB)");
    }
}
