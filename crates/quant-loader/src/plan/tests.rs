use super::*;

// Link the formats the decisions below look up.
use quant_float as _;
use quant_q4k as _;

const Q4_K: GgmlType = GgmlType(12);
const F32: GgmlType = GgmlType(0);
const I32: GgmlType = GgmlType(26);

fn shape(blocks: u64, block_bytes: usize, m: u64) -> JobShape {
    JobShape {
        blocks,
        block_bytes,
        block_multiple: m,
    }
}

/// Every block of every job appears exactly once, in order, inside its slot.
fn check(jobs: &[JobShape], slot: usize, batches: &[Batch]) {
    let mut next = vec![0u64; jobs.len()];
    let mut last_job = 0;
    for b in batches {
        assert!(b.used <= slot);
        let mut end = 0;
        for p in &b.pieces {
            assert!(p.job >= last_job, "jobs stay in order");
            last_job = p.job;
            assert_eq!(p.slot_offset % ALIGN, 0);
            assert!(p.slot_offset >= end, "pieces do not overlap");
            assert_eq!(p.first_block, next[p.job], "blocks in order");
            assert_eq!(p.job_offset, p.first_block * jobs[p.job].block_bytes as u64);
            assert_eq!(p.len, p.n_blocks as usize * jobs[p.job].block_bytes);
            next[p.job] += p.n_blocks;
            if next[p.job] < jobs[p.job].blocks {
                assert_eq!(p.n_blocks % jobs[p.job].block_multiple, 0);
            }
            end = p.slot_offset + p.len;
        }
        assert_eq!(b.used, end);
    }
    for (j, s) in jobs.iter().enumerate() {
        assert_eq!(next[j], s.blocks, "job {j} complete");
    }
}

#[test]
fn large_tensors_are_split_and_small_ones_share_a_slot() {
    let jobs = [
        shape(3, 144, 1),
        shape(2, 210, 1),
        shape(100, 144, 1),
        shape(1, 144, 1),
    ];
    let b = plan_batches(&jobs, 1024).unwrap();
    check(&jobs, 1024, &b);
    assert_eq!(b[0].pieces[0].job, 0);
    assert_eq!(b[0].pieces[1].job, 1);
    assert_eq!(b[0].pieces[1].slot_offset, 512);
    let spanning = b.iter().filter(|b| b.pieces.iter().any(|p| p.job == 2));
    assert!(spanning.count() >= 14);
}

#[test]
fn block_multiples_keep_outputs_aligned() {
    // Q4_0 to f16: 32 values * 2 bytes = 64 output bytes per block -> multiples of 4.
    assert_eq!(block_multiple(64), 4);
    assert_eq!(block_multiple(512), 1);
    assert_eq!(block_multiple(1), 256);
    let jobs = [shape(1, 18, 4), shape(103, 18, 4)];
    let b = plan_batches(&jobs, 300).unwrap();
    check(&jobs, 300, &b);
}

#[test]
fn a_slot_smaller_than_a_block_is_an_error() {
    let e = plan_batches(&[shape(4, 210, 1)], 200).unwrap_err();
    assert!(e.contains("200 bytes") && e.contains("210"), "{e}");
    assert!(plan_batches(&[], 16).unwrap().is_empty());
    assert!(plan_batches(&[shape(0, 144, 1)], 1024).unwrap().is_empty());
}

