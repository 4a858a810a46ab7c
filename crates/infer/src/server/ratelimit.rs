//! Per-client rate limits: a token bucket per client (the API token when the request carries the configured one,
//! else the client's IP address), kept in Redis when `rate_limit_redis_url` is set so that every replica behind a
//! load balancer draws from the same budget, else in this process. Redis is reached through the `redis` crate's
//! connection manager (one multiplexed connection shared by every request, so they do not wait in line;
//! reconnected on failure; AUTH and TLS from the URL); the bucket update is one Lua script, run by its SHA1,
//! atomic on the Redis server and timed by the Redis server's clock, so replicas with skewed clocks agree. When
//! Redis cannot be reached the in-process buckets take over (logged), so an outage of the limiter never takes the
//! API down.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// The outcome of taking a token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// The request may proceed.
    pub allowed: bool,
    /// Tokens left after this request.
    pub remaining: f64,
    /// Seconds until a token is available (0 when allowed).
    pub retry_after_s: u64,
    /// Seconds until the bucket is full again.
    pub reset_s: u64,
}

fn decision(tokens: f64, allowed: bool, rate: f64, burst: f64) -> Decision {
    let retry_after_s = if allowed { 0 } else { ((1.0 - tokens) / rate).ceil().max(1.0) as u64 };
    Decision {
        allowed,
        remaining: tokens.max(0.0),
        retry_after_s,
        reset_s: ((burst - tokens) / rate).ceil().max(0.0) as u64,
    }
}

/// Buckets in this process (bounded: beyond 100,000 clients the table starts afresh).
#[derive(Debug, Default)]
struct Local {
    buckets: HashMap<String, (f64, Instant)>,
}

impl Local {
    fn take(&mut self, client: &str, rate: f64, burst: f64) -> Decision {
        if self.buckets.len() > 100_000 {
            self.buckets.clear();
        }
        let now = Instant::now();
        let b = self.buckets.entry(client.to_owned()).or_insert((burst, now));
        b.0 = (b.0 + now.duration_since(b.1).as_secs_f64() * rate).min(burst);
        b.1 = now;
        let allowed = b.0 >= 1.0;
        if allowed {
            b.0 -= 1.0;
        }
        decision(b.0, allowed, rate, burst)
    }
}

/// The token bucket in Redis: `KEYS[1]` a hash {t: tokens, ts: ms}; `ARGV` rate per s, burst. Returns
/// {allowed (0/1), tokens left as a string}.
const SCRIPT: &str = "local t = redis.call('TIME') \
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) \
local rate = tonumber(ARGV[1]) local burst = tonumber(ARGV[2]) \
local b = redis.call('HMGET', KEYS[1], 't', 'ts') \
local tokens = tonumber(b[1]) local ts = tonumber(b[2]) \
if tokens == nil then tokens = burst ts = now end \
tokens = math.min(burst, tokens + math.max(0, now - ts) / 1000 * rate) \
local allowed = 0 \
if tokens >= 1 then tokens = tokens - 1 allowed = 1 end \
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'ts', tostring(now)) \
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000) \
return {allowed, tostring(tokens)}";

/// How long a request waits for Redis before the in-process bucket decides instead.
const REDIS_TIMEOUT: Duration = Duration::from_millis(500);
/// After a failed connection attempt, requests use the in-process buckets this long before trying again.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// The shared buckets: the `redis` crate's [`ConnectionManager`] (one multiplexed connection that every request
/// uses at once, reconnected on failure; AUTH from the URL's credentials, TLS with `rediss://`) and the bucket
/// script, sent once and then run by its SHA1 (`EVALSHA`, loaded again when the server forgot it).
struct Shared {
    client: redis::Client,
    script: redis::Script,
    /// The connection once made, or when the last attempt failed.
    conn: tokio::sync::Mutex<Result<ConnectionManager, Option<Instant>>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("redis", &self.client.get_connection_info().addr()).finish_non_exhaustive()
    }
}

