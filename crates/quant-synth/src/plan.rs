//! [`plan`]: the tensors and metadata of a synthetic model.

use std::collections::BTreeMap;

use quant_core::GgmlType;
use quant_gguf::MetaValue;

use crate::arch::{Arch, Shape, Size};
use crate::mix::{Mix, ModelFacts, Role};

/// One tensor of a [`ModelPlan`].
#[derive(Clone, Debug, PartialEq)]
pub struct TensorPlan {
    /// GGUF tensor name (`blk.3.attn_v.weight`).
    pub name: String,
    /// Dimensions in ggml order (innermost, the row length, first).
    pub dims: Vec<u64>,
    /// Its type.
    pub ty: GgmlType,
    /// Number of elements (parameters).
    pub n_elements: u64,
    /// Size of its data in bytes.
    pub n_bytes: u64,
}

/// Everything needed to write a synthetic model: metadata and tensors in file order.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelPlan {
    /// The architecture.
    pub arch: Arch,
    /// The size preset.
    pub size: Size,
    /// The mix.
    pub mix: Mix,
    /// The hyper-parameters used.
    pub shape: Shape,
    /// Metadata pairs in file order.
    pub metadata: Vec<(String, MetaValue)>,
    /// Tensors in file order.
    pub tensors: Vec<TensorPlan>,
}

impl ModelPlan {
    /// Bytes of tensor data (without the header and alignment padding).
    pub fn total_bytes(&self) -> u64 {
        self.tensors.iter().map(|t| t.n_bytes).sum()
    }

    /// Number of parameters (elements of all tensors).
    pub fn n_params(&self) -> u64 {
        self.tensors.iter().map(|t| t.n_elements).sum()
    }

    /// How many tensors have each type, by type id.
    pub fn type_histogram(&self) -> BTreeMap<GgmlType, usize> {
        let mut h = BTreeMap::new();
        for t in &self.tensors {
            *h.entry(t.ty).or_insert(0) += 1;
        }
        h
    }

