//! Quantization mixes: which ggml type each tensor gets, following llama.cpp's
//! `llama_tensor_get_type` (`src/llama-quant.cpp`) for the llama architecture and the mixes
//! offered, and for gpt-oss in `mxfp4` (`MXFP4_MOE`). docs/synth.md has the rules as tables,
//! with the source they were read from.

use std::fmt;
use std::str::FromStr;

use quant_core::GgmlType;

/// A file-level quantization mix, as `llama-quantize` names them (llama.cpp's `llama_ftype`).
/// Norms are F32 in every mix (llama.cpp quantizes 2-D weights only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mix {
    /// `Q2_K`: Q2_K, with Q3_K for `attn_v` (Q4_K with 4+ query heads per KV head, Q5_K in a
    /// 70B), `attn_output` and `ffn_down`; Q6_K output projection.
    Q2K,
    /// `Q3_K_M`: Q3_K, with `attn_v` Q5_K in layers 0–1 else Q4_K (Q5_K in a 70B), `ffn_down`
    /// Q5_K in the first sixteenth of the layers else Q4_K, `attn_output` Q4_K; Q6_K output.
    Q3KM,
    /// `Q3_K_L`: Q3_K, with Q5_K for `attn_v`, `attn_output` and `ffn_down`; Q6_K output.
    Q3KL,
    /// `Q4_0`: Q4_0 everywhere, Q6_K for the output projection.
    Q4_0,
    /// `Q4_K_M`: Q4_K, with Q6_K for the output projection and for the `attn_v` and `ffn_down`
    /// of the layers [`use_more_bits`] picks (the other `attn_v` of a 70B: Q5_K).
    Q4KM,
    /// `Q5_K_S`: Q5_K everywhere, Q6_K for the output projection.
    Q5KS,
    /// `Q5_K_M`: Q5_K, with Q6_K for the output projection and for the `attn_v` and `ffn_down`
    /// of the layers [`use_more_bits`] picks.
    Q5KM,
    /// `Q6_K`: Q6_K everywhere.
    Q6K,
    /// `Q8_0`: Q8_0 everywhere, the output projection included.
    Q8_0,
    /// `F16`: F16 everywhere (what a converter writes before quantizing).
    F16,
    /// `IQ3_M`: IQ3_S, with Q4_K for `attn_v` (Q5_K in a 70B), `attn_output` and the `ffn_down`
    /// of the first eighth of the layers; Q6_K output projection.
    IQ3M,
    /// `IQ2_M`: IQ2_S, with IQ3_S for `token_embd`, `attn_v` (Q4_K with 4+ query heads per KV
    /// head), `attn_output` and the `ffn_down` of the first eighth of the layers; Q5_K output
    /// projection. llama.cpp requires an importance matrix for it (no rule here depends on one).
    IQ2M,
    /// `IQ4_XS`: IQ4_XS, with Q5_K for `attn_v` with 4+ query heads per KV head and for the
    /// `ffn_down` of the first eighth of the layers (llama.cpp's choice without an importance
    /// matrix); Q6_K output projection.
    IQ4XS,
    /// `IQ1_M`: IQ1_M, with Q2_K for `token_embd`, `attn_v` (Q4_K with 4+ query heads per KV
    /// head) and the `ffn_down` of the first eighth of the layers, IQ2_XXS for `attn_output`;
    /// Q5_K output projection. llama.cpp requires an importance matrix for it (no rule here
    /// depends on one).
    IQ1M,
    /// `MXFP4_MOE`: MXFP4 for the MoE expert tensors (3-D), Q8_0 for every other weight that
    /// llama.cpp quantizes (embeddings, output projection, attention); biases, sinks, the router
    /// and norms stay F32. The mix of the released gpt-oss GGUF files.
    MXFP4,
}

/// What a tensor is, as far as the type rules care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    TokenEmbd,
    Output,
    /// A norm weight (1-D).
    Norm,
    /// A tensor llama.cpp never quantizes: 1-D (biases, attention sinks), a name not ending in
    /// `weight` (the experts' 2-D biases), or the MoE router `ffn_gate_inp.weight`. It keeps the
    /// converter's F32.
    Kept,
    AttnQ,
    AttnK,
    AttnV,
    AttnOutput,
    FfnGate,
    FfnUp,
    FfnDown,
    /// A stack of MoE expert matrices (`ffn_gate_exps`, `ffn_up_exps`, `ffn_down_exps`: 3-D, one
    /// matrix per expert).
    FfnExps,
}

