//! A bounds-checked reader of GPU code objects (little-endian ELF64): NVIDIA cubins and AMD
//! HSACO files.
//!
//! [`Elf64::parse`] checks the file header, every program header and section header and the
//! bytes each segment and section claims (except `SHT_NOBITS`), and every symbol table's entry
//! size and string table, with checked arithmetic, before anything is read from them. A driver
//! trusts these offsets, so a truncated or damaged file must be refused before it is handed
//! over. Hostile bytes give an [`ElfError`], never a panic (a proptest feeds it random and
//! mutated files).
//!
//! Used by `quant-cuda` (cubins before `cuModuleLoadData`, and their `sm_XX` against the
//! device's), `quant-rocm` (HSACO before `hipModuleLoadData`, and their `gfx` architecture) and
//! `xtask` (every object `build-kernels` writes, and its entry points).

/// `e_machine` of NVIDIA cubins.
pub const EM_CUDA: u16 = 190;
/// `e_machine` of AMD GPU code objects (HSACO).
pub const EM_AMDGPU: u16 = 224;

/// `EF_AMDGPU_MACH` values (the low byte of `e_flags`) of the architectures quantforge builds
/// HSACO for.
pub const AMDGPU_MACH: [(&str, u32); 5] = [
    ("gfx906", 0x2f),
    ("gfx908", 0x30),
    ("gfx90a", 0x3f),
    ("gfx940", 0x40),
    ("gfx1030", 0x36),
];

/// The `gfx` architecture of an AMDGPU ELF's `e_flags` (its `EF_AMDGPU_MACH` byte), if it is
/// one quantforge builds for.
pub fn amdgpu_arch(flags: u32) -> Option<&'static str> {
    let mach = flags & 0xff;
    AMDGPU_MACH
        .iter()
        .find(|(_, m)| *m == mach)
        .map(|(a, _)| *a)
}

/// `EF_AMDGPU_MACH` of a `gfx` architecture quantforge builds for.
pub fn amdgpu_mach(arch: &str) -> Option<u32> {
    AMDGPU_MACH
        .iter()
        .find(|(a, _)| *a == arch)
        .map(|&(_, m)| m)
}

/// SM version a cubin was built for (80 for `sm_80`), from `EI_ABIVERSION` and `e_flags`.
/// ABI version 8 (CUDA 12.8 on) keeps it in bits 8..16 of `e_flags`; older cubins keep it in
/// the low byte (`EF_CUDA_SM`).
pub fn cubin_sm(abi_version: u8, flags: u32) -> u32 {
    if abi_version >= 8 {
        (flags >> 8) & 0xff
    } else {
        flags & 0xff
    }
}

/// Why bytes are not a usable ELF64 code object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElfError {
    /// No ELF magic, or fewer bytes than the 64-byte ELF64 header.
    #[error("not an ELF file ({len} bytes, starts with {start:02x?})")]
    NotElf {
        /// Bytes given.
        len: usize,
        /// Their first bytes (up to 8).
        start: Vec<u8>,
    },
    /// An ELF file, but not 64-bit little-endian.
    #[error("not a 64-bit little-endian ELF file (class {class}, data {data})")]
    NotElf64Le {
        /// `EI_CLASS` (2 is 64-bit).
        class: u8,
        /// `EI_DATA` (1 is little-endian).
        data: u8,
    },
    /// A table entry size is smaller than the ELF64 structure it holds.
    #[error("{what} entry size {size} is smaller than {min}")]
    EntrySize {
        /// Which table.
        what: &'static str,
        /// Declared entry size.
        size: u64,
        /// Smallest valid size.
        min: u64,
    },
    /// Something the file declares lies (partly) past its end.
    #[error("{what} at {offset}+{size} lies past the end: truncated ELF file ({len} bytes)")]
    Truncated {
        /// What it is (`"section 3"`).
        what: String,
        /// Its offset.
        offset: u64,
        /// Its size.
        size: u64,
        /// File length.
        len: usize,
    },
    /// A symbol table names a string table that does not exist.
    #[error("symbol table in section {section} links to section {link}, of {count}")]
    BadLink {
        /// The symbol table's section index.
        section: usize,
        /// Its `sh_link`.
        link: u32,
        /// Sections in the file.
        count: usize,
    },
}

