//! Architectures and size presets, as data.

use std::fmt;
use std::str::FromStr;

/// A model architecture. Each one is a [`Shape`] per [`Size`] and a tensor list built from it;
/// only LLaMA exists so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    /// LLaMA 1/2/3, CodeLlama (`general.architecture = "llama"`).
    Llama,
}

impl Arch {
    /// Every architecture.
    pub const ALL: [Arch; 1] = [Arch::Llama];

    /// The name used on the command line and in `general.architecture`.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
        }
    }

    /// The hyper-parameters of a size preset.
    pub fn shape(self, size: Size) -> Shape {
        match self {
            Arch::Llama => llama_shape(size),
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Arch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Arch::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown architecture '{s}': expected llama"))
    }
}

/// A size preset: `test-tiny` for tests, else a parameter count as model cards write it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Size {
    /// A few hundred kB, with GQA, for tests.
    TestTiny,
    /// 1B.
    B1,
    /// 3B.
    B3,
    /// 7B.
    B7,
    /// 8B.
    B8,
    /// 13B.
    B13,
    /// 34B.
    B34,
    /// 70B.
    B70,
}

impl Size {
    /// Every preset, smallest first.
    pub const ALL: [Size; 8] = [
        Size::TestTiny,
        Size::B1,
        Size::B3,
        Size::B7,
        Size::B8,
        Size::B13,
        Size::B34,
        Size::B70,
    ];

    /// The name used on the command line (`test-tiny`, `1b`, ..., `70b`).
    pub fn name(self) -> &'static str {
        match self {
            Size::TestTiny => "test-tiny",
            Size::B1 => "1b",
            Size::B3 => "3b",
            Size::B7 => "7b",
            Size::B8 => "8b",
            Size::B13 => "13b",
            Size::B34 => "34b",
            Size::B70 => "70b",
        }
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Size::ALL
            .into_iter()
            .find(|z| z.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<_> = Size::ALL.iter().map(|z| z.name()).collect();
                format!("unknown size '{s}': expected one of {}", names.join(", "))
            })
    }
}

/// The hyper-parameters that fix a decoder-only transformer's tensors and metadata.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shape {
    /// The real model the numbers come from (`general.name` says so).
    pub source: &'static str,
    /// Hidden size (`embedding_length`).
    pub n_embd: u64,
    /// Transformer blocks (`block_count`).
    pub n_layer: u64,
    /// Attention heads.
    pub n_head: u64,
    /// Key/value heads (fewer than `n_head` with grouped-query attention).
    pub n_head_kv: u64,
    /// Feed-forward width (`feed_forward_length`).
    pub n_ff: u64,
    /// Vocabulary size (rows of `token_embd` and `output`).
    pub n_vocab: u64,
    /// Training context length.
    pub n_ctx: u64,
    /// RMS norm epsilon.
    pub rms_eps: f32,
    /// RoPE base frequency.
    pub rope_freq_base: f32,
    /// Whether the output projection reuses `token_embd` (no `output.weight` tensor).
    pub tied_embeddings: bool,
}

impl Shape {
    /// Width of one attention head.
    pub fn head_dim(&self) -> u64 {
        self.n_embd / self.n_head
    }

    /// Width of the K and V projections: `head_dim * n_head_kv`.
    pub fn n_embd_kv(&self) -> u64 {
        self.head_dim() * self.n_head_kv
    }
}

/// LLaMA presets. Sources: the models' `config.json` (hidden_size, num_hidden_layers,
/// num_attention_heads, num_key_value_heads, intermediate_size, vocab_size,
/// max_position_embeddings, rms_norm_eps, rope_theta, tie_word_embeddings).
fn llama_shape(size: Size) -> Shape {
    let s = |source, n_embd, n_layer, n_head, n_head_kv, n_ff, n_vocab, n_ctx| Shape {
        source,
        n_embd,
        n_layer,
        n_head,
        n_head_kv,
        n_ff,
        n_vocab,
        n_ctx,
        rms_eps: 1e-5,
        rope_freq_base: 10000.0,
        tied_embeddings: false,
    };
    match size {
        Size::TestTiny => s("test-tiny", 256, 2, 4, 2, 512, 512, 512),
        Size::B1 => Shape {
            rope_freq_base: 500000.0,
            tied_embeddings: true,
            ..s("Llama-3.2-1B", 2048, 16, 32, 8, 8192, 128256, 131072)
        },
        Size::B3 => Shape {
            rope_freq_base: 500000.0,
            tied_embeddings: true,
            ..s("Llama-3.2-3B", 3072, 28, 24, 8, 8192, 128256, 131072)
        },
        Size::B7 => s("Llama-2-7B", 4096, 32, 32, 32, 11008, 32000, 4096),
        Size::B8 => Shape {
            rope_freq_base: 500000.0,
            ..s("Llama-3.1-8B", 4096, 32, 32, 8, 14336, 128256, 131072)
        },
        Size::B13 => s("Llama-2-13B", 5120, 40, 40, 40, 13824, 32000, 4096),
        Size::B34 => Shape {
            rope_freq_base: 1000000.0,
            ..s("CodeLlama-34B", 8192, 48, 64, 8, 22016, 32000, 16384)
        },
        Size::B70 => s("Llama-2-70B", 8192, 80, 64, 8, 28672, 32000, 4096),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for z in Size::ALL {
            assert_eq!(z.name().parse::<Size>().unwrap(), z);
        }
        assert_eq!("LLAMA".parse::<Arch>().unwrap(), Arch::Llama);
        assert!("gpt2".parse::<Arch>().is_err());
        let e = "7B0".parse::<Size>().unwrap_err();
        assert!(e.contains("70b"), "{e}");
    }

    #[test]
    fn shapes_are_consistent() {
        for z in Size::ALL {
            let s = Arch::Llama.shape(z);
            assert_eq!(s.n_embd % s.n_head, 0, "{z}");
            assert_eq!(s.n_head % s.n_head_kv, 0, "{z}");
            // Every row (n_embd or n_ff long) can be K-quantized: no fallback arises.
            assert_eq!(s.n_embd % 256, 0, "{z}");
            assert_eq!(s.n_ff % 256, 0, "{z}");
        }
        let s = Arch::Llama.shape(Size::B70);
        assert_eq!((s.head_dim(), s.n_embd_kv()), (128, 1024));
        let s = Arch::Llama.shape(Size::B7);
        assert_eq!(s.n_embd_kv(), 4096);
    }
}
