//! Static proof of bit-exactness for every code object `build-kernels` writes.
//!
//! No AMD GPU exists here, and CI has no GPU at all, so what the machine code does is checked
//! by reading it:
//!
//! * **Fused multiply-adds.** ggml's CPU code rounds every product before it is added; a fused
//!   multiply-add rounds once and gives other bits. The kernels use explicitly rounded
//!   operations and are compiled with contraction off, and this is the proof that the compilers
//!   obeyed: every HSACO is disassembled with `llvm-objdump -d --mcpu=<arch>` (of hipcc's LLVM)
//!   and every cubin with `cuobjdump -sass`, and each instruction goes through
//!   [`amdgpu_refusal`] or [`sass_refusal`].
//! * **Float modes of AMD kernels.** Each HSACO kernel's descriptor (`<kernel>.kd`, 64 bytes in
//!   `.rodata`) carries `COMPUTE_PGM_RSRC1` at byte 48, whose `FLOAT_ROUND_MODE_32` (bits
//!   12–13), `FLOAT_ROUND_MODE_16_64` (14–15), `FLOAT_DENORM_MODE_32` (16–17) and
//!   `FLOAT_DENORM_MODE_16_64` (18–19) the hardware runs the kernel with. Both round modes must
//!   be 0 (round to nearest even) and both denormal modes 3 (flush nothing): a subnormal scale
//!   or product must keep its bits ([`descriptor_problem`]).
//! * **Flush-to-zero on NVIDIA.** A float instruction with the `.FTZ` modifier flushes
//!   subnormals; it is refused like a fused one (conversions to integer, `F2I.FTZ`, excepted:
//!   they give an integer, and integer division uses them).
//!
//! An instruction the disassembler cannot decode (`.long`, `<unknown>`) fails the check: an
//! unreadable word could be anything.

use std::path::Path;
use std::process::Command;

use crate::error::XtaskError;

/// Instructions and descriptors one code object's checks covered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checked {
    /// Machine instructions read and classified.
    pub instructions: usize,
    /// AMD kernel descriptors read (none for a cubin).
    pub descriptors: usize,
    /// Fused instructions allowed as part of LLVM's exact 24-bit integer division
    /// ([`is_integer_division_24`]).
    pub exempted: usize,
}

/// One refused instruction of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offence {
    /// The function it belongs to (`(no symbol)` before the first label).
    pub kernel: String,
    /// The instruction as the disassembler printed it.
    pub instruction: String,
    /// Why it is refused.
    pub reason: &'static str,
}

/// What a listing holds: instructions per function and the refused ones.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    /// Instructions read.
    pub instructions: usize,
    /// Functions seen, in order.
    pub functions: Vec<String>,
    /// Refused instructions, in order.
    pub offences: Vec<Offence>,
    /// Fused instructions allowed as part of LLVM's 24-bit integer division.
    pub exempted: usize,
}

impl Listing {
    fn refuse(&mut self, kernel: &str, instruction: &str, reason: &'static str) {
        self.offences.push(Offence {
            kernel: kernel.to_string(),
            instruction: instruction.to_string(),
            reason,
        });
    }
}

const NO_SYMBOL: &str = "(no symbol)";

// ---- AMD ------------------------------------------------------------------------------------

/// Encoding suffixes LLVM appends to AMDGPU mnemonics (`v_fmac_f32_e32`, `v_fma_f32_e64_dpp`).
const ENCODINGS: [&str; 7] = ["_e32", "_e64", "_sdwa", "_dpp8", "_dpp", "_vop3", "_vop3p"];

/// Whether one `_`-separated part of an AMDGPU mnemonic names a floating-point type, also
/// inside a matrix shape (`32x32x8bf16`, `16x16x4f32`, `16x16x8xf32`).
fn is_float_type(part: &str) -> bool {
    let t = part.trim_start_matches(|c: char| c.is_ascii_digit() || c == 'x');
    matches!(
        t,
        "f16" | "f32" | "f64" | "bf16" | "xf32" | "tf32" | "f8" | "fp8" | "bf8" | "f6" | "f4"
    )
}

/// Why an AMDGPU mnemonic may not appear in a bit-exact kernel, or `None` if it may.
///
/// Refused, as fused float multiply-adds (one rounding where ggml has two):
/// * every op with a part starting `fma`: `v_fma_f32`/`_f16`/`_f64`/`_legacy_f32`,
///   `v_fmac_*`, `v_fmaak_*`, `v_fmamk_*`, `v_fma_mix*`, `v_pk_fma_*`, `v_pk_fmac_f16`,
///   `v_div_fmas_*`, `s_fmac_f32`, `s_fmaak_f32`, VOPD's `v_dual_fmac_f32` (no integer op is
///   named so);
/// * `v_mad_*`, `v_mac_*`, `v_madak_*`, `v_madmk_*` on floats (`v_mad_f32`, `v_mac_f16`,
///   `v_mad_legacy_f32`, ...) and `v_mad_mix*` (these multiply-adds do not give the rounded
///   product plus the addend with denormals kept);
/// * float dot products (`v_dot2_f32_f16`, `v_dot2c_f32_f16`, `v_dot2_f32_bf16`, ...): they
///   accumulate products with fewer roundings than separate operations;
/// * float matrix ops (`v_mfma_f32_*`, `v_mfma_f64_*`, `v_smfmac_f32_*`, `v_wmma_f32_*`).
///
/// Refused as not IEEE: `v_mul_legacy_f32` (0 times anything, infinity and NaN included, is 0).
///
/// Allowed: every integer multiply-add and dot product (`v_mad_u32_u24`, `v_mad_i32_i24`,
/// `v_mad_u64_u32`, `v_mad_legacy_u16`, `v_pk_mad_u16`, `v_dot4_i32_i8`, `v_mfma_i32_*`), and
/// separately rounded float operations (`v_mul_f32`, `v_add_f32`, `v_pk_mul_f32`, ...).
pub fn amdgpu_refusal(mnemonic: &str) -> Option<&'static str> {
    let mut m = mnemonic.trim().to_ascii_lowercase();
    while let Some(e) = ENCODINGS.iter().find(|e| m.ends_with(*e)) {
        m.truncate(m.len() - e.len());
    }
    let parts: Vec<&str> = m.split('_').collect();
    let mut rest: &[&str] = match parts.split_first() {
        Some((&("v" | "s"), rest)) => rest,
        _ => return None,
    };
    // VOPD (`v_dual_fmac_f32`) and packed (`v_pk_fma_f32`) forms name the op after a prefix.
    for prefix in ["dual", "pk"] {
        if rest.first() == Some(&prefix) {
            rest = &rest[1..];
        }
    }
    let (&op, types) = rest.split_first()?;
    let float = types.iter().any(|t| is_float_type(t));
    // `fma`, `fmac`, `fmaak`, `fmamk`, `fmas` (not `mfma`, matched below with its type).
    if rest.iter().any(|p| p.starts_with("fma")) {
        return Some("fused multiply-add (one rounding where ggml rounds the product first)");
    }
    if rest.iter().any(|p| p.starts_with("mix")) {
        return Some("mixed-precision multiply-add (one rounding where ggml rounds twice)");
    }
    match op {
        "mad" | "mac" | "madak" | "madmk" if float => {
            Some("float multiply-add (not the rounded product plus the addend with denormals kept)")
        }
        _ if op.starts_with("dot") && float => {
            Some("float dot product (fused multiply-accumulate)")
        }
        "mfma" | "smfmac" | "wmma" | "swmmac" if float => {
            Some("float matrix multiply-accumulate (fused)")
        }
        "mul" if float && types.contains(&"legacy") => {
            Some("legacy multiply (0 times anything is 0: not IEEE)")
        }
        _ => None,
    }
}

