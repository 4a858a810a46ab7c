//! Records the `XGBoost` library directory as an rpath of the `stockcast-bench` binary, so it runs without
//! `LD_LIBRARY_PATH` (the link itself comes from `stockcast-models`).

include!("../../build/xgboost_lib.rs");

fn main() {
    let dir = xgboost_lib_dir();
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
}