/// The facts about a model that llama.cpp's rules look at, besides the tensor itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ModelFacts {
    /// Transformer blocks (llama.cpp's `n_attention_wv` and `n_ffn_down` for a dense llama:
    /// one `attn_v` and one `ffn_down` per block).
    pub n_layer: u64,
    /// Query heads per KV head (`hparams.n_gqa()`, an integer division).
    pub n_gqa: u64,
    /// llama.cpp classes the model as `LLM_TYPE_70B` (llama: 80 layers with GQA).
    pub is_70b: bool,
    /// The model has its own `output.weight` (not tied to `token_embd`).
    pub has_output: bool,
}

impl Mix {
    /// Every mix, in `llama_ftype` order.
    pub const ALL: [Mix; 15] = [
        Mix::F16,
        Mix::Q4_0,
        Mix::Q8_0,
        Mix::Q2K,
        Mix::Q3KM,
        Mix::Q3KL,
        Mix::Q4KM,
        Mix::Q5KS,
        Mix::Q5KM,
        Mix::Q6K,
        Mix::IQ3M,
        Mix::IQ2M,
        Mix::IQ4XS,
        Mix::IQ1M,
        Mix::MXFP4,
    ];

    /// The name used on the command line (`q4_k_m`, `iq4_xs`, `mxfp4`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Mix::Q2K => "q2_k",
            Mix::Q3KM => "q3_k_m",
            Mix::Q3KL => "q3_k_l",
            Mix::Q4_0 => "q4_0",
            Mix::Q4KM => "q4_k_m",
            Mix::Q5KS => "q5_k_s",
            Mix::Q5KM => "q5_k_m",
            Mix::Q6K => "q6_k",
            Mix::Q8_0 => "q8_0",
            Mix::F16 => "f16",
            Mix::IQ3M => "iq3_m",
            Mix::IQ2M => "iq2_m",
            Mix::IQ4XS => "iq4_xs",
            Mix::IQ1M => "iq1_m",
            Mix::MXFP4 => "mxfp4",
        }
    }

    /// llama.cpp's `llama_ftype` value, written as `general.file_type`.
    pub fn file_type(self) -> u32 {
        match self {
            Mix::F16 => 1,
            Mix::Q4_0 => 2,
            Mix::Q8_0 => 7,
            Mix::Q2K => 10,
            Mix::Q3KM => 12,
            Mix::Q3KL => 13,
            Mix::Q4KM => 15,
            Mix::Q5KS => 16,
            Mix::Q5KM => 17,
            Mix::Q6K => 18,
            Mix::IQ3M => 27,
            Mix::IQ2M => 29,
            Mix::IQ4XS => 30,
            Mix::IQ1M => 31,
            Mix::MXFP4 => 38,
        }
    }

    /// The mix's default tensor type (llama.cpp's `llama_ftype_get_default_type`): what a
    /// weight gets unless a rule says otherwise.
    pub fn default_type(self) -> GgmlType {
        match self {
            Mix::F16 => GgmlType::F16,
            Mix::Q4_0 => GgmlType::Q4_0,
            Mix::Q8_0 => GgmlType::Q8_0,
            Mix::Q2K => GgmlType::Q2_K,
            Mix::Q3KM | Mix::Q3KL => GgmlType::Q3_K,
            Mix::Q4KM => GgmlType::Q4_K,
            Mix::Q5KS | Mix::Q5KM => GgmlType::Q5_K,
            Mix::Q6K => GgmlType::Q6_K,
            Mix::IQ3M => GgmlType::IQ3_S,
            Mix::IQ2M => GgmlType::IQ2_S,
            Mix::IQ4XS => GgmlType::IQ4_XS,
            Mix::IQ1M => GgmlType::IQ1_M,
            Mix::MXFP4 => GgmlType::MXFP4,
        }
    }

    /// The type of a tensor (llama.cpp's `llama_tensor_get_type` for a model without overrides,
    /// `--pure`, or an importance matrix where a rule depends on one). `layer` places a block
    /// tensor in the model (llama.cpp's `i_attention_wv` / `i_ffn_down` counters, equal to the
    /// layer here: one such tensor per block, in order); `row_len` is the tensor's first
    /// dimension (a type needs a multiple of its block, else [`k_quant_fallback`] applies).
    ///
    /// The rules implemented are those a dense llama meets in every mix but `mxfp4`, and those
    /// of `mxfp4`; llama.cpp's Falcon and MoE branches (`n_expert == 8` and such) are not.
    pub(crate) fn tensor_type(
        self,
        role: Role,
        layer: u64,
        m: &ModelFacts,
        row_len: u64,
    ) -> GgmlType {
        use GgmlType as T;
        let default = self.default_type();
        // 1-D tensors, biases and the router are never quantized: the converter's F32 stays.
        if role == Role::Norm || role == Role::Kept {
            return T::F32;
        }
        // A float mix has no rules: every weight is the default type.
        if !is_block_type(default) {
            return default;
        }
        let n = m.n_layer;
        // IQ2_M and IQ1_M have a branch of their own in llama.cpp (after the output and
        // token_embd rules), without the 70B bump.
        let low_bit_iq = matches!(self, Mix::IQ2M | Mix::IQ1M);
        let ty = match role {
            // The output projection, and token_embd when it doubles as one: Q8_0 in mxfp4 or
            // if its rows do not fit the mix's blocks, Q5_K in the 1-2 bit i-quant mixes, else
            // Q6_K, unless the mix is Q8_0.
            _ if role == Role::Output || (role == Role::TokenEmbd && !m.has_output) => {
                if self == Mix::MXFP4 || row_len % block_elems(default) != 0 {
                    T::Q8_0
                } else if low_bit_iq {
                    T::Q5_K
                } else if default != T::Q8_0 {
                    T::Q6_K
                } else {
                    default
                }
            }
            // MXFP4_MOE: expert stacks (ne[2] > 1) MXFP4, every other weight Q8_0.
            Role::FfnExps if self == Mix::MXFP4 => T::MXFP4,
            _ if self == Mix::MXFP4 => T::Q8_0,
            Role::TokenEmbd => match self {
                Mix::IQ1M => T::Q2_K,
                Mix::IQ2M => T::IQ3_S,
                _ => default,
            },
            _ if low_bit_iq => match role {
                Role::AttnV if m.n_gqa >= 4 => T::Q4_K,
                Role::AttnV | Role::AttnOutput if self == Mix::IQ2M => T::IQ3_S,
                Role::AttnV => T::Q2_K,
                Role::AttnOutput => T::IQ2_XXS,
                Role::FfnDown if layer < n / 8 && self == Mix::IQ2M => T::IQ3_S,
                Role::FfnDown if layer < n / 8 => T::Q2_K,
                _ => default,
            },
            Role::AttnV => {
                let ty = match self {
                    Mix::Q2K if m.n_gqa >= 4 => T::Q4_K,
                    Mix::Q2K => T::Q3_K,
                    Mix::IQ3M => T::Q4_K,
                    Mix::Q3KM if layer < 2 => T::Q5_K,
                    Mix::Q3KM => T::Q4_K,
                    Mix::Q3KL => T::Q5_K,
                    Mix::IQ4XS if m.n_gqa >= 4 => T::Q5_K,
                    Mix::Q4KM | Mix::Q5KM if use_more_bits(layer, n) => T::Q6_K,
                    _ => default,
                };
                // A 70B's attn_v is 8x smaller than attn_q: llama.cpp spends the bits.
                if m.is_70b && (ty == T::Q3_K || ty == T::Q4_K) {
                    T::Q5_K
                } else {
                    ty
                }
            }
            Role::FfnDown => match self {
                Mix::Q2K => T::Q3_K,
                // llama.cpp gives Q3_K past n/16 only to Falcon; a llama gets Q4_K.
                Mix::Q3KM if layer < n / 16 => T::Q5_K,
                Mix::Q3KM => T::Q4_K,
                Mix::IQ3M if layer < n / 8 => T::Q4_K,
                Mix::Q3KL => T::Q5_K,
                Mix::Q4KM | Mix::Q5KM if use_more_bits(layer, n) => T::Q6_K,
                // Without an importance matrix (with one, these stay IQ4_XS).
                Mix::IQ4XS if layer < n / 8 => T::Q5_K,
                _ => default,
            },
            // The rules of a model that is neither Falcon nor an 8-expert MoE.
            Role::AttnOutput => match self {
                Mix::Q2K => T::Q3_K,
                Mix::Q3KM | Mix::IQ3M => T::Q4_K,
                Mix::Q3KL => T::Q5_K,
                _ => default,
            },
            _ => default,
        };
        k_quant_fallback(ty, row_len)
    }
}