/// Reads an `llvm-objdump -d` listing of an HSACO: function labels
/// (`0000000000001d00 <q8_0_to_fp32_kernel>:`) and tab-indented instructions
/// (`\tv_fmac_f32_e32 v3, v4, v2   // 000000001794: 76060504`). Every instruction is
/// classified with [`amdgpu_refusal`] (each half of a VOPD pair `a :: b` separately); an
/// undecodable word (`.long 0x...`, `<unknown>`) is refused too. A refused `v_mad_f32` or
/// `v_fma_f32` that is the remainder step of LLVM's 24-bit integer division
/// ([`is_integer_division_24`]) is counted in [`Listing::exempted`] instead.
pub fn scan_amdgpu(listing: &str) -> Listing {
    let mut out = Listing::default();
    // (function, instruction text without its `// address: encoding` comment, whole line)
    let mut code: Vec<(usize, &str, &str)> = Vec::new();
    for line in listing.lines() {
        if let Some(name) = label(line) {
            out.functions.push(name.to_string());
            continue;
        }
        if !line.starts_with('\t') {
            continue;
        }
        let text = line.split("//").next().unwrap_or("").trim();
        if !text.is_empty() {
            code.push((out.functions.len(), text, line.trim()));
        }
    }
    out.instructions = code.len();
    for (i, &(f, text, line)) in code.iter().enumerate() {
        let kernel = match f {
            0 => NO_SYMBOL.to_string(),
            f => out.functions[f - 1].clone(),
        };
        if text.starts_with('.') || text.contains("<unknown>") {
            out.refuse(
                &kernel,
                line,
                "undecodable word: the disassembler cannot read it, so it cannot be proven exact",
            );
            continue;
        }
        for half in text.split("::") {
            let mnemonic = half.split_whitespace().next().unwrap_or("");
            if let Some(reason) = amdgpu_refusal(mnemonic) {
                // The function's own instructions, this one at `at`.
                let start = code[..i]
                    .iter()
                    .rposition(|c| c.0 != f)
                    .map_or(0, |p| p + 1);
                let end = code[i..]
                    .iter()
                    .position(|c| c.0 != f)
                    .map_or(code.len(), |p| i + p);
                let body: Vec<&str> = code[start..end].iter().map(|c| c.1).collect();
                if is_integer_division_24(&body, i - start) {
                    out.exempted += 1;
                } else {
                    out.refuse(&kernel, text, reason);
                }
            }
        }
    }
    out
}

