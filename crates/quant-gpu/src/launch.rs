//! [`plan_launch`]: the one place where a dequantization launch is checked and sized, for every
//! backend.
//!
//! A backend hands over the format's [`KernelSpec`] (which carries the block geometry), the
//! block count, both buffers' lengths and byte offsets, the output type and its device limits.
//! The planner checks, with checked arithmetic throughout, that
//!
//! * the spec is launchable: `threads_per_group` in `1..=max_threads_per_group`,
//!   `blocks_per_group > 0`, and a non-empty block geometry;
//! * both offsets are multiples of [`KERNEL_ALIGN`] (the kernels load and store 16-byte vectors,
//!   see `kernels/qf_portability.h` and [`KernelSpec`]);
//! * `n_blocks` blocks at the source offset lie inside the source buffer and their values at
//!   the destination offset inside the destination buffer;
//!
//! and returns a [`LaunchPlan`]: the byte ranges the kernel reads and writes and the grid. The
//! FFI layers of the backends check the plan's ranges against their buffers once more before
//! handing pointers to the driver.

use std::ops::Range;

use quant_core::{KernelSpec, OutputDType};

use crate::GpuError;

/// Alignment in bytes that the kernel ABI requires of both pointers (16-byte vector loads and
/// stores); offsets into device allocations must be multiples of it.
pub const KERNEL_ALIGN: usize = 16;

/// Largest thread block any supported device runs (CUDA and HIP both allow 1024 threads).
pub const MAX_THREADS_PER_GROUP: u32 = 1024;

/// A device's launch limits, as the planner needs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceLimits {
    /// Most threads in one group (thread block).
    pub max_threads_per_group: u32,
    /// Most groups in the grid's x dimension. Kernels loop over groups with a grid stride, so
    /// the planner caps the grid at this rather than refusing the launch.
    pub max_groups: u32,
}

impl Default for DeviceLimits {
    /// 1024 threads per group and `i32::MAX` groups: what every CUDA device of compute
    /// capability 3.0 or later and every HIP device allows.
    fn default() -> Self {
        DeviceLimits {
            max_threads_per_group: MAX_THREADS_PER_GROUP,
            max_groups: i32::MAX as u32,
        }
    }
}

/// One buffer of a launch: its whole length and the byte offset the kernel starts at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferRegion {
    /// Length of the whole buffer in bytes.
    pub buffer_len: usize,
    /// Byte offset of the kernel's first block or value.
    pub offset: usize,
}

impl BufferRegion {
    /// A region of a buffer of `buffer_len` bytes starting at `offset`.
    pub const fn new(buffer_len: usize, offset: usize) -> Self {
        BufferRegion { buffer_len, offset }
    }

    /// The whole buffer from its start.
    pub const fn whole(buffer_len: usize) -> Self {
        BufferRegion {
            buffer_len,
            offset: 0,
        }
    }
}

/// A checked launch: what the kernel reads and writes and how its grid is shaped. Only
/// [`plan_launch`] makes one, so holding one means the checks above passed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchPlan {
    n_blocks: u64,
    src: Range<usize>,
    dst: Range<usize>,
    src_block_bytes: usize,
    dst_block_bytes: usize,
    blocks_per_group: u32,
    groups: u32,
    threads_per_group: u32,
}

