//! The format registry, built by `inventory` from every linked format crate.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use crate::{CoreError, GgmlType, QuantFormat};

/// One entry submitted by a format crate. Use [`crate::register_format!`] rather than naming this.
pub struct FormatRegistration(pub &'static dyn QuantFormat);

inventory::collect!(FormatRegistration);

/// Registers a format instance with the registry:
///
/// ```ignore
/// pub static Q4_K: Q4K = Q4K;
/// quant_core::register_format!(Q4_K);
/// ```
///
/// The registration only exists in a binary that links the format crate: a crate that no code
/// names is dropped by the linker, together with its registration. The `quantforge` facade names
/// every format its Cargo features enable.
#[macro_export]
macro_rules! register_format {
    ($format:expr) => {
        $crate::inventory::submit! {
            $crate::FormatRegistration(&$format)
        }
    };
}

/// All formats linked into this binary, by type id.
pub struct Registry {
    by_id: BTreeMap<u32, &'static dyn QuantFormat>,
    duplicates: Vec<(GgmlType, &'static str, &'static str)>,
}

impl Registry {
    /// Builds a registry from an explicit list (the global one uses every `inventory`
    /// registration). Duplicates are kept aside and reported by [`Registry::validate`].
    pub fn from_formats(formats: impl IntoIterator<Item = &'static dyn QuantFormat>) -> Self {
        let mut by_id: BTreeMap<u32, &'static dyn QuantFormat> = BTreeMap::new();
        let mut duplicates = Vec::new();
        for f in formats {
            let id = f.ggml_type();
            if let Some(prev) = by_id.get(&id.0) {
                duplicates.push((id, prev.name(), f.name()));
            } else {
                by_id.insert(id.0, f);
            }
        }
        Registry { by_id, duplicates }
    }

    /// The format handling `ty`, if one is linked.
    pub fn lookup(&self, ty: GgmlType) -> Option<&'static dyn QuantFormat> {
        self.by_id.get(&ty.0).copied()
    }

    /// Like [`Registry::lookup`], with an error that names the type.
    pub fn get(&self, ty: GgmlType) -> Result<&'static dyn QuantFormat, CoreError> {
        self.lookup(ty).ok_or(CoreError::Unsupported { ty })
    }

    /// Every registered format, in type-id order.
    pub fn iter(&self) -> impl Iterator<Item = &'static dyn QuantFormat> + '_ {
        self.by_id.values().copied()
    }

    /// Registered type ids, in order.
    pub fn ids(&self) -> Vec<GgmlType> {
        self.by_id.keys().map(|&id| GgmlType(id)).collect()
    }

    /// Fails if any id was registered more than once.
    pub fn validate(&self) -> Result<(), CoreError> {
        match self.duplicates.first() {
            Some(&(ty, first, second)) => {
                Err(CoreError::DuplicateRegistration { ty, first, second })
            }
            None => Ok(()),
        }
    }

    /// Fails if any of `expected` is missing, or if an id was registered twice.
    pub fn require(&self, expected: &[GgmlType]) -> Result<(), CoreError> {
        self.validate()?;
        for &ty in expected {
            self.get(ty)?;
        }
        Ok(())
    }
}

/// The process-wide registry, built on first use from every linked registration.
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        Registry::from_formats(
            inventory::iter::<FormatRegistration>
                .into_iter()
                .map(|r| r.0),
        )
    })
}

/// Shorthand for `registry().lookup(ty)`.
pub fn lookup(ty: GgmlType) -> Option<&'static dyn QuantFormat> {
    registry().lookup(ty)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BlockGeometry;

    struct Fake(u32, &'static str);
    impl QuantFormat for Fake {
        fn ggml_type(&self) -> GgmlType {
            GgmlType(self.0)
        }
        fn name(&self) -> &'static str {
            self.1
        }
        fn geometry(&self) -> BlockGeometry {
            BlockGeometry {
                block_elems: 1,
                block_bytes: 4,
            }
        }
        fn layout_doc(&self) -> &'static str {
            ""
        }
        fn dequantize_reference(&self, src: &[u8], dst: &mut [f32]) {
            for (d, s) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *d = f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
            }
        }
        fn dequantize_fast(&self, src: &[u8], dst: &mut [f32]) {
            self.dequantize_reference(src, dst)
        }
    }

    static A: Fake = Fake(0, "A");
    static B: Fake = Fake(0, "B");
    static C: Fake = Fake(12, "C");

    #[test]
    fn duplicate_ids_are_reported() {
        let r = Registry::from_formats([&A as &dyn QuantFormat, &B, &C]);
        let err = r.validate().unwrap_err();
        assert!(matches!(
            err,
            CoreError::DuplicateRegistration {
                first: "A",
                second: "B",
                ..
            }
        ));
    }

    #[test]
    fn missing_ids_are_reported() {
        let r = Registry::from_formats([&A as &dyn QuantFormat, &C]);
        r.require(&[GgmlType::F32, GgmlType::Q4_K]).unwrap();
        let err = r.require(&[GgmlType::Q6_K]).unwrap_err();
        assert!(matches!(err, CoreError::Unsupported { ty } if ty == GgmlType::Q6_K));
        assert_eq!(r.ids(), vec![GgmlType::F32, GgmlType::Q4_K]);
    }

    #[test]
    fn checked_entry_points_reject_partial_blocks() {
        use crate::cpu::{dequantize, CpuPath};
        let mut out = [0f32; 2];
        assert!(dequantize(&C, &[0u8; 7], &mut out, CpuPath::Fast).is_err());
        dequantize(&C, &1f32.to_le_bytes().repeat(2), &mut out, CpuPath::Fast).unwrap();
        assert_eq!(out, [1.0, 1.0]);
    }
}
