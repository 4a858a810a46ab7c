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

/// Takes tokens for 100 clients from 32 concurrent tasks for `window`: how many decisions were made.
async fn throughput(l: &std::sync::Arc<RateLimiter>, window: std::time::Duration) -> usize {
    let end = std::time::Instant::now() + window;
    let tasks = (0..32).map(|k| {
        let l = std::sync::Arc::clone(l);
        tokio::spawn(async move {
            let mut n = 0usize;
            while std::time::Instant::now() < end {
                let _ = l.take(&format!("ip:10.0.{k}.{}", n % 100)).await;
                n += 1;
            }
            n
        })
    });
    futures_util::future::join_all(tasks).await.into_iter().map(Result::unwrap).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_opens_the_breaker_and_keeps_the_limiter_fast() {
    use stockcast_infer::server::ratelimit::OPEN_FOR;
    let redis = LocalRedis::start().unwrap();
    let l = std::sync::Arc::new(RateLimiter::new(1000.0, 1000.0, Some(&redis.url()), "stall").unwrap());
    let window = std::time::Duration::from_millis(1500);
    let normal = throughput(&l, window).await;
    assert!(!l.breaker_open());
    // SIGSTOP: the connection stays open and nothing answers. Without the breaker every decision waited for the
    // Redis deadline (about 2 decisions per second per task); with it, a few wait and the rest go local at once.
    redis.freeze(true);
    let stalled = throughput(&l, window).await;
    assert!(l.breaker_open(), "the breaker opened");
    eprintln!("decisions in {window:?}: {normal} with Redis answering, {stalled} with Redis stopped");
    assert!(2 * stalled >= normal, "stalled {stalled} decisions vs {normal} with Redis answering");
    // Redis back: after the open period one probe closes the breaker and the shared buckets apply again.
    redis.freeze(false);
    tokio::time::sleep(OPEN_FOR + std::time::Duration::from_millis(200)).await;
    let _ = l.take("ip:10.9.9.9").await;
    assert!(!l.breaker_open(), "a good probe closed the breaker");
}