impl LaunchPlan {
    /// Blocks to dequantize (the kernel's `n_blocks` argument).
    pub fn n_blocks(&self) -> u64 {
        self.n_blocks
    }
    /// Bytes of the source buffer the kernel reads.
    pub fn src_range(&self) -> Range<usize> {
        self.src.clone()
    }
    /// Bytes of the destination buffer the kernel writes.
    pub fn dst_range(&self) -> Range<usize> {
        self.dst.clone()
    }
    /// Source bytes per block.
    pub fn src_block_bytes(&self) -> usize {
        self.src_block_bytes
    }
    /// Destination bytes per block (values per block times the output type's size).
    pub fn dst_block_bytes(&self) -> usize {
        self.dst_block_bytes
    }
    /// Blocks of the format handled by one group (from the spec).
    pub fn blocks_per_group(&self) -> u32 {
        self.blocks_per_group
    }
    /// Groups to launch (the grid's x dimension); 0 when there is nothing to do.
    pub fn groups(&self) -> u32 {
        self.groups
    }
    /// Threads per group (the block's x dimension).
    pub fn threads_per_group(&self) -> u32 {
        self.threads_per_group
    }
    /// Whether there is nothing to launch (zero blocks). Backends return before loading a
    /// module.
    pub fn is_empty(&self) -> bool {
        self.n_blocks == 0
    }
    /// At most `cap` groups (at least 1 when there is work): the kernels stride over the rest.
    pub fn with_max_groups(mut self, cap: u32) -> Self {
        if self.groups > 0 {
            self.groups = self.groups.min(cap.max(1));
        }
        self
    }
    /// [`fits`](Self::fits), or the reason it does not, naming the ranges and the buffers.
    pub fn check_fits(&self, src_len: usize, dst_len: usize) -> Result<(), String> {
        if self.fits(src_len, dst_len) {
            return Ok(());
        }
        Err(format!(
            "kernel ranges {:?} and {:?} for {} blocks do not fit buffers of {src_len} and \
             {dst_len} bytes",
            self.src, self.dst, self.n_blocks
        ))
    }

    /// Whether the ranges are consistent with the block count and lie inside buffers of
    /// `src_len` and `dst_len` bytes: what an FFI layer checks before it hands out pointers.
    pub fn fits(&self, src_len: usize, dst_len: usize) -> bool {
        let span = |block_bytes: usize| {
            usize::try_from(self.n_blocks)
                .ok()
                .and_then(|n| n.checked_mul(block_bytes))
        };
        self.src.start <= self.src.end
            && self.dst.start <= self.dst.end
            && self.src.end <= src_len
            && self.dst.end <= dst_len
            && span(self.src_block_bytes) == Some(self.src.len())
            && span(self.dst_block_bytes) == Some(self.dst.len())
    }
}

