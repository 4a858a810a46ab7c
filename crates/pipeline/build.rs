//! Records the `XGBoost` library directory as an rpath of this crate's tests (the link itself comes from
//! `stockcast-models`; link arguments of a dependency's build script do not reach dependents).

include!("../../build/xgboost_lib.rs");

fn main() {
    let dir = xgboost_lib_dir();
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
}