/// Splits an AMDGPU instruction into its mnemonic and operands (`v_mad_f32 v1, -v2, v3, v1`
/// gives `v_mad_f32` and `["v1", "-v2", "v3", "v1"]`).
fn amdgpu_operands(text: &str) -> (&str, Vec<&str>) {
    let text = text.trim();
    let (m, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    let ops = if rest.trim().is_empty() {
        Vec::new()
    } else {
        rest.split(',').map(str::trim).collect()
    };
    (m, ops)
}

/// A plain 32-bit register operand (`v12`, `s3`), without modifiers.
fn plain_register(op: &str) -> Option<&str> {
    let digits = op.strip_prefix('v').or_else(|| op.strip_prefix('s'))?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then_some(op)
}

/// Whether operand `op` (`v1`, `-v1`, `|v1|`, `v[0:3]`, `s[4:5]`) names register `reg` (`v1`).
fn mentions(op: &str, reg: &str) -> bool {
    let op = op.trim().trim_start_matches(['-', '!']).trim_matches('|');
    if op == reg {
        return true;
    }
    let (Some(kind), Some(n)) = (
        reg.get(..1),
        reg.get(1..).and_then(|n| n.parse::<u32>().ok()),
    ) else {
        return false;
    };
    let Some(range) = op
        .strip_prefix(kind)
        .and_then(|r| r.strip_prefix('['))
        .and_then(|r| r.strip_suffix(']'))
    else {
        return false;
    };
    match range.split_once(':') {
        Some((lo, hi)) => match (lo.parse::<u32>(), hi.parse::<u32>()) {
            (Ok(lo), Ok(hi)) => lo <= n && n <= hi,
            _ => true, // unreadable: assume it does
        },
        None => range.parse::<u32>().map_or(true, |x| x == n),
    }
}

/// How far [`is_integer_division_24`] looks before and after the fused instruction.
const DIVISION_WINDOW: usize = 12;

/// Whether instruction `at` of a function's `body` (instruction texts) is the remainder step of
/// the exact 24-bit integer division LLVM's AMDGPU backend expands `a / b` into when it has
/// proven both below 2^24 (`AMDGPUCodeGenPrepare`, `expandDivRem24`):
///
/// ```text
/// v_rcp_iflag_f32 R, B            1/b
/// v_mul_f32 ...; v_trunc_f32 Q, . q = trunc(a * (1/b))
/// v_mad_f32 D, -Q, B, A           r = a - q*b   (v_fma_f32 on gfx940 and gfx1030; -B, Q also)
/// v_cmp_ge_f32 s, |D|, B          |r| >= |b|: the integer quotient is q + 1, else q
/// ...D written again before it is read again
/// ```
///
/// The fused operation's result there is only compared with the divisor (all values are
/// integers below 2^24, exact in f32 whatever the rounding), never stored nor used in
/// arithmetic, so it cannot change a bit of the kernel's output. Required, all within
/// [`DIVISION_WINDOW`] instructions: exactly one factor negated, plain registers, the most
/// recent write of one factor a `v_trunc_f32` and the other factor the source of an earlier
/// `v_rcp_iflag_f32`; the first later reader of the result a `v_cmp_ge_f32` of its absolute
/// value against that divisor, and the next mention of the result a plain overwrite.
pub fn is_integer_division_24(body: &[&str], at: usize) -> bool {
    let Some(text) = body.get(at) else {
        return false;
    };
    let (mnemonic, ops) = amdgpu_operands(text);
    let base = mnemonic.trim_end_matches("_e64");
    if !matches!(base, "v_mad_f32" | "v_fma_f32") || ops.len() != 4 {
        return false;
    }
    let (dest, addend) = (ops[0], ops[3]);
    let (x, y) = (ops[1], ops[2]);
    let (negated, other) = match (x.strip_prefix('-'), y.strip_prefix('-')) {
        (Some(n), None) => (n, y),
        (None, Some(n)) => (n, x),
        _ => return false,
    };
    let (Some(dest), Some(negated), Some(other), Some(_)) = (
        plain_register(dest),
        plain_register(negated),
        plain_register(other),
        plain_register(addend),
    ) else {
        return false;
    };
    let before = &body[at.saturating_sub(DIVISION_WINDOW)..at];
    // The most recent write of `reg` before `at`, if within the window.
    let last_write = |reg: &str| {
        before.iter().rev().find_map(|t| {
            let (m, o) = amdgpu_operands(t);
            o.first().filter(|d| mentions(d, reg)).map(|_| m)
        })
    };
    let is_trunc = |reg: &str| last_write(reg).is_some_and(|m| m.starts_with("v_trunc_f32"));
    let (quotient, divisor) = if is_trunc(negated) {
        (negated, other)
    } else if is_trunc(other) {
        (other, negated)
    } else {
        return false;
    };
    if quotient == divisor || dest == divisor {
        return false;
    }
    let reciprocal_of_divisor = before.iter().any(|t| {
        let (m, o) = amdgpu_operands(t);
        m.starts_with("v_rcp_iflag_f32") && o.len() == 2 && o[1] == divisor
    });
    if !reciprocal_of_divisor {
        return false;
    }
    // After it: the compare, then an overwrite, and nothing else touching `dest`.
    let after = &body[at + 1..(at + 1 + DIVISION_WINDOW).min(body.len())];
    let mut compared = false;
    for t in after {
        let (m, o) = amdgpu_operands(t);
        if !o.iter().any(|op| mentions(op, dest)) {
            if m.starts_with("s_cbranch") || m.starts_with("s_branch") || m.starts_with("s_setpc") {
                return false;
            }
            continue;
        }
        if !compared {
            // `v_cmp_ge_f32_e64 s[0:1], |D|, B` (or `s0` on wave32).
            compared = m.starts_with("v_cmp_ge_f32")
                && o.len() == 3
                && o[1] == format!("|{dest}|")
                && (o[2] == divisor || o[2] == format!("|{divisor}|"));
            if !compared {
                return false;
            }
            continue;
        }
        // The next mention must write `dest` and read it nowhere.
        return o.first().is_some_and(|d| *d == dest)
            && !o[1..].iter().any(|op| mentions(op, dest));
    }
    false
}

/// The name of an `llvm-objdump` function label line: `<hex address> <name>:`.
fn label(line: &str) -> Option<&str> {
    let (addr, rest) = line.split_once(' ')?;
    if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    rest.strip_prefix('<')?.strip_suffix(">:")
}

/// Byte offset of `COMPUTE_PGM_RSRC1` in an AMDHSA kernel descriptor.
pub const RSRC1_OFFSET: usize = 48;
/// Size of an AMDHSA kernel descriptor.
pub const DESCRIPTOR_BYTES: usize = 64;

/// The float-mode fields of `COMPUTE_PGM_RSRC1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FloatMode {
    /// The whole register.
    pub rsrc1: u32,
    /// `FLOAT_ROUND_MODE_32`, bits 12–13 (0: nearest even).
    pub round_32: u32,
    /// `FLOAT_ROUND_MODE_16_64`, bits 14–15 (0: nearest even).
    pub round_16_64: u32,
    /// `FLOAT_DENORM_MODE_32`, bits 16–17 (3: flush nothing).
    pub denorm_32: u32,
    /// `FLOAT_DENORM_MODE_16_64`, bits 18–19 (3: flush nothing).
    pub denorm_16_64: u32,
}

impl FloatMode {
    /// Decodes the float-mode fields of a `COMPUTE_PGM_RSRC1` value.
    pub fn from_rsrc1(rsrc1: u32) -> Self {
        FloatMode {
            rsrc1,
            round_32: (rsrc1 >> 12) & 3,
            round_16_64: (rsrc1 >> 14) & 3,
            denorm_32: (rsrc1 >> 16) & 3,
            denorm_16_64: (rsrc1 >> 18) & 3,
        }
    }

    /// Reads them from a 64-byte kernel descriptor (`None` for any other length).
    pub fn from_descriptor(kd: &[u8]) -> Option<Self> {
        if kd.len() != DESCRIPTOR_BYTES {
            return None;
        }
        let b = kd.get(RSRC1_OFFSET..RSRC1_OFFSET + 4)?;
        Some(Self::from_rsrc1(u32::from_le_bytes(b.try_into().ok()?)))
    }
}

fn denorm_name(v: u32) -> &'static str {
    match v {
        0 => "flush source and destination",
        1 => "flush destination",
        2 => "flush source",
        _ => "flush nothing",
    }
}

fn round_name(v: u32) -> &'static str {
    match v {
        0 => "nearest even",
        1 => "+infinity",
        2 => "-infinity",
        _ => "zero",
    }
}

