//! The rate limiter against a real Redis: AUTH from the URL, one budget shared by limiters (replicas), many
//! requests in flight on one connection, and failing open to the in-process bucket when Redis is gone.

use stockcast_infer::server::ratelimit::RateLimiter;
use stockcast_infer::testkit::LocalRedis;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_protected_redis_holds_one_budget_and_an_outage_falls_back_to_local_buckets() {
    let redis = LocalRedis::start_with_password("s3cret").unwrap();
    let url = format!("redis://:s3cret@127.0.0.1:{}/0", redis.port());
    // A burst of 10 and a rate too slow to refill during the test: exactly 10 of 40 concurrent requests pass,
    // split across two limiters (two replicas) sharing the bucket.
    let (a, b) = (
        RateLimiter::new(0.001, 10.0, Some(&url), "rl-test").unwrap(),
        RateLimiter::new(0.001, 10.0, Some(&url), "rl-test").unwrap(),
    );
    let takes = (0..40).map(|i| {
        let l = if i % 2 == 0 { &a } else { &b };
        l.take("ip:10.0.0.1")
    });
    let decisions = futures_util::future::join_all(takes).await;
    let allowed = decisions.iter().filter(|d| d.allowed).count();
    assert_eq!(allowed, 10, "{decisions:?}");
    assert!(decisions.iter().filter(|d| !d.allowed).all(|d| d.retry_after_s >= 1));
    // Another client has its own bucket in Redis.
    assert!(a.take("ip:10.0.0.2").await.allowed);

    // A wrong password: Redis refuses every call, so the limiter counts in this process (its own full bucket).
    let wrong =
        RateLimiter::new(0.001, 3.0, Some(&format!("redis://:nope@127.0.0.1:{}/0", redis.port())), "x").unwrap();
    let local: Vec<bool> = futures_util::future::join_all((0..5).map(|_| wrong.take("ip:10.0.0.1")))
        .await
        .iter()
        .map(|d| d.allowed)
        .collect();
    assert_eq!(local, [true, true, true, false, false]);

    // Redis stops: the shared limiter fails open to its in-process bucket instead of refusing or hanging.
    drop(redis);
    let t = std::time::Instant::now();
    let d = a.take("ip:10.0.0.1").await;
    assert!(d.allowed, "the in-process bucket of this replica is full: {d:?}");
    assert!(t.elapsed() < std::time::Duration::from_secs(3), "{:?}", t.elapsed());
}
