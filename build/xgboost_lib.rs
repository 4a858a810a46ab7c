// Shared by the build scripts of `stockcast` and `stockcast-models` (via `include!`): where libxgboost is.
// Order: XGBOOST_LIB_DIR, then STOCKCAST_XGBOOST_DIR/xgboost/lib, then the cache that scripts/setup.sh fills.

fn xgboost_lib_dir() -> std::path::PathBuf {
    println!("cargo:rerun-if-env-changed=XGBOOST_LIB_DIR");
    println!("cargo:rerun-if-env-changed=STOCKCAST_XGBOOST_DIR");
    let candidates: Vec<std::path::PathBuf> = [
        std::env::var_os("XGBOOST_LIB_DIR").map(std::path::PathBuf::from),
        std::env::var_os("STOCKCAST_XGBOOST_DIR").map(|d| std::path::PathBuf::from(d).join("xgboost/lib")),
        std::env::var_os("HOME")
            .map(|h| std::path::PathBuf::from(h).join(".cache/stockcast/xgboost-cpu-3.4.1/xgboost/lib")),
    ]
    .into_iter()
    .flatten()
    .collect();
    for dir in &candidates {
        if dir.join("libxgboost.so").exists() {
            println!("cargo:rerun-if-changed={}", dir.join("libxgboost.so").display());
            return dir.clone();
        }
    }
    panic!(
        "libxgboost not found (looked in {candidates:?}); run scripts/setup.sh, or set XGBOOST_LIB_DIR to a \
         directory holding libxgboost.so"
    );
}
