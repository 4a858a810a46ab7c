//! Rebuilds when migrations change (they are embedded), and records the `XGBoost` library directory as an rpath
//! of this crate's tests (the link comes from `stockcast-models`).

include!("../../build/xgboost_lib.rs");

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    let dir = xgboost_lib_dir();
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
}
