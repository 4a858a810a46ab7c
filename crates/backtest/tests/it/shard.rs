//! Shard assignment: every task to exactly one shard, balanced by expected size.

use stockcast_backtest::shard::assign;

#[test]
fn tasks_are_balanced_by_weight_better_than_round_robin() {
    // Six models × eight expanding-window folds: fold f trains on 504 + 252 f dates and tests 252.
    let weights: Vec<usize> = (0..6).flat_map(|_| (0..8).map(|f| 504 + 252 * f + 252)).collect();
    for count in [1, 2, 3, 4, 7, 48, 60] {
        let shard = assign(&weights, count);
        assert_eq!(shard.len(), weights.len());
        assert!(shard.iter().all(|&s| s < count), "{shard:?}");
        let load = |of: &dyn Fn(usize) -> usize| -> Vec<usize> {
            (0..count).map(|s| (0..weights.len()).filter(|&t| of(t) == s).map(|t| weights[t]).sum()).collect()
        };
        let greedy = load(&|t| shard[t]);
        let round_robin = load(&|t| t % count);
        let (max, min) = (*greedy.iter().max().unwrap(), *greedy.iter().min().unwrap());
        assert!(max <= *round_robin.iter().max().unwrap(), "{count}: {greedy:?} vs {round_robin:?}");
        if count <= 4 {
            // Many tasks per shard: loads within 5 % of each other.
            assert!(max as f64 <= 1.05 * min as f64, "{count}: {greedy:?}");
        }
        assert_eq!(greedy.iter().sum::<usize>(), weights.iter().sum::<usize>());
        assert_eq!(assign(&weights, count), shard, "deterministic");
    }
}
