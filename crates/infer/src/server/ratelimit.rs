//! Per-client rate limits: a token bucket per client (the API token when the request carries the configured one,
//! else the client's IP address), kept in Redis when `rate_limit_redis_url` is set so that every replica behind a
//! load balancer draws from the same budget, else in this process. Redis is reached through the `redis` crate's
//! connection manager (one multiplexed connection shared by every request, so they do not wait in line;
//! reconnected on failure; AUTH and TLS from the URL); the bucket update is one Lua script, run by its SHA1,
//! atomic on the Redis server and timed by the Redis server's clock, so replicas with skewed clocks agree. When
//! Redis cannot be reached or answer within [`REDIS_TIMEOUT`] the in-process buckets take over, so an outage of the
//! limiter never takes the API down; and a circuit breaker keeps a stalled Redis from costing every request its
//! deadline: after [`TRIP_AFTER`] failures in a row the breaker opens and requests use the in-process buckets at
//! once for [`OPEN_FOR`], then one request probes Redis (closing the breaker if it answers). One warning per
//! transition, not per request; `stockcast_rate_limit_breaker_open` shows the state.

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

/// How long a request waits for Redis before the in-process bucket decides instead (well inside the request
/// timeout).
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(200);
/// After a failed connection attempt, requests use the in-process buckets this long before trying again.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);
/// Failures in a row that open the breaker.
pub const TRIP_AFTER: u32 = 3;
/// How long an open breaker sends every request to the in-process buckets before one probes Redis.
pub const OPEN_FOR: Duration = Duration::from_secs(5);

/// The circuit breaker in front of Redis.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Breaker {
    /// Redis is asked; `failures` in a row so far.
    Closed { failures: u32 },
    /// Redis is not asked until then.
    Open { until: Instant },
    /// One request is probing Redis; the others use the in-process buckets.
    Probing,
}

impl Breaker {
    /// Whether this request may ask Redis (a probe when the open period is over).
    fn admit(&mut self, now: Instant) -> bool {
        match *self {
            Self::Closed { .. } => true,
            Self::Open { until } if now >= until => {
                *self = Self::Probing;
                true
            }
            Self::Open { .. } | Self::Probing => false,
        }
    }

    /// Records an answer from Redis.
    fn success(&mut self) {
        if !matches!(self, Self::Closed { failures: 0 }) {
            if !matches!(self, Self::Closed { .. }) {
                tracing::warn!("rate limit: redis answers again; the shared limits apply (breaker closed)");
            }
            *self = Self::Closed { failures: 0 };
        }
    }

    /// Records a failure (`why`): opens after [`TRIP_AFTER`] in a row, or when a probe fails.
    fn failure(&mut self, now: Instant, why: &str) {
        match *self {
            Self::Closed { failures } if failures + 1 < TRIP_AFTER => *self = Self::Closed { failures: failures + 1 },
            Self::Closed { .. } => {
                tracing::warn!(
                    error = why,
                    "rate limit: redis failed {TRIP_AFTER} times in a row; limiting in process for {} s (breaker open)",
                    OPEN_FOR.as_secs()
                );
                *self = Self::Open { until: now + OPEN_FOR };
            }
            Self::Probing | Self::Open { .. } => {
                tracing::debug!(error = why, "rate limit: redis probe failed; breaker stays open");
                *self = Self::Open { until: now + OPEN_FOR };
            }
        }
    }
}

