//! [`GgmlType`]: ggml's tensor type ids, as an open newtype.

use std::fmt;

/// A ggml tensor type id, exactly as stored in a GGUF tensor info (a little-endian `u32`).
///
/// The newtype is *open*: any `u32` can be held, so a reader can carry an id it does not know
/// and report it by number. Ids 4, 5, 31–33 and 36–38 were used by ggml once and removed; they are
/// named here (see [`GgmlType::is_removed`]) so that errors can say so.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GgmlType(pub u32);

/// Block geometry of a ggml type: how many elements one block holds and how many bytes it takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockGeometry {
    /// Elements per block (1 for plain scalar types, 32 or 256 for quantized ones).
    pub block_elems: usize,
    /// Bytes per block.
    pub block_bytes: usize,
}

impl BlockGeometry {
    /// Whether values come in blocks of several (a quantized type), not one by one.
    pub fn is_quantized(&self) -> bool {
        self.block_elems > 1
    }
}

struct TypeInfo {
    id: u32,
    name: &'static str,
    removed: bool,
    /// Elements are integers (indices, ids), not values of a weight.
    integer: bool,
    geometry: Option<BlockGeometry>,
}

const fn live(id: u32, name: &'static str, block_elems: usize, block_bytes: usize) -> TypeInfo {
    TypeInfo {
        id,
        name,
        removed: false,
        integer: false,
        geometry: Some(BlockGeometry {
            block_elems,
            block_bytes,
        }),
    }
}

/// A live integer type: one element of `bytes` bytes per block.
const fn integer(id: u32, name: &'static str, bytes: usize) -> TypeInfo {
    TypeInfo {
        integer: true,
        ..live(id, name, 1, bytes)
    }
}

const fn removed(id: u32, name: &'static str) -> TypeInfo {
    TypeInfo {
        id,
        name,
        removed: true,
        integer: false,
        geometry: None,
    }
}

/// Every id ggml has defined, 0 to 42, with its block geometry (every live id has one).
/// Geometries are ggml's `blck_size` and `type_size`.
const TYPES: [TypeInfo; 43] = [
    live(0, "F32", 1, 4),
    live(1, "F16", 1, 2),
    live(2, "Q4_0", 32, 18),
    live(3, "Q4_1", 32, 20),
    removed(4, "Q4_2"),
    removed(5, "Q4_3"),
    live(6, "Q5_0", 32, 22),
    live(7, "Q5_1", 32, 24),
    live(8, "Q8_0", 32, 34),
    live(9, "Q8_1", 32, 36),
    live(10, "Q2_K", 256, 84),
    live(11, "Q3_K", 256, 110),
    live(12, "Q4_K", 256, 144),
    live(13, "Q5_K", 256, 176),
    live(14, "Q6_K", 256, 210),
    live(15, "Q8_K", 256, 292),
    live(16, "IQ2_XXS", 256, 66),
    live(17, "IQ2_XS", 256, 74),
    live(18, "IQ3_XXS", 256, 98),
    live(19, "IQ1_S", 256, 50),
    live(20, "IQ4_NL", 32, 18),
    live(21, "IQ3_S", 256, 110),
    live(22, "IQ2_S", 256, 82),
    live(23, "IQ4_XS", 256, 136),
    integer(24, "I8", 1),
    integer(25, "I16", 2),
    integer(26, "I32", 4),
    integer(27, "I64", 8),
    live(28, "F64", 1, 8),
    live(29, "IQ1_M", 256, 56),
    live(30, "BF16", 1, 2),
    removed(31, "Q4_0_4_4"),
    removed(32, "Q4_0_4_8"),
    removed(33, "Q4_0_8_8"),
    live(34, "TQ1_0", 256, 54),
    live(35, "TQ2_0", 256, 66),
    removed(36, "IQ4_NL_4_4"),
    removed(37, "IQ4_NL_4_8"),
    removed(38, "IQ4_NL_8_8"),
    live(39, "MXFP4", 32, 17),
    live(40, "NVFP4", 64, 36),
    live(41, "Q1_0", 128, 18),
    live(42, "Q2_0", 64, 18),
];

macro_rules! type_consts {
    ($($name:ident = $id:expr),* $(,)?) => {
        impl GgmlType {
            $(
                #[doc = concat!("ggml's `GGML_TYPE_", stringify!($name), "` (id ", stringify!($id), ").")]
                pub const $name: GgmlType = GgmlType($id);
            )*
        }
    };
}

type_consts! {
    F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
    Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
    IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22,
    IQ4_XS = 23, I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30,
    TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39, NVFP4 = 40, Q1_0 = 41, Q2_0 = 42,
}

