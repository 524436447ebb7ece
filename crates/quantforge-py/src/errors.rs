//! Python exceptions: `QuantforgeError` for everything the library reports, `MissingTensorError`
//! (also a `KeyError`) for a tensor name the file does not have.

use pyo3::exceptions::{PyException, PyKeyError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};
use quantforge::loader::LoadError;

pyo3::create_exception!(
    quantforge,
    QuantforgeError,
    PyException,
    "An error reported by quantforge. Its message is the library's: it names the file, the \
     tensor where there is one, and the reason."
);

/// The class `MissingTensorError(QuantforgeError, KeyError)`, made once per process.
static MISSING_TENSOR: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// `quantforge.MissingTensorError`: a `QuantforgeError` that is also a `KeyError` (so that
/// `except KeyError` works as with a dict), whose `str()` is the plain message (a `KeyError`
/// would quote it).
pub(crate) fn missing_tensor_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    MISSING_TENSOR
        .get_or_try_init(py, || {
            let bases = PyTuple::new(
                py,
                [
                    py.get_type::<QuantforgeError>(),
                    py.get_type::<PyKeyError>(),
                ],
            )?;
            let body = PyDict::new(py);
            body.set_item("__module__", "quantforge")?;
            body.set_item(
                "__doc__",
                "The file has no tensor of that name: a QuantforgeError and a KeyError.",
            )?;
            body.set_item("__str__", py.get_type::<PyException>().getattr("__str__")?)?;
            let class = py
                .get_type::<PyType>()
                .call1(("MissingTensorError", bases, body))?;
            Ok::<_, PyErr>(class.cast_into::<PyType>()?.unbind())
        })
        .map(|t| t.bind(py))
}

/// What can go wrong while the GIL is released; turned into a Python exception once it is held
/// again ([`Error::into_py`]).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// From the loader (names the file, and the tensor where there is one).
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Anything else, already worded (naming the file and tensor itself).
    #[error("{0}")]
    Msg(String),
    /// A Python exception raised while the load ran: `KeyboardInterrupt` from a signal
    /// handler, seen by a check between chunks of the work.
    #[error("{0}")]
    Py(PyErr),
}

impl Error {
    /// The Python exception: `MissingTensorError` for a missing tensor, else `QuantforgeError`,
    /// with the Rust error's message.
    pub(crate) fn into_py(self, py: Python<'_>) -> PyErr {
        match self {
            Error::Load(e @ LoadError::NoTensor { .. }) => match missing_tensor_type(py) {
                Ok(t) => PyErr::from_type(t.clone(), e.to_string()),
                Err(err) => err,
            },
            Error::Py(e) => e,
            e => QuantforgeError::new_err(e.to_string()),
        }
    }
}
