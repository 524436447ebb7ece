//! Generation speed without the disk: streams a plan into `io::sink()`.
//!
//! `cargo run --release -p quant-synth --example throughput -- 7b q4_k_m`

use std::time::Instant;

use quant_synth::{plan, write_to, Arch, Mix, Size};
// quant-synth links no format: name them all (dev-dependencies) so that the registry, which
// makes each type's random blocks finite, holds them.
use {
    quant_float as _, quant_q1_0 as _, quant_q2_0 as _, quant_q2k as _, quant_q3k as _,
    quant_q4_0 as _, quant_q4_1 as _, quant_q4k as _, quant_q5_0 as _, quant_q5_1 as _,
    quant_q5k as _, quant_q6k as _, quant_q8_0 as _,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let size: Size = args.first().map_or("7b", |s| s).parse()?;
    let mix: Mix = args.get(1).map_or("q4_k_m", |s| s).parse()?;
    let p = plan(Arch::Llama, size, mix)?;
    let start = Instant::now();
    write_to(&p, std::io::sink(), 0, &mut |_| {}, "sink")?;
    let s = start.elapsed().as_secs_f64();
    println!(
        "{size} {mix}: {} bytes in {s:.2} s = {:.2} GB/s ({} rayon threads)",
        p.total_bytes(),
        p.total_bytes() as f64 / s / 1e9,
        rayon::current_num_threads()
    );
    Ok(())
}
