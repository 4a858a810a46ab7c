//! A small safe wrapper over libxgboost's C API (the library from the `xgboost-cpu` wheel, linked by build.rs).
//! This is the only module of stockcast that uses `unsafe`; each block states why it is sound.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_float, c_int, c_void};
use std::path::Path;

use crate::error::{Error, Result};

type BstUlong = u64;
type Handle = *mut c_void;

unsafe extern "C" {
    fn XGBGetLastError() -> *const c_char;
    fn XGDMatrixCreateFromMat(
        data: *const c_float,
        nrow: BstUlong,
        ncol: BstUlong,
        missing: c_float,
        out: *mut Handle,
    ) -> c_int;
    fn XGDMatrixSetStrFeatureInfo(
        handle: Handle,
        field: *const c_char,
        features: *const *const c_char,
        size: BstUlong,
    ) -> c_int;
    fn XGDMatrixFree(handle: Handle) -> c_int;
    fn XGProxyDMatrixCreate(out: *mut Handle) -> c_int;
    fn XGProxyDMatrixSetDataDense(handle: Handle, array_interface: *const c_char) -> c_int;
    fn XGDMatrixSetInfoFromInterface(handle: Handle, field: *const c_char, array_interface: *const c_char) -> c_int;
    fn XGQuantileDMatrixCreateFromCallback(
        iter: *mut c_void,
        proxy: Handle,
        reference: Handle,
        reset: extern "C" fn(*mut c_void),
        next: extern "C" fn(*mut c_void) -> c_int,
        config: *const c_char,
        out: *mut Handle,
    ) -> c_int;
    fn XGBoosterCreate(dmats: *const Handle, len: BstUlong, out: *mut Handle) -> c_int;
    fn XGBoosterFree(handle: Handle) -> c_int;
    fn XGBoosterSetParam(handle: Handle, name: *const c_char, value: *const c_char) -> c_int;
    fn XGBoosterUpdateOneIter(handle: Handle, iter: c_int, dtrain: Handle) -> c_int;
    fn XGBoosterEvalOneIter(
        handle: Handle,
        iter: c_int,
        dmats: *const Handle,
        evnames: *const *const c_char,
        len: BstUlong,
        out: *mut *const c_char,
    ) -> c_int;
    fn XGBoosterPredictFromDMatrix(
        handle: Handle,
        dmat: Handle,
        config: *const c_char,
        out_shape: *mut *const BstUlong,
        out_dim: *mut BstUlong,
        out_result: *mut *const c_float,
    ) -> c_int;
    fn XGBoosterSaveModel(handle: Handle, fname: *const c_char) -> c_int;
    fn XGBoosterLoadModel(handle: Handle, fname: *const c_char) -> c_int;
    fn XGBoosterSlice(handle: Handle, begin: c_int, end: c_int, step: c_int, out: *mut Handle) -> c_int;
    fn XGBoosterFeatureScore(
        handle: Handle,
        config: *const c_char,
        out_n_features: *mut BstUlong,
        out_features: *mut *const *const c_char,
        out_dim: *mut BstUlong,
        out_shape: *mut *const BstUlong,
        out_scores: *mut *const c_float,
    ) -> c_int;
}

/// Turns a C API status into a Result with XGBoost's own message.
fn check(status: c_int) -> Result<()> {
    if status == 0 {
        return Ok(());
    }
    // SAFETY: XGBGetLastError returns a pointer to a NUL-terminated thread-local string owned by the library,
    // valid until the next API call on this thread; it is copied out immediately.
    let msg = unsafe { CStr::from_ptr(XGBGetLastError()) }.to_string_lossy().into_owned();
    Err(Error::Xgboost(msg))
}

fn cstring(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::Xgboost(format!("string with a NUL byte: {s:?}")))
}

/// A dense matrix handed to XGBoost (row-major f32, NaN = missing).
#[derive(Debug)]
pub(crate) struct DMatrix(Handle);

impl DMatrix {
    /// Copies `data` (`nrow × ncol`, row-major) into a new DMatrix, with feature names.
    pub(crate) fn dense(data: &[f32], nrow: usize, ncol: usize, names: &[String]) -> Result<Self> {
        if data.len() != nrow * ncol {
            return Err(Error::Data(format!("matrix of {} values is not {nrow} x {ncol}", data.len())));
        }
        let mut handle: Handle = std::ptr::null_mut();
        // SAFETY: `data` holds nrow*ncol floats (checked above) and outlives the call; XGBoost copies the data
        // into its own storage and writes a fresh handle to `handle`.
        check(unsafe {
            XGDMatrixCreateFromMat(data.as_ptr(), nrow as BstUlong, ncol as BstUlong, f32::NAN, &raw mut handle)
        })?;
        let m = Self(handle);
        m.set_names(names)?;
        Ok(m)
    }

