//! Instances of the package's own Python classes made without calling them:
//! the per-record objects (`ConsumerRecord`, `TopicPartition`,
//! `FutureRecordMetadata`) would otherwise each cost a Python-level
//! constructor call, as much as the rest of the work per record. The one
//! unsafe allocation lives here.

// The crate denies unsafe code (workspace lints); this module is the one
// exception, because pyo3 has no safe API for allocating an instance without
// running its constructor or for filling a freshly allocated tuple subclass.
#![allow(unsafe_code)]

use pyo3::prelude::*;
use pyo3::types::PyType;

/// A new, empty instance of `cls` from its tp_alloc: for a tuple subclass
/// (a NamedTuple) `items` empty slots for `PyTuple_SetItem`; for a plain
/// class with `__slots__` (pass 0) unset slots for `setattr`.
pub fn alloc<'py>(
    py: Python<'py>,
    cls: &Bound<'py, PyType>,
    items: usize,
) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: PyType_GenericAlloc returns a new reference to a zeroed
    // instance of `cls`, or NULL with a Python exception set.
    unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            pyo3::ffi::PyType_GenericAlloc(cls.as_type_ptr(), items as pyo3::ffi::Py_ssize_t),
        )
    }
}

/// An instance of the named tuple class `cls` holding `items`.
pub fn named_tuple<'py, const N: usize>(
    py: Python<'py>,
    cls: &Bound<'py, PyType>,
    items: [Bound<'py, PyAny>; N],
) -> PyResult<Bound<'py, PyAny>> {
    let obj = alloc(py, cls, N)?;
    for (i, item) in items.into_iter().enumerate() {
        // SAFETY: `obj` is a tuple (subtype) of N items with a reference
        // count of one; PyTuple_SetItem steals `item`'s reference.
        if unsafe {
            pyo3::ffi::PyTuple_SetItem(obj.as_ptr(), i as pyo3::ffi::Py_ssize_t, item.into_ptr())
        } != 0
        {
            return Err(PyErr::fetch(py));
        }
    }
    Ok(obj)
}