impl Shared {
    /// `redis://[user:password@]host[:port][/db]` or `rediss://…` (TLS).
    fn new(url: &str) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("rate_limit_redis_url: {e}"))?;
        Ok(Self { client, script: redis::Script::new(SCRIPT), conn: tokio::sync::Mutex::new(Err(None)) })
    }

    /// The connection, made on first use; None while Redis cannot be reached (retried after a pause).
    async fn connection(&self) -> Option<ConnectionManager> {
        let mut conn = self.conn.lock().await;
        match &*conn {
            Ok(c) => return Some(c.clone()),
            Err(Some(failed)) if failed.elapsed() < RECONNECT_AFTER => return None,
            Err(_) => {}
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1);
        match tokio::time::timeout(REDIS_TIMEOUT * 2, ConnectionManager::new_with_config(self.client.clone(), config))
            .await
        {
            Ok(Ok(c)) => {
                *conn = Ok(c.clone());
                return Some(c);
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "rate limit: redis unreachable; limiting in process"),
            Err(_) => tracing::warn!(error = "timed out", "rate limit: redis unreachable; limiting in process"),
        }
        *conn = Err(Some(Instant::now()));
        None
    }

    /// Takes a token from `key`'s bucket: (allowed, tokens left).
    async fn take(&self, key: &str, rate: f64, burst: f64) -> Option<(bool, f64)> {
        let mut conn = self.connection().await?;
        let mut invocation = self.script.key(key);
        invocation.arg(rate).arg(burst);
        match tokio::time::timeout(REDIS_TIMEOUT, invocation.invoke_async::<(i64, String)>(&mut conn)).await {
            Ok(Ok((allowed, tokens))) => Some((allowed == 1, tokens.parse().unwrap_or(0.0))),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "rate limit: redis call failed; limiting in process");
                None
            }
            Err(_) => {
                tracing::warn!("rate limit: redis timed out; limiting in process");
                None
            }
        }
    }
}

/// The limiter of a server.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    prefix: String,
    local: std::sync::Mutex<Local>,
    redis: Option<Shared>,
}

impl RateLimiter {
    /// A limiter of `rate` requests per second per client with bucket size `burst`, in Redis when `redis_url` is
    /// given (`redis://[user:password@]host[:port][/db]`, or `rediss://` for TLS).
    ///
    /// # Errors
    /// A malformed `redis_url`.
    pub fn new(rate: f64, burst: f64, redis_url: Option<&str>, prefix: &str) -> Result<Self, String> {
        let redis = redis_url.map(Shared::new).transpose()?;
        Ok(Self { rate, burst: burst.max(1.0), prefix: prefix.to_owned(), local: std::sync::Mutex::default(), redis })
    }

    /// Whether limits apply at all.
    pub fn enabled(&self) -> bool {
        self.rate > 0.0
    }

    /// The bucket size.
    pub fn burst(&self) -> f64 {
        self.burst
    }

    /// Takes a token for `client`: from the shared bucket in Redis, or, when Redis is not configured or cannot
    /// answer in time, from this process's bucket (the limiter fails open to per-replica limits, never closed).
    pub async fn take(&self, client: &str) -> Decision {
        if let Some(r) = &self.redis
            && let Some((allowed, tokens)) = r.take(&format!("{}:{client}", self.prefix), self.rate, self.burst).await
        {
            return decision(tokens, allowed, self.rate, self.burst);
        }
        self.local.lock().map_or(Decision { allowed: true, remaining: 0.0, retry_after_s: 0, reset_s: 0 }, |mut l| {
            l.take(client, self.rate, self.burst)
        })
    }
}

/// FNV-1a (64 bit): a stable, dependency-free hash (the same on every replica and release) for ETags and keys.
pub(super) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// The client a request is counted for: `token:<hash>` when it carries the configured API token, else
/// `ip:<address>` (a made-up token does not buy a fresh bucket).
pub fn client_key(valid_token: Option<&str>, ip: Option<IpAddr>) -> String {
    match (valid_token, ip) {
        (Some(t), _) => format!("token:{:016x}", fnv1a(t.as_bytes())),
        (None, Some(ip)) => format!("ip:{ip}"),
        (None, None) => "ip:unknown".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_urls_with_credentials_tls_and_databases_are_accepted_and_others_refused() {
        for url in ["redis://127.0.0.1:6379/2", "redis://:secret@h:1/0", "redis://user:secret@h", "rediss://h:6380"] {
            assert!(RateLimiter::new(1.0, 1.0, Some(url), "t").is_ok(), "{url}");
        }
        let e = RateLimiter::new(1.0, 1.0, Some("http://h:1"), "t").unwrap_err();
        assert!(e.contains("rate_limit_redis_url"), "{e}");
    }

    #[tokio::test]
    async fn the_local_bucket_allows_the_burst_then_the_rate() {
        let l = RateLimiter::new(1.0, 3.0, None, "t").unwrap();
        let a: Vec<bool> =
            futures_util::future::join_all((0..5).map(|_| l.take("ip:1"))).await.iter().map(|d| d.allowed).collect();
        assert_eq!(a, [true, true, true, false, false]);
        let d = l.take("ip:1").await;
        assert!(!d.allowed && d.retry_after_s >= 1);
        assert!(l.take("ip:2").await.allowed, "another client has its own bucket");
    }
}