    /// A QuantileDMatrix of the rows `rows` (all rows when `None`) of `data` (row-major, `ncol` columns) with their
    /// labels (`labels[i]` is row i's): XGBoost reads the rows through a proxy, twice (sketch, then quantise), in
    /// batches of at most `batch_rows` rows gathered into one reused buffer (or read in place when every row is
    /// taken), and keeps only the histogram bin of each value (1 byte for ≤ 256 bins), neither the 8-byte
    /// (index, value) entries a DMatrix copies (2.4 GB per fit on a 4.4 M × 68 training matrix) nor a copy of the
    /// selected rows (1.2 GB). Batches are pushed into the same per-column sketches in row order, so the bins and
    /// the model do not depend on `batch_rows` (a test holds it). Only the `hist` tree method trains on it.
    /// `reference`: the training matrix whose bin edges a validation matrix must share.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn quantile(
        data: &[f32],
        ncol: usize,
        labels: &[f32],
        rows: Option<&[usize]>,
        names: &[String],
        reference: Option<&Self>,
        nthread: usize,
        batch_rows: usize,
    ) -> Result<Self> {
        if ncol == 0 || data.len() != labels.len() * ncol {
            return Err(Error::Data(format!(
                "matrix of {} values, {} labels is not {} x {ncol}",
                data.len(),
                labels.len(),
                labels.len()
            )));
        }
        if let Some(&bad) = rows.and_then(|r| r.iter().find(|&&i| i >= labels.len())) {
            return Err(Error::Data(format!("row {bad} of a {}-row matrix", labels.len())));
        }
        let mut proxy: Handle = std::ptr::null_mut();
        // SAFETY: writes a fresh proxy handle, freed by the guard below.
        check(unsafe { XGProxyDMatrixCreate(&raw mut proxy) })?;
        let proxy = Self(proxy);
        let mut iter = Batches {
            proxy: proxy.0,
            data,
            ncol,
            labels,
            rows,
            batch_rows: batch_rows.max(1),
            at: 0,
            x: Vec::new(),
            y: Vec::new(),
            interfaces: None,
            label_field: cstring("label")?,
            error: None,
        };
        let config = cstring(&format!(r#"{{"missing": NaN, "nthread": {nthread}, "max_bin": 256}}"#))?;
        let mut handle: Handle = std::ptr::null_mut();
        // SAFETY: `iter` outlives the call and is only touched by the two callbacks, which XGBoost calls on this
        // thread during the call; each batch's array interfaces point into `data`/`labels` (borrowed for the whole
        // call) or into `iter`'s buffers, which are not touched again until the next callback, by when XGBoost has
        // consumed the batch. The reference handle, when given, is live (owned by `reference`).
        let status = unsafe {
            XGQuantileDMatrixCreateFromCallback(
                (&raw mut iter).cast(),
                proxy.0,
                reference.map_or(std::ptr::null_mut(), |r| r.0),
                batches_reset,
                batches_next,
                config.as_ptr(),
                &raw mut handle,
            )
        };
        if let Some(e) = iter.error.take() {
            return Err(e);
        }
        check(status)?;
        let m = Self(handle);
        m.set_names(names)?;
        Ok(m)
    }

    fn set_names(&self, names: &[String]) -> Result<()> {
        if names.is_empty() {
            return Ok(());
        }
        let owned: Vec<CString> = names.iter().map(|n| cstring(n)).collect::<Result<_>>()?;
        let ptrs: Vec<*const c_char> = owned.iter().map(|c| c.as_ptr()).collect();
        let field = cstring("feature_name")?;
        // SAFETY: `ptrs` points to `names.len()` NUL-terminated strings kept alive by `owned` during the call.
        check(unsafe { XGDMatrixSetStrFeatureInfo(self.0, field.as_ptr(), ptrs.as_ptr(), ptrs.len() as BstUlong) })
    }
}

impl Drop for DMatrix {
    fn drop(&mut self) {
        // SAFETY: the handle was created by XGDMatrixCreateFromMat, XGProxyDMatrixCreate or
        // XGQuantileDMatrixCreateFromCallback, is owned by this value alone and is freed exactly once, here.
        unsafe {
            XGDMatrixFree(self.0);
        }
    }
}

/// The iterator behind [`DMatrix::quantile`]: the selected rows in batches, each set on the proxy.
struct Batches<'a> {
    proxy: Handle,
    data: &'a [f32],
    ncol: usize,
    labels: &'a [f32],
    rows: Option<&'a [usize]>,
    batch_rows: usize,
    /// Selected rows served so far in this pass.
    at: usize,
    /// The gathered batch (selected rows only).
    x: Vec<f32>,
    y: Vec<f32>,
    /// The current batch's array interfaces (data, labels), alive until the next batch.
    interfaces: Option<(CString, CString)>,
    label_field: CString,
    /// The first error raised inside a callback (callbacks cannot return one), reported after the call.
    error: Option<Error>,
}