/// What is wrong with a kernel descriptor's float mode, or `None` if it keeps denormals and
/// rounds to nearest even for every width.
pub fn descriptor_problem(kd: &[u8]) -> Option<String> {
    let Some(m) = FloatMode::from_descriptor(kd) else {
        return Some(format!(
            "kernel descriptor is {} bytes, not {DESCRIPTOR_BYTES}",
            kd.len()
        ));
    };
    let mut bad = Vec::new();
    for (field, v) in [
        ("FLOAT_DENORM_MODE_32", m.denorm_32),
        ("FLOAT_DENORM_MODE_16_64", m.denorm_16_64),
    ] {
        if v != 3 {
            bad.push(format!(
                "{field} = {v} ({}), must be 3 (flush nothing: denormals kept)",
                denorm_name(v)
            ));
        }
    }
    for (field, v) in [
        ("FLOAT_ROUND_MODE_32", m.round_32),
        ("FLOAT_ROUND_MODE_16_64", m.round_16_64),
    ] {
        if v != 0 {
            bad.push(format!(
                "{field} = {v} (round to {}), must be 0 (nearest even)",
                round_name(v)
            ));
        }
    }
    (!bad.is_empty()).then(|| {
        format!(
            "kernel descriptor COMPUTE_PGM_RSRC1 = {:#010x}: {}",
            m.rsrc1,
            bad.join("; ")
        )
    })
}

// ---- NVIDIA ---------------------------------------------------------------------------------

/// Whether a SASS operand is the zero register (`RZ`, `-RZ`, `|RZ|`, `URZ`, `RZ.H0_H0`).
fn is_zero_register(op: &str) -> bool {
    let op = op.trim().trim_start_matches(['-', '|', '!']);
    let op = op.split('.').next().unwrap_or("").trim_end_matches('|');
    op == "RZ" || op == "URZ"
}

/// Whether a SASS operand is an immediate (`14`, `-0.5`, `0x3f800000`, `+INF`, `QNAN`).
fn is_immediate(op: &str) -> bool {
    let op = op.trim().trim_start_matches(['-', '+']);
    if let Some(hex) = op.strip_prefix("0x") {
        return !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit());
    }
    matches!(op, "INF" | "QNAN" | "SNAN" | "NAN")
        || (!op.is_empty()
            && op.starts_with(|c: char| c.is_ascii_digit())
            && op.parse::<f64>().is_ok())
}

/// Why one SASS instruction (`FFMA R9, R4, R7, R0`, `@!P0 HFMA2.MMA R2, -RZ, RZ, 14, 0`,
/// without the trailing `;`) may not appear in a bit-exact kernel, or `None` if it may.
///
/// Refused: every fused multiply-add, whatever its modifiers (`FFMA`, `FFMA32I`, `FFMA2`,
/// `HFMA2`, `HFMA2.MMA`, `HFMA232I`, `DFMA`, ...: any opcode with `FMA` in it), float
/// tensor-core ops (`HMMA`, `DMMA`, `HGMMA`, ...: opcodes ending in `MMA` other than the
/// integer `IMMA`/`BMMA` families), and the `.FTZ` modifier (flush-to-zero) on anything but a
/// conversion to integer (`F2I`).
///
/// Allowed: a fused op whose two factors are both the zero register and whose addends are
/// immediates, `HFMA2.MMA R2, -RZ, RZ, 14, 0`: ptxas's way of loading a constant (here the
/// half pair 14.0, 0.0, the bits 0x4b000000) on the tensor pipe. No product of data exists and
/// the result is the constant exactly.
pub fn sass_refusal(instruction: &str) -> Option<&'static str> {
    let mut words = instruction.trim().splitn(2, char::is_whitespace);
    let mut opcode = words.next().unwrap_or("");
    let mut operands = words.next().unwrap_or("");
    if opcode.starts_with('@') {
        let mut w = operands.trim().splitn(2, char::is_whitespace);
        opcode = w.next().unwrap_or("");
        operands = w.next().unwrap_or("");
    }
    let mut pieces = opcode.split('.');
    let base = pieces.next().unwrap_or("");
    let modifiers: Vec<&str> = pieces.collect();
    if base.contains("FMA") {
        let ops: Vec<&str> = operands.trim_end_matches(';').split(',').collect();
        let constant = ops.len() >= 4
            && is_zero_register(ops[1])
            && is_zero_register(ops[2])
            && ops[3..].iter().all(|o| is_immediate(o));
        if !constant {
            return Some("fused multiply-add (one rounding where ggml rounds the product first)");
        }
    }
    if base.ends_with("MMA") && !base.contains("IMMA") && !base.contains("BMMA") {
        return Some("float matrix multiply-accumulate (fused)");
    }
    if modifiers.contains(&"FTZ") && !base.starts_with("F2I") {
        return Some("flush-to-zero (.FTZ): subnormals lose their bits");
    }
    None
}

/// Reads a `cuobjdump -sass` listing: `Function : <name>` headers and instruction lines
/// (`/*0140*/   FFMA R9, R4, R7, R0 ;   /* 0x... */`; the second encoding line of each
/// instruction, `/* 0x... */` alone, is skipped). Every instruction goes through
/// [`sass_refusal`].
pub fn scan_sass(listing: &str) -> Listing {
    let mut out = Listing::default();
    let mut kernel = NO_SYMBOL.to_string();
    for line in listing.lines() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix("Function :") {
            kernel = name.trim().to_string();
            out.functions.push(kernel.clone());
            continue;
        }
        let Some(rest) = t.strip_prefix("/*") else {
            continue;
        };
        let Some((addr, after)) = rest.split_once("*/") else {
            continue;
        };
        let addr = addr.trim();
        if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue; // an encoding word, `/* 0x000fe20000000800 */`
        }
        let text = after.split(';').next().unwrap_or("").trim();
        if text.is_empty() {
            continue;
        }
        out.instructions += 1;
        if let Some(reason) = sass_refusal(text) {
            out.refuse(&kernel, text, reason);
        }
    }
    out
}

// ---- Running the disassemblers ---------------------------------------------------------------

/// The disassemblers the checks run.
#[derive(Clone, Copy, Debug)]
pub struct Disassemblers<'a> {
    /// `llvm-objdump` of hipcc's LLVM, for HSACO.
    pub llvm_objdump: Option<&'a Path>,
    /// `cuobjdump` (with `nvdisasm` beside it), for cubins.
    pub cuobjdump: Option<&'a Path>,
}

/// Which object is checked.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    /// Format (`q4_k`).
    pub format: &'a str,
    /// Target name (`gfx90a`, `sm_90`).
    pub target: &'a str,
    /// Source file, as the repository names it (`quant-q4k/kernel.hip`), for messages.
    pub file: &'a str,
    /// The code object on disk (a scratch file until it passes), for the disassembler.
    pub path: &'a Path,
}

