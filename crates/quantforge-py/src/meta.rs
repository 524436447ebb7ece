//! Metadata values as Python objects. Numeric and boolean arrays become compact arrays, never
//! lists of Python numbers (a 10^8-element array would be gigabytes of `int` objects): a numpy
//! array when numpy can be imported, else an `array.array` (a `memoryview` of format `?` for
//! booleans, which `array` lacks). Arrays of strings are lists of `str`, arrays of arrays lists.

use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyList};
use pyo3::IntoPyObjectExt;
use quantforge::gguf::{MetaArray, MetaValue};

/// Where compact arrays come from: `numpy.frombuffer`, or `array.array` when numpy is absent.
pub(crate) struct Arrays<'py> {
    numpy: Option<Bound<'py, PyAny>>,
    array: Bound<'py, PyAny>,
}

impl<'py> Arrays<'py> {
    /// Imports numpy if it can be imported (it stays an optional dependency), and `array`.
    pub(crate) fn new(py: Python<'py>) -> PyResult<Self> {
        Ok(Arrays {
            numpy: py.import("numpy").ok().map(|m| m.into_any()),
            array: py.import("array")?.getattr("array")?,
        })
    }

    /// `bytes` (values in this machine's byte order) as a compact array: numpy dtype `dtype`
    /// (`"u4"`, ...), else `array.array(code)` (`memoryview` cast to `?` for booleans).
    fn compact(&self, bytes: &[u8], dtype: &str, code: &str) -> PyResult<Bound<'py, PyAny>> {
        let py = self.array.py();
        // One copy into Python memory, which the array then uses as it is (writable).
        let buf = PyByteArray::new(py, bytes);
        if let Some(np) = &self.numpy {
            return np.call_method1("frombuffer", (buf, dtype));
        }
        if code == "?" {
            let view = py
                .import("builtins")?
                .getattr("memoryview")?
                .call1((buf,))?;
            return view.call_method1("cast", ("?",));
        }
        let arr = self.array.call1((code,))?;
        arr.call_method1("frombytes", (buf,))?;
        Ok(arr)
    }

    /// One metadata value.
    pub(crate) fn value(&self, v: &MetaValue) -> PyResult<Bound<'py, PyAny>> {
        let py = self.array.py();
        match v {
            MetaValue::U8(x) => x.into_bound_py_any(py),
            MetaValue::I8(x) => x.into_bound_py_any(py),
            MetaValue::U16(x) => x.into_bound_py_any(py),
            MetaValue::I16(x) => x.into_bound_py_any(py),
            MetaValue::U32(x) => x.into_bound_py_any(py),
            MetaValue::I32(x) => x.into_bound_py_any(py),
            MetaValue::U64(x) => x.into_bound_py_any(py),
            MetaValue::I64(x) => x.into_bound_py_any(py),
            MetaValue::F32(x) => f64::from(*x).into_bound_py_any(py),
            MetaValue::F64(x) => x.into_bound_py_any(py),
            MetaValue::Bool(x) => x.into_bound_py_any(py),
            MetaValue::String(s) => s.into_bound_py_any(py),
            MetaValue::Array(a) => self.array(a),
        }
    }

    /// One metadata array.
    pub(crate) fn array(&self, a: &MetaArray) -> PyResult<Bound<'py, PyAny>> {
        let py = self.array.py();
        if let Some((bytes, dtype, code)) = numeric(a) {
            return self.compact(bytes, dtype, code);
        }
        if let Some(strs) = a.strs() {
            return PyList::new(py, strs)?.into_bound_py_any(py);
        }
        let items = match a.arrays() {
            Some(inner) => inner
                .iter()
                .map(|x| self.array(x))
                .collect::<PyResult<Vec<_>>>()?,
            None => a
                .iter()
                .map(|x| self.value(&x))
                .collect::<PyResult<Vec<_>>>()?,
        };
        PyList::new(py, items)?.into_bound_py_any(py)
    }
}

/// The bytes of a slice of plain numbers (no padding, every bit pattern valid as bytes).
fn bytes_of<T: Copy>(v: &[T]) -> &[u8] {
    // SAFETY: `T` is one of the primitive numeric types (or bool) named in `numeric`: no
    // padding, so every byte of the slice is initialised; u8 has alignment 1.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

/// A numeric or boolean array's bytes, numpy dtype and `array` typecode.
fn numeric(a: &MetaArray) -> Option<(&[u8], &'static str, &'static str)> {
    macro_rules! first {
        ($($view:ident => $dtype:literal, $code:literal;)*) => {
            $(if let Some(v) = a.$view() { return Some((bytes_of(v), $dtype, $code)); })*
        };
    }
    first! {
        as_u8s => "u1", "B"; as_i8s => "i1", "b"; as_u16s => "u2", "H"; as_i16s => "i2", "h";
        as_u32s => "u4", "I"; as_i32s => "i4", "i"; as_u64s => "u8", "Q"; as_i64s => "i8", "q";
        as_f32s => "f4", "f"; as_f64s => "f8", "d"; as_bools => "?", "?";
    }
    None
}