fn block_elems(ty: GgmlType) -> u64 {
    ty.geometry().map_or(1, |g| g.block_elems as u64)
}

fn is_block_type(ty: GgmlType) -> bool {
    block_elems(ty) > 1
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Mix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Mix::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<_> = Mix::ALL.iter().map(|m| m.name()).collect();
                format!("unknown mix '{s}': expected one of {}", names.join(", "))
            })
    }
}

/// llama.cpp's choice of layers that get more bits in the `_M` K-quant mixes: the first and
/// last eighth of the layers, and every third layer in between.
pub fn use_more_bits(layer: u64, n_layer: u64) -> bool {
    // The first test keeps `layer - n_layer / 8` from going below zero.
    layer < n_layer / 8 || layer >= 7 * n_layer / 8 || (layer - n_layer / 8) % 3 == 2
}

/// The type llama.cpp uses instead of a 256-element block type for rows whose length is not a
/// multiple of 256 (`tensor_type_fallback`): the i-quants (IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS,
/// IQ2_S, IQ3_XXS, IQ3_S, IQ4_XS) become IQ4_NL, Q2_K, Q3_K, TQ1_0 and TQ2_0 become Q4_0, Q4_K
/// becomes Q5_0, Q5_K becomes Q5_1, Q6_K becomes Q8_0, and any of them F16 if the row is not a
/// multiple of 32 either. Other types, and rows that fit, are returned unchanged. No llama
/// preset needs it (all their rows are multiples of 256; a test checks).
pub fn k_quant_fallback(ty: GgmlType, row_len: u64) -> GgmlType {
    let Some(&(_, fallback)) = FALLBACKS.iter().find(|(from, _)| *from == ty) else {
        return ty;
    };
    if row_len % block_elems(ty) == 0 {
        ty
    } else if row_len % block_elems(fallback) == 0 {
        fallback
    } else {
        GgmlType::F16
    }
}