/// Checks one dequantization launch and plans its grid: `n_blocks` blocks of `spec`'s format
/// read at `src.offset` in the source buffer, their values of type `dtype` written at
/// `dst.offset` in the destination buffer, `spec.blocks_per_group` blocks per group of
/// `spec.threads_per_group` threads, at most `limits.max_groups` groups (the kernels stride over
/// the rest). Zero blocks give an empty plan (after the same checks). Never panics: every size
/// is computed with checked arithmetic.
///
/// The block geometry is the spec's own (`spec.geometry`). Errors:
///
/// * [`GpuError::NoKernel`] when the spec cannot run (thread count outside the device's limit,
///   zero blocks per group or an empty geometry);
/// * [`GpuError::Misaligned`] when an offset is not a multiple of [`KERNEL_ALIGN`];
/// * [`GpuError::Overflow`] when a size does not fit in `usize`;
/// * [`GpuError::BufferSize`] when a range lies past the end of its buffer (`need` counts the
///   offset).
pub fn plan_launch(
    spec: &KernelSpec,
    n_blocks: u64,
    src: BufferRegion,
    dst: BufferRegion,
    dtype: OutputDType,
    limits: DeviceLimits,
) -> Result<LaunchPlan, GpuError> {
    let no_kernel = |reason: String| GpuError::NoKernel {
        format: spec.format.to_string(),
        reason,
    };
    let g = spec.geometry;
    if g.block_elems == 0 || g.block_bytes == 0 {
        return Err(no_kernel(format!(
            "the kernel spec has an empty block geometry ({} values in {} bytes)",
            g.block_elems, g.block_bytes
        )));
    }
    let max_threads = limits.max_threads_per_group;
    if spec.threads_per_group == 0 || spec.threads_per_group > max_threads {
        return Err(no_kernel(format!(
            "{} threads per group; the device allows 1 to {max_threads}",
            spec.threads_per_group
        )));
    }
    if spec.blocks_per_group == 0 {
        return Err(no_kernel("0 blocks per group".into()));
    }
    for (op, offset) in [
        ("dequantize (source offset)", src.offset),
        ("dequantize (destination offset)", dst.offset),
    ] {
        if offset % KERNEL_ALIGN != 0 {
            return Err(GpuError::Misaligned {
                op,
                offset,
                align: KERNEL_ALIGN,
            });
        }
    }
    let overflow = |op: &'static str, what: String| GpuError::Overflow { op, what };
    let n = usize::try_from(n_blocks).map_err(|_| {
        overflow(
            "dequantize",
            format!("{n_blocks} blocks do not fit in this host's address space"),
        )
    })?;
    let dst_block_bytes = g.block_elems.checked_mul(dtype.size()).ok_or_else(|| {
        overflow(
            "dequantize (destination)",
            format!("{} {dtype} values per block", g.block_elems),
        )
    })?;
    let range = |op: &'static str, region: BufferRegion, block_bytes: usize| {
        let end = n
            .checked_mul(block_bytes)
            .and_then(|bytes| bytes.checked_add(region.offset))
            .ok_or_else(|| {
                overflow(
                    op,
                    format!(
                        "{n_blocks} blocks of {block_bytes} bytes at offset {}",
                        region.offset
                    ),
                )
            })?;
        if end > region.buffer_len {
            return Err(GpuError::BufferSize {
                op,
                have: region.buffer_len,
                need: end,
            });
        }
        Ok(region.offset..end)
    };
    let src_range = range("dequantize (source)", src, g.block_bytes)?;
    let dst_range = range("dequantize (destination)", dst, dst_block_bytes)?;
    let groups = if n_blocks == 0 {
        0
    } else {
        let cap = u64::from(limits.max_groups.max(1));
        // Fits in u32: capped by a u32.
        spec.groups_for(n_blocks).min(cap) as u32
    };
    Ok(LaunchPlan {
        n_blocks,
        src: src_range,
        dst: dst_range,
        src_block_bytes: g.block_bytes,
        dst_block_bytes,
        blocks_per_group: spec.blocks_per_group,
        groups,
        threads_per_group: spec.threads_per_group,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use quant_core::BlockGeometry;

    const fn spec(threads: u32, blocks_per_group: u32, elems: usize, bytes: usize) -> KernelSpec {
        KernelSpec {
            format: "t",
            file_name: "quant-t/kernel.hip",
            source: "",
            entry_f32: "t_f32",
            entry_f16: "t_f16",
            entry_bf16: "t_bf16",
            threads_per_group: threads,
            blocks_per_group,
            geometry: BlockGeometry {
                block_elems: elems,
                block_bytes: bytes,
            },
        }
    }

    /// Q4_K-like: 256 values in 144 bytes, 8 blocks per group.
    static SPEC: KernelSpec = spec(256, 8, 256, 144);

    fn plan(
        n: u64,
        src: (usize, usize),
        dst: (usize, usize),
        dtype: OutputDType,
    ) -> Result<LaunchPlan, GpuError> {
        plan_launch(
            &SPEC,
            n,
            BufferRegion::new(src.0, src.1),
            BufferRegion::new(dst.0, dst.1),
            dtype,
            DeviceLimits::default(),
        )
    }

    #[test]
    fn whole_buffers_are_planned() {
        // 100 blocks, 8 per group: 13 groups of 256 threads.
        let p = plan(100, (14_400, 0), (102_400, 0), OutputDType::F32).unwrap();
        assert_eq!(p.groups(), 13);
        assert_eq!(p.threads_per_group(), 256);
        assert_eq!(p.blocks_per_group(), 8);
        assert_eq!(p.n_blocks(), 100);
        assert_eq!(p.src_range(), 0..14_400);
        assert_eq!(p.dst_range(), 0..102_400);
        assert!(p.fits(14_400, 102_400));
        assert!(!p.fits(14_399, 102_400));
        assert!(!p.fits(14_400, 102_399));
        assert!(p.check_fits(14_400, 102_400).is_ok());
        let why = p.check_fits(14_399, 102_400).unwrap_err();
        assert!(why.contains("14399") && why.contains("do not fit"), "{why}");
        // f16 and bf16 need half the bytes.
        for dtype in [OutputDType::F16, OutputDType::Bf16] {
            let p = plan(100, (14_400, 0), (51_200, 0), dtype).unwrap();
            assert_eq!(p.dst_range(), 0..51_200);
            assert_eq!(p.dst_block_bytes(), 512);
        }
    }

    #[test]
    fn offsets_shift_both_ranges() {
        let p = plan(3, (4096 + 432, 4096), (1024 + 3072, 1024), OutputDType::F32).unwrap();
        assert_eq!(p.src_range(), 4096..4096 + 432);
        assert_eq!(p.dst_range(), 1024..1024 + 3072);
        let e = plan(3, (4096 + 431, 4096), (8192, 1024), OutputDType::F32).unwrap_err();
        assert!(
            matches!(
                e,
                GpuError::BufferSize {
                    op: "dequantize (source)",
                    have: 4527,
                    need: 4528
                }
            ),
            "{e}"
        );
        let e = plan(3, (8192, 0), (1024 + 3071, 1024), OutputDType::F32).unwrap_err();
        assert!(
            matches!(
                e,
                GpuError::BufferSize {
                    op: "dequantize (destination)",
                    need: 4096,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn zero_blocks_plan_nothing_but_are_still_checked() {
        let p = plan(0, (0, 0), (0, 0), OutputDType::F32).unwrap();
        assert!(p.is_empty());
        assert_eq!(p.groups(), 0);
        assert_eq!(p.clone().with_max_groups(5).groups(), 0);
        // An offset past the end is refused even with nothing to do.
        let e = plan(0, (16, 32), (0, 0), OutputDType::F32).unwrap_err();
        assert!(matches!(e, GpuError::BufferSize { need: 32, .. }), "{e}");
        let e = plan(0, (0, 0), (0, 8), OutputDType::F32).unwrap_err();
        assert!(matches!(e, GpuError::Misaligned { offset: 8, .. }), "{e}");
    }

    #[test]
    fn misaligned_offsets_are_refused() {
        for off in [1, 8, 15, 17, 255] {
            let e = plan(1, (off + 144, off), (1024, 0), OutputDType::F32).unwrap_err();
            assert!(
                matches!(e, GpuError::Misaligned { op: "dequantize (source offset)", offset, align: 16 } if offset == off),
                "{e}"
            );
            let e = plan(1, (144, 0), (off + 1024, off), OutputDType::F32).unwrap_err();
            assert!(
                matches!(e, GpuError::Misaligned { op: "dequantize (destination offset)", offset, .. } if offset == off),
                "{e}"
            );
        }
        assert!(plan(1, (16 + 144, 16), (256 + 1024, 256), OutputDType::F32).is_ok());
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        let e = plan(u64::MAX, (usize::MAX, 0), (usize::MAX, 0), OutputDType::F32).unwrap_err();
        assert!(matches!(e, GpuError::Overflow { .. }), "{e}");
        let n = (usize::MAX / 144) as u64;
        let e = plan(
            n,
            (usize::MAX, usize::MAX & !15),
            (usize::MAX, 0),
            OutputDType::F32,
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                GpuError::Overflow {
                    op: "dequantize (source)",
                    ..
                }
            ),
            "{e}"
        );
        let huge = spec(256, 8, usize::MAX, 1);
        let e = plan_launch(
            &huge,
            1,
            BufferRegion::whole(1),
            BufferRegion::whole(usize::MAX),
            OutputDType::F32,
            DeviceLimits::default(),
        )
        .unwrap_err();
        assert!(matches!(e, GpuError::Overflow { .. }), "{e}");
    }

    #[test]
    fn spec_and_device_mismatches_are_no_kernel() {
        let ok = |s: &KernelSpec, limits| {
            plan_launch(
                s,
                1,
                BufferRegion::whole(1 << 20),
                BufferRegion::whole(1 << 20),
                OutputDType::F32,
                limits,
            )
        };
        let small = DeviceLimits {
            max_threads_per_group: 128,
            max_groups: 10,
        };
        let e = ok(&SPEC, small).unwrap_err();
        assert!(e.to_string().contains("1 to 128"), "{e}");
        for bad in [
            spec(0, 8, 256, 144),
            spec(2048, 8, 256, 144),
            spec(256, 0, 256, 144),
            spec(256, 8, 0, 144),
            spec(256, 8, 256, 0),
        ] {
            let e = ok(&bad, DeviceLimits::default()).unwrap_err();
            assert!(matches!(e, GpuError::NoKernel { .. }), "{e}");
        }
        assert!(ok(&spec(1024, 1, 32, 18), DeviceLimits::default()).is_ok());
    }

    #[test]
    fn grid_is_capped_by_the_device_and_the_caller() {
        let limits = DeviceLimits {
            max_threads_per_group: 1024,
            max_groups: 4,
        };
        let p = plan_launch(
            &SPEC,
            100,
            BufferRegion::whole(14_400),
            BufferRegion::whole(102_400),
            OutputDType::F32,
            limits,
        )
        .unwrap();
        assert_eq!(p.groups(), 4);
        let p = plan(100, (14_400, 0), (102_400, 0), OutputDType::F32).unwrap();
        assert_eq!(p.clone().with_max_groups(2).groups(), 2);
        assert_eq!(p.clone().with_max_groups(0).groups(), 1);
        assert_eq!(p.with_max_groups(1000).groups(), 13);
        // A zero device limit is read as 1.
        let p = plan_launch(
            &SPEC,
            100,
            BufferRegion::whole(14_400),
            BufferRegion::whole(102_400),
            OutputDType::F32,
            DeviceLimits {
                max_threads_per_group: 1024,
                max_groups: 0,
            },
        )
        .unwrap();
        assert_eq!(p.groups(), 1);
    }

    fn dtype() -> impl Strategy<Value = OutputDType> {
        prop_oneof![
            Just(OutputDType::F32),
            Just(OutputDType::F16),
            Just(OutputDType::Bf16)
        ]
    }

    proptest! {
        /// Whatever the inputs, the planner never panics, and a plan it returns is exactly the
        /// arithmetic a launch needs: ranges inside the buffers, aligned, sized by the block
        /// count, and a grid that covers every block unless capped.
        #[test]
        fn plans_are_sound(
            n in prop_oneof![0u64..5000, any::<u64>()],
            src_len in prop_oneof![0usize..1 << 24, any::<usize>()],
            src_off in prop_oneof![0usize..1 << 16, any::<usize>()],
            dst_len in prop_oneof![0usize..1 << 26, any::<usize>()],
            dst_off in prop_oneof![0usize..1 << 16, any::<usize>()],
            dtype in dtype(),
            elems in prop_oneof![Just(32usize), Just(256usize), 0usize..1024],
            bytes in prop_oneof![Just(18usize), Just(144usize), Just(210usize), 0usize..1024],
            bpg in 0u32..300,
            threads in prop_oneof![Just(256u32), 0u32..2048],
            max_groups in prop_oneof![Just(i32::MAX as u32), any::<u32>()],
        ) {
            let s = spec(threads, bpg, elems, bytes);
            let limits = DeviceLimits { max_threads_per_group: 1024, max_groups };
            let r = plan_launch(
                &s,
                n,
                BufferRegion::new(src_len, src_off),
                BufferRegion::new(dst_len, dst_off),
                dtype,
                limits,
            );
            if let Ok(p) = r {
                prop_assert!(p.fits(src_len, dst_len));
                prop_assert_eq!(p.src_range().start, src_off);
                prop_assert_eq!(p.dst_range().start, dst_off);
                prop_assert_eq!(src_off % KERNEL_ALIGN, 0);
                prop_assert_eq!(dst_off % KERNEL_ALIGN, 0);
                prop_assert_eq!(p.src_range().len() as u128, n as u128 * bytes as u128);
                prop_assert_eq!(
                    p.dst_range().len() as u128,
                    n as u128 * elems as u128 * dtype.size() as u128
                );
                prop_assert!(threads > 0 && threads <= 1024 && bpg > 0);
                if n == 0 {
                    prop_assert_eq!(p.groups(), 0);
                } else {
                    prop_assert!(p.groups() >= 1 && p.groups() <= max_groups.max(1));
                    let covered = p.groups() as u128 * bpg as u128;
                    prop_assert!(covered >= n as u128 || p.groups() == max_groups.max(1));
                }
            }
        }

        /// Sizes that fit are accepted: a buffer exactly as long as needed, at any aligned
        /// offset, for any dtype.
        #[test]
        fn exact_fits_are_accepted(
            n in 0u64..10_000,
            src_off in (0usize..4096).prop_map(|o| o * 16),
            dst_off in (0usize..4096).prop_map(|o| o * 16),
            dtype in dtype(),
        ) {
            let need_src = src_off + n as usize * 144;
            let need_dst = dst_off + n as usize * 256 * dtype.size();
            let p = plan(n, (need_src, src_off), (need_dst, dst_off), dtype).unwrap();
            prop_assert_eq!(p.src_range(), src_off..need_src);
            prop_assert_eq!(p.dst_range(), dst_off..need_dst);
            prop_assert_eq!(u64::from(p.groups()), if n == 0 { 0 } else { n.div_ceil(8) });
            if n > 0 {
                let short_src = plan(n, (need_src - 1, src_off), (need_dst, dst_off), dtype);
                let short_dst = plan(n, (need_src, src_off), (need_dst - 1, dst_off), dtype);
                prop_assert!(
                    matches!(short_src, Err(GpuError::BufferSize { need, .. }) if need == need_src),
                    "short source"
                );
                prop_assert!(
                    matches!(short_dst, Err(GpuError::BufferSize { need, .. }) if need == need_dst),
                    "short destination"
                );
            }
        }
    }
}

/// The checks on memory a caller hands in ([`crate::Backend::wrap_device_memory`]) that need no
/// driver: not null, aligned to [`KERNEL_ALIGN`] for the kernels' vector stores, and the range
/// not wrapping around the address space. Backends add the driver's own check.
pub fn check_foreign_memory(ptr: u64, len: usize) -> Result<(), GpuError> {
    let refuse = |reason: String| Err(GpuError::ForeignMemory { ptr, len, reason });
    if ptr == 0 {
        return refuse("a null pointer".into());
    }
    if ptr % KERNEL_ALIGN as u64 != 0 {
        return refuse(format!(
            "not aligned to {KERNEL_ALIGN} bytes, as the kernels' 16-byte stores need"
        ));
    }
    if ptr.checked_add(len as u64).is_none() {
        return refuse("the range wraps around the address space".into());
    }
    Ok(())
}

#[cfg(test)]
mod foreign_memory_tests {
    use super::*;

    #[test]
    fn null_misaligned_and_wrapping_memory_is_refused_with_the_reason() {
        check_foreign_memory(0x7f00_0000_0000, 4096).unwrap();
        check_foreign_memory(16, 0).unwrap();
        for (ptr, len, why) in [
            (0, 16, "null"),
            (0x1008, 16, "aligned to 16"),
            (0x1001, 16, "aligned to 16"),
            (u64::MAX - 15, 32, "wraps"),
        ] {
            let e = check_foreign_memory(ptr, len).unwrap_err();
            let text = e.to_string();
            assert!(matches!(e, GpuError::ForeignMemory { .. }), "{text}");
            assert!(
                text.contains(why) && text.contains(&format!("{ptr:#x}")),
                "{text}"
            );
        }
    }
}