impl Subject<'_> {
    fn disassembly(&self, tool: &'static str, reason: String) -> XtaskError {
        XtaskError::Disassembly {
            tool,
            format: self.format.to_string(),
            target: self.target.to_string(),
            file: self.file.to_string(),
            reason,
        }
    }

    fn not_exact(&self, kernel: &str, what: String) -> XtaskError {
        XtaskError::NotExact {
            format: self.format.to_string(),
            target: self.target.to_string(),
            kernel: kernel.to_string(),
            what,
            file: self.file.to_string(),
        }
    }
}

fn run(tool: &'static str, cmd: &mut Command, subject: &Subject<'_>) -> Result<String, XtaskError> {
    let out = cmd
        .output()
        .map_err(|e| subject.disassembly(tool, format!("cannot run it: {e}")))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        let mut reason = format!("exited with {}: {}", out.status, stderr.trim_end());
        if stderr.contains("nvdisasm") {
            reason.push_str(
                "\n(cuobjdump -sass runs nvdisasm: install nvidia-cuda-nvdisasm beside it, as \
                 .ci/install-toolchains.sh does)",
            );
        }
        return Err(subject.disassembly(tool, reason));
    }
    if stderr.contains("not a recognized processor") {
        return Err(subject.disassembly(
            tool,
            format!(
                "it does not know {} (is it older than hipcc's LLVM? set LLVM_OBJDUMP): {}",
                subject.target,
                stderr.lines().next().unwrap_or("")
            ),
        ));
    }
    Ok(stdout)
}

/// Turns a listing into the check's result: an entry point missing from the listing is a
/// disassembly error (its code was not seen), the first refused instruction a
/// [`XtaskError::NotExact`] naming its kernel.
fn judge(
    tool: &'static str,
    listing: &Listing,
    entries: &[&str],
    subject: &Subject<'_>,
) -> Result<Checked, XtaskError> {
    for e in entries {
        if !listing.functions.iter().any(|f| f == e) {
            return Err(subject.disassembly(
                tool,
                format!(
                    "entry point `{e}` is not in the listing (functions listed: {})",
                    listing.functions.join(", ")
                ),
            ));
        }
    }
    if let Some(o) = listing.offences.first() {
        let more = listing.offences.len() - 1;
        let more = if more > 0 {
            format!(" (and {more} more refused instruction(s))")
        } else {
            String::new()
        };
        return Err(subject.not_exact(
            &o.kernel,
            format!("`{}`: {}{more}", o.instruction, o.reason),
        ));
    }
    Ok(Checked {
        instructions: listing.instructions,
        descriptors: 0,
        exempted: listing.exempted,
    })
}

/// Checks an HSACO: its disassembly ([`scan_amdgpu`]) and the float mode of each entry's
/// kernel descriptor ([`descriptor_problem`]).
pub fn check_hsaco(
    objdump: &Path,
    data: &[u8],
    entries: &[&str],
    subject: &Subject<'_>,
) -> Result<Checked, XtaskError> {
    let elf = quant_gpu::code_object::Elf64::parse(data)
        .map_err(|e| subject.disassembly("llvm-objdump", format!("not an ELF file: {e}")))?;
    let mut descriptors = 0;
    for e in entries {
        let name = format!("{e}.kd");
        let kd = elf.symbol_bytes(&name).ok_or_else(|| {
            subject.not_exact(
                e,
                format!("kernel descriptor `{name}` has no bytes in the file"),
            )
        })?;
        if let Some(problem) = descriptor_problem(kd) {
            return Err(subject.not_exact(e, problem));
        }
        descriptors += 1;
    }
    let listing = run(
        "llvm-objdump",
        Command::new(objdump)
            .arg("-d")
            .arg(format!("--mcpu={}", subject.target))
            .arg(subject.path),
        subject,
    )?;
    let checked = judge("llvm-objdump", &scan_amdgpu(&listing), entries, subject)?;
    Ok(Checked {
        descriptors,
        ..checked
    })
}

