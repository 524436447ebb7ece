//! Embeds the HSACO code objects that `cargo xtask build-kernels` produced.
//!
//! It reads `<kernels>/<format>/<gfxNNN>.hsaco`, where `<kernels>` is `$QF_KERNELS_DIR`, else
//! `$CARGO_TARGET_DIR/kernels`, else `<workspace>/target/kernels` (the same rule as xtask), and
//! writes `$OUT_DIR/embedded_hsaco.rs`: one `include_bytes!` per file. With nothing there it
//! prints a cargo warning; the backend then only loads code objects named by the
//! `*_DEQUANT_HSACO` environment variables, and says so when one is missing.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

fn kernels_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("QF_KERNELS_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(d).join("kernels");
    }
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    manifest.join("../../target/kernels")
}

fn plain(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn sorted_dir(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

fn main() {
    println!("cargo:rerun-if-env-changed=QF_KERNELS_DIR");
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");
    println!("cargo:rerun-if-changed=build.rs");
    let dir = kernels_dir();
    let dir = dir.canonicalize().unwrap_or(dir);
    // A folder is scanned recursively for changes; a missing one makes the script run again on
    // the next build, which is what we want until build-kernels has run.
    println!("cargo:rerun-if-changed={}", dir.display());

    let mut objects = Vec::new();
    for format_dir in sorted_dir(&dir) {
        let Some(format) = format_dir.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !format_dir.is_dir() || !plain(format) {
            continue;
        }
        for file in sorted_dir(&format_dir) {
            if file.extension().and_then(|e| e.to_str()) != Some("hsaco") {
                continue;
            }
            let Some(arch) = file.file_stem().and_then(|n| n.to_str()) else {
                continue;
            };
            if !plain(arch) || !arch.starts_with("gfx") {
                println!(
                    "cargo:warning=quant-rocm: ignoring {} (not <gfxNNN>.hsaco)",
                    file.display()
                );
                continue;
            }
            println!("cargo:rerun-if-changed={}", file.display());
            objects.push((format.to_string(), arch.to_string(), file));
        }
    }
    if objects.is_empty() {
        println!(
            "cargo:warning=quant-rocm: no HSACO code objects under {}: run `cargo xtask build-kernels` \
             (or `--hip-only`) and rebuild; until then HIP kernels load only from the files that \
             each format's <FORMAT>_DEQUANT_HSACO variable names",
            dir.display()
        );
    }

    let mut code = String::new();
    let _ = writeln!(code, "/// Folder the code objects were embedded from.");
    let _ = writeln!(
        code,
        "pub(crate) const KERNELS_DIR: &str = {:?};",
        dir.display().to_string()
    );
    let _ = writeln!(code, "/// Code objects embedded at build time.");
    let _ = writeln!(
        code,
        "pub(crate) static EMBEDDED: &[crate::code_object::Embedded] = &["
    );
    for (format, arch, file) in &objects {
        let _ = writeln!(
            code,
            "    crate::code_object::Embedded {{ format: {format:?}, arch: {arch:?}, bytes: include_bytes!({:?}) }},",
            file.display().to_string()
        );
    }
    let _ = writeln!(code, "];");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::write(out.join("embedded_hsaco.rs"), code).expect("write embedded_hsaco.rs");
}
