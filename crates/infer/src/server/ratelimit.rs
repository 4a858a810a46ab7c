//! Per-client rate limits: a token bucket per client (the API token when the request carries the configured one,
//! else the client's IP address), kept in Redis when `rate_limit_redis_url` is set so that every replica behind a
//! load balancer draws from the same budget, else in this process. Redis is spoken to directly (RESP over TCP,
//! one pooled connection); the bucket update is one Lua script, atomic on the Redis server and timed by the
//! Redis server's clock, so replicas with skewed clocks agree. When Redis cannot be reached the in-process
//! buckets take over (logged), so an outage of the limiter never takes the API down.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

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

/// A RESP value (the subset Redis answers with here).
#[derive(Debug, Clone, PartialEq)]
enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Resp>),
}

async fn read_resp<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> std::io::Result<Resp> {
    let mut line = String::new();
    if r.read_line(&mut line).await? == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "redis closed the connection"));
    }
    let line = line.trim_end_matches(['\r', '\n']);
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, format!("bad redis reply {line:?}"));
    let (kind, rest) = line.split_at_checked(1).ok_or_else(bad)?;
    Ok(match kind {
        "+" => Resp::Simple(rest.to_owned()),
        "-" => Resp::Error(rest.to_owned()),
        ":" => Resp::Int(rest.parse().map_err(|_| bad())?),
        "$" => {
            let n: i64 = rest.parse().map_err(|_| bad())?;
            if n < 0 {
                Resp::Bulk(None)
            } else {
                let mut buf = vec![0u8; usize::try_from(n).map_err(|_| bad())? + 2];
                r.read_exact(&mut buf).await?;
                buf.truncate(buf.len() - 2);
                Resp::Bulk(Some(buf))
            }
        }
        "*" => {
            let n: i64 = rest.parse().map_err(|_| bad())?;
            let mut items = Vec::new();
            for _ in 0..n.max(0) {
                items.push(Box::pin(read_resp(r)).await?);
            }
            Resp::Array(items)
        }
        _ => return Err(bad()),
    })
}

fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// One Redis connection, reconnected on failure.
#[derive(Debug)]
struct Redis {
    addr: String,
    db: u32,
    conn: Option<BufReader<TcpStream>>,
}

impl Redis {
    /// `redis://host:port[/db]` (no TLS, no password: keep Redis on a private network).
    fn parse(url: &str) -> Result<(String, u32), String> {
        let rest = url.strip_prefix("redis://").ok_or_else(|| format!("{url:?}: expected redis://host:port[/db]"))?;
        let (host, db) = match rest.split_once('/') {
            Some((h, d)) if !d.is_empty() => (h, d.parse::<u32>().map_err(|_| format!("{url:?}: bad database {d:?}"))?),
            Some((h, _)) => (h, 0),
            None => (rest, 0),
        };
        if host.contains('@') {
            return Err("rate_limit_redis_url: credentials in the URL are not supported".into());
        }
        let host = if host.contains(':') { host.to_owned() } else { format!("{host}:6379") };
        Ok((host, db))
    }

    async fn command(&mut self, args: &[&[u8]]) -> std::io::Result<Resp> {
        if self.conn.is_none() {
            let s = tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(&self.addr))
                .await
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "redis connect timed out"))??;
            s.set_nodelay(true)?;
            let mut c = BufReader::new(s);
            if self.db != 0 {
                let db = self.db.to_string();
                c.get_mut().write_all(&encode(&[b"SELECT", db.as_bytes()])).await?;
                read_resp(&mut c).await?;
            }
            self.conn = Some(c);
        }
        let Some(c) = self.conn.as_mut() else { unreachable!("connected above") };
        let io = async {
            c.get_mut().write_all(&encode(args)).await?;
            read_resp(c).await
        };
        match tokio::time::timeout(Duration::from_millis(500), io).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => {
                self.conn = None;
                Err(e)
            }
            Err(_) => {
                self.conn = None;
                Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "redis timed out"))
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
    redis: Option<tokio::sync::Mutex<Redis>>,
}

impl RateLimiter {
    /// A limiter of `rate` requests per second per client with bucket size `burst`, in Redis when `redis_url` is
    /// given.
    ///
    /// # Errors
    /// A malformed `redis_url`.
    pub fn new(rate: f64, burst: f64, redis_url: Option<&str>, prefix: &str) -> Result<Self, String> {
        let redis = match redis_url {
            Some(u) => {
                let (addr, db) = Redis::parse(u)?;
                Some(tokio::sync::Mutex::new(Redis { addr, db, conn: None }))
            }
            None => None,
        };
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

    /// Takes a token for `client`.
    pub async fn take(&self, client: &str) -> Decision {
        if let Some(r) = &self.redis {
            let key = format!("{}:{client}", self.prefix);
            let (rate, burst) = (self.rate.to_string(), self.burst.to_string());
            let reply = r
                .lock()
                .await
                .command(&[b"EVAL", SCRIPT.as_bytes(), b"1", key.as_bytes(), rate.as_bytes(), burst.as_bytes()])
                .await;
            match reply {
                Ok(Resp::Array(v)) if v.len() == 2 => {
                    let allowed = v[0] == Resp::Int(1);
                    let tokens = match &v[1] {
                        Resp::Bulk(Some(b)) => std::str::from_utf8(b).ok().and_then(|s| s.parse().ok()).unwrap_or(0.0),
                        _ => 0.0,
                    };
                    return decision(tokens, allowed, self.rate, self.burst);
                }
                Ok(other) => tracing::warn!(reply = ?other, "rate limit: unexpected redis reply; limiting in process"),
                Err(e) => tracing::warn!(error = %e, "rate limit: redis unreachable; limiting in process"),
            }
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

    #[tokio::test]
    async fn resp_replies_parse() {
        let mut r = BufReader::new(&b"*2\r\n:1\r\n$3\r\n4.5\r\n"[..]);
        assert_eq!(
            read_resp(&mut r).await.unwrap(),
            Resp::Array(vec![Resp::Int(1), Resp::Bulk(Some(b"4.5".to_vec()))])
        );
        let mut r = BufReader::new(&b"-ERR nope\r\n"[..]);
        assert_eq!(read_resp(&mut r).await.unwrap(), Resp::Error("ERR nope".into()));
        assert_eq!(encode(&[b"GET", b"k"]), b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
        assert!(Redis::parse("redis://u:p@h:1").is_err());
        assert_eq!(Redis::parse("redis://h/2").unwrap(), ("h:6379".into(), 2));
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