impl Batches<'_> {
    fn selected(&self) -> usize {
        self.rows.map_or(self.labels.len(), <[usize]>::len)
    }

    /// Points the proxy at the next batch; false when every row was served.
    fn serve(&mut self) -> Result<bool> {
        let (start, end) = (self.at, self.at.saturating_add(self.batch_rows).min(self.selected()));
        if start >= end {
            return Ok(false);
        }
        self.at = end;
        let (x, y): (&[f32], &[f32]) = match self.rows {
            None => (&self.data[start * self.ncol..end * self.ncol], &self.labels[start..end]),
            Some(rows) => {
                self.x.clear();
                self.y.clear();
                for &i in &rows[start..end] {
                    self.x.extend_from_slice(&self.data[i * self.ncol..(i + 1) * self.ncol]);
                    self.y.push(self.labels[i]);
                }
                (&self.x, &self.y)
            }
        };
        let interface = |ptr: *const f32, shape: &str| {
            cstring(&format!(
                r#"{{"data": [{}, true], "shape": [{shape}], "typestr": "<f4", "version": 3}}"#,
                ptr as usize
            ))
        };
        let n = end - start;
        let data = interface(x.as_ptr(), &format!("{n}, {}", self.ncol))?;
        let labels = interface(y.as_ptr(), &n.to_string())?;
        let (data, labels) = self.interfaces.insert((data, labels));
        // SAFETY: the proxy handle is live for the whole creation call; the interface strings are NUL-terminated
        // and point at `n` rows of `data`/`labels` or of the batch buffers, which stay untouched until the next
        // callback.
        check(unsafe {
            let s = XGProxyDMatrixSetDataDense(self.proxy, data.as_ptr());
            if s == 0 {
                XGDMatrixSetInfoFromInterface(self.proxy, self.label_field.as_ptr(), labels.as_ptr())
            } else {
                s
            }
        })?;
        Ok(true)
    }
}

