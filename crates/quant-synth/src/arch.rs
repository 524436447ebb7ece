//! Architectures and size presets, as data.

use std::fmt;
use std::str::FromStr;

use crate::mix::{Mix, ModelFacts};

/// [`Mix::ALL`] as a static, to hand out slices of it.
static ALL_MIXES: [Mix; Mix::ALL.len()] = Mix::ALL;

/// A model architecture. Each one is a [`Shape`] per [`Size`] it has, a tensor list built from
/// the shape, and the [`Mix`]es it can be planned with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    /// LLaMA 1/2/3, CodeLlama (`general.architecture = "llama"`): dense, every mix but `mxfp4`.
    Llama,
    /// OpenAI's gpt-oss (`general.architecture = "gpt-oss"`, llama.cpp's `LLM_ARCH_OPENAI_MOE`):
    /// a mixture of experts with attention sinks and biases, in the `mxfp4` mix only (MXFP4
    /// experts, Q8_0 attention and embeddings, F32 the rest, as the released GGUF files).
    GptOss,
}

impl Arch {
    /// Every architecture.
    pub const ALL: [Arch; 2] = [Arch::Llama, Arch::GptOss];

    /// The name used on the command line and in `general.architecture`.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::GptOss => "gpt-oss",
        }
    }

    /// The size presets of the architecture, smallest first.
    pub fn sizes(self) -> &'static [Size] {
        match self {
            Arch::Llama => &[
                Size::TestTiny,
                Size::B1,
                Size::B3,
                Size::B7,
                Size::B8,
                Size::B13,
                Size::B34,
                Size::B70,
            ],
            Arch::GptOss => &[Size::TestTiny, Size::B20, Size::B120],
        }
    }

    /// The mixes the architecture can be planned with, in `llama_ftype` order. A llama has no
    /// expert tensors for `mxfp4` to quantize; gpt-oss is offered as its released files are.
    pub fn mixes(self) -> &'static [Mix] {
        match self {
            // Every mix but the last, mxfp4.
            Arch::Llama => &ALL_MIXES[..ALL_MIXES.len() - 1],
            Arch::GptOss => &[Mix::MXFP4],
        }
    }

    /// The mix used when none is asked for: `q4_k_m` for llama, `mxfp4` for gpt-oss.
    pub fn default_mix(self) -> Mix {
        match self {
            Arch::Llama => Mix::Q4KM,
            Arch::GptOss => Mix::MXFP4,
        }
    }

    /// The hyper-parameters of a size preset, or `None` if the architecture has no such preset
    /// (see [`Arch::sizes`]).
    pub fn shape(self, size: Size) -> Option<Shape> {
        if !self.sizes().contains(&size) {
            return None;
        }
        Some(match self {
            Arch::Llama => llama_shape(size),
            Arch::GptOss => gpt_oss_shape(size),
        })
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
            .ok_or_else(|| format!("unknown architecture '{s}': expected llama or gpt-oss"))
    }
}

/// A size preset: `test-tiny` for tests, else a parameter count as model cards write it. Each
/// architecture has some of them ([`Arch::sizes`]).
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
    /// 20B (gpt-oss-20b).
    B20,
    /// 34B.
    B34,
    /// 70B.
    B70,
    /// 120B (gpt-oss-120b).
    B120,
}

impl Size {
    /// Every preset of every architecture, smallest first ([`Arch::sizes`] has those of one).
    pub const ALL: [Size; 10] = [
        Size::TestTiny,
        Size::B1,
        Size::B3,
        Size::B7,
        Size::B8,
        Size::B13,
        Size::B20,
        Size::B34,
        Size::B70,
        Size::B120,
    ];