impl GgmlType {
    fn info(self) -> Option<&'static TypeInfo> {
        TYPES.get(self.0 as usize).filter(|t| t.id == self.0)
    }

    /// ggml's name for the type (`"Q4_K"`), or `None` for an id ggml never defined.
    pub fn name(self) -> Option<&'static str> {
        self.info().map(|t| t.name)
    }

    /// Whether ggml defines this id (removed ids included).
    pub fn is_known(self) -> bool {
        self.info().is_some()
    }

    /// Whether this id was defined by ggml once and has since been removed (4, 5, 31–33, 36–38).
    pub fn is_removed(self) -> bool {
        self.info().is_some_and(|t| t.removed)
    }

    /// Whether the type holds integers (I8, I16, I32, I64): indices or ids stored as a tensor,
    /// not weights to dequantize. Loaders keep such tensors as they are.
    pub fn is_integer(self) -> bool {
        self.info().is_some_and(|t| t.integer)
    }

    /// Block geometry of the type: `Some` for every live id ggml defines (0–42), `None` for
    /// unknown and removed ids.
    pub fn geometry(self) -> Option<BlockGeometry> {
        self.info().and_then(|t| t.geometry)
    }

    /// Looks a type up by ggml's name (`"Q6_K"`, case-insensitive).
    pub fn from_name(name: &str) -> Option<GgmlType> {
        TYPES
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(name))
            .map(|t| GgmlType(t.id))
    }

    /// Every id ggml has defined, removed ones included, in id order.
    pub fn all_known() -> impl Iterator<Item = GgmlType> {
        TYPES.iter().map(|t| GgmlType(t.id))
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.info() {
            Some(t) if t.removed => write!(f, "{} (removed id {})", t.name, t.id),
            Some(t) => f.write_str(t.name),
            None => write!(f, "unknown type id {}", self.0),
        }
    }
}

impl fmt::Debug for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "GgmlType::{n}({})", self.0),
            None => write!(f, "GgmlType({})", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantized_types_are_those_with_blocks_of_several() {
        let q = |n: &str| {
            GgmlType::from_name(n)
                .unwrap()
                .geometry()
                .unwrap()
                .is_quantized()
        };
        assert!(q("Q4_0") && q("Q4_K") && q("Q6_K"));
        assert!(!q("F32") && !q("F16") && !q("BF16"));
    }

    #[test]
    fn integer_types_are_exactly_i8_to_i64() {
        let ints: Vec<GgmlType> = GgmlType::all_known().filter(|t| t.is_integer()).collect();
        assert_eq!(
            ints,
            [GgmlType::I8, GgmlType::I16, GgmlType::I32, GgmlType::I64]
        );
        for (t, bytes) in [(GgmlType::I8, 1), (GgmlType::I64, 8)] {
            let g = t.geometry().unwrap();
            assert_eq!((g.block_elems, g.block_bytes), (1, bytes), "{t}");
        }
        assert!(!GgmlType::F64.is_integer() && !GgmlType::F32.is_integer());
        assert!(!GgmlType(4).is_integer() && !GgmlType(u32::MAX).is_integer());
    }

    #[test]
    fn table_is_indexed_by_id() {
        for (i, t) in TYPES.iter().enumerate() {
            assert_eq!(t.id as usize, i, "{}", t.name);
        }
    }

    #[test]
    fn names_and_geometry() {
        assert_eq!(GgmlType::Q4_K.name(), Some("Q4_K"));
        assert_eq!(
            GgmlType::Q4_K.geometry(),
            Some(BlockGeometry {
                block_elems: 256,
                block_bytes: 144
            })
        );
        assert_eq!(GgmlType::Q6_K.geometry().unwrap().block_bytes, 210);
        assert_eq!(GgmlType::Q4_0.geometry().unwrap().block_bytes, 18);
        assert_eq!(GgmlType::from_name("q6_k"), Some(GgmlType::Q6_K));
        let g = |t: GgmlType| {
            let g = t.geometry().unwrap();
            (g.block_elems, g.block_bytes)
        };
        assert_eq!(g(GgmlType::NVFP4), (64, 36));
        assert_eq!(g(GgmlType::Q1_0), (128, 18));
        assert_eq!(g(GgmlType::Q2_0), (64, 18));
    }

    #[test]
    fn every_live_id_has_a_geometry() {
        for t in GgmlType::all_known() {
            assert_eq!(t.geometry().is_some(), !t.is_removed(), "{t}");
        }
    }

    #[test]
    fn removed_and_unknown_ids() {
        for id in [4, 5, 31, 32, 33, 36, 37, 38] {
            let t = GgmlType(id);
            assert!(t.is_known() && t.is_removed(), "{id}");
            assert!(t.geometry().is_none());
        }
        assert!(!GgmlType(43).is_known());
        assert_eq!(GgmlType(43).to_string(), "unknown type id 43");
        assert_eq!(GgmlType(4).to_string(), "Q4_2 (removed id 4)");
        assert_eq!(GgmlType(u32::MAX).name(), None);
    }
}