const SHT_SYMTAB: u32 = 2;
const SHT_NOBITS: u32 = 8;
const SHT_DYNSYM: u32 = 11;
const STT_FUNC: u8 = 2;
const SHN_UNDEF: u16 = 0;
const EHDR_SIZE: u64 = 64;
const PHDR_SIZE: u64 = 56;
const SHDR_SIZE: u64 = 64;
const SYM_SIZE: u64 = 24;

fn u16_at(b: &[u8], at: u64) -> Option<u16> {
    let at = usize::try_from(at).ok()?;
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}
fn u32_at(b: &[u8], at: u64) -> Option<u32> {
    let at = usize::try_from(at).ok()?;
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}
fn u64_at(b: &[u8], at: u64) -> Option<u64> {
    let at = usize::try_from(at).ok()?;
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// One section header, as far as the reader needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Section {
    kind: u32,
    addr: u64,
    offset: u64,
    size: u64,
    link: u32,
    entsize: u64,
}

/// One symbol of a symbol table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Symbol<'a> {
    /// Its name (bytes up to the NUL in the string table; empty if the name offset is bad).
    pub name: &'a [u8],
    /// `STT_*` type (low 4 bits of `st_info`): 2 is a function, 1 an object.
    pub kind: u8,
    /// `STB_*` binding (high 4 bits of `st_info`).
    pub binding: u8,
    /// Section index; 0 (`SHN_UNDEF`) for an undefined symbol.
    pub section: u16,
    /// `st_value`: its address (in a relocatable file, its offset in its section).
    pub value: u64,
    /// `st_size`: its size in bytes.
    pub size: u64,
}

impl Symbol<'_> {
    /// Whether the file defines it (its section index is not `SHN_UNDEF`).
    pub fn is_defined(&self) -> bool {
        self.section != SHN_UNDEF
    }
    /// Whether it is a function (`STT_FUNC`): a kernel entry point in a cubin or an HSACO.
    pub fn is_function(&self) -> bool {
        self.kind == STT_FUNC
    }
}

/// A parsed, checked little-endian ELF64 file.
#[derive(Clone, Debug)]
pub struct Elf64<'a> {
    data: &'a [u8],
    abi_version: u8,
    machine: u16,
    flags: u32,
    sections: Vec<Section>,
}

impl<'a> Elf64<'a> {
    /// Parses and checks `data` (see the [module docs](self)).
    pub fn parse(data: &'a [u8]) -> Result<Self, ElfError> {
        let len = data.len();
        if (len as u64) < EHDR_SIZE || !data.starts_with(b"\x7fELF") {
            return Err(ElfError::NotElf {
                len,
                start: data.iter().take(8).copied().collect(),
            });
        }
        // 64 bytes are present: every header field below can be read.
        let (class, endian) = (data[4], data[5]);
        if class != 2 || endian != 1 {
            return Err(ElfError::NotElf64Le {
                class,
                data: endian,
            });
        }
        let abi_version = data[8];
        let field16 = |at| u16_at(data, at).unwrap_or(0);
        let field64 = |at| u64_at(data, at).unwrap_or(0);
        let machine = field16(18);
        let flags = u32_at(data, 48).unwrap_or(0);
        let (phoff, shoff) = (field64(32), field64(40));
        let (phentsize, phnum) = (u64::from(field16(54)), u64::from(field16(56)));
        let (shentsize, shnum) = (u64::from(field16(58)), u64::from(field16(60)));

        let within = |what: String, offset: u64, size: u64| {
            if offset
                .checked_add(size)
                .is_some_and(|end| end <= len as u64)
            {
                Ok(())
            } else {
                Err(ElfError::Truncated {
                    what,
                    offset,
                    size,
                    len,
                })
            }
        };
        let table = |what: &'static str, off: u64, entsize: u64, num: u64, min: u64| {
            if num == 0 {
                return Ok(());
            }
            if entsize < min {
                return Err(ElfError::EntrySize {
                    what,
                    size: entsize,
                    min,
                });
            }
            // Both factors are below 2^16: no overflow.
            within(format!("{what} table"), off, entsize * num)
        };
        table("program header", phoff, phentsize, phnum, PHDR_SIZE)?;
        table("section header", shoff, shentsize, shnum, SHDR_SIZE)?;

