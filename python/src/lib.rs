//! `stockcast._stockcast`: the command line's jobs called in process from Python. [`run`] parses the same
//! arguments as the `stockcast` binary and runs the same code ([`stockcast::run`]) with the GIL released, so a
//! Python caller gets the CLI's outputs bit for bit; an error becomes a Python exception whose message is the
//! CLI's (`error: …` without the prefix, then `caused by: …` lines) and whose `exit_code` is the CLI's.

use clap::Parser as _;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

pyo3::create_exception!(_stockcast, StockcastError, PyException, "A stockcast job failed (exit code 1 on the CLI).");
pyo3::create_exception!(
    _stockcast,
    InputError,
    StockcastError,
    "Bad usage, configuration or input data (exit code 2)."
);
pyo3::create_exception!(_stockcast, QualityError, InputError, "The data-quality checks failed (exit code 3).");

/// Runs `stockcast ARGS…` in this process (`args` without the program name), the GIL released while it works.
///
/// # Errors
/// `InputError` for bad usage, configuration or data (exit code 2), `QualityError` for failed quality checks
/// (3), `StockcastError` otherwise (1), each with the CLI's message and its `exit_code`.
#[pyfunction]
fn run(py: Python<'_>, args: Vec<String>) -> PyResult<()> {
    let argv = std::iter::once("stockcast".to_owned()).chain(args);
    let cli = match stockcast::cli::Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => return Err(error(py, stockcast::exit::BAD_INPUT, e.to_string().trim_end())),
        // --help / --version: printed as the CLI prints them.
        Err(e) => {
            let _ = e.print();
            return Ok(());
        }
    };
    let result = py.detach(move || stockcast::run(cli, stockcast::Clock::system()));
    result.map_err(|e| error(py, stockcast::exit_code(&e), &stockcast::error_text(&e)))
}

/// A config given as JSON (a Python dict through `json.dumps`) as TOML text, for `--config`.
///
/// # Errors
/// `InputError` when it is not a JSON object or holds what TOML cannot (null, mixed arrays).
#[pyfunction]
fn to_toml(py: Python<'_>, json: &str) -> PyResult<String> {
    let bad = |e: &dyn std::fmt::Display| error(py, stockcast::exit::BAD_INPUT, &format!("config: {e}"));
    let table: toml::Table = serde_json::from_str(json).map_err(|e| bad(&e))?;
    toml::to_string(&table).map_err(|e| bad(&e))
}

fn error(py: Python<'_>, code: u8, msg: &str) -> PyErr {
    let err = match code {
        stockcast::exit::BAD_INPUT => InputError::new_err(msg.to_owned()),
        stockcast::exit::QUALITY => QualityError::new_err(msg.to_owned()),
        _ => StockcastError::new_err(msg.to_owned()),
    };
    let _ = err.value(py).setattr("exit_code", code);
    err
}

/// The extension module.
#[pymodule]
fn _stockcast(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(run, m)?)?;
    m.add_function(wrap_pyfunction!(to_toml, m)?)?;
    m.add("StockcastError", m.py().get_type::<StockcastError>())?;
    m.add("InputError", m.py().get_type::<InputError>())?;
    m.add("QualityError", m.py().get_type::<QualityError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
