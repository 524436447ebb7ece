//! Writer round trip: random metadata (every type, nested arrays) and random tensors are written,
//! read back, and must come back identical; writing what was read gives the same bytes.

use std::borrow::Cow;

use proptest::prelude::*;
use quant_core::GgmlType;
use quant_gguf::{GgufFile, GgufWriter, MetaArray, MetaType, MetaValue};

/// Bitwise equality: floats compare by their bits, so NaN payloads and signs of zero count.
fn same(a: &MetaValue, b: &MetaValue) -> bool {
    match (a, b) {
        (MetaValue::F32(x), MetaValue::F32(y)) => x.to_bits() == y.to_bits(),
        (MetaValue::F64(x), MetaValue::F64(y)) => x.to_bits() == y.to_bits(),
        (MetaValue::Array(x), MetaValue::Array(y)) => {
            x.elem_type() == y.elem_type()
                && x.len() == y.len()
                && x.iter().zip(y.iter()).all(|(a, b)| same(&a, &b))
        }
        _ => a == b,
    }
}

fn scalar_types() -> Vec<MetaType> {
    MetaType::ALL
        .into_iter()
        .filter(|t| *t != MetaType::Array)
        .collect()
}

/// A value of type `ty`; arrays nest at most `depth` more levels.
fn value_of(ty: MetaType, depth: u32) -> BoxedStrategy<MetaValue> {
    match ty {
        MetaType::U8 => any::<u8>().prop_map(MetaValue::U8).boxed(),
        MetaType::I8 => any::<i8>().prop_map(MetaValue::I8).boxed(),
        MetaType::U16 => any::<u16>().prop_map(MetaValue::U16).boxed(),
        MetaType::I16 => any::<i16>().prop_map(MetaValue::I16).boxed(),
        MetaType::U32 => any::<u32>().prop_map(MetaValue::U32).boxed(),
        MetaType::I32 => any::<i32>().prop_map(MetaValue::I32).boxed(),
        MetaType::U64 => any::<u64>().prop_map(MetaValue::U64).boxed(),
        MetaType::I64 => any::<i64>().prop_map(MetaValue::I64).boxed(),
        // Any bit pattern, NaNs and infinities included.
        MetaType::F32 => any::<u32>()
            .prop_map(|b| MetaValue::F32(f32::from_bits(b)))
            .boxed(),
        MetaType::F64 => any::<u64>()
            .prop_map(|b| MetaValue::F64(f64::from_bits(b)))
            .boxed(),
        MetaType::Bool => any::<bool>().prop_map(MetaValue::Bool).boxed(),
        MetaType::String => any::<String>().prop_map(MetaValue::String).boxed(),
        MetaType::Array => {
            let mut elem_types = scalar_types();
            if depth > 0 {
                elem_types.push(MetaType::Array);
            }
            prop::sample::select(elem_types)
                .prop_flat_map(move |et| {
                    prop::collection::vec(value_of(et, depth.saturating_sub(1)), 0..6)
                        .prop_map(move |values| MetaValue::Array(MetaArray::new(et, values)))
                })
                .boxed()
        }
    }
}

fn any_value() -> BoxedStrategy<MetaValue> {
    prop::sample::select(MetaType::ALL.to_vec())
        .prop_flat_map(|t| value_of(t, 3))
        .boxed()
}

const TENSOR_TYPES: [GgmlType; 9] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q8_0,
    GgmlType::Q4_K,
    GgmlType::Q6_K,
    GgmlType::I8,
    GgmlType::IQ4_XS,
];

#[derive(Debug, Clone)]
struct T {
    dims: Vec<u64>,
    ty: GgmlType,
    data: Vec<u8>,
}

fn any_tensor() -> impl Strategy<Value = T> {
    (
        prop::sample::select(TENSOR_TYPES.to_vec()),
        1u64..4,
        prop::collection::vec(1u64..4, 0..4),
    )
        .prop_flat_map(|(ty, row_blocks, outer)| {
            let g = ty.geometry().unwrap();
            let mut dims = vec![row_blocks * g.block_elems as u64];
            dims.extend(outer);
            let n = dims.iter().product::<u64>() / g.block_elems as u64 * g.block_bytes as u64;
            prop::collection::vec(any::<u8>(), n as usize).prop_map(move |data| T {
                dims: dims.clone(),
                ty,
                data,
            })
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn write_then_read_gives_back_the_same(
        kvs in prop::collection::hash_map("[a-z][a-z0-9._]{0,15}", any_value(), 0..8),
        tensors in prop::collection::vec(any_tensor(), 0..6),
        alignment in prop::sample::select(vec![1u32, 8, 32, 64, 4096]),
    ) {
        let kvs: Vec<(String, MetaValue)> = kvs.into_iter().collect();
        let mut w = GgufWriter::new();
        w.set_alignment(alignment);
        for (k, v) in &kvs {
            w.add_metadata(k.clone(), v.clone()).unwrap();
        }
        for (i, t) in tensors.iter().enumerate() {
            w.add_tensor(format!("blk.{i}.weight"), &t.dims, t.ty, Cow::Borrowed(&t.data)).unwrap();
        }
        let mut bytes = Vec::new();
        w.write_to(&mut bytes).unwrap();

        let f = GgufFile::from_bytes(bytes.clone(), "roundtrip.gguf").unwrap();
        prop_assert_eq!(f.version(), 3);
        prop_assert_eq!(f.alignment(), u64::from(alignment));
        // The writer adds general.alignment last when it is not 32.
        let extra = usize::from(alignment != 32);
        prop_assert_eq!(f.metadata().len(), kvs.len() + extra);
        for ((k, v), (k2, v2)) in kvs.iter().zip(f.metadata()) {
            prop_assert_eq!(k, k2);
            prop_assert!(same(v, v2), "{}: wrote {:?}, read {:?}", k, v, v2);
            prop_assert!(same(v, f.get(k).unwrap()));
        }
        if extra == 1 {
            prop_assert_eq!(f.get("general.alignment"), Some(&MetaValue::U32(alignment)));
        }
        prop_assert_eq!(f.tensor_count(), tensors.len());
        for (i, (t, info)) in tensors.iter().zip(f.tensors()).enumerate() {
            prop_assert_eq!(&info.name, &format!("blk.{i}.weight"));
            prop_assert_eq!(&info.dims, &t.dims);
            prop_assert_eq!(info.ty, t.ty);
            prop_assert_eq!(info.n_elements, t.dims.iter().product::<u64>());
            prop_assert_eq!(info.offset % u64::from(alignment), 0);
            prop_assert_eq!(&*f.tensor_data(&info).unwrap(), &t.data[..]);
        }

        // What was read, written again, gives the same bytes.
        let mut w2 = GgufWriter::new();
        w2.set_alignment(alignment);
        for (k, v) in f.metadata() {
            w2.add_metadata(k.clone(), v.clone()).unwrap();
        }
        for t in f.tensors() {
            w2.add_tensor(t.name.clone(), &t.dims, t.ty, f.tensor_data(&t).unwrap()).unwrap();
        }
        let mut again = Vec::new();
        w2.write_to(&mut again).unwrap();
        prop_assert!(again == bytes, "rewrite differs");
    }
}
