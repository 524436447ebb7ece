//! Quantization mixes: which ggml type each tensor gets, following llama.cpp's
//! `llama_tensor_get_type` for the mixes offered.

use std::fmt;
use std::str::FromStr;

use quant_core::GgmlType;

/// A file-level quantization mix, as `llama-quantize` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mix {
    /// `Q4_0`: Q4_0 everywhere, Q6_K for the output projection, F32 norms.
    Q4_0,
    /// `Q4_K_M`: Q4_K, with Q6_K for the output projection and for the `attn_v` and `ffn_down`
    /// of the layers [`use_more_bits`] picks; F32 norms.
    Q4KM,
    /// `Q6_K`: Q6_K everywhere, F32 norms.
    Q6K,
    /// `F16`: F16 everywhere, F32 norms (what a converter writes before quantizing).
    F16,
}

/// What a tensor is, as far as the type rules care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    TokenEmbd,
    Output,
    Norm,
    AttnQ,
    AttnK,
    AttnV,
    AttnOutput,
    FfnGate,
    FfnUp,
    FfnDown,
}

impl Mix {
    /// Every mix.
    pub const ALL: [Mix; 4] = [Mix::Q4_0, Mix::Q4KM, Mix::Q6K, Mix::F16];

    /// The name used on the command line (`q4_0`, `q4_k_m`, `q6_k`, `f16`).
    pub fn name(self) -> &'static str {
        match self {
            Mix::Q4_0 => "q4_0",
            Mix::Q4KM => "q4_k_m",
            Mix::Q6K => "q6_k",
            Mix::F16 => "f16",
        }
    }

    /// llama.cpp's `llama_ftype` value, written as `general.file_type`.
    pub fn file_type(self) -> u32 {
        match self {
            Mix::F16 => 1,
            Mix::Q4_0 => 2,
            Mix::Q4KM => 15,
            Mix::Q6K => 18,
        }
    }

    /// The type of a tensor. `layer` and `n_layer` place a block tensor in the model;
    /// `has_output` is false for models whose `token_embd` doubles as the output projection
    /// (llama.cpp then gives `token_embd` the output's type); `row_len` is the tensor's first
    /// dimension (a K-quant needs a multiple of 256, else [`k_quant_fallback`] applies).
    pub(crate) fn tensor_type(
        self,
        role: Role,
        layer: u64,
        n_layer: u64,
        has_output: bool,
        row_len: u64,
    ) -> GgmlType {
        let as_output = role == Role::Output || (role == Role::TokenEmbd && !has_output);
        let ty = match (self, role) {
            (_, Role::Norm) => return GgmlType::F32,
            (Mix::F16, _) => GgmlType::F16,
            // llama.cpp: the output projection gets Q6_K unless the mix is Q8_0 or an IQ mix,
            // or its rows cannot be K-quantized (then Q8_0).
            _ if as_output => {
                if row_len % 256 != 0 {
                    GgmlType::Q8_0
                } else {
                    GgmlType::Q6_K
                }
            }
            (Mix::Q4_0, _) => GgmlType::Q4_0,
            (Mix::Q6K, _) => GgmlType::Q6_K,
            (Mix::Q4KM, Role::AttnV | Role::FfnDown) if use_more_bits(layer, n_layer) => {
                GgmlType::Q6_K
            }
            // llama.cpp also raises the remaining `attn_v` of a 70B model to Q5_K; quantforge
            // has no Q5_K format, so they stay Q4_K (docs/synth.md).
            (Mix::Q4KM, _) => GgmlType::Q4_K,
        };
        k_quant_fallback(ty, row_len)
    }
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
            .ok_or_else(|| format!("unknown mix '{s}': expected q4_0, q4_k_m, q6_k or f16"))
    }
}

