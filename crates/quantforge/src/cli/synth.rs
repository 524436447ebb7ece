//! `quantforge synth --arch llama --params 7b --mix q4_k_m -o FILE [--seed N]`: writes a
//! synthetic model (real shapes and type mix, random weights) for loader benchmarks;
//! `--arch gpt-oss --params 20b` (mix `mxfp4`) makes a gpt-oss-shaped mixture of experts.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use quant_synth::{plan, Arch, Mix, ModelPlan, Size};

/// Arguments of `synth`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Architecture: llama, or gpt-oss (a mixture of experts).
    #[arg(long, default_value = "llama")]
    arch: Arch,
    /// Size preset: test-tiny, 1b, 3b, 7b, 8b, 13b, 34b, 70b for llama; test-tiny, 20b, 120b
    /// for gpt-oss (see --list).
    #[arg(long, required_unless_present = "list")]
    params: Option<Size>,
    /// Quantization mix, llama.cpp's per-tensor types for its file type. llama: f16, q4_0,
    /// q8_0, q2_k, q3_k_m, q3_k_l, q4_k_m (default), q5_k_s, q5_k_m, q6_k, iq3_m, iq2_m,
    /// iq4_xs, iq1_m; gpt-oss: mxfp4 (default). See docs/synth.md.
    #[arg(long)]
    mix: Option<Mix>,
    /// Output file (replaced if it exists).
    #[arg(short, long, required_unless_present = "list")]
    output: Option<PathBuf>,
    /// Seed of the random weights: the same plan and seed give the same file.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print the presets (shapes, and sizes for the chosen mix) and exit.
    #[arg(long)]
    list: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let mix = a.mix.unwrap_or_else(|| a.arch.default_mix());
    if a.list {
        list(a.arch, mix)?;
        return Ok(ExitCode::SUCCESS);
    }
    let (Some(size), Some(output)) = (a.params, a.output) else {
        bail!("--params and --output are required");
    };
    let p = plan(a.arch, size, mix)?;
    let bar = if a.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(p.total_bytes())
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .expect("static template"),
    );
    let start = Instant::now();
    quant_synth::write(&p, &output, a.seed, &mut |done| bar.set_position(done))
        .with_context(|| format!("writing {}", output.display()))?;
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{}: {} {} {}: {} tensors, {} params, {} ({}), {:.1} s, {:.2} GB/s",
        output.display(),
        a.arch,
        size,
        mix,
        p.tensors.len(),
        params(p.n_params()),
        super::human_bytes(p.total_bytes()),
        histogram(&p),
        secs,
        p.total_bytes() as f64 / secs / 1e9
    );
    Ok(ExitCode::SUCCESS)
}

/// `Q4_K 193, Q6_K 33, F32 65` style.
fn histogram(p: &ModelPlan) -> String {
    let parts: Vec<String> = p
        .type_histogram()
        .into_iter()
        .map(|(ty, n)| format!("{ty} {n}"))
        .collect();
    parts.join(", ")
}

/// `6.74B` style.
fn params(n: u64) -> String {
    if n >= 1_000_000_000 {
        format!("{:.2}B", n as f64 / 1e9)
    } else {
        format!("{:.2}M", n as f64 / 1e6)
    }
}

fn list(arch: Arch, mix: Mix) -> Result<()> {
    println!(
        "{:<10} {:<14} {:>6} {:>6} {:>5} {:>5} {:>6} {:>7} {:>7} {:>5} {:>8} {:>10}  ({arch}, {mix})",
        "preset",
        "shape of",
        "embd",
        "layers",
        "heads",
        "kv",
        "ff",
        "experts",
        "vocab",
        "tied",
        "params",
        "bytes"
    );
    for &size in arch.sizes() {
        let p = plan(arch, size, mix)?;
        let s = p.shape;
        println!(
            "{:<10} {:<14} {:>6} {:>6} {:>5} {:>5} {:>6} {:>7} {:>7} {:>5} {:>8} {:>10}",
            size.name(),
            s.source,
            s.n_embd,
            s.n_layer,
            s.n_head,
            s.n_head_kv,
            s.n_ff,
            if s.n_expert == 0 {
                "-".to_owned()
            } else {
                format!("{}/{}", s.n_expert_used, s.n_expert)
            },
            s.n_vocab,
            if s.tied_embeddings { "yes" } else { "no" },
            params(p.n_params()),
            super::human_bytes(p.total_bytes())
        );
    }
    Ok(())
}