/// The shared buckets: the `redis` crate's [`ConnectionManager`] (one multiplexed connection that every request
/// uses at once, reconnected on failure; AUTH from the URL's credentials, TLS with `rediss://`) and the bucket
/// script, sent once and then run by its SHA1 (`EVALSHA`, loaded again when the server forgot it).
struct Shared {
    client: redis::Client,
    script: redis::Script,
    /// The connection once made, or when the last attempt failed.
    conn: tokio::sync::Mutex<Result<ConnectionManager, Option<Instant>>>,
    breaker: std::sync::Mutex<Breaker>,
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
        Ok(Self {
            client,
            script: redis::Script::new(SCRIPT),
            conn: tokio::sync::Mutex::new(Err(None)),
            breaker: std::sync::Mutex::new(Breaker::Closed { failures: 0 }),
        })
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
            Ok(Err(e)) => tracing::debug!(error = %e, "rate limit: redis unreachable; limiting in process"),
            Err(_) => tracing::debug!(error = "timed out", "rate limit: redis unreachable; limiting in process"),
        }
        *conn = Err(Some(Instant::now()));
        None
    }

    /// Takes a token from `key`'s bucket: (allowed, tokens left); `None` (the in-process bucket decides) when the
    /// breaker is open or Redis fails or is late.
    async fn take(&self, key: &str, rate: f64, burst: f64) -> Option<(bool, f64)> {
        let lock = |f: &dyn Fn(&mut Breaker) -> bool| self.breaker.lock().is_ok_and(|mut b| f(&mut b));
        if !lock(&|b| b.admit(Instant::now())) {
            return None;
        }
        let result = match self.connection().await {
            None => Err("unreachable".to_owned()),
            Some(mut conn) => {
                let mut invocation = self.script.key(key);
                invocation.arg(rate).arg(burst);
                match tokio::time::timeout(REDIS_TIMEOUT, invocation.invoke_async::<(i64, String)>(&mut conn)).await {
                    Ok(Ok((allowed, tokens))) => Ok((allowed == 1, tokens.parse().unwrap_or(0.0))),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no answer within {} ms", REDIS_TIMEOUT.as_millis())),
                }
            }
        };
        match result {
            Ok(v) => {
                lock(&|b| {
                    b.success();
                    true
                });
                Some(v)
            }
            Err(why) => {
                lock(&|b| {
                    b.failure(Instant::now(), &why);
                    true
                });
                None
            }
        }
    }

    fn open(&self) -> bool {
        self.breaker.lock().is_ok_and(|b| !matches!(*b, Breaker::Closed { .. }))
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

    /// Whether the breaker in front of Redis is open (or probing): requests use the in-process buckets.
    pub fn breaker_open(&self) -> bool {
        self.redis.as_ref().is_some_and(Shared::open)
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
/// `ip:<address>` (a made-up token does not buy a fresh bucket); an IPv6 client by its /64, the block one host
/// gets, so it cannot rotate through addresses to get fresh buckets.
pub fn client_key(valid_token: Option<&str>, ip: Option<IpAddr>) -> String {
    match (valid_token, ip) {
        (Some(t), _) => format!("token:{:016x}", fnv1a(t.as_bytes())),
        (None, Some(ip)) => format!("ip:{}", address_key(ip)),
        (None, None) => "ip:unknown".to_owned(),
    }
}

/// An address as one client: IPv4 as it is, IPv6 (not an IPv4-mapped one) as its /64.
pub fn address_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or_else(|| ip.to_string(), |v4| v4.to_string()),
        IpAddr::V4(_) => ip.to_string(),
    }
}