#[test]
fn each_kind_of_tensor_gets_its_work() {
    let f16 = LoadAs::Values(OutputDType::F16);
    let dims = [512, 4];
    let k = plan(Q4_K, &dims, f16, None, Target::Device).unwrap();
    assert!(matches!(k.work, Work::Kernel { .. }), "{:?}", k.work);
    assert_eq!((k.blocks, k.out_bytes), (8, 2048 * 2));
    assert_eq!(k.dtype, TensorDType::Values(OutputDType::F16));
    let n = plan(Q4_K, &dims, LoadAs::Native, None, Target::Device).unwrap();
    assert!(matches!(n.work, Work::Copy { kept: false }));
    assert_eq!((n.out_bytes, n.dtype), (8 * 144, TensorDType::Native(Q4_K)));
    let f = plan(F32, &dims, f16, None, Target::Device).unwrap();
    assert_eq!(f.work.path(), LoadPath::HostConvert);
    let b = plan(Q4_K, &dims, f16, None, Target::Baseline).unwrap();
    assert_eq!(b.work.path(), LoadPath::CpuDequant);
    let h = plan(Q4_K, &dims, f16, None, Target::Host).unwrap();
    assert_eq!(h.work.path(), LoadPath::Cpu);
    for target in [Target::Device, Target::Baseline, Target::Host] {
        let i = plan(I32, &[6], f16, None, target).unwrap();
        assert_eq!(i.work.path(), LoadPath::Kept);
        assert_eq!((i.out_bytes, i.dtype), (24, TensorDType::Native(I32)));
    }
    let e = plan(I32, &[6], f16, None, Target::Caller).unwrap_err();
    assert_eq!(e, PlanError::Integer(I32));
    let e = plan(F32, &dims, f16, None, Target::DeviceBlocks).unwrap_err();
    assert_eq!(e, PlanError::NoKernel(F32));
    let e = plan(GgmlType(4), &dims, f16, None, Target::Device).unwrap_err();
    assert!(matches!(e, PlanError::UnknownType(_)), "{e:?}");
}

#[test]
fn regions_read_only_their_rows_and_covering_blocks() {
    let f32_ = LoadAs::Values(OutputDType::F32);
    let dims = [1024, 6]; // 4 blocks of 256 per row, 144 bytes each
    let rows = Region {
        rows: 2..5,
        cols: 0..1024,
    };
    let p = plan(Q4_K, &dims, f32_, Some(&rows), Target::Host).unwrap();
    assert_eq!(p.spans.count, 1, "whole rows are one run");
    assert_eq!((p.spans.first, p.spans.total()), (2 * 576, 3 * 576));
    assert_eq!((p.shape.clone(), p.trim), (vec![1024, 3], None));
    let aligned = Region {
        rows: 1..3,
        cols: 256..768,
    };
    let p = plan(Q4_K, &dims, LoadAs::Native, Some(&aligned), Target::Device).unwrap();
    let want = Spans {
        first: 576 + 144,
        len: 288,
        stride: 576,
        count: 2,
    };
    assert_eq!((p.spans, p.blocks, p.out_bytes), (want, 4, 576));
    let cutting = Region {
        rows: 0..2,
        cols: 300..700,
    };
    let p = plan(Q4_K, &dims, f32_, Some(&cutting), Target::Host).unwrap();
    let trim = Trim {
        covered: 512,
        skip: 44,
        keep: 400,
    };
    assert_eq!(
        (p.trim, p.out_bytes, p.shape.clone()),
        (Some(trim), 3200, vec![400, 2])
    );
    assert_eq!(p.blocks, 4, "two covering blocks per row");
    let e = plan(Q4_K, &dims, LoadAs::Native, Some(&cutting), Target::Device).unwrap_err();
    assert!(e.to_string().contains("256"), "{e}");
    let outside = Region {
        rows: 0..7,
        cols: 0..1,
    };
    assert!(matches!(
        plan(Q4_K, &dims, f32_, Some(&outside), Target::Host),
        Err(PlanError::Region(_))
    ));
}

#[test]
fn an_empty_column_range_reads_nothing() {
    // One block per row: the block covering column 1 spans whole rows, but no column is kept
    // (found by the python_api fuzz target).
    let empty = Region {
        rows: 0..3,
        cols: 1..1,
    };
    let f32_ = LoadAs::Values(OutputDType::F32);
    let p = plan(Q4_K, &[256, 3], f32_, Some(&empty), Target::Host).unwrap();
    assert_eq!((p.spans.total(), p.blocks, p.out_bytes), (0, 0, 0));
    assert_eq!(p.shape, vec![0, 3]);
}

#[test]
fn segments_walk_strided_spans_in_order() {
    let s = Spans {
        first: 10,
        len: 4,
        stride: 100,
        count: 3,
    };
    let all: Vec<_> = s.segments(0, 12).collect();
    assert_eq!(all, [(10, 4), (110, 4), (210, 4)]);
    let mid: Vec<_> = s.segments(2, 7).collect();
    assert_eq!(mid, [(12, 2), (110, 4), (210, 1)]);
    let one = Spans {
        first: 0,
        len: 50,
        stride: 50,
        count: 1,
    };
    assert_eq!(one.segments(8, 16).collect::<Vec<_>>(), [(8, 16)]);
}