/// llama.cpp's choice of layers that get more bits in the `_M` K-quant mixes: the first and
/// last eighth of the layers, and every third layer in between.
pub fn use_more_bits(layer: u64, n_layer: u64) -> bool {
    // The first test keeps `layer - n_layer / 8` from going below zero.
    layer < n_layer / 8 || layer >= 7 * n_layer / 8 || (layer - n_layer / 8) % 3 == 2
}

/// The type llama.cpp uses instead of a K-quant for rows whose length is not a multiple of
/// 256: Q4_K becomes Q5_0, Q6_K becomes Q8_0, and either becomes F16 if the row is not a
/// multiple of 32 either. Other types, and rows that fit, are returned unchanged. No preset
/// here needs it (all their rows are multiples of 256; a test checks).
pub fn k_quant_fallback(ty: GgmlType, row_len: u64) -> GgmlType {
    let fallback = match ty {
        GgmlType::Q4_K => GgmlType::Q5_0,
        GgmlType::Q6_K => GgmlType::Q8_0,
        _ => return ty,
    };
    if row_len % 256 == 0 {
        ty
    } else if row_len % 32 == 0 {
        fallback
    } else {
        GgmlType::F16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(k_quant_fallback(GgmlType::Q4_K, 4096), GgmlType::Q4_K);
        assert_eq!(k_quant_fallback(GgmlType::Q4_K, 4160), GgmlType::Q5_0);
        assert_eq!(k_quant_fallback(GgmlType::Q6_K, 4160), GgmlType::Q8_0);
        assert_eq!(k_quant_fallback(GgmlType::Q6_K, 100), GgmlType::F16);
        assert_eq!(k_quant_fallback(GgmlType::Q4_0, 4160), GgmlType::Q4_0);
    }

    #[test]
    fn type_rules() {
        use Role::*;
        let t = |m: Mix, r, l| m.tensor_type(r, l, 32, true, 4096);
        for m in Mix::ALL {
            assert_eq!(t(m, Norm, 0), GgmlType::F32);
            assert_eq!("Q4_K_M".parse::<Mix>().unwrap(), Mix::Q4KM);
            assert_eq!(m.name().parse::<Mix>().unwrap(), m);
        }
        assert_eq!(t(Mix::Q4KM, Output, 0), GgmlType::Q6_K);
        assert_eq!(t(Mix::Q4KM, TokenEmbd, 0), GgmlType::Q4_K);
        assert_eq!(t(Mix::Q4KM, AttnV, 6), GgmlType::Q6_K);
        assert_eq!(t(Mix::Q4KM, AttnV, 7), GgmlType::Q4_K);
        assert_eq!(t(Mix::Q4KM, FfnDown, 31), GgmlType::Q6_K);
        assert_eq!(t(Mix::Q4KM, AttnK, 0), GgmlType::Q4_K);
        assert_eq!(t(Mix::Q4KM, FfnUp, 0), GgmlType::Q4_K);
        assert_eq!(t(Mix::Q4_0, Output, 0), GgmlType::Q6_K);
        assert_eq!(t(Mix::Q4_0, FfnDown, 0), GgmlType::Q4_0);
        assert_eq!(t(Mix::Q6K, AttnQ, 5), GgmlType::Q6_K);
        assert_eq!(t(Mix::F16, Output, 0), GgmlType::F16);
        // Tied embeddings: token_embd takes the output's type.
        let tied = Mix::Q4KM.tensor_type(TokenEmbd, 0, 16, false, 2048);
        assert_eq!(tied, GgmlType::Q6_K);
        assert_eq!(
            Mix::Q4_0.tensor_type(TokenEmbd, 0, 16, false, 2048),
            GgmlType::Q6_K
        );
        // Rows that cannot be K-quantized.
        assert_eq!(
            Mix::Q4KM.tensor_type(AttnQ, 0, 32, true, 4160),
            GgmlType::Q5_0
        );
        assert_eq!(
            Mix::Q4KM.tensor_type(Output, 0, 32, true, 4160),
            GgmlType::Q8_0
        );
    }
}