/// Checks a cubin: its SASS ([`scan_sass`]).
pub fn check_cubin(
    cuobjdump: &Path,
    entries: &[&str],
    subject: &Subject<'_>,
) -> Result<Checked, XtaskError> {
    let listing = run(
        "cuobjdump",
        Command::new(cuobjdump).arg("-sass").arg(subject.path),
        subject,
    )?;
    judge("cuobjdump", &scan_sass(&listing), entries, subject)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fused_float_amdgpu_ops_are_refused() {
        for m in [
            "v_fma_f32",
            "v_fma_f16",
            "v_fma_f64",
            "v_fma_legacy_f32",
            "v_fma_mix_f32",
            "v_fma_mixlo_f16",
            "v_fma_mixhi_f16",
            "v_fmac_f32_e32",
            "v_fmac_f32_e64",
            "v_fmac_f32_dpp",
            "v_fmac_f16_e32",
            "v_fmac_legacy_f32",
            "v_fmac_f64_e32",
            "v_fmaak_f32",
            "v_fmamk_f32",
            "v_fmaak_f16",
            "v_pk_fma_f32",
            "v_pk_fma_f16",
            "v_pk_fmac_f16",
            "v_div_fmas_f32",
            "v_div_fmas_f64",
            "v_mac_f32_e32",
            "v_mac_f16_e32",
            "v_mac_legacy_f32",
            "v_mad_f32",
            "v_mad_f16",
            "v_mad_legacy_f32",
            "v_mad_legacy_f16",
            "v_mad_mix_f32",
            "v_mad_mixlo_f16",
            "v_mad_mixhi_f16",
            "v_madak_f32",
            "v_madmk_f32",
            "v_madmk_f16",
            "v_dot2_f32_f16",
            "v_dot2c_f32_f16_e32",
            "v_dot2_f32_bf16",
            "v_dot2_f16_f16",
            "v_dot2_bf16_bf16",
            "v_dot4_f32_fp8_bf8",
            "v_mfma_f32_32x32x8bf16_1k",
            "v_mfma_f32_16x16x4f32",
            "v_mfma_f32_16x16x8xf32",
            "v_mfma_f64_16x16x4f64",
            "v_mfma_f32_16x16x32_fp8_fp8",
            "v_smfmac_f32_16x16x32_f16",
            "v_wmma_f32_16x16x16_f16",
            "v_mul_legacy_f32_e32",
            "s_fmac_f32",
            "s_fmaak_f32",
            "v_dual_fmac_f32",
            "V_FMA_F32",
        ] {
            assert!(amdgpu_refusal(m).is_some(), "{m} should be refused");
        }
    }

    #[test]
    fn integer_and_separately_rounded_amdgpu_ops_are_allowed() {
        for m in [
            "v_mad_u32_u24",
            "v_mad_i32_i24",
            "v_mad_u64_u32",
            "v_mad_i64_i32",
            "v_mad_u16",
            "v_mad_i16",
            "v_mad_u32_u16",
            "v_mad_legacy_u16",
            "v_mad_legacy_i16",
            "v_pk_mad_u16",
            "v_pk_mad_i16",
            "v_dot4_i32_i8",
            "v_dot2_u32_u16",
            "v_dot8_u32_u4",
            "v_dot4c_i32_i8_e32",
            "v_mfma_i32_16x16x32_i8",
            "v_mul_f32_e32",
            "v_mul_u32_u24_e32",
            "v_mul_lo_u32",
            "v_mul_hi_u32",
            "v_add_f32_e32",
            "v_sub_f32_e32",
            "v_pk_mul_f32",
            "v_pk_add_f32",
            "v_cvt_f32_ubyte0_e32",
            "v_lshl_add_u32",
            "v_add3_u32",
            "s_mul_i32",
            "s_waitcnt",
            "global_store_dwordx4",
            "ds_read_b128",
            "",
        ] {
            assert_eq!(amdgpu_refusal(m), None, "{m} should be allowed");
        }
    }

    const AMD_LISTING: &str = "
k.hsaco:\tfile format elf64-amdgpu

Disassembly of section .text:

0000000000001700 <fused>:
\ts_load_dwordx2 s[0:1], s[4:5], 0x4                         // 000000001700: C0060002 00000004
\tv_mad_u64_u32 v[0:1], s[0:1], s0, v2, v[0:1]               // 000000001738: D1E80000 04020400
\tv_fmac_f32_e32 v3, v4, v2                                  // 000000001794: 76060504
\ts_endpgm                                                   // 0000000017A0: BF810000

0000000000001800 <other>:
\tv_mul_f32_e32 v2, v1, v2                                   // 000000001800: 0A040501
\tv_dual_mul_f32 v0, v1, v2 :: v_dual_fmac_f32 v3, v4, v5    // 000000001804: C8C40302 03040505
\t.long 0xdc5c8000                                           // 00000000180C: DC5C8000 ; Error: unknown operand encoding 127
";

    #[test]
    fn amdgpu_listing_is_read_per_function() {
        let l = scan_amdgpu(AMD_LISTING);
        assert_eq!(l.functions, vec!["fused", "other"]);
        assert_eq!(l.instructions, 7);
        let got: Vec<(&str, &str)> = l
            .offences
            .iter()
            .map(|o| {
                (
                    o.kernel.as_str(),
                    o.instruction.split_whitespace().next().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("fused", "v_fmac_f32_e32"),
                ("other", "v_dual_mul_f32"),
                ("other", ".long")
            ]
        );
        assert!(l.offences[2].reason.contains("undecodable"));
        // The offending line is kept whole, operands and all, for the message.
        assert_eq!(l.offences[0].instruction, "v_fmac_f32_e32 v3, v4, v2");
        let clean = scan_amdgpu("0000000000000000 <k>:\n\tv_add_f32_e32 v0, v1, v2\n");
        assert!(clean.offences.is_empty());
        assert_eq!(clean.instructions, 1);
    }

    /// LLVM's 24-bit division as hipcc emitted it for gfx906 (`v_mad_f32`) in a grid-stride
    /// loop's trip count.
    const DIV24_GFX906: [&str; 16] = [
        "v_cvt_f32_u32_e32 v3, s18",
        "v_mov_b32_e32 v2, s18",
        "v_cmp_gt_u32_e32 vcc, s2, v1",
        "v_max_u32_e32 v4, 0x80, v1",
        "v_addc_co_u32_e64 v1, s[0:1], v0, v2, vcc",
        "v_sub_u32_e32 v1, v4, v1",
        "v_cvt_f32_u32_e32 v1, v1",
        "v_rcp_iflag_f32_e32 v2, v3",
        "v_mul_f32_e32 v2, v1, v2",
        "v_trunc_f32_e32 v2, v2",
        "v_cvt_u32_f32_e32 v4, v2",
        "v_mad_f32 v1, -v2, v3, v1",
        "v_cmp_ge_f32_e64 s[0:1], |v1|, v3",
        "v_mov_b32_e32 v3, v0",
        "v_addc_co_u32_e64 v1, s[0:1], 0, v4, s[0:1]",
        "v_and_b32_e32 v1, 0x3fff, v1",
    ];
    /// The same for gfx1030 (`v_fma_f32`, the factors the other way round).
    const DIV24_GFX1030: [&str; 13] = [
        "v_cvt_f32_u32_e32 v2, s6",
        "v_cmp_gt_u32_e32 vcc_lo, 0x80, v1",
        "v_max_u32_e32 v3, 0x80, v1",
        "v_rcp_iflag_f32_e32 v4, v2",
        "v_add_co_ci_u32_e64 v1, s0, s6, v0, vcc_lo",
        "v_sub_nc_u32_e32 v1, v3, v1",
        "v_cvt_f32_u32_e32 v1, v1",
        "v_mul_f32_e32 v3, v1, v4",
        "v_trunc_f32_e32 v3, v3",
        "v_fma_f32 v1, -v3, v2, v1",
        "v_cvt_u32_f32_e32 v3, v3",
        "v_cmp_ge_f32_e64 s0, |v1|, v2",
        "v_add_co_ci_u32_e64 v1, s0, 0, v3, s0",
    ];

    #[test]
    fn llvm_integer_division_is_exempt() {
        assert!(is_integer_division_24(&DIV24_GFX906, 11));
        assert!(is_integer_division_24(&DIV24_GFX1030, 9));
        // Only the fused instruction itself is the idiom.
        assert!(!is_integer_division_24(&DIV24_GFX906, 10));
        assert!(!is_integer_division_24(&DIV24_GFX906, 99));
        let listing = |body: &[&str]| {
            let mut l = String::from("0000000000001000 <k>:\n");
            for t in body {
                l.push_str(&format!("\t{t}    // 000000001000: 00000000\n"));
            }
            scan_amdgpu(&l)
        };
        let l = listing(&DIV24_GFX906);
        assert_eq!((l.exempted, l.offences.len()), (1, 0), "{l:?}");
        let l = listing(&DIV24_GFX1030);
        assert_eq!((l.exempted, l.offences.len()), (1, 0), "{l:?}");
    }

    /// `DIV24_GFX906` with line `i` replaced (or removed, for `""`).
    fn edited(i: usize, with: &str) -> Vec<&str> {
        let mut b: Vec<&str> = DIV24_GFX906.to_vec();
        if with.is_empty() {
            b.remove(i);
        } else {
            b[i] = with;
        }
        b
    }

    #[test]
    fn fused_ops_outside_the_division_idiom_are_refused() {
        let at = 11;
        for (i, with, why) in [
            (11, "v_mad_f32 v1, v2, v3, v1", "no factor negated"),
            (11, "v_mad_f32 v1, -v2, -v3, v1", "both negated"),
            (11, "v_mad_f32 v1, -v2, v3, v1 mul:2", "an output modifier"),
            (11, "v_mad_f32 v1, -v2, v3, v1 clamp", "clamp"),
            (11, "v_mad_f32 v1, -v2, v3, 1.0", "a constant addend"),
            (11, "v_mad_f32 v1, -v2, v1, v1", "the divisor is the result"),
            (9, "v_mul_f32_e32 v2, v2, v2", "the factor is no truncation"),
            (10, "v_mov_b32_e32 v2, v4", "the truncation overwritten"),
            (
                10,
                "v_lshlrev_b64 v[2:3], 1, v[4:5]",
                "overwritten through a range",
            ),
            (
                7,
                "v_rcp_iflag_f32_e32 v2, v5",
                "no reciprocal of the divisor",
            ),
            (
                12,
                "v_cmp_ge_f32_e64 s[0:1], v1, v3",
                "compared without |.|",
            ),
            (
                12,
                "v_cmp_ge_f32_e64 s[0:1], |v1|, v4",
                "compared with another value",
            ),
            (
                12,
                "v_cmp_le_f32_e64 s[0:1], |v1|, v3",
                "another comparison",
            ),
            (
                12,
                "global_store_dword v[4:5], v1, off",
                "the result stored",
            ),
            (
                12,
                "v_add_f32_e32 v5, v1, v5",
                "the result used in arithmetic",
            ),
            (
                14,
                "v_add_f32_e32 v5, v1, v5",
                "the result used after the compare",
            ),
            (
                14,
                "v_addc_co_u32_e64 v1, s[0:1], v1, v4, s[0:1]",
                "read while overwritten",
            ),
            (14, "s_cbranch_execz 12", "a branch before the overwrite"),
            (14, "", "never overwritten in the window"),
        ] {
            let mut body = edited(i, with);
            if with.is_empty() {
                // Nothing later overwrites v1: pad past the window with unrelated code.
                body.truncate(14);
                body.extend(["v_mov_b32_e32 v9, v0"; 20]);
            }
            assert!(!is_integer_division_24(&body, at), "{why}: {body:?}");
        }
    }

    /// A kernel descriptor with `rsrc1` at byte 48 and other bytes set, so a misplaced read
    /// shows.
    fn descriptor(rsrc1: u32) -> [u8; 64] {
        let mut kd = [0xeeu8; 64];
        kd[RSRC1_OFFSET..RSRC1_OFFSET + 4].copy_from_slice(&rsrc1.to_le_bytes());
        kd
    }

    #[test]
    fn descriptor_float_mode_bits() {
        // What hipcc wrote for q8_0's gfx90a f32 kernel: denormals kept, nearest even.
        assert_eq!(descriptor_problem(&descriptor(0x00af_0102)), None);
        let m = FloatMode::from_descriptor(&descriptor(0x00af_0102)).unwrap();
        assert_eq!(
            (m.round_32, m.round_16_64, m.denorm_32, m.denorm_16_64),
            (0, 0, 3, 3)
        );
        // One field at a time, at its bits.
        let f = FloatMode::from_rsrc1;
        assert_eq!(f(3 << 12).round_32, 3);
        assert_eq!(f(3 << 14).round_16_64, 3);
        assert_eq!(f(3 << 16).denorm_32, 3);
        assert_eq!(f(3 << 18).denorm_16_64, 3);
        // Bits outside 12..20 change none of the fields.
        let fields = |m: FloatMode| (m.round_32, m.round_16_64, m.denorm_32, m.denorm_16_64);
        assert_eq!(fields(f(!(0xff << 12))), (0, 0, 0, 0));

        // FLOAT_DENORM_MODE_32 = 0, as -fgpu-flush-denormals-to-zero writes it.
        let p = descriptor_problem(&descriptor(0x00ac_0102)).unwrap();
        assert!(p.contains("FLOAT_DENORM_MODE_32 = 0"), "{p}");
        assert!(!p.contains("16_64"), "{p}");
        assert!(p.contains("0x00ac0102"), "{p}");
        let p = descriptor_problem(&descriptor(0x0007_0000)).unwrap();
        assert!(p.contains("FLOAT_DENORM_MODE_16_64 = 1"), "{p}");
        let p = descriptor_problem(&descriptor(0x000f_3000)).unwrap();
        assert!(p.contains("FLOAT_ROUND_MODE_32 = 3"), "{p}");
        let p = descriptor_problem(&descriptor(0x000f_4000)).unwrap();
        assert!(p.contains("FLOAT_ROUND_MODE_16_64 = 1"), "{p}");
        // Only the descriptor's own 64 bytes are a descriptor.
        let p = descriptor_problem(&descriptor(0x00af_0102)[..32]).unwrap();
        assert!(p.contains("32 bytes"), "{p}");
        assert!(descriptor_problem(&[0u8; 65]).is_some());
    }

    #[test]
    fn sass_fused_ops_and_ftz_are_refused() {
        for i in [
            "FFMA R9, R4, R7, R0",
            "@P0 FFMA R9, R4, R7, R0",
            "@!PT FFMA.RZ R9, R4, R7, R0",
            "FFMA.FTZ R9, R4.reuse, R7, R0",
            "FFMA32I R2, R2, 1.5, R3",
            "FFMA2 R2, R4, R6, R8",
            "HFMA2 R2, R4.H0_H0, R5, -RZ",
            "HFMA2.MMA R2, R4, R5, R6",
            "HFMA2.MMA R2, R3, RZ, 14, 0",
            "HFMA2.MMA R2, -RZ, RZ, R5",
            "HFMA2.BF16_V2 R2, R4, R5, R6",
            "DFMA R2, R4, R6, R8",
            "HMMA.16816.F32 R4, R8, R12, R4",
            "DMMA.8x8x4 R0, R2, R4, R0",
            "HGMMA.64x64x16.F32 R24, gdesc[UR4], R24",
            "FMUL.FTZ R0, R4, R7",
            "FADD.FTZ R9, R0, R9",
            "F2F.FTZ.F16.F32 R0, R1",
            "FSETP.GT.FTZ.AND P0, PT, R0, RZ, PT",
        ] {
            assert!(sass_refusal(i).is_some(), "{i} should be refused");
        }
    }

    #[test]
    fn sass_constant_loads_and_integer_ops_are_allowed() {
        for i in [
            // ptxas's constant load: -0 * 0 + (14.0, 0.0) is the bits 0x4b000000.
            "HFMA2.MMA R2, -RZ, RZ, 14, 0",
            "HFMA2.MMA R5, -RZ, RZ, 0.5, -1.5",
            "HFMA2 R5, -RZ, RZ, 0x3c00, 0",
            "FFMA R0, RZ, RZ, 0x3f800000",
            "FMUL R0, R4, R7",
            "FADD R9, R0, R9",
            "HADD2.F32 R7, -RZ, R5.H0_H0",
            "IMAD R0, R1, R2, R3",
            "IMAD.WIDE.U32 R2, R3, 0x4, R4",
            "IMAD.MOV.U32 R10, RZ, RZ, RZ",
            "IMMA.16816.S8.S8 R0, R2, R4, R0",
            "F2I.FTZ.U32.TRUNC.NTZ R3, R2",
            "I2F.U16 R5, R5",
            "F2FP.BF16.F32.PACK_AB R0, R1, R2",
            "EXIT",
            "",
        ] {
            assert_eq!(sass_refusal(i), None, "{i} should be allowed");
        }
    }

    const SASS_LISTING: &str = "
\tcode for sm_80
\t\tFunction : fused
\t.headerflags\t@\"EF_CUDA_SM80 EF_CUDA_VIRTUAL_SM(EF_CUDA_SM80)\"
        /*0000*/                   MOV R1, c[0x0][0x28] ;                    /* 0x00000a0000017a02 */
                                                                            /* 0x000fe40000000f00 */
        /*07c0*/                   HFMA2.MMA R2, -RZ, RZ, 14, 0 ;           /* 0x4b000000ff027435 */
                                                                            /* 0x000fe200000001ff */
        /*0140*/                   FFMA R9, R4, R7, R0 ;                    /* 0x0000000704097223 */
                                                                            /* 0x004fca0000000000 */
        /*0150*/                   EXIT ;                                   /* 0x000000000000794d */
\t\t..........

\t\tFunction : ftz
        /*0140*/              @!P0 FMUL.FTZ R0, R4, R7 ;                    /* 0x0000000704007220 */
        /*0150*/                   BRA 0x150;                               /* 0xfffffff000007947 */
";

    #[test]
    fn sass_listing_is_read_per_function() {
        let l = scan_sass(SASS_LISTING);
        assert_eq!(l.functions, vec!["fused", "ftz"]);
        assert_eq!(l.instructions, 6);
        let got: Vec<(&str, &str)> = l
            .offences
            .iter()
            .map(|o| (o.kernel.as_str(), o.instruction.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("fused", "FFMA R9, R4, R7, R0"),
                ("ftz", "@!P0 FMUL.FTZ R0, R4, R7")
            ]
        );
        assert!(l.offences[1].reason.contains("FTZ"));
    }

    #[test]
    fn judging_names_the_kernel_and_instruction_and_requires_every_entry() {
        let subject = Subject {
            format: "tst",
            target: "sm_80",
            file: "quant-tst/kernel.hip",
            path: Path::new("/x/sm_80.cubin"),
        };
        let l = scan_sass(SASS_LISTING);
        let err = judge("cuobjdump", &l, &["fused", "ftz"], &subject).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, XtaskError::NotExact { .. }), "{msg}");
        for want in [
            "tst for sm_80",
            "`fused`",
            "`FFMA R9, R4, R7, R0`",
            "1 more",
            "quant-tst/kernel.hip",
        ] {
            assert!(msg.contains(want), "{want:?} not in {msg}");
        }
        let err = judge("cuobjdump", &l, &["fused", "absent"], &subject).unwrap_err();
        assert!(matches!(err, XtaskError::Disassembly { .. }), "{err}");
        assert!(err.to_string().contains("`absent`"), "{err}");
        let clean = scan_sass("Function : k\n /*0000*/ EXIT ;\n");
        let checked = judge("cuobjdump", &clean, &["k"], &subject).unwrap();
        assert_eq!((checked.instructions, checked.exempted), (1, 0));
    }

    /// An executable shell script `name` in `dir`.
    fn script(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn failing_disassemblers_are_errors_that_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let subject = Subject {
            format: "tst",
            target: "gfx940",
            file: "quant-tst/kernel.hip",
            path: Path::new("/x/k.o"),
        };
        // cuobjdump without nvdisasm beside it.
        let cuobjdump = script(
            dir.path(),
            "cuobjdump",
            "echo \"cuobjdump fatal   : Could not find executable file 'nvdisasm'\" >&2; exit 1",
        );
        let err = check_cubin(&cuobjdump, &["k"], &subject).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, XtaskError::Disassembly { .. }), "{msg}");
        assert!(msg.contains("nvidia-cuda-nvdisasm"), "{msg}");
        assert!(
            msg.contains("tst") && msg.contains("quant-tst/kernel.hip"),
            "{msg}"
        );
        // An llvm-objdump that does not know the architecture (exit status 0).
        let objdump = script(
            dir.path(),
            "llvm-objdump",
            "echo \"'gfx940' is not a recognized processor for this target\" >&2; echo '0 <k>:'",
        );
        let err = run("llvm-objdump", &mut Command::new(&objdump), &subject).unwrap_err();
        assert!(err.to_string().contains("LLVM_OBJDUMP"), "{err}");
        // One that cannot be started.
        let err = check_cubin(&dir.path().join("absent"), &["k"], &subject).unwrap_err();
        assert!(err.to_string().contains("cannot run"), "{err}");
    }
}