        for i in 0..phnum {
            // Inside the table checked above: offsets cannot overflow.
            let h = phoff + i * phentsize;
            let (offset, size) = (field64(h + 8), field64(h + 32));
            within(format!("segment {i}"), offset, size)?;
        }
        let mut sections = Vec::with_capacity(shnum as usize);
        for i in 0..shnum {
            let h = shoff + i * shentsize;
            let s = Section {
                kind: u32_at(data, h + 4).unwrap_or(0),
                addr: field64(h + 16),
                offset: field64(h + 24),
                size: field64(h + 32),
                link: u32_at(data, h + 40).unwrap_or(0),
                entsize: field64(h + 56),
            };
            if s.kind != SHT_NOBITS {
                within(format!("section {i}"), s.offset, s.size)?;
            }
            sections.push(s);
        }
        for (i, s) in sections.iter().enumerate() {
            if s.kind != SHT_SYMTAB && s.kind != SHT_DYNSYM {
                continue;
            }
            if s.size > 0 && s.entsize < SYM_SIZE {
                return Err(ElfError::EntrySize {
                    what: "symbol table",
                    size: s.entsize,
                    min: SYM_SIZE,
                });
            }
            let linked = usize::try_from(s.link)
                .ok()
                .and_then(|l| sections.get(l))
                .filter(|l| l.kind != SHT_NOBITS);
            if linked.is_none() {
                return Err(ElfError::BadLink {
                    section: i,
                    link: s.link,
                    count: sections.len(),
                });
            }
        }
        Ok(Elf64 {
            data,
            abi_version,
            machine,
            flags,
            sections,
        })
    }

    /// `e_machine`: [`EM_CUDA`], [`EM_AMDGPU`], or another machine.
    pub fn machine(&self) -> u16 {
        self.machine
    }

    /// `e_flags`: the SM version of a cubin ([`cubin_sm`]), the `EF_AMDGPU_MACH` of an HSACO
    /// ([`amdgpu_arch`]).
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// `EI_ABIVERSION` (byte 8 of the identification).
    pub fn abi_version(&self) -> u8 {
        self.abi_version
    }

    /// The SM version, if this is a cubin.
    pub fn cuda_sm(&self) -> Option<u32> {
        (self.machine == EM_CUDA).then(|| cubin_sm(self.abi_version, self.flags))
    }

    /// The `gfx` architecture, if this is an HSACO for one quantforge builds for.
    pub fn amdgpu_arch(&self) -> Option<&'static str> {
        (self.machine == EM_AMDGPU)
            .then(|| amdgpu_arch(self.flags))
            .flatten()
    }

    /// Every symbol of every symbol table (`.symtab` and `.dynsym`), in file order. Checked
    /// at parse time; a name offset past its string table gives an empty name.
    pub fn symbols(&self) -> impl Iterator<Item = Symbol<'a>> + '_ {
        let data = self.data;
        self.sections
            .iter()
            .filter(|s| s.kind == SHT_SYMTAB || s.kind == SHT_DYNSYM)
            .flat_map(move |s| {
                let strtab = self
                    .sections
                    .get(s.link as usize)
                    .and_then(|t| section_bytes(data, t))
                    .unwrap_or(&[]);
                let count = s.size.checked_div(s.entsize).unwrap_or(0);
                (0..count).filter_map(move |i| {
                    let at = s.offset.checked_add(i.checked_mul(s.entsize)?)?;
                    let name_off = u32_at(data, at)?;
                    let info = *data.get(usize::try_from(at.checked_add(4)?).ok()?)?;
                    let section = u16_at(data, at.checked_add(6)?)?;
                    let value = u64_at(data, at.checked_add(8)?)?;
                    let size = u64_at(data, at.checked_add(16)?)?;
                    let name = strtab
                        .get(name_off as usize..)
                        .map(|t| t.split(|&b| b == 0).next().unwrap_or(&[]))
                        .unwrap_or(&[]);
                    Some(Symbol {
                        name,
                        kind: info & 0xf,
                        binding: info >> 4,
                        section,
                        value,
                        size,
                    })
                })
            })
    }

    /// Whether a symbol called `name` is defined (of any type).
    pub fn defines(&self, name: &str) -> bool {
        self.symbols()
            .any(|s| s.is_defined() && s.name == name.as_bytes())
    }

    /// Whether a function symbol called `name` is defined: a kernel entry point.
    pub fn has_function(&self, name: &str) -> bool {
        self.symbols()
            .any(|s| s.is_defined() && s.is_function() && s.name == name.as_bytes())
    }

    /// The `st_size` bytes a defined symbol called `name` labels (an HSACO's 64-byte `.kd`
    /// kernel descriptor): found through its section, whose address maps `st_value` to a file
    /// offset. `None` if no such symbol is defined in a section with file bytes, or its bytes
    /// do not lie wholly inside that section.
    pub fn symbol_bytes(&self, name: &str) -> Option<&'a [u8]> {
        let data = self.data;
        self.symbols()
            .filter(|s| s.is_defined() && s.name == name.as_bytes())
            .find_map(|s| {
                let sec = self.sections.get(usize::from(s.section))?;
                let bytes = section_bytes(data, sec)?;
                let start = usize::try_from(s.value.checked_sub(sec.addr)?).ok()?;
                let end = start.checked_add(usize::try_from(s.size).ok()?)?;
                bytes.get(start..end)
            })
    }

    /// Names of the defined functions, for diagnostics.
    pub fn function_names(&self) -> Vec<String> {
        self.symbols()
            .filter(|s| s.is_defined() && s.is_function() && !s.name.is_empty())
            .map(|s| String::from_utf8_lossy(s.name).into_owned())
            .collect()
    }
}