extern "C" fn batches_reset(iter: *mut c_void) {
    // SAFETY: XGBoost passes back the `Batches` pointer given to XGQuantileDMatrixCreateFromCallback, which is
    // live and not otherwise borrowed during that call.
    let iter = unsafe { &mut *iter.cast::<Batches<'_>>() };
    iter.at = 0;
}

extern "C" fn batches_next(iter: *mut c_void) -> c_int {
    // SAFETY: as in `batches_reset`.
    let iter = unsafe { &mut *iter.cast::<Batches<'_>>() };
    match iter.serve() {
        Ok(more) => c_int::from(more),
        Err(e) => {
            iter.error.get_or_insert(e);
            0
        }
    }
}

/// A booster (the model).
#[derive(Debug)]
pub(crate) struct Booster(Handle);

// SAFETY: XGBoost boosters may be used from any thread; stockcast only predicts concurrently (prediction is
// thread-safe in XGBoost ≥ 1.4) and mutates (train, set params) through `&mut self` on one thread.
unsafe impl Send for Booster {}
// SAFETY: see above: shared references only call thread-safe prediction and serialisation functions.
unsafe impl Sync for Booster {}

impl Booster {
    /// A new booster whose training caches the given matrices.
    pub(crate) fn new(cache: &[&DMatrix]) -> Result<Self> {
        let handles: Vec<Handle> = cache.iter().map(|m| m.0).collect();
        let mut out: Handle = std::ptr::null_mut();
        // SAFETY: `handles` are live DMatrix handles for the duration of the call; XGBoost writes a new handle.
        check(unsafe { XGBoosterCreate(handles.as_ptr(), handles.len() as BstUlong, &raw mut out) })?;
        Ok(Self(out))
    }

    /// Loads a model file (JSON or UBJSON by extension).
    pub(crate) fn load(path: &Path) -> Result<Self> {
        let b = Self::new(&[])?;
        let p = cstring(&path.to_string_lossy())?;
        // SAFETY: live handle and a NUL-terminated path.
        check(unsafe { XGBoosterLoadModel(b.0, p.as_ptr()) })?;
        Ok(b)
    }

    pub(crate) fn set_param(&mut self, name: &str, value: &str) -> Result<()> {
        let (n, v) = (cstring(name)?, cstring(value)?);
        // SAFETY: live handle and NUL-terminated strings; XGBoost copies them.
        check(unsafe { XGBoosterSetParam(self.0, n.as_ptr(), v.as_ptr()) })
    }

    pub(crate) fn update(&mut self, iteration: usize, train: &DMatrix) -> Result<()> {
        // SAFETY: live booster and matrix handles.
        check(unsafe { XGBoosterUpdateOneIter(self.0, iteration as c_int, train.0) })
    }

    /// Evaluates the configured metric on one matrix: XGBoost's text, e.g. `[3]\tvalid-rmse:0.0123`.
    pub(crate) fn eval(&mut self, iteration: usize, m: &DMatrix, name: &str) -> Result<String> {
        let handles = [m.0];
        let n = cstring(name)?;
        let names = [n.as_ptr()];
        let mut out: *const c_char = std::ptr::null();
        // SAFETY: one live matrix handle and one name, both valid during the call; the result string is owned
        // by XGBoost (thread-local) and copied before any other call.
        check(unsafe {
            XGBoosterEvalOneIter(self.0, iteration as c_int, handles.as_ptr(), names.as_ptr(), 1, &raw mut out)
        })?;
        // SAFETY: on success `out` is a NUL-terminated string.
        Ok(unsafe { CStr::from_ptr(out) }.to_string_lossy().into_owned())
    }

    /// Predicted values (one per row).
    pub(crate) fn predict(&self, m: &DMatrix, rows: usize) -> Result<Vec<f32>> {
        let config = cstring(
            r#"{"type": 0, "training": false, "iteration_begin": 0, "iteration_end": 0, "strict_shape": false}"#,
        )?;
        let mut shape: *const BstUlong = std::ptr::null();
        let mut dim: BstUlong = 0;
        let mut result: *const c_float = std::ptr::null();
        // SAFETY: live handles, NUL-terminated config; outputs are written by XGBoost.
        check(unsafe {
            XGBoosterPredictFromDMatrix(self.0, m.0, config.as_ptr(), &raw mut shape, &raw mut dim, &raw mut result)
        })?;
        // SAFETY: XGBoost returns `dim` shape entries; for regression the product is the row count.
        let shape = unsafe { std::slice::from_raw_parts(shape, dim as usize) };
        let len: usize = shape.iter().map(|s| *s as usize).product();
        if len != rows {
            return Err(Error::Xgboost(format!("prediction has {len} values for {rows} rows")));
        }
        // SAFETY: `result` points to `len` floats owned by the booster until its next call; copied now.
        Ok(unsafe { std::slice::from_raw_parts(result, len) }.to_vec())
    }

    /// The first `rounds` boosting rounds as a new booster.
    pub(crate) fn slice(&self, rounds: usize) -> Result<Self> {
        let mut out: Handle = std::ptr::null_mut();
        // SAFETY: live handle; XGBoost writes a new handle.
        check(unsafe { XGBoosterSlice(self.0, 0, rounds as c_int, 1, &raw mut out) })?;
        Ok(Self(out))
    }

    pub(crate) fn save(&self, path: &Path) -> Result<()> {
        let p = cstring(&path.to_string_lossy())?;
        // SAFETY: live handle and a NUL-terminated path.
        check(unsafe { XGBoosterSaveModel(self.0, p.as_ptr()) })
    }

    /// Feature importance (`total_gain`) by feature name.
    pub(crate) fn importance(&self) -> Result<Vec<(String, f64)>> {
        let config = cstring(r#"{"importance_type": "total_gain", "feature_map": ""}"#)?;
        let mut n: BstUlong = 0;
        let mut names: *const *const c_char = std::ptr::null();
        let mut dim: BstUlong = 0;
        let mut shape: *const BstUlong = std::ptr::null();
        let mut scores: *const c_float = std::ptr::null();
        // SAFETY: live handle; all out-pointers are valid locals written by XGBoost.
        check(unsafe {
            XGBoosterFeatureScore(
                self.0,
                config.as_ptr(),
                &raw mut n,
                &raw mut names,
                &raw mut dim,
                &raw mut shape,
                &raw mut scores,
            )
        })?;
        let n = n as usize;
        if n == 0 {
            return Ok(Vec::new());
        }
        // SAFETY: XGBoost returns `n` names and `n` scores (1-D for regression), valid until the next call.
        let (names, scores) = unsafe { (std::slice::from_raw_parts(names, n), std::slice::from_raw_parts(scores, n)) };
        Ok(names
            .iter()
            .zip(scores)
            // SAFETY: each name is a NUL-terminated string owned by XGBoost; copied immediately.
            .map(|(p, s)| (unsafe { CStr::from_ptr(*p) }.to_string_lossy().into_owned(), f64::from(*s)))
            .collect())
    }
}

impl Drop for Booster {
    fn drop(&mut self) {
        // SAFETY: the handle was created by XGBoosterCreate/Slice and is freed exactly once, here.
        unsafe {
            XGBoosterFree(self.0);
        }
    }
}