/// A network in CIDR notation (`10.0.0.0/8`, `fd00::/8`) or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`, `x::/n` or an address (all of its bits).
    ///
    /// # Errors
    /// What is wrong with `s`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (addr, bits) = s.trim().split_once('/').map_or((s.trim(), None), |(a, b)| (a, Some(b)));
        let net: IpAddr = addr.parse().map_err(|_| format!("trusted_proxies: {s:?} is not an address or CIDR"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) => b
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("trusted_proxies: {s:?} has a prefix length other than 0..={max}"))?,
        };
        Ok(Self { net, bits })
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = u32::from(self.bits);
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// The client of a request that came from `peer`: when `peer` is a trusted proxy, the right-most address of
/// `X-Forwarded-For` (or else `Forwarded: for=`) that is not a trusted proxy itself; otherwise `peer` (headers
/// from an untrusted peer are ignored: anyone can write them).
pub fn forwarded_client(peer: IpAddr, trusted: &[Cidr], headers: &axum::http::HeaderMap) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let mut chain: Vec<IpAddr> = Vec::new();
    for v in headers.get_all("x-forwarded-for") {
        chain.extend(v.to_str().unwrap_or("").split(',').filter_map(|a| a.trim().parse::<IpAddr>().ok()));
    }
    if chain.is_empty() {
        for v in headers.get_all("forwarded") {
            for part in v.to_str().unwrap_or("").split([',', ';']) {
                let Some((k, val)) = part.trim().split_once('=') else { continue };
                if k.trim().eq_ignore_ascii_case("for") {
                    let val = val.trim().trim_matches('"');
                    // `for="[2001:db8::1]:4711"` or `for=192.0.2.1:8080` or a bare address.
                    let host = val.strip_prefix('[').and_then(|r| r.split(']').next()).unwrap_or_else(|| {
                        if val.matches(':').count() == 1 { val.split(':').next().unwrap_or(val) } else { val }
                    });
                    if let Ok(ip) = host.parse::<IpAddr>() {
                        chain.push(ip);
                    }
                }
            }
        }
    }
    chain.into_iter().rev().find(|ip| !is_trusted(*ip)).unwrap_or(peer)
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

    #[test]
    fn clients_behind_trusted_proxies_and_ipv6_blocks_are_told_apart() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let trusted = [Cidr::parse("10.0.0.0/8").unwrap(), Cidr::parse("fd00::/8").unwrap()];
        let mut h = axum::http::HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.7, 198.51.100.2, 10.1.2.3".parse().unwrap());
        // From the trusted ingress: the right-most untrusted address of the chain (not the client-written first).
        assert_eq!(forwarded_client(ip("10.0.0.5"), &trusted, &h), ip("198.51.100.2"));
        // From anyone else the header is ignored.
        assert_eq!(forwarded_client(ip("192.0.2.9"), &trusted, &h), ip("192.0.2.9"));
        let mut f = axum::http::HeaderMap::new();
        f.insert("forwarded", "for=192.0.2.60;proto=http, for=\"[2001:db8:cafe::17]:4711\"".parse().unwrap());
        assert_eq!(forwarded_client(ip("fd00::1"), &trusted, &f), ip("2001:db8:cafe::17"));
        f.insert("forwarded", "for=192.0.2.43:8080".parse().unwrap());
        assert_eq!(forwarded_client(ip("10.9.9.9"), &trusted, &f), ip("192.0.2.43"));
        // Nothing untrusted in the chain: the peer itself.
        assert_eq!(forwarded_client(ip("10.0.0.5"), &trusted, &axum::http::HeaderMap::new()), ip("10.0.0.5"));
        // IPv6 clients count by their /64; IPv4 and mapped IPv4 by the address.
        assert_eq!(
            client_key(None, Some(ip("2001:db8:1:2:aaaa::1"))),
            client_key(None, Some(ip("2001:db8:1:2:bbbb::9")))
        );
        assert_ne!(client_key(None, Some(ip("2001:db8:1:2::1"))), client_key(None, Some(ip("2001:db8:1:3::1"))));
        assert_eq!(client_key(None, Some(ip("::ffff:192.0.2.1"))), "ip:192.0.2.1");
        assert!(Cidr::parse("10.0.0.0/33").is_err() && Cidr::parse("ten").is_err());
        assert!(Cidr::parse("192.0.2.1").unwrap().contains(ip("192.0.2.1")));
        assert!(!Cidr::parse("192.0.2.1").unwrap().contains(ip("192.0.2.2")));
    }

    #[test]
    fn the_breaker_opens_after_failures_in_a_row_then_lets_one_probe_through() {
        let t0 = Instant::now();
        let mut b = Breaker::Closed { failures: 0 };
        for _ in 0..TRIP_AFTER - 1 {
            assert!(b.admit(t0));
            b.failure(t0, "x");
        }
        assert!(b.admit(t0));
        b.success();
        assert_eq!(b, Breaker::Closed { failures: 0 }, "a success resets the count");
        for _ in 0..TRIP_AFTER {
            assert!(b.admit(t0));
            b.failure(t0, "x");
        }
        assert!(!b.admit(t0 + OPEN_FOR / 2), "open: Redis is not asked");
        assert!(b.admit(t0 + OPEN_FOR), "after the open period one request probes");
        assert!(!b.admit(t0 + OPEN_FOR), "and only one");
        b.failure(t0 + OPEN_FOR, "x");
        assert!(!b.admit(t0 + OPEN_FOR + OPEN_FOR / 2), "a failed probe opens it again");
        assert!(b.admit(t0 + OPEN_FOR * 2));
        b.success();
        assert!(b.admit(t0 + OPEN_FOR * 2), "a good probe closes it");
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