/// The bytes of a section (checked at parse time; `None` for `SHT_NOBITS`).
fn section_bytes<'a>(data: &'a [u8], s: &Section) -> Option<&'a [u8]> {
    if s.kind == SHT_NOBITS {
        return None;
    }
    let start = usize::try_from(s.offset).ok()?;
    let end = start.checked_add(usize::try_from(s.size).ok()?)?;
    data.get(start..end)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A small well-formed ELF64 image: one segment, a `.symtab` with `symbols` (name, type,
    /// defined) and its `.strtab`.
    pub(crate) fn build_elf(machine: u16, flags: u32, symbols: &[(&str, u8, bool)]) -> Vec<u8> {
        // Layout: header (64) | strtab | symtab | segment bytes (16) | 4 section headers.
        let mut strtab = vec![0u8];
        let mut syms = vec![0u8; 24]; // the null symbol
        for (name, kind, defined) in symbols {
            let mut s = [0u8; 24];
            s[..4].copy_from_slice(&(strtab.len() as u32).to_le_bytes());
            s[4] = 0x10 | kind; // STB_GLOBAL
            s[6..8].copy_from_slice(&(if *defined { 1u16 } else { 0 }).to_le_bytes());
            syms.extend(s);
            strtab.extend(name.as_bytes());
            strtab.push(0);
        }
        while strtab.len() % 8 != 0 {
            strtab.push(0);
        }
        let str_off = 64 + 56;
        let sym_off = str_off + strtab.len();
        let seg_off = sym_off + syms.len();
        let sh_off = seg_off + 16;
        let mut e = vec![0u8; sh_off + 4 * 64];
        e[..4].copy_from_slice(b"\x7fELF");
        e[4] = 2;
        e[5] = 1;
        e[6] = 1;
        e[8] = 8;
        e[18..20].copy_from_slice(&machine.to_le_bytes());
        e[32..40].copy_from_slice(&64u64.to_le_bytes());
        e[40..48].copy_from_slice(&(sh_off as u64).to_le_bytes());
        e[48..52].copy_from_slice(&flags.to_le_bytes());
        e[54..56].copy_from_slice(&56u16.to_le_bytes());
        e[56..58].copy_from_slice(&1u16.to_le_bytes());
        e[58..60].copy_from_slice(&64u16.to_le_bytes());
        e[60..62].copy_from_slice(&4u16.to_le_bytes());
        // Segment 0 over the 16 segment bytes.
        e[64 + 8..64 + 16].copy_from_slice(&(seg_off as u64).to_le_bytes());
        e[64 + 32..64 + 40].copy_from_slice(&16u64.to_le_bytes());
        e[str_off..str_off + strtab.len()].copy_from_slice(&strtab);
        e[sym_off..sym_off + syms.len()].copy_from_slice(&syms);
        let mut section = |i: usize, kind: u32, off: usize, size: usize, link: u32, ent: u64| {
            let h = sh_off + i * 64;
            e[h + 4..h + 8].copy_from_slice(&kind.to_le_bytes());
            e[h + 24..h + 32].copy_from_slice(&(off as u64).to_le_bytes());
            e[h + 32..h + 40].copy_from_slice(&(size as u64).to_le_bytes());
            e[h + 40..h + 44].copy_from_slice(&link.to_le_bytes());
            e[h + 56..h + 64].copy_from_slice(&ent.to_le_bytes());
        };
        section(1, 1, seg_off, 16, 0, 0); // PROGBITS
        section(2, 3, str_off, strtab.len(), 0, 0); // STRTAB
        section(3, SHT_SYMTAB, sym_off, syms.len(), 2, 24);
        e
    }

    fn sample() -> Vec<u8> {
        build_elf(
            EM_CUDA,
            0x0600_5a04,
            &[
                ("q4_k_to_fp32_kernel", STT_FUNC, true),
                ("q4_k_to_fp32_kernel.kd", 1, true),
                ("extern_fn", STT_FUNC, false),
            ],
        )
    }

    #[test]
    fn reads_machine_flags_and_symbols() {
        let data = sample();
        let elf = Elf64::parse(&data).unwrap();
        assert_eq!(elf.machine(), EM_CUDA);
        assert_eq!(elf.flags(), 0x0600_5a04);
        assert_eq!(elf.abi_version(), 8);
        assert_eq!(elf.cuda_sm(), Some(90));
        assert_eq!(elf.amdgpu_arch(), None);
        assert!(elf.has_function("q4_k_to_fp32_kernel"));
        assert!(!elf.has_function("q4_k_to_fp32_kernel.kd"));
        assert!(elf.defines("q4_k_to_fp32_kernel.kd"));
        assert!(!elf.has_function("extern_fn"), "undefined");
        assert!(!elf.defines("extern_fn"));
        assert!(!elf.has_function("q4_k_to_fp32"), "prefix only");
        assert!(!elf.has_function(""));
        assert_eq!(elf.function_names(), vec!["q4_k_to_fp32_kernel"]);
        assert_eq!(elf.symbols().count(), 4);

        let hsaco = build_elf(EM_AMDGPU, 0x53f, &[]);
        let elf = Elf64::parse(&hsaco).unwrap();
        assert_eq!(elf.amdgpu_arch(), Some("gfx90a"));
        assert_eq!(elf.cuda_sm(), None);
    }

    #[test]
    fn arch_tables() {
        // Flags nvcc 13.0 wrote for sm_80 and sm_90, and an old-style sm_80 cubin's.
        assert_eq!(cubin_sm(8, 0x0600_5004), 80);
        assert_eq!(cubin_sm(8, 0x0600_5a04), 90);
        assert_eq!(cubin_sm(7, 0x0050_0550), 80);
        for (arch, mach) in AMDGPU_MACH {
            assert_eq!(amdgpu_mach(arch), Some(mach));
            assert_eq!(amdgpu_arch(0x500 | mach), Some(arch));
        }
        assert_eq!(amdgpu_arch(0x01), None);
        assert_eq!(amdgpu_mach("gfx942"), None);
    }

    #[test]
    fn bare_header_is_enough() {
        let mut h = vec![0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2;
        h[5] = 1;
        h[18..20].copy_from_slice(&EM_AMDGPU.to_le_bytes());
        let elf = Elf64::parse(&h).unwrap();
        assert_eq!(elf.symbols().count(), 0);
        assert!(!elf.has_function("x"));
    }

    #[test]
    fn damaged_files_are_refused() {
        let good = sample();
        for cut in 0..good.len() {
            assert!(Elf64::parse(&good[..cut]).is_err(), "cut at {cut}");
        }
        assert!(matches!(
            Elf64::parse(b"not an elf file at all, not even close, no no no no no no no no no"),
            Err(ElfError::NotElf { .. })
        ));
        let mut be = good.clone();
        be[5] = 2;
        assert!(matches!(
            Elf64::parse(&be),
            Err(ElfError::NotElf64Le { data: 2, .. })
        ));
        let sh_off = u64::from_le_bytes(good[40..48].try_into().unwrap()) as usize;
        // A section past the end, and one whose end overflows.
        for size in [good.len() as u64, u64::MAX] {
            let mut bad = good.clone();
            bad[sh_off + 64 + 32..sh_off + 64 + 40].copy_from_slice(&size.to_le_bytes());
            let e = Elf64::parse(&bad).unwrap_err();
            assert!(e.to_string().contains("section 1"), "{e}");
        }
        // NOBITS sections take no file bytes.
        let mut nobits = good.clone();
        nobits[sh_off + 64 + 4..sh_off + 64 + 8].copy_from_slice(&SHT_NOBITS.to_le_bytes());
        nobits[sh_off + 64 + 32..sh_off + 64 + 40].copy_from_slice(&u64::MAX.to_le_bytes());
        Elf64::parse(&nobits).unwrap();
        // A segment past the end.
        let mut seg = good.clone();
        seg[64 + 8..64 + 16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(Elf64::parse(&seg)
            .unwrap_err()
            .to_string()
            .contains("segment 0"));
        // Entry sizes too small to hold their structures.
        let mut ent = good.clone();
        ent[58..60].copy_from_slice(&8u16.to_le_bytes());
        assert!(matches!(
            Elf64::parse(&ent),
            Err(ElfError::EntrySize { .. })
        ));
        let mut symsz = good.clone();
        symsz[sh_off + 3 * 64 + 56..sh_off + 3 * 64 + 64].copy_from_slice(&4u64.to_le_bytes());
        assert!(matches!(
            Elf64::parse(&symsz),
            Err(ElfError::EntrySize { min: 24, .. })
        ));
        // A symbol table linked to no string table.
        let mut link = good.clone();
        link[sh_off + 3 * 64 + 40..sh_off + 3 * 64 + 44].copy_from_slice(&99u32.to_le_bytes());
        assert!(matches!(
            Elf64::parse(&link),
            Err(ElfError::BadLink { link: 99, .. })
        ));
    }

    #[test]
    fn bad_symbol_names_are_empty_not_a_panic() {
        let mut data = sample();
        let sh_off = u64::from_le_bytes(data[40..48].try_into().unwrap()) as usize;
        let sym_off = u64::from_le_bytes(
            data[sh_off + 3 * 64 + 24..sh_off + 3 * 64 + 32]
                .try_into()
                .unwrap(),
        ) as usize;
        data[sym_off + 24..sym_off + 28].copy_from_slice(&u32::MAX.to_le_bytes());
        let elf = Elf64::parse(&data).unwrap();
        assert!(!elf.has_function("q4_k_to_fp32_kernel"));
        assert!(elf.defines("q4_k_to_fp32_kernel.kd"));
    }

    #[test]
    fn symbol_bytes_map_addresses_to_file_bytes() {
        let mut data = sample();
        let sh_off = u64::from_le_bytes(data[40..48].try_into().unwrap()) as usize;
        let field = |d: &[u8], at: usize| u64::from_le_bytes(d[at..at + 8].try_into().unwrap());
        let seg_off = field(&data, sh_off + 64 + 24) as usize;
        let sym_off = field(&data, sh_off + 3 * 64 + 24) as usize;
        for (i, b) in data[seg_off..seg_off + 16].iter_mut().enumerate() {
            *b = 0xa0 + i as u8;
        }
        // Section 1 loaded at 0x1000; the `.kd` symbol (the third entry) labels bytes 4..12.
        data[sh_off + 64 + 16..sh_off + 64 + 24].copy_from_slice(&0x1000u64.to_le_bytes());
        let kd = sym_off + 2 * 24;
        let set = |d: &mut Vec<u8>, value: u64, size: u64| {
            d[kd + 8..kd + 16].copy_from_slice(&value.to_le_bytes());
            d[kd + 16..kd + 24].copy_from_slice(&size.to_le_bytes());
        };
        set(&mut data, 0x1004, 8);
        let elf = Elf64::parse(&data).unwrap();
        let want: Vec<u8> = (4..12).map(|i| 0xa0 + i).collect();
        assert_eq!(elf.symbol_bytes("q4_k_to_fp32_kernel.kd"), Some(&want[..]));
        let s = elf
            .symbols()
            .find(|s| s.name == b"q4_k_to_fp32_kernel.kd")
            .unwrap();
        assert_eq!((s.value, s.size), (0x1004, 8));
        // Undefined or unknown symbols have no bytes.
        assert_eq!(elf.symbol_bytes("extern_fn"), None);
        assert_eq!(elf.symbol_bytes("nothing"), None);
        // The whole section, its last byte, then one byte too many, an address below the
        // section and a size that overflows.
        for (value, size, ok) in [
            (0x1000, 16, true),
            (0x100f, 1, true),
            (0x1008, 9, false),
            (0xfff, 4, false),
            (0x1001, u64::MAX, false),
        ] {
            set(&mut data, value, size);
            let elf = Elf64::parse(&data).unwrap();
            let got = elf.symbol_bytes("q4_k_to_fp32_kernel.kd");
            assert_eq!(got.is_some(), ok, "{value:#x}+{size}");
            if let Some(b) = got {
                assert_eq!(b.len() as u64, size);
            }
        }
        // A symbol in a section that does not exist.
        data[kd + 6..kd + 8].copy_from_slice(&0xfff1u16.to_le_bytes());
        assert_eq!(
            Elf64::parse(&data)
                .unwrap()
                .symbol_bytes("q4_k_to_fp32_kernel.kd"),
            None
        );
    }

    fn exercise(data: &[u8]) {
        if let Ok(elf) = Elf64::parse(data) {
            let _ = (elf.machine(), elf.flags(), elf.cuda_sm(), elf.amdgpu_arch());
            let _ = elf.has_function("q4_k_to_fp32_kernel");
            let _ = elf.defines("q4_k_to_fp32_kernel.kd");
            let _ = elf.function_names();
            let _ = elf.symbol_bytes("q4_k_to_fp32_kernel.kd");
            for s in elf.symbols() {
                let _ = (s.is_defined(), s.is_function(), s.binding);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Random bytes (with an ELF64 header prefix half of the time) never panic.
        #[test]
        fn random_bytes_never_panic(
            prefix in any::<bool>(),
            mut bytes in proptest::collection::vec(any::<u8>(), 0..600),
        ) {
            if prefix && bytes.len() >= 6 {
                bytes[..6].copy_from_slice(b"\x7fELF\x02\x01");
            }
            exercise(&bytes);
        }

        /// A valid file with a few bytes overwritten, or cut short, never panics; what still
        /// parses stays within the buffer.
        #[test]
        fn mutated_files_never_panic(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..12),
            wide in proptest::option::of((any::<prop::sample::Index>(), any::<u64>())),
            cut in any::<prop::sample::Index>(),
            truncate in any::<bool>(),
        ) {
            let mut data = sample();
            for (i, b) in edits {
                let i = i.index(data.len());
                data[i] = b;
            }
            if let Some((i, v)) = wide {
                let i = i.index(data.len() - 8);
                data[i..i + 8].copy_from_slice(&v.to_le_bytes());
            }
            if truncate {
                data.truncate(cut.index(data.len() + 1));
            }
            exercise(&data);
        }
    }
}
