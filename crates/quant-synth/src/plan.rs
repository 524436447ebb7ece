//! [`plan`]: the tensors and metadata of a synthetic model.

use std::collections::BTreeMap;

use quant_core::GgmlType;
use quant_gguf::MetaValue;

use crate::arch::{Arch, Shape, Size};
use crate::mix::{Mix, Role};
use crate::SynthError;

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
/// preset and a mix. Fails with [`SynthError::NotOffered`] for a size or mix the architecture
/// does not have ([`Arch::sizes`], [`Arch::mixes`]).
///
/// LLaMA's tensors, in this order: `token_embd.weight` `[n_embd, n_vocab]`; per block `N`:
/// `blk.N.attn_norm.weight` `[n_embd]`, `attn_q` `[n_embd, n_embd]`, `attn_k` and `attn_v`
/// `[n_embd, n_embd_kv]`, `attn_output` `[n_embd, n_embd]`, `ffn_norm` `[n_embd]`, `ffn_gate`
/// and `ffn_up` `[n_embd, n_ff]`, `ffn_down` `[n_ff, n_embd]`; then `output_norm.weight`
/// `[n_embd]` and, unless the embeddings are tied, `output.weight` `[n_embd, n_vocab]`.
///
/// gpt-oss's tensors (llama.cpp's `LLM_ARCH_OPENAI_MOE`), with `n_q = n_head * head_dim`:
/// `token_embd.weight` `[n_embd, n_vocab]`; per block `N`: `attn_norm.weight` `[n_embd]`,
/// `attn_q` `[n_embd, n_q]` and its bias `[n_q]`, `attn_k` and `attn_v` `[n_embd, n_embd_kv]`
/// and biases `[n_embd_kv]`, `attn_output` `[n_q, n_embd]` and bias `[n_embd]`,
/// `attn_sinks.weight` `[n_head]`, `post_attention_norm.weight` `[n_embd]`, the router
/// `ffn_gate_inp` `[n_embd, n_expert]` and bias `[n_expert]`, the experts `ffn_gate_exps` and
/// `ffn_up_exps` `[n_embd, n_ff, n_expert]` with biases `[n_ff, n_expert]`, `ffn_down_exps`
/// `[n_ff, n_embd, n_expert]` with bias `[n_embd, n_expert]`; then `output_norm.weight`
/// `[n_embd]` and `output.weight` `[n_embd, n_vocab]`.
pub fn plan(arch: Arch, size: Size, mix: Mix) -> Result<ModelPlan, SynthError> {
    let not_offered = |what, name: &str, expected: Vec<&str>| SynthError::NotOffered {
        arch,
        what,
        name: name.to_owned(),
        expected: expected.join(", "),
    };
    let Some(shape) = arch.shape(size) else {
        let sizes = arch.sizes().iter().map(|z| z.name()).collect();
        return Err(not_offered("size", size.name(), sizes));
    };
    if !arch.mixes().contains(&mix) {
        let mixes = arch.mixes().iter().map(|m| m.name()).collect();
        return Err(not_offered("mix", mix.name(), mixes));
    }
    let (tensors, metadata) = match arch {
        Arch::Llama => (
            llama_tensors(&shape, mix),
            llama_metadata(arch, &shape, size, mix),
        ),
        Arch::GptOss => (
            gpt_oss_tensors(&shape, mix),
            gpt_oss_metadata(arch, &shape, size, mix),
        ),
    };
    Ok(ModelPlan {
        arch,
        size,
        mix,
        shape,
        metadata,
        tensors,
    })
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
    let facts = s.facts();
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

/// gpt-oss's tensors in the order [`plan`] documents (llama.cpp's `load_arch_tensors` names and
/// shapes; the order of the tensors within the released files may differ, loaders look tensors
/// up by name).
fn gpt_oss_tensors(s: &Shape, mix: Mix) -> Vec<TensorPlan> {
    let facts = s.facts();
    let ty = |role, layer, row_len| mix.tensor_type(role, layer, &facts, row_len);
    let (e, q, kv, ff, x, v) = (
        s.n_embd,
        s.n_embd_q(),
        s.n_embd_kv(),
        s.n_ff,
        s.n_expert,
        s.n_vocab,
    );
    let mut t = vec![tensor(
        "token_embd.weight".into(),
        &[e, v],
        ty(Role::TokenEmbd, 0, e),
    )];
    for l in 0..s.n_layer {
        let blk: [(&str, Role, &[u64]); 19] = [
            ("attn_norm.weight", Role::Norm, &[e]),
            ("attn_q.weight", Role::AttnQ, &[e, q]),
            ("attn_q.bias", Role::Kept, &[q]),
            ("attn_k.weight", Role::AttnK, &[e, kv]),
            ("attn_k.bias", Role::Kept, &[kv]),
            ("attn_v.weight", Role::AttnV, &[e, kv]),
            ("attn_v.bias", Role::Kept, &[kv]),
            ("attn_output.weight", Role::AttnOutput, &[q, e]),
            ("attn_output.bias", Role::Kept, &[e]),
            ("attn_sinks.weight", Role::Kept, &[s.n_head]),
            ("post_attention_norm.weight", Role::Norm, &[e]),
            ("ffn_gate_inp.weight", Role::Kept, &[e, x]),
            ("ffn_gate_inp.bias", Role::Kept, &[x]),
            ("ffn_gate_exps.weight", Role::FfnExps, &[e, ff, x]),
            ("ffn_gate_exps.bias", Role::Kept, &[ff, x]),
            ("ffn_up_exps.weight", Role::FfnExps, &[e, ff, x]),
            ("ffn_up_exps.bias", Role::Kept, &[ff, x]),
            ("ffn_down_exps.weight", Role::FfnExps, &[ff, e, x]),
            ("ffn_down_exps.bias", Role::Kept, &[e, x]),
        ];
        for (name, role, dims) in blk {
            t.push(tensor(
                format!("blk.{l}.{name}"),
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
    t.push(tensor(
        "output.weight".into(),
        &[e, v],
        ty(Role::Output, 0, e),
    ));
    t
}

/// `general.*` keys: architecture, name, file type, and the quantization version of a
/// quantized mix.
fn general_metadata(arch: Arch, s: &Shape, size: Size, mix: Mix) -> Vec<(String, MetaValue)> {
    let a = arch.name();
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
    m
}

fn u32_of(x: u64) -> MetaValue {
    MetaValue::U32(u32::try_from(x).unwrap_or(u32::MAX))
}

fn llama_metadata(arch: Arch, s: &Shape, size: Size, mix: Mix) -> Vec<(String, MetaValue)> {
    let a = arch.name();
    let mut m = general_metadata(arch, s, size, mix);
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

/// The `gpt-oss.*` keys of the released gpt-oss-20b GGUF, in its order, plus `vocab_size`
/// (the real file has a tokenizer to give it; these files have none).
fn gpt_oss_metadata(arch: Arch, s: &Shape, size: Size, mix: Mix) -> Vec<(String, MetaValue)> {
    let a = arch.name();
    let mut m = general_metadata(arch, s, size, mix);
    let arch_keys = [
        ("vocab_size", u32_of(s.n_vocab)),
        ("block_count", u32_of(s.n_layer)),
        ("context_length", u32_of(s.n_ctx)),
        ("embedding_length", u32_of(s.n_embd)),
        ("feed_forward_length", u32_of(s.n_ff)),
        ("attention.head_count", u32_of(s.n_head)),
        ("attention.head_count_kv", u32_of(s.n_head_kv)),
        ("rope.freq_base", MetaValue::F32(s.rope_freq_base)),
        (
            "attention.layer_norm_rms_epsilon",
            MetaValue::F32(s.rms_eps),
        ),
        ("expert_count", u32_of(s.n_expert)),
        ("expert_used_count", u32_of(s.n_expert_used)),
        ("attention.key_length", u32_of(s.head_dim())),
        ("attention.value_length", u32_of(s.head_dim())),
        ("attention.sliding_window", u32_of(s.sliding_window)),
        ("expert_feed_forward_length", u32_of(s.n_ff)),
        ("rope.scaling.type", MetaValue::String("yarn".into())),
        ("rope.scaling.factor", MetaValue::F32(s.yarn_factor)),
        (
            "rope.scaling.original_context_length",
            u32_of(s.yarn_original_ctx),
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
        let p = plan(Arch::Llama, Size::B7, Mix::Q4KM).unwrap();
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
        let p = plan(Arch::Llama, Size::B70, Mix::Q4_0).unwrap();
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
        let p = plan(Arch::Llama, Size::B70, Mix::Q4KM).unwrap();
        assert_eq!(count(&p, GgmlType::F32), 161);
        assert_eq!(count(&p, GgmlType::Q4_K), 441);
        assert_eq!(count(&p, GgmlType::Q5_K), 40);
        assert_eq!(count(&p, GgmlType::Q6_K), 81);
        assert_eq!(p.tensor("blk.11.attn_v.weight").unwrap().ty, GgmlType::Q5_K);

        let p = plan(Arch::Llama, Size::B1, Mix::Q4KM).unwrap();
        assert!(p.tensor("output.weight").is_none());
        assert_eq!(p.tensor("token_embd.weight").unwrap().ty, GgmlType::Q6_K);
        // Llama-3.2-1B: 1.236e9 parameters (embeddings counted once).
        assert_eq!(p.n_params(), 1_235_814_400);
        let p = plan(Arch::Llama, Size::B8, Mix::F16).unwrap();
        assert_eq!(p.n_params(), 8_030_261_248);
        assert!(p
            .tensors
            .iter()
            .all(|t| t.ty == GgmlType::F16 || t.ty == GgmlType::F32));
    }

    #[test]
    fn metadata_a_llama_loader_reads() {
        let p = plan(Arch::Llama, Size::B34, Mix::Q6K).unwrap();
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
        for arch in Arch::ALL {
            for &size in arch.sizes() {
                for &mix in arch.mixes() {
                    let p = plan(arch, size, mix).unwrap();
                    for t in &p.tensors {
                        // No fallback type arises (Q5_0, Q5_1, IQ4_NL; Q4_0 outside the q4_0
                        // mix; Q8_0 for an output outside q8_0 and mxfp4), and every row holds
                        // whole blocks.
                        let allowed = [
                            GgmlType::F32,
                            GgmlType::F16,
                            GgmlType::Q2_K,
                            GgmlType::Q3_K,
                            GgmlType::Q4_K,
                            GgmlType::Q5_K,
                            GgmlType::Q6_K,
                            GgmlType::IQ2_XXS,
                            GgmlType::IQ3_S,
                            mix.default_type(),
                        ];
                        let ok = allowed.contains(&t.ty)
                            || (mix == Mix::MXFP4 && t.ty == GgmlType::Q8_0);
                        assert!(ok, "{arch} {size} {mix} {}: {}", t.name, t.ty);
                        let g = t.ty.geometry().unwrap();
                        assert_eq!(t.dims[0] % g.block_elems as u64, 0);
                        assert_eq!(
                            t.n_bytes,
                            t.n_elements / g.block_elems as u64 * g.block_bytes as u64
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn sizes_and_mixes_an_arch_lacks_are_refused() {
        let e = plan(Arch::Llama, Size::B20, Mix::Q4KM).unwrap_err();
        assert!(
            matches!(&e, SynthError::NotOffered { what: "size", .. }),
            "{e}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains("llama") && msg.contains("20b") && msg.contains("70b"),
            "{msg}"
        );
        let e = plan(Arch::GptOss, Size::B7, Mix::MXFP4).unwrap_err();
        assert!(e.to_string().contains("120b"), "{e}");
        let e = plan(Arch::GptOss, Size::B20, Mix::Q4KM).unwrap_err();
        assert!(
            matches!(&e, SynthError::NotOffered { what: "mix", .. }),
            "{e}"
        );
        assert!(e.to_string().contains("mxfp4"), "{e}");
        let e = plan(Arch::Llama, Size::B7, Mix::MXFP4).unwrap_err();
        assert!(e.to_string().contains("iq1_m"), "{e}");
    }

    /// gpt-oss-20b in mxfp4: llama.cpp's log for ggml-org's gpt-oss-20b-mxfp4.gguf reads 459
    /// tensors, f32 289, q8_0 98, mxfp4 72, 20.91 B parameters, 11.27 GiB.
    #[test]
    fn gpt_oss_20b_mxfp4_matches_the_released_file() {
        use GgmlType as T;
        let p = plan(Arch::GptOss, Size::B20, Mix::MXFP4).unwrap();
        assert_eq!(p.tensors.len(), 459);
        let want: BTreeMap<T, usize> = [(T::F32, 289), (T::Q8_0, 98), (T::MXFP4, 72)].into();
        assert_eq!(p.type_histogram(), want);
        assert_eq!(p.n_params(), 20_914_757_184);
        let gib = p.total_bytes() as f64 / (1u64 << 30) as f64;
        assert!((11.26..11.28).contains(&gib), "{gib} GiB");
        let cases: [(&str, T, &[u64]); 20] = [
            ("token_embd.weight", T::Q8_0, &[2880, 201088]),
            ("output.weight", T::Q8_0, &[2880, 201088]),
            ("output_norm.weight", T::F32, &[2880]),
            ("blk.0.attn_norm.weight", T::F32, &[2880]),
            ("blk.0.post_attention_norm.weight", T::F32, &[2880]),
            ("blk.0.attn_q.weight", T::Q8_0, &[2880, 4096]),
            ("blk.0.attn_q.bias", T::F32, &[4096]),
            ("blk.12.attn_k.weight", T::Q8_0, &[2880, 512]),
            ("blk.12.attn_v.weight", T::Q8_0, &[2880, 512]),
            ("blk.12.attn_v.bias", T::F32, &[512]),
            ("blk.12.attn_output.weight", T::Q8_0, &[4096, 2880]),
            ("blk.12.attn_output.bias", T::F32, &[2880]),
            ("blk.12.attn_sinks.weight", T::F32, &[64]),
            ("blk.12.ffn_gate_inp.weight", T::F32, &[2880, 32]),
            ("blk.12.ffn_gate_inp.bias", T::F32, &[32]),
            ("blk.0.ffn_gate_exps.weight", T::MXFP4, &[2880, 2880, 32]),
            ("blk.12.ffn_up_exps.weight", T::MXFP4, &[2880, 2880, 32]),
            ("blk.23.ffn_down_exps.weight", T::MXFP4, &[2880, 2880, 32]),
            ("blk.23.ffn_down_exps.bias", T::F32, &[2880, 32]),
            ("blk.23.ffn_gate_exps.bias", T::F32, &[2880, 32]),
        ];
        for (name, ty, dims) in cases {
            let t = p.tensor(name).unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!((t.ty, t.dims.as_slice()), (ty, dims), "{name}");
        }
        assert!(p.tensor("blk.24.attn_q.weight").is_none());
        // Every 3-D tensor is an expert stack in MXFP4, and only those are.
        for t in &p.tensors {
            assert_eq!(t.dims.len() == 3, t.ty == T::MXFP4, "{}", t.name);
        }
        // One expert matrix: 2880 x 2880 in 90 blocks of 17 bytes per row.
        let up = p.tensor("blk.0.ffn_up_exps.weight").unwrap();
        assert_eq!(up.n_bytes, 32 * 2880 * 90 * 17);

        let get = |k: &str| p.metadata.iter().find(|(kk, _)| kk == k).map(|(_, v)| v);
        let s = |v: &str| Some(MetaValue::String(v.into()));
        assert_eq!(get("general.architecture").cloned(), s("gpt-oss"));
        assert_eq!(get("general.file_type"), Some(&MetaValue::U32(38)));
        assert_eq!(
            get("general.quantization_version"),
            Some(&MetaValue::U32(2))
        );
        for (k, v) in [
            ("block_count", 24),
            ("context_length", 131072),
            ("embedding_length", 2880),
            ("feed_forward_length", 2880),
            ("attention.head_count", 64),
            ("attention.head_count_kv", 8),
            ("expert_count", 32),
            ("expert_used_count", 4),
            ("attention.key_length", 64),
            ("attention.value_length", 64),
            ("attention.sliding_window", 128),
            ("expert_feed_forward_length", 2880),
            ("rope.scaling.original_context_length", 4096),
            ("vocab_size", 201088),
        ] {
            let key = format!("gpt-oss.{k}");
            assert_eq!(get(&key), Some(&MetaValue::U32(v)), "{key}");
        }
        assert_eq!(
            get("gpt-oss.rope.freq_base"),
            Some(&MetaValue::F32(150000.0))
        );
        assert_eq!(
            get("gpt-oss.rope.scaling.factor"),
            Some(&MetaValue::F32(32.0))
        );
        assert_eq!(get("gpt-oss.rope.scaling.type").cloned(), s("yarn"));

        // 120b: 36 layers of 128 experts, 116.83 B parameters.
        let p = plan(Arch::GptOss, Size::B120, Mix::MXFP4).unwrap();
        assert_eq!(p.tensors.len(), 3 + 36 * 19);
        assert_eq!(p.n_params(), 116_829_156_672);
        assert_eq!(
            p.tensor("blk.35.ffn_down_exps.weight").unwrap().dims,
            [2880, 2880, 128]
        );
    }

    /// The 7B plans of the i-quant mixes: the types of representative tensors (ffn_down on
    /// both sides of n/8 = 4) and the type counts.
    #[test]
    fn llama_7b_i_quant_types_per_mix() {
        use GgmlType as T;
        let names = [
            "output.weight",
            "token_embd.weight",
            "blk.0.attn_v.weight",
            "blk.16.attn_v.weight",
            "blk.0.ffn_down.weight",
            "blk.3.ffn_down.weight",
            "blk.4.ffn_down.weight",
            "blk.16.ffn_down.weight",
            "blk.0.attn_output.weight",
            "blk.16.attn_output.weight",
            "blk.16.attn_q.weight",
            "blk.16.attn_k.weight",
            "blk.16.ffn_gate.weight",
            "blk.16.ffn_up.weight",
        ];
        #[rustfmt::skip]
        let cases: [Case; 4] = [
            (Mix::IQ3M,
             [T::Q6_K, T::IQ3_S, T::Q4_K, T::Q4_K, T::Q4_K, T::Q4_K, T::IQ3_S, T::IQ3_S,
              T::Q4_K, T::Q4_K, T::IQ3_S, T::IQ3_S, T::IQ3_S, T::IQ3_S],
             &[(T::IQ3_S, 157), (T::Q4_K, 68), (T::Q6_K, 1)]),
            (Mix::IQ2M,
             [T::Q5_K, T::IQ3_S, T::IQ3_S, T::IQ3_S, T::IQ3_S, T::IQ3_S, T::IQ2_S, T::IQ2_S,
              T::IQ3_S, T::IQ3_S, T::IQ2_S, T::IQ2_S, T::IQ2_S, T::IQ2_S],
             &[(T::IQ2_S, 156), (T::IQ3_S, 69), (T::Q5_K, 1)]),
            (Mix::IQ4XS,
             [T::Q6_K, T::IQ4_XS, T::IQ4_XS, T::IQ4_XS, T::Q5_K, T::Q5_K, T::IQ4_XS, T::IQ4_XS,
              T::IQ4_XS, T::IQ4_XS, T::IQ4_XS, T::IQ4_XS, T::IQ4_XS, T::IQ4_XS],
             &[(T::IQ4_XS, 221), (T::Q5_K, 4), (T::Q6_K, 1)]),
            (Mix::IQ1M,
             [T::Q5_K, T::Q2_K, T::Q2_K, T::Q2_K, T::Q2_K, T::Q2_K, T::IQ1_M, T::IQ1_M,
              T::IQ2_XXS, T::IQ2_XXS, T::IQ1_M, T::IQ1_M, T::IQ1_M, T::IQ1_M],
             &[(T::Q2_K, 37), (T::IQ2_XXS, 32), (T::IQ1_M, 156), (T::Q5_K, 1)]),
        ];
        for (mix, types, counts) in cases {
            check_7b(mix, &names, &types, counts);
        }
        // Llama-3.1-8B (4 query heads per KV head): attn_v gets Q5_K in iq4_xs, Q4_K in the
        // others.
        for (mix, want) in [
            (Mix::IQ4XS, T::Q5_K),
            (Mix::IQ3M, T::Q4_K),
            (Mix::IQ2M, T::Q4_K),
            (Mix::IQ1M, T::Q4_K),
        ] {
            let p = plan(Arch::Llama, Size::B8, mix).unwrap();
            assert_eq!(p.tensor("blk.20.attn_v.weight").unwrap().ty, want, "{mix}");
        }
    }

    /// Checks a llama 7B plan of `mix`: the types of `names`, the norms F32, the type counts
    /// (besides 65 F32), the parameter count and `general.file_type`.
    fn check_7b(mix: Mix, names: &[&str], types: &[GgmlType], counts: &[(GgmlType, usize)]) {
        let p = plan(Arch::Llama, Size::B7, mix).unwrap();
        assert_eq!(p.tensors.len(), 291, "{mix}");
        for (name, &want) in names.iter().zip(types) {
            assert_eq!(p.tensor(name).unwrap().ty, want, "{mix} {name}");
        }
        for norm in [
            "blk.16.attn_norm.weight",
            "blk.0.ffn_norm.weight",
            "output_norm.weight",
        ] {
            assert_eq!(p.tensor(norm).unwrap().ty, GgmlType::F32, "{mix} {norm}");
        }
        let mut want: BTreeMap<GgmlType, usize> = counts.iter().copied().collect();
        want.insert(GgmlType::F32, 65);
        assert_eq!(p.type_histogram(), want, "{mix}");
        assert_eq!(p.n_params(), 6_738_415_616);
        let ft = p.metadata.iter().find(|(k, _)| k == "general.file_type");
        assert_eq!(ft.map(|(_, v)| v), Some(&MetaValue::U32(mix.file_type())));
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
            check_7b(mix, &names, &types, counts);
        }
        // Q8_0: 34 bytes per 32 weights, F32 norms 4 bytes per weight.
        let p = plan(Arch::Llama, Size::B7, Mix::Q8_0).unwrap();
        let norms = 65 * 4096;
        assert_eq!(
            p.total_bytes(),
            (p.n_params() - norms) / 32 * 34 + norms * 4
        );
    }
}
