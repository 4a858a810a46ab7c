//! Parameter sweeps in the backtest config: grid expansion, names, and the errors that name the problem.

use stockcast_backtest::BacktestConfig;
use stockcast_models::ModelConfig;

fn config(extra: &str) -> Result<BacktestConfig, String> {
    let text = format!(
        "[[models]]\nname = \"lin\"\nmodel = {{ kind = \"linear\", alpha = 0.01 }}\n\
         [[models]]\nname = \"mom\"\nmodel = {{ kind = \"rule\", rule = \"momentum\", lookback = 20 }}\n{extra}"
    );
    BacktestConfig::from_toml(&text).map_err(|e| e.to_string())
}

#[test]
fn a_sweep_expands_into_every_grid_point_in_place() {
    let cfg = config("[sweep.lin]\nalpha = [0.1, 1.0]\nl1_ratio = [0.0, 0.5, 1.0]\n").unwrap();
    let specs = cfg.model_specs().unwrap();
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    // 2 × 3 points where `lin` was, the last parameter fastest; `mom` untouched after them.
    assert_eq!(names.len(), 7, "{names:?}");
    assert_eq!(names[0], "lin[alpha=0.1,l1_ratio=0.0]");
    assert_eq!(names[2], "lin[alpha=0.1,l1_ratio=1.0]");
    assert_eq!(names[5], "lin[alpha=1.0,l1_ratio=1.0]");
    assert_eq!(names[6], "mom");
    // Each point carries its own parameters, and the others of the base model.
    let text = toml::to_string(&specs[4].config).unwrap();
    let want = ModelConfig::from_toml("kind = \"linear\"\nalpha = 1.0\nl1_ratio = 0.5\n").unwrap();
    assert_eq!(specs[4].config, want, "{text}");
}

#[test]
fn sweep_errors_name_the_model_and_parameter() {
    let err = |extra: &str| config(extra).and_then(|c| c.model_specs().map_err(|e| e.to_string())).unwrap_err();
    let e = err("[sweep.nope]\nalpha = [1.0]\n");
    assert!(e.contains("nope") && e.contains("no model"), "{e}");
    let e = err("[sweep.lin]\nalpha = 1.0\n");
    assert!(e.contains("sweep.lin") && e.contains("alpha") && e.contains("array"), "{e}");
    let e = err("[sweep.lin]\nalpha = []\n");
    assert!(e.contains("alpha"), "{e}");
    let e = err("[sweep.lin]\nkind = [\"gbm\"]\n");
    assert!(e.contains("kind"), "{e}");
    // A parameter the kind does not have, and a value its validation refuses.
    let e = err("[sweep.lin]\ndepth = [1, 2]\n");
    assert!(e.contains("lin[depth=1]") && e.contains("depth"), "{e}");
    let e = err("[sweep.lin]\nalpha = [-1.0]\n");
    assert!(e.contains("lin[alpha=-1.0]"), "{e}");
}