    /// The name used on the command line (`test-tiny`, `1b`, ..., `120b`).
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
            Size::B20 => "20b",
            Size::B120 => "120b",
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
    /// Width of one attention head: `n_embd / n_head` for llama; gpt-oss's 64 heads of 64 span
    /// 4096, not its `n_embd` of 2880.
    pub n_embd_head: u64,
    /// Feed-forward width (`feed_forward_length`); for a mixture of experts, that of one expert
    /// (`expert_feed_forward_length`).
    pub n_ff: u64,
    /// Experts per layer (0: a dense feed-forward network).
    pub n_expert: u64,
    /// Experts used per token (0 when dense).
    pub n_expert_used: u64,
    /// Sliding-window attention width of the layers that have it (0: none).
    pub sliding_window: u64,
    /// YaRN RoPE scaling factor (0: no RoPE scaling).
    pub yarn_factor: f32,
    /// The context length YaRN scales from (`rope.scaling.original_context_length`; 0 without
    /// scaling).
    pub yarn_original_ctx: u64,
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
    /// The facts of the shape that llama.cpp's type rules look at. Only the dense llama's
    /// rules use them all; a gpt-oss plan takes the `mxfp4` mix, whose rules look at
    /// `has_output` only.
    pub(crate) fn facts(&self) -> ModelFacts {
        ModelFacts {
            n_layer: self.n_layer,
            n_gqa: self.n_head / self.n_head_kv,
            // llama.cpp's llama hparams: 80 layers are LLM_TYPE_65B without GQA, else 70B.
            is_70b: self.n_expert == 0 && self.n_layer == 80 && self.n_head != self.n_head_kv,
            has_output: !self.tied_embeddings,
        }
    }

    /// Width of one attention head ([`Shape::n_embd_head`]).
    pub fn head_dim(&self) -> u64 {
        self.n_embd_head
    }

    /// Width of the query projection and of the attention output's input: `head_dim * n_head`
    /// (`n_embd` for llama).
    pub fn n_embd_q(&self) -> u64 {
        self.head_dim() * self.n_head
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
        n_embd_head: n_embd / n_head,
        n_ff,
        n_expert: 0,
        n_expert_used: 0,
        sliding_window: 0,
        yarn_factor: 0.0,
        yarn_original_ctx: 0,
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
        _ => unreachable!("{size} is not a llama preset (Arch::shape checks)"),
    }
}