/// llama.cpp's `tensor_type_fallback` as data: a quantization policy (which type a tensor gets),
/// not knowledge of any format's bytes.
const FALLBACKS: [(GgmlType, GgmlType); 15] = {
    use GgmlType as T;
    [
        (T::IQ1_S, T::IQ4_NL),
        (T::IQ1_M, T::IQ4_NL),
        (T::IQ2_XXS, T::IQ4_NL),
        (T::IQ2_XS, T::IQ4_NL),
        (T::IQ2_S, T::IQ4_NL),
        (T::IQ3_XXS, T::IQ4_NL),
        (T::IQ3_S, T::IQ4_NL),
        (T::IQ4_XS, T::IQ4_NL),
        (T::Q2_K, T::Q4_0),
        (T::Q3_K, T::Q4_0),
        (T::TQ1_0, T::Q4_0),
        (T::TQ2_0, T::Q4_0),
        (T::Q4_K, T::Q5_0),
        (T::Q5_K, T::Q5_1),
        (T::Q6_K, T::Q8_0),
    ]
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Arch, Size};
    use GgmlType as T;

    fn facts(size: Size) -> ModelFacts {
        Arch::Llama.shape(size).unwrap().facts()
    }

    #[test]
    fn model_facts_of_the_presets() {
        let f = facts(Size::B7);
        assert_eq!(
            (f.n_layer, f.n_gqa, f.is_70b, f.has_output),
            (32, 1, false, true)
        );
        let f = facts(Size::B8);
        assert_eq!((f.n_gqa, f.is_70b), (4, false));
        let f = facts(Size::B3);
        assert_eq!((f.n_gqa, f.has_output), (3, false));
        let f = facts(Size::B70);
        assert_eq!((f.n_layer, f.n_gqa, f.is_70b), (80, 8, true));
        assert!(!facts(Size::B34).is_70b);
    }

    #[test]
    fn more_bits_for_32_layers_matches_llama_cpp() {
        let picked: Vec<u64> = (0..32).filter(|&i| use_more_bits(i, 32)).collect();
        assert_eq!(
            picked,
            [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]
        );
        // 80 layers: 10 first, 10 last, every third of the 60 between.
        assert_eq!((0..80).filter(|&i| use_more_bits(i, 80)).count(), 40);
        // Two layers: n/8 = 0 and 7n/8 = 1, so only the last.
        assert!(!use_more_bits(0, 2) && use_more_bits(1, 2));
    }

    #[test]
    fn fallback_follows_llama_cpp() {
        assert_eq!(k_quant_fallback(T::Q4_K, 4096), T::Q4_K);
        assert_eq!(k_quant_fallback(T::Q4_K, 4160), T::Q5_0);
        assert_eq!(k_quant_fallback(T::Q5_K, 4160), T::Q5_1);
        assert_eq!(k_quant_fallback(T::Q6_K, 4160), T::Q8_0);
        assert_eq!(k_quant_fallback(T::Q2_K, 4160), T::Q4_0);
        assert_eq!(k_quant_fallback(T::Q3_K, 4160), T::Q4_0);
        assert_eq!(k_quant_fallback(T::Q6_K, 100), T::F16);
        assert_eq!(k_quant_fallback(T::Q4_0, 4160), T::Q4_0);
        assert_eq!(k_quant_fallback(T::Q8_0, 4160), T::Q8_0);
        // The i-quants fall back to IQ4_NL (32-element blocks), else F16.
        for ty in [
            T::IQ1_S,
            T::IQ1_M,
            T::IQ2_XXS,
            T::IQ2_XS,
            T::IQ2_S,
            T::IQ3_XXS,
            T::IQ3_S,
            T::IQ4_XS,
        ] {
            assert_eq!(k_quant_fallback(ty, 4096), ty);
            assert_eq!(k_quant_fallback(ty, 2880), T::IQ4_NL, "{ty}");
            assert_eq!(k_quant_fallback(ty, 100), T::F16, "{ty}");
        }
        assert_eq!(k_quant_fallback(T::TQ2_0, 2880), T::Q4_0);
        assert_eq!(k_quant_fallback(T::MXFP4, 2880), T::MXFP4);
        assert_eq!(k_quant_fallback(T::IQ4_NL, 4160), T::IQ4_NL);
    }

    #[test]
    fn names_file_types_and_default_types() {
        for m in Mix::ALL {
            assert_eq!(m.name().parse::<Mix>().unwrap(), m);
            assert_eq!(m.name().to_uppercase().parse::<Mix>().unwrap(), m);
            assert_eq!(m.tensor_type(Role::Norm, 0, &facts(Size::B7), 4096), T::F32);
        }
        let e = "q4_k_s".parse::<Mix>().unwrap_err();
        assert!(e.contains("q3_k_l") && e.contains("iq1_m"), "{e}");
        // llama.cpp's llama_ftype values; ALL in that order, no value twice.
        let ft: Vec<u32> = Mix::ALL.iter().map(|m| m.file_type()).collect();
        assert_eq!(
            ft,
            [1, 2, 7, 10, 12, 13, 15, 16, 17, 18, 27, 29, 30, 31, 38]
        );
        let dt: Vec<T> = Mix::ALL.iter().map(|m| m.default_type()).collect();
        assert_eq!(
            dt,
            [
                T::F16,
                T::Q4_0,
                T::Q8_0,
                T::Q2_K,
                T::Q3_K,
                T::Q3_K,
                T::Q4_K,
                T::Q5_K,
                T::Q5_K,
                T::Q6_K,
                T::IQ3_S,
                T::IQ2_S,
                T::IQ4_XS,
                T::IQ1_M,
                T::MXFP4
            ]
        );
    }

    /// A mix; the types of output and token_embd; of attn_v in 5 layers; of ffn_down in 5
    /// layers; of attn_output, attn_q, attn_k, ffn_gate, ffn_up.
    type Row = (Mix, [T; 2], [T; 5], [T; 5], [T; 5]);

    /// The types of one llama 7B (32 layers, no GQA) tensor per rule, for every mix.
    #[test]
    fn type_rules_for_a_7b() {
        use Role::*;
        let f = facts(Size::B7);
        let t = |m: Mix, r, l| m.tensor_type(r, l, &f, 4096);
        // (mix, output, token_embd, attn_v of layers 0 / 1 / 2 / 4 / 6, ffn_down of layers
        // 0 / 1 / 2 / 6 / 7, attn_output, attn_q, attn_k, ffn_gate, ffn_up)
        #[rustfmt::skip]
        let rows: [Row; 15] = [
            (Mix::F16, [T::F16, T::F16], [T::F16; 5], [T::F16; 5], [T::F16; 5]),
            (Mix::Q4_0, [T::Q6_K, T::Q4_0], [T::Q4_0; 5], [T::Q4_0; 5], [T::Q4_0; 5]),
            (Mix::Q8_0, [T::Q8_0, T::Q8_0], [T::Q8_0; 5], [T::Q8_0; 5], [T::Q8_0; 5]),
            (Mix::Q2K, [T::Q6_K, T::Q2_K], [T::Q3_K; 5], [T::Q3_K; 5],
                [T::Q3_K, T::Q2_K, T::Q2_K, T::Q2_K, T::Q2_K]),
            (Mix::Q3KM, [T::Q6_K, T::Q3_K], [T::Q5_K, T::Q5_K, T::Q4_K, T::Q4_K, T::Q4_K],
                [T::Q5_K, T::Q5_K, T::Q4_K, T::Q4_K, T::Q4_K],
                [T::Q4_K, T::Q3_K, T::Q3_K, T::Q3_K, T::Q3_K]),
            (Mix::Q3KL, [T::Q6_K, T::Q3_K], [T::Q5_K; 5], [T::Q5_K; 5],
                [T::Q5_K, T::Q3_K, T::Q3_K, T::Q3_K, T::Q3_K]),
            (Mix::Q4KM, [T::Q6_K, T::Q4_K], [T::Q6_K, T::Q6_K, T::Q6_K, T::Q4_K, T::Q6_K],
                [T::Q6_K, T::Q6_K, T::Q6_K, T::Q6_K, T::Q4_K], [T::Q4_K; 5]),
            (Mix::Q5KS, [T::Q6_K, T::Q5_K], [T::Q5_K; 5], [T::Q5_K; 5], [T::Q5_K; 5]),
            (Mix::Q5KM, [T::Q6_K, T::Q5_K], [T::Q6_K, T::Q6_K, T::Q6_K, T::Q5_K, T::Q6_K],
                [T::Q6_K, T::Q6_K, T::Q6_K, T::Q6_K, T::Q5_K], [T::Q5_K; 5]),
            (Mix::Q6K, [T::Q6_K, T::Q6_K], [T::Q6_K; 5], [T::Q6_K; 5], [T::Q6_K; 5]),
            // n/8 = 4: the ffn_down of layers 0-3 get more bits.
            (Mix::IQ3M, [T::Q6_K, T::IQ3_S], [T::Q4_K; 5],
                [T::Q4_K, T::Q4_K, T::Q4_K, T::IQ3_S, T::IQ3_S],
                [T::Q4_K, T::IQ3_S, T::IQ3_S, T::IQ3_S, T::IQ3_S]),
            (Mix::IQ2M, [T::Q5_K, T::IQ3_S], [T::IQ3_S; 5],
                [T::IQ3_S, T::IQ3_S, T::IQ3_S, T::IQ2_S, T::IQ2_S],
                [T::IQ3_S, T::IQ2_S, T::IQ2_S, T::IQ2_S, T::IQ2_S]),
            (Mix::IQ4XS, [T::Q6_K, T::IQ4_XS], [T::IQ4_XS; 5],
                [T::Q5_K, T::Q5_K, T::Q5_K, T::IQ4_XS, T::IQ4_XS], [T::IQ4_XS; 5]),
            (Mix::IQ1M, [T::Q5_K, T::Q2_K], [T::Q2_K; 5],
                [T::Q2_K, T::Q2_K, T::Q2_K, T::IQ1_M, T::IQ1_M],
                [T::IQ2_XXS, T::IQ1_M, T::IQ1_M, T::IQ1_M, T::IQ1_M]),
            // What MXFP4_MOE would make of a dense llama (plan offers it for gpt-oss only).
            (Mix::MXFP4, [T::Q8_0, T::Q8_0], [T::Q8_0; 5], [T::Q8_0; 5], [T::Q8_0; 5]),
        ];
        assert_eq!(rows.map(|r| r.0), Mix::ALL);
        for (m, [out, embd], v, down, other) in rows {
            assert_eq!(t(m, Output, 0), out, "{m} output");
            assert_eq!(t(m, TokenEmbd, 0), embd, "{m} token_embd");
            for (l, want) in [0, 1, 2, 4, 6].into_iter().zip(v) {
                assert_eq!(t(m, AttnV, l), want, "{m} attn_v {l}");
            }
            for (l, want) in [0, 1, 2, 6, 7].into_iter().zip(down) {
                assert_eq!(t(m, FfnDown, l), want, "{m} ffn_down {l}");
            }
            for (r, want) in [AttnOutput, AttnQ, AttnK, FfnGate, FfnUp]
                .into_iter()
                .zip(other)
            {
                for l in [0, 5, 31] {
                    assert_eq!(t(m, r, l), want, "{m} {r:?} {l}");
                }
            }
        }
    }

    #[test]
    fn gqa_70b_and_tied_embeddings() {
        use Role::*;
        // Q2_K: attn_v Q4_K with 4+ query heads per KV head (Llama-3.1-8B), Q3_K below.
        let b8 = facts(Size::B8);
        assert_eq!(Mix::Q2K.tensor_type(AttnV, 5, &b8, 4096), T::Q4_K);
        let b3 = facts(Size::B3);
        assert_eq!(Mix::Q2K.tensor_type(AttnV, 5, &b3, 3072), T::Q3_K);
        // 70B: attn_v that would be Q3_K or Q4_K is Q5_K; Q6_K and others stay.
        let b70 = facts(Size::B70);
        let v = |m: Mix, l| m.tensor_type(AttnV, l, &b70, 8192);
        assert_eq!(v(Mix::Q2K, 40), T::Q5_K);
        assert_eq!(v(Mix::Q3KM, 0), T::Q5_K);
        assert_eq!(v(Mix::Q3KM, 40), T::Q5_K);
        assert_eq!(v(Mix::Q4KM, 0), T::Q6_K);
        assert_eq!(v(Mix::Q4KM, 11), T::Q5_K);
        assert_eq!(v(Mix::Q4_0, 11), T::Q4_0);
        assert_eq!(v(Mix::Q8_0, 11), T::Q8_0);
        // ffn_down's n/16 for 80 layers: layers 0-4.
        let d = |l| Mix::Q3KM.tensor_type(FfnDown, l, &b70, 28672);
        assert_eq!((d(4), d(5)), (T::Q5_K, T::Q4_K));
        // Tied embeddings (Llama 3.2): token_embd takes the output projection's type.
        let b1 = facts(Size::B1);
        for (m, want) in [
            (Mix::Q4KM, T::Q6_K),
            (Mix::Q4_0, T::Q6_K),
            (Mix::Q2K, T::Q6_K),
            (Mix::Q8_0, T::Q8_0),
            (Mix::F16, T::F16),
        ] {
            assert_eq!(m.tensor_type(TokenEmbd, 0, &b1, 2048), want, "{m}");
        }
    }

    #[test]
    fn i_quant_gqa_70b_and_tied_embeddings() {
        use Role::*;
        // attn_v with 4+ query heads per KV head: Q5_K in iq4_xs, Q4_K in iq2_m and iq1_m.
        let b8 = facts(Size::B8);
        let b3 = facts(Size::B3);
        let v = |m: Mix, f: &ModelFacts| m.tensor_type(AttnV, 5, f, 4096);
        assert_eq!(v(Mix::IQ4XS, &b8), T::Q5_K);
        assert_eq!(v(Mix::IQ4XS, &b3), T::IQ4_XS);
        assert_eq!(v(Mix::IQ2M, &b8), T::Q4_K);
        assert_eq!(v(Mix::IQ2M, &b3), T::IQ3_S);
        assert_eq!(v(Mix::IQ1M, &b8), T::Q4_K);
        assert_eq!(v(Mix::IQ1M, &b3), T::Q2_K);
        assert_eq!(v(Mix::IQ3M, &b8), T::Q4_K);
        // 70B: iq3_m's Q4_K attn_v is bumped to Q5_K; the iq2_m/iq1_m branch has no bump.
        let b70 = facts(Size::B70);
        assert_eq!(v(Mix::IQ3M, &b70), T::Q5_K);
        assert_eq!(v(Mix::IQ2M, &b70), T::Q4_K);
        assert_eq!(v(Mix::IQ1M, &b70), T::Q4_K);
        assert_eq!(v(Mix::IQ4XS, &b70), T::Q5_K);
        // ffn_down's n/8 for 80 layers: layers 0-9.
        let d = |m: Mix, l| m.tensor_type(FfnDown, l, &b70, 28672);
        assert_eq!((d(Mix::IQ3M, 9), d(Mix::IQ3M, 10)), (T::Q4_K, T::IQ3_S));
        assert_eq!((d(Mix::IQ1M, 9), d(Mix::IQ1M, 10)), (T::Q2_K, T::IQ1_M));
        assert_eq!((d(Mix::IQ4XS, 9), d(Mix::IQ4XS, 10)), (T::Q5_K, T::IQ4_XS));
        // Tied embeddings take the output projection's type.
        let b1 = facts(Size::B1);
        for (m, want) in [
            (Mix::IQ4XS, T::Q6_K),
            (Mix::IQ3M, T::Q6_K),
            (Mix::IQ2M, T::Q5_K),
            (Mix::IQ1M, T::Q5_K),
            (Mix::MXFP4, T::Q8_0),
        ] {
            assert_eq!(m.tensor_type(TokenEmbd, 0, &b1, 2048), want, "{m}");
        }
        // MXFP4_MOE: expert stacks MXFP4, other weights Q8_0, the rest kept F32; the other
        // mixes never quantize what llama.cpp keeps either.
        let f = facts(Size::B7);
        assert_eq!(Mix::MXFP4.tensor_type(FfnExps, 3, &f, 2880), T::MXFP4);
        assert_eq!(Mix::MXFP4.tensor_type(AttnQ, 3, &f, 2880), T::Q8_0);
        assert_eq!(Mix::MXFP4.tensor_type(TokenEmbd, 0, &f, 2880), T::Q8_0);
        for m in Mix::ALL {
            assert_eq!(m.tensor_type(Kept, 3, &f, 2880), T::F32, "{m}");
        }
    }

    #[test]
    fn rows_that_do_not_fit_fall_back() {
        use Role::*;
        let f = facts(Size::B7);
        assert_eq!(Mix::Q4KM.tensor_type(AttnQ, 0, &f, 4160), T::Q5_0);
        assert_eq!(Mix::Q3KM.tensor_type(AttnQ, 0, &f, 4160), T::Q4_0);
        assert_eq!(Mix::Q5KM.tensor_type(AttnV, 0, &f, 4160), T::Q8_0);
        assert_eq!(Mix::Q4KM.tensor_type(Output, 0, &f, 4160), T::Q8_0);
        // Q4_0's blocks are 32 long: a 4160 row fits them, Q6_K falls back to Q8_0.
        assert_eq!(Mix::Q4_0.tensor_type(Output, 0, &f, 4160), T::Q8_0);
        assert_eq!(Mix::Q4_0.tensor_type(AttnQ, 0, &f, 4160), T::Q4_0);
        assert_eq!(Mix::IQ4XS.tensor_type(AttnQ, 0, &f, 4160), T::IQ4_NL);
        assert_eq!(Mix::IQ2M.tensor_type(TokenEmbd, 0, &f, 4160), T::IQ4_NL);
        assert_eq!(Mix::IQ1M.tensor_type(Output, 0, &f, 4160), T::Q8_0);
    }
}
