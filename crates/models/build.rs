//! Links the real `XGBoost` C library and records its directory as an rpath for this crate's tests.

include!("../../build/xgboost_lib.rs");

fn main() {
    let dir = xgboost_lib_dir();
    println!("cargo:rustc-link-search=native={}", dir.display());
    println!("cargo:rustc-link-lib=dylib=xgboost");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
}