/// gpt-oss presets. Source: the models' `config.json` (hidden_size 2880, head_dim 64,
/// num_attention_heads 64, num_key_value_heads 8, intermediate_size 2880, num_local_experts,
/// experts_per_token 4, vocab_size 201088, sliding_window 128, rope_theta 150000, YaRN factor 32
/// from 4096, max_position_embeddings 131072, rms_norm_eps 1e-5, untied embeddings), which the
/// released GGUF's `gpt-oss.*` keys repeat. `test-tiny` keeps the traits that matter to a
/// loader: rows a multiple of 32 but not of 256, `n_head * head_dim != n_embd`, several experts.
fn gpt_oss_shape(size: Size) -> Shape {
    let s = |source, n_embd, n_layer, n_head, n_head_kv, n_ff, n_expert, n_vocab| Shape {
        source,
        n_embd,
        n_layer,
        n_head,
        n_head_kv,
        n_embd_head: 64,
        n_ff,
        n_expert,
        n_expert_used: 4,
        sliding_window: 128,
        yarn_factor: 32.0,
        yarn_original_ctx: 4096,
        n_vocab,
        n_ctx: 131072,
        rms_eps: 1e-5,
        rope_freq_base: 150000.0,
        tied_embeddings: false,
    };
    match size {
        Size::TestTiny => Shape {
            n_expert_used: 2,
            n_ctx: 4096,
            ..s("test-tiny", 160, 2, 4, 2, 160, 4, 512)
        },
        Size::B20 => s("gpt-oss-20b", 2880, 24, 64, 8, 2880, 32, 201088),
        Size::B120 => s("gpt-oss-120b", 2880, 36, 64, 8, 2880, 128, 201088),
        _ => unreachable!("{size} is not a gpt-oss preset (Arch::shape checks)"),
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
        assert_eq!("gpt-oss".parse::<Arch>().unwrap(), Arch::GptOss);
        let e = "gpt2".parse::<Arch>().unwrap_err();
        assert!(e.contains("gpt-oss"), "{e}");
        let e = "7B0".parse::<Size>().unwrap_err();
        assert!(e.contains("70b") && e.contains("120b"), "{e}");
    }

    #[test]
    fn presets_and_mixes_per_arch() {
        // Every size belongs to some architecture; the lists are in Size order (smallest first).
        assert!(Size::ALL.windows(2).all(|w| w[0] < w[1]));
        for z in Size::ALL {
            assert!(Arch::ALL.iter().any(|a| a.sizes().contains(&z)), "{z}");
        }
        for a in Arch::ALL {
            assert!(a.sizes().windows(2).all(|w| w[0] < w[1]), "{a}");
            assert!(a.mixes().contains(&a.default_mix()), "{a}");
            for &z in Size::ALL.iter() {
                assert_eq!(a.shape(z).is_some(), a.sizes().contains(&z), "{a} {z}");
            }
        }
        assert!(Arch::Llama.shape(Size::B20).is_none());
        assert!(Arch::GptOss.shape(Size::B7).is_none());
        assert_eq!(Arch::Llama.mixes().len(), Mix::ALL.len() - 1);
        assert!(!Arch::Llama.mixes().contains(&Mix::MXFP4));
        assert_eq!(Arch::GptOss.mixes(), [Mix::MXFP4]);
    }

    #[test]
    fn shapes_are_consistent() {
        for a in Arch::ALL {
            for &z in a.sizes() {
                let s = a.shape(z).unwrap();
                assert_eq!(s.n_head % s.n_head_kv, 0, "{a} {z}");
                // Every row holds whole 32-element blocks (Q8_0, MXFP4).
                for row in [s.n_embd, s.n_ff, s.n_embd_q()] {
                    assert_eq!(row % 32, 0, "{a} {z}");
                }
                assert_eq!(s.n_expert == 0, s.n_expert_used == 0, "{a} {z}");
                assert!(s.n_expert_used <= s.n_expert, "{a} {z}");
            }
        }
        for &z in Arch::Llama.sizes() {
            let s = Arch::Llama.shape(z).unwrap();
            assert_eq!(s.n_embd % s.n_head, 0, "{z}");
            assert_eq!(s.n_embd_q(), s.n_embd, "{z}");
            // Every row (n_embd or n_ff long) can be K-quantized: no fallback arises.
            assert_eq!(s.n_embd % 256, 0, "{z}");
            assert_eq!(s.n_ff % 256, 0, "{z}");
        }
        let s = Arch::Llama.shape(Size::B70).unwrap();
        assert_eq!((s.head_dim(), s.n_embd_kv()), (128, 1024));
        let s = Arch::Llama.shape(Size::B7).unwrap();
        assert_eq!(s.n_embd_kv(), 4096);
        // gpt-oss-20b: 64 heads of 64 (4096 wide) over a 2880-wide stream, 8 KV heads.
        let s = Arch::GptOss.shape(Size::B20).unwrap();
        assert_eq!((s.n_embd, s.n_embd_q(), s.n_embd_kv()), (2880, 4096, 512));
        assert_eq!((s.n_layer, s.n_expert, s.n_expert_used), (24, 32, 4));
        assert_eq!((s.n_ff, s.n_vocab), (2880, 201088));
        assert_ne!(s.n_embd % 256, 0);
        let s = Arch::GptOss.shape(Size::B120).unwrap();
        assert_eq!((s.n_layer, s.n_expert), (36, 128));
        let s = Arch::GptOss.shape(Size::TestTiny).unwrap();
        assert_ne!(s.n_embd_q(), s.n_embd);
        assert_ne!(s.n_embd % 256, 0);
    }
}