    /// The tensor of a given name.
    pub fn tensor(&self, name: &str) -> Option<&TensorPlan> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// Plans a model: tensor names, shapes and types, and metadata, for an architecture, a size
/// preset and a mix.
///
/// LLaMA's tensors, in this order: `token_embd.weight` `[n_embd, n_vocab]`; per block `N`:
/// `blk.N.attn_norm.weight` `[n_embd]`, `attn_q` `[n_embd, n_embd]`, `attn_k` and `attn_v`
/// `[n_embd, n_embd_kv]`, `attn_output` `[n_embd, n_embd]`, `ffn_norm` `[n_embd]`, `ffn_gate`
/// and `ffn_up` `[n_embd, n_ff]`, `ffn_down` `[n_ff, n_embd]`; then `output_norm.weight`
/// `[n_embd]` and, unless the embeddings are tied, `output.weight` `[n_embd, n_vocab]`.
pub fn plan(arch: Arch, size: Size, mix: Mix) -> ModelPlan {
    let shape = arch.shape(size);
    let tensors = match arch {
        Arch::Llama => llama_tensors(&shape, mix),
    };
    ModelPlan {
        arch,
        size,
        mix,
        shape,
        metadata: llama_metadata(arch, &shape, size, mix),
        tensors,
    }
}

fn tensor(name: String, dims: &[u64], ty: GgmlType) -> TensorPlan {
    let n_elements = dims.iter().product::<u64>();
    // Every type a mix picks has a geometry and every preset row fits its blocks (tested).
    let g = ty.geometry().expect("mix types have a block geometry");
    TensorPlan {
        name,
        dims: dims.to_vec(),
        ty,
        n_elements,
        n_bytes: n_elements / g.block_elems as u64 * g.block_bytes as u64,
    }
}

fn llama_tensors(s: &Shape, mix: Mix) -> Vec<TensorPlan> {
    let facts = ModelFacts::llama(s);
    let (has_output, n_layer) = (facts.has_output, facts.n_layer);
    let ty = |role, layer, row_len| mix.tensor_type(role, layer, &facts, row_len);
    let (e, kv, ff, v) = (s.n_embd, s.n_embd_kv(), s.n_ff, s.n_vocab);
    let mut t = vec![tensor(
        "token_embd.weight".into(),
        &[e, v],
        ty(Role::TokenEmbd, 0, e),
    )];
    for l in 0..n_layer {
        let blk: [(&str, Role, [u64; 2]); 9] = [
            ("attn_norm", Role::Norm, [e, 1]),
            ("attn_q", Role::AttnQ, [e, e]),
            ("attn_k", Role::AttnK, [e, kv]),
            ("attn_v", Role::AttnV, [e, kv]),
            ("attn_output", Role::AttnOutput, [e, e]),
            ("ffn_norm", Role::Norm, [e, 1]),
            ("ffn_gate", Role::FfnGate, [e, ff]),
            ("ffn_up", Role::FfnUp, [e, ff]),
            ("ffn_down", Role::FfnDown, [ff, e]),
        ];
        for (name, role, dims) in blk {
            let dims: &[u64] = if role == Role::Norm {
                &dims[..1]
            } else {
                &dims
            };
            t.push(tensor(
                format!("blk.{l}.{name}.weight"),
                dims,
                ty(role, l, dims[0]),
            ));
        }
    }
    t.push(tensor(
        "output_norm.weight".into(),
        &[e],
        ty(Role::Norm, 0, e),
    ));
    if has_output {
        t.push(tensor(
            "output.weight".into(),
            &[e, v],
            ty(Role::Output, 0, e),
        ));
    }
    t
}

fn llama_metadata(arch: Arch, s: &Shape, size: Size, mix: Mix) -> Vec<(String, MetaValue)> {
    let a = arch.name();
    let u32_of = |x: u64| MetaValue::U32(u32::try_from(x).unwrap_or(u32::MAX));
    let mut m = vec![
        (
            "general.architecture".to_owned(),
            MetaValue::String(a.into()),
        ),
        (
            "general.name".to_owned(),
            MetaValue::String(format!(
                "quantforge synth {a} {size} {mix} (shape of {}, random weights)",
                s.source
            )),
        ),
        (
            "general.file_type".to_owned(),
            MetaValue::U32(mix.file_type()),
        ),
    ];
    if mix != Mix::F16 {
        m.push(("general.quantization_version".to_owned(), MetaValue::U32(2)));
    }
    let arch_keys = [
        ("vocab_size", u32_of(s.n_vocab)),
        ("context_length", u32_of(s.n_ctx)),
        ("embedding_length", u32_of(s.n_embd)),
        ("block_count", u32_of(s.n_layer)),
        ("feed_forward_length", u32_of(s.n_ff)),
        ("rope.dimension_count", u32_of(s.head_dim())),
        ("rope.freq_base", MetaValue::F32(s.rope_freq_base)),
        ("attention.head_count", u32_of(s.n_head)),
        ("attention.head_count_kv", u32_of(s.n_head_kv)),
        (
            "attention.layer_norm_rms_epsilon",
            MetaValue::F32(s.rms_eps),
        ),
    ];
    m.extend(arch_keys.into_iter().map(|(k, v)| (format!("{a}.{k}"), v)));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(p: &ModelPlan, ty: GgmlType) -> usize {
        p.type_histogram().get(&ty).copied().unwrap_or(0)
    }

    #[test]
    fn llama2_7b_q4_k_m_matches_the_real_file() {
        let p = plan(Arch::Llama, Size::B7, Mix::Q4KM);
        assert_eq!(p.tensors.len(), 291);
        // llama.cpp's log for Llama-2-7B Q4_K_M: f32 65, q4_K 193, q6_K 33.
        assert_eq!(count(&p, GgmlType::F32), 65);
        assert_eq!(count(&p, GgmlType::Q4_K), 193);
        assert_eq!(count(&p, GgmlType::Q6_K), 33);
        assert_eq!(p.n_params(), 6_738_415_616);
        // The real file is 4,081,004,224 bytes (3.80 GiB), header and tokenizer included.
        let real = 4_081_004_224f64;
        let ratio = p.total_bytes() as f64 / real;
        assert!(
            (0.97..1.0).contains(&ratio),
            "{} bytes, {ratio}",
            p.total_bytes()
        );
        let v6 = p.tensor("blk.6.attn_v.weight").unwrap();
        assert_eq!(
            (v6.ty, v6.dims.as_slice()),
            (GgmlType::Q6_K, &[4096, 4096][..])
        );
        assert_eq!(
            p.tensor("blk.7.ffn_down.weight").unwrap().ty,
            GgmlType::Q4_K
        );
        let down = p.tensor("blk.7.ffn_down.weight").unwrap();
        assert_eq!(down.dims, [11008, 4096]);
        assert_eq!(down.n_bytes, 11008 * 4096 / 256 * 144);
        assert_eq!(p.tensor("output.weight").unwrap().ty, GgmlType::Q6_K);
        assert_eq!(p.tensor("token_embd.weight").unwrap().dims, [4096, 32000]);
    }

    #[test]
    fn gqa_and_tied_embeddings() {
        let p = plan(Arch::Llama, Size::B70, Mix::Q4_0);
        assert_eq!(p.tensors.len(), 1 + 80 * 9 + 2);
        assert_eq!(p.tensor("blk.0.attn_k.weight").unwrap().dims, [8192, 1024]);
        assert_eq!(
            p.tensor("blk.79.ffn_down.weight").unwrap().dims,
            [28672, 8192]
        );
        assert_eq!(count(&p, GgmlType::Q6_K), 1);
        // Llama-2-70B has 68.98e9 parameters.
        assert_eq!(p.n_params(), 68_976_648_192);
        // Q4_K_M of a 70B: the 40 attn_v that use_more_bits leaves at Q4_K are Q5_K.
        let p = plan(Arch::Llama, Size::B70, Mix::Q4KM);
        assert_eq!(count(&p, GgmlType::F32), 161);
        assert_eq!(count(&p, GgmlType::Q4_K), 441);
        assert_eq!(count(&p, GgmlType::Q5_K), 40);
        assert_eq!(count(&p, GgmlType::Q6_K), 81);
        assert_eq!(p.tensor("blk.11.attn_v.weight").unwrap().ty, GgmlType::Q5_K);

        let p = plan(Arch::Llama, Size::B1, Mix::Q4KM);
        assert!(p.tensor("output.weight").is_none());
        assert_eq!(p.tensor("token_embd.weight").unwrap().ty, GgmlType::Q6_K);
        // Llama-3.2-1B: 1.236e9 parameters (embeddings counted once).
        assert_eq!(p.n_params(), 1_235_814_400);
        let p = plan(Arch::Llama, Size::B8, Mix::F16);
        assert_eq!(p.n_params(), 8_030_261_248);
        assert!(p
            .tensors
            .iter()
            .all(|t| t.ty == GgmlType::F16 || t.ty == GgmlType::F32));
    }

    #[test]
    fn metadata_a_llama_loader_reads() {
        let p = plan(Arch::Llama, Size::B34, Mix::Q6K);
        let get = |k: &str| p.metadata.iter().find(|(kk, _)| kk == k).map(|(_, v)| v);
        assert_eq!(
            get("general.architecture"),
            Some(&MetaValue::String("llama".into()))
        );
        assert_eq!(get("general.file_type"), Some(&MetaValue::U32(18)));
        assert_eq!(get("llama.embedding_length"), Some(&MetaValue::U32(8192)));
        assert_eq!(get("llama.block_count"), Some(&MetaValue::U32(48)));
        assert_eq!(
            get("llama.feed_forward_length"),
            Some(&MetaValue::U32(22016))
        );
        assert_eq!(get("llama.attention.head_count"), Some(&MetaValue::U32(64)));
        assert_eq!(
            get("llama.attention.head_count_kv"),
            Some(&MetaValue::U32(8))
        );
        assert_eq!(
            get("llama.rope.dimension_count"),
            Some(&MetaValue::U32(128))
        );
        assert_eq!(get("llama.context_length"), Some(&MetaValue::U32(16384)));
        assert_eq!(
            get("llama.attention.layer_norm_rms_epsilon"),
            Some(&MetaValue::F32(1e-5))
        );
    }

    #[test]
    fn every_preset_and_mix_plans() {
        for size in Size::ALL {
            for mix in Mix::ALL {
                let p = plan(Arch::Llama, size, mix);
                for t in &p.tensors {
                    // No fallback type arises (Q5_0, Q5_1; Q4_0 outside the q4_0 mix; Q8_0
                    // for an output outside q8_0), and every row holds whole blocks.
                    let allowed = [
                        GgmlType::F32,
                        GgmlType::F16,
                        GgmlType::Q2_K,
                        GgmlType::Q3_K,
                        GgmlType::Q4_K,
                        GgmlType::Q5_K,
                        GgmlType::Q6_K,
                        mix.default_type(),
                    ];
                    assert!(allowed.contains(&t.ty), "{size} {mix} {}: {}", t.name, t.ty);
                    assert_eq!(t.dims[0] % t.ty.geometry().unwrap().block_elems as u64, 0);
                }
            }
        }
    }

    /// A mix, the types of the tensors named in `llama_7b_types_per_mix`, and the type counts.
    type Case = (Mix, [GgmlType; 14], &'static [(GgmlType, usize)]);

    /// The types of representative tensors of a llama 7B plan (32 layers, no GQA) for the mixes
    /// beyond the first four, and the type counts they add up to. Layer 16 is a middle layer
    /// that `use_more_bits` does not pick; layer 15 one it picks.
    #[test]
    fn llama_7b_types_per_mix() {
        use GgmlType as T;
        let names = [
            "output.weight",
            "token_embd.weight",
            "blk.0.attn_v.weight",
            "blk.15.attn_v.weight",
            "blk.16.attn_v.weight",
            "blk.0.ffn_down.weight",
            "blk.1.ffn_down.weight",
            "blk.2.ffn_down.weight",
            "blk.16.ffn_down.weight",
            "blk.16.attn_output.weight",
            "blk.16.attn_q.weight",
            "blk.16.attn_k.weight",
            "blk.16.ffn_gate.weight",
            "blk.16.ffn_up.weight",
        ];
        #[rustfmt::skip]
        let cases: [Case; 6] = [
            (Mix::Q8_0, [T::Q8_0; 14], &[(T::Q8_0, 226)]),
            (Mix::Q2K,
             [T::Q6_K, T::Q2_K, T::Q3_K, T::Q3_K, T::Q3_K, T::Q3_K, T::Q3_K, T::Q3_K, T::Q3_K,
              T::Q3_K, T::Q2_K, T::Q2_K, T::Q2_K, T::Q2_K],
             &[(T::Q2_K, 129), (T::Q3_K, 96), (T::Q6_K, 1)]),
            (Mix::Q3KM,
             [T::Q6_K, T::Q3_K, T::Q5_K, T::Q4_K, T::Q4_K, T::Q5_K, T::Q5_K, T::Q4_K, T::Q4_K,
              T::Q4_K, T::Q3_K, T::Q3_K, T::Q3_K, T::Q3_K],
             &[(T::Q3_K, 129), (T::Q4_K, 92), (T::Q5_K, 4), (T::Q6_K, 1)]),
            (Mix::Q3KL,
             [T::Q6_K, T::Q3_K, T::Q5_K, T::Q5_K, T::Q5_K, T::Q5_K, T::Q5_K, T::Q5_K, T::Q5_K,
              T::Q5_K, T::Q3_K, T::Q3_K, T::Q3_K, T::Q3_K],
             &[(T::Q3_K, 129), (T::Q5_K, 96), (T::Q6_K, 1)]),
            (Mix::Q5KS,
             [T::Q6_K, T::Q5_K, T::Q5_K, T::Q5_K, T::Q5_K, T::Q5_K, T::Q5_K, T::Q5_K, T::Q5_K,
              T::Q5_K, T::Q5_K, T::Q5_K, T::Q5_K, T::Q5_K],
             &[(T::Q5_K, 225), (T::Q6_K, 1)]),
            (Mix::Q5KM,
             [T::Q6_K, T::Q5_K, T::Q6_K, T::Q6_K, T::Q5_K, T::Q6_K, T::Q6_K, T::Q6_K, T::Q5_K,
              T::Q5_K, T::Q5_K, T::Q5_K, T::Q5_K, T::Q5_K],
             &[(T::Q5_K, 193), (T::Q6_K, 33)]),
        ];
        for (mix, types, counts) in cases {
            let p = plan(Arch::Llama, Size::B7, mix);
            assert_eq!(p.tensors.len(), 291, "{mix}");
            for (name, want) in names.into_iter().zip(types) {
                assert_eq!(p.tensor(name).unwrap().ty, want, "{mix} {name}");
            }
            for norm in [
                "blk.16.attn_norm.weight",
                "blk.0.ffn_norm.weight",
                "output_norm.weight",
            ] {
                assert_eq!(p.tensor(norm).unwrap().ty, T::F32, "{mix} {norm}");
            }
            let mut want: BTreeMap<T, usize> = counts.iter().copied().collect();
            want.insert(T::F32, 65);
            assert_eq!(p.type_histogram(), want, "{mix}");
            assert_eq!(p.n_params(), 6_738_415_616);
            let ft = p.metadata.iter().find(|(k, _)| k == "general.file_type");
            assert_eq!(ft.map(|(_, v)| v), Some(&MetaValue::U32(mix.file_type())));
        }
        // Q8_0: 34 bytes per 32 weights, F32 norms 4 bytes per weight.
        let p = plan(Arch::Llama, Size::B7, Mix::Q8_0);
        let norms = 65 * 4096;
        assert_eq!(
            p.total_bytes(),
            (p.n_params() - norms) / 32 * 34 + norms * 4
        );
    }
}
