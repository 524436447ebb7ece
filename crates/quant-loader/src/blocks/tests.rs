use super::*;

use quant_core::{random_bytes, OutputDType};
// Link the formats used below.
use quant_float as _;
use quant_q4_0 as _;
use quant_q4k as _;
use quant_q6k as _;

const TYPES: [GgmlType; 4] = [
    GgmlType::Q4_0,
    GgmlType::Q4_K,
    GgmlType::Q6_K,
    GgmlType::F16,
];

#[test]
fn host_blocks_give_the_reference_bits_in_every_dtype() {
    for ty in TYPES {
        let g = ty.geometry().unwrap();
        let src = random_bytes(37 * g.block_bytes, u64::from(ty.0));
        let elements = 37 * g.block_elems as u64;
        let format = plan::value_format(ty).unwrap();
        let reference = cpu::dequantize_to_vec(format, &src, CpuPath::Reference).unwrap();
        for dtype in OutputDType::ALL {
            let mut dst = vec![0u8; elements as usize * dtype.size()];
            dequantize_host_blocks(ty, elements, &src, dtype, &mut dst).unwrap();
            assert_eq!(dst, cpu::encode_as(&reference, dtype), "{ty} {dtype}");
        }
    }
}

#[test]
fn host_blocks_of_the_wrong_size_are_refused_saying_what_was_expected() {
    let ty = GgmlType::Q4_K;
    let src = vec![0u8; 144 * 2];
    let mut dst = vec![0u8; 512 * 2];
    let e = dequantize_host_blocks(ty, 512, &src[..287], OutputDType::F16, &mut dst).unwrap_err();
    assert!(
        e.to_string().contains("288 bytes") && e.to_string().contains("not 287"),
        "{e}"
    );
    let e = dequantize_host_blocks(ty, 500, &src, OutputDType::F16, &mut dst).unwrap_err();
    assert!(e.to_string().contains("whole blocks of 256"), "{e}");
    let e = dequantize_host_blocks(ty, 512, &src, OutputDType::F32, &mut dst).unwrap_err();
    assert!(
        e.to_string().contains("2048 bytes") && e.to_string().contains("has 1024"),
        "{e}"
    );
    for (id, what) in [
        (9, "Q8_1"),
        (15, "Q8_K"),
        (26, "integer"),
        (4, "block size"),
    ] {
        let e = dequantize_host_blocks(GgmlType(id), 32, &src, OutputDType::F16, &mut dst);
        let e = e.unwrap_err().to_string();
        assert!(
            e.contains(what) || e.contains("no linked format"),
            "{id}: {e}"
        );
    }
}

#[test]
fn device_blocks_are_checked_before_anything_runs() {
    let plan = plan_blocks(
        GgmlType::Q4_K,
        512,
        288,
        OutputDType::F16,
        Target::DeviceBlocks,
    );
    let plan = plan.unwrap();
    let mem = |src, dst, dst_len| DeviceBlocks {
        src,
        src_len: 288,
        dst,
        dst_len,
    };
    assert!(check_device_memory(&plan, &mem(0x1000, 0x2000, 1024)).is_ok());
    let short = check_device_memory(&plan, &mem(0x1000, 0x2000, 1000)).unwrap_err();
    assert!(
        short.contains("1024 bytes") && short.contains("has 1000"),
        "{short}"
    );
    let odd = check_device_memory(&plan, &mem(0x1008, 0x2000, 1024)).unwrap_err();
    assert!(odd.contains("blocks start at 0x1008"), "{odd}");
    let odd = check_device_memory(&plan, &mem(0x1000, 0x2004, 1024)).unwrap_err();
    assert!(odd.contains("output start at 0x2004"), "{odd}");
    let overlap = check_device_memory(&plan, &mem(0x1000, 0x1100, 1024)).unwrap_err();
    assert!(overlap.contains("overlap"), "{overlap}");
    // Adjacent ranges do not overlap.
    assert!(check_device_memory(&plan, &mem(0x1000, 0x1120, 1024)).is_ok());
    let f32_ = plan_blocks(GgmlType::F32, 4, 16, OutputDType::F16, Target::DeviceBlocks);
    assert!(f32_.unwrap_err().to_string().contains("no kernel"));
}
