//! The HTTP server against real Postgres: every endpoint's success and error paths, reload under load, a damaged
//! artifact refused, the database lost while serving and unreachable at start, rate limiting.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use stockcast_infer::server::ServeConfig;
use stockcast_infer::store;
use stockcast_infer::testkit::{self as http_client, HttpClient, HttpResponse, LoadRequest};
use stockcast_models::registry::Registry;

use crate::fixture::{LINEAR, Server, date, promote, publish, us5};
use crate::pg;

const TOKEN: &str = "test-token-123";

struct Env {
    cluster: pg::Cluster,
    url: String,
    models: tempfile::TempDir,
    reg: Registry,
    prices: stockcast_features::PriceFrame,
}

/// A database with us5 prices (AAPL in "Information Technology") and a registry whose `lin` champion is v1.
async fn env(db_name: &str) -> Env {
    let cluster = pg::Cluster::start();
    let url = cluster.url(db_name);
    let pool = store::connect(&url, store::PoolConfig::default()).await.unwrap();
    store::migrate(&pool).await.unwrap();
    let prices = us5().prices;
    let sec = [stockcast_features::Security {
        symbol: "AAPL".into(),
        name: Some("Apple".into()),
        sector: Some("Information Technology".into()),
    }];
    store::import_prices(&pool, &prices, &sec).await.unwrap();
    pool.close().await;
    let models = tempfile::tempdir().unwrap();
    let reg = Registry::new(models.path());
    let v = publish(&reg, "lin", LINEAR, &prices, date("2012-06-29"));
    promote(&reg, "lin", v);
    Env { cluster, url, models, reg, prices }
}

fn config(e: &Env) -> ServeConfig {
    ServeConfig {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        models_dir: e.models.path().to_path_buf(),
        database_url: Some(e.url.clone()),
        api_token: Some(TOKEN.into()),
        poll_s: 0,
        db_acquire_timeout_ms: 1_000,
        ..ServeConfig::default()
    }
}

async fn get(addr: SocketAddr, path: &str) -> HttpResponse {
    HttpClient::connect(addr).await.unwrap().send("GET", path, &[], None).await.unwrap()
}

async fn post(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &Value) -> HttpResponse {
    let b = body.to_string();
    HttpClient::connect(addr).await.unwrap().send("POST", path, headers, Some(b.as_bytes())).await.unwrap()
}

/// The property names of a response's JSON schema, following a `$ref` into the components.
fn documented_fields(doc: &Value, response: &Value) -> std::collections::BTreeSet<String> {
    let mut schema = &response["content"]["application/json"]["schema"];
    if let Some(r) = schema["$ref"].as_str() {
        schema = &doc["components"]["schemas"][r.trim_start_matches("#/components/schemas/")];
    }
    schema["properties"].as_object().map(|p| p.keys().cloned().collect()).unwrap_or_default()
}

const AUTH: (&str, &str) = ("authorization", "Bearer test-token-123");

/// The error body: `{error, message}`, with no internals.
fn error(r: &HttpResponse, status: u16, code: &str) -> String {
    assert_eq!(r.status, status, "{}", r.text());
    let v = r.json();
    assert_eq!(v["error"], code, "{v}");
    let m = v["message"].as_str().unwrap().to_owned();
    for leak in ["SELECT", "INSERT", "panicked", "/tmp", ".rs:", "sqlx"] {
        assert!(!m.contains(leak), "internal detail {leak:?} in {m}");
    }
    assert!(r.header("x-request-id").is_some());
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_and_refuses_bad_requests_with_json_errors() {
    let e = env("api").await;
    let s = Server::start(ServeConfig { body_limit_bytes: 4_096, ..config(&e) }).await;
    let a = s.addr;

    // Health, readiness, OpenAPI, models.
    let h = get(a, "/healthz").await;
    assert_eq!((h.status, h.json()["database"].clone()), (200, json!("ok")));
    assert_eq!(h.json()["models"], json!(["lin@1"]));
    let r = get(a, "/readyz").await;
    assert_eq!((r.status, r.json()["ready"].clone()), (200, json!(true)));
    let o = get(a, "/openapi.json").await.json();
    assert_eq!(o["openapi"], "3.1.0");
    for p in stockcast_infer::server::ROUTES.iter().filter(|p| p.starts_with("/v1/")) {
        assert!(o["paths"][p].is_object(), "{p} missing from the OpenAPI document");
    }
    // …and every documented route is in the router's list (the metrics' route labels borrow from it).
    for p in o["paths"].as_object().unwrap().keys() {
        assert!(stockcast_infer::server::ROUTES.contains(&p.as_str()), "{p} missing from server::ROUTES");
    }
    // Every documented 200 of a /v1/ route names its fields (generated from the handlers' types).
    let mut checked = 0;
    for (path, item) in o["paths"].as_object().unwrap() {
        if !path.starts_with("/v1/") {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            let fields = documented_fields(&o, &op["responses"]["200"]);
            assert!(!fields.is_empty(), "{method} {path}: the 200 response has no properties");
            checked += 1;
        }
    }
    assert_eq!(checked, 6);
    let m = get(a, "/v1/models").await.json();
    // What the handler returns is what the document says (no undocumented field).
    let documented = documented_fields(&o, &o["paths"]["/v1/models"]["get"]["responses"]["200"]);
    let item = documented_fields(
        &o,
        &json!({"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ModelInfo"}}}}),
    );
    assert!(m.as_object().unwrap().keys().all(|k| documented.contains(k)), "{m}");
    assert!(m["models"][0].as_object().unwrap().keys().all(|k| item.contains(k)), "{m}");
    assert_eq!(m["models"][0]["name"], "lin");
    assert_eq!(m["models"][0]["version"], 1);
    assert_eq!(m["models"][0]["horizon"], 5);

    // Before any run: 404 with a message naming the model.
    let msg = error(&get(a, "/v1/recommendations").await, 404, "not_found");
    assert!(msg.contains("lin@1"), "{msg}");

    // Runs need the token.
    let body = json!({"date": "2012-12-31"});
    error(&post(a, "/v1/recommendations/run", &[], &body).await, 401, "unauthorized");
    error(&post(a, "/v1/recommendations/run", &[("authorization", "Bearer wrong")], &body).await, 401, "unauthorized");
    error(&post(a, "/v1/admin/reload", &[], &json!({})).await, 401, "unauthorized");
    let run = post(a, "/v1/recommendations/run", &[AUTH], &body).await;
    assert_eq!(run.status, 200, "{}", run.text());
    let runs = run.json()["runs"].clone();
    assert_eq!(runs[0]["rows"], 5);
    assert_eq!(runs[0]["replaced"], false);
    let again = post(a, "/v1/recommendations/run", &[AUTH], &body).await.json();
    assert_eq!(again["runs"][0]["replaced"], true);
    assert_eq!(again["runs"][0]["run_id"], runs[0]["run_id"]);
    let msg =
        error(&post(a, "/v1/recommendations/run", &[AUTH], &json!({"date": "2012-12-25"})).await, 422, "unprocessable");
    assert!(msg.contains("2012-12-25"), "{msg}");
    error(&post(a, "/v1/recommendations/run", &[AUTH], &json!({"day": "2012-12-31"})).await, 422, "unprocessable");

    // Recommendations: ordering, filters, limit; the rows agree with the database.
    let rec = get(a, "/v1/recommendations?date=2012-12-31").await;
    assert_eq!(rec.status, 200);
    let v = rec.json();
    let rows = v["recommendations"].as_array().unwrap();
    assert_eq!(rows.len(), 5);
    assert_eq!(v["model"], "lin@1");
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r["rank"], i + 1);
        if i > 0 {
            assert!(r["expected_return"].as_f64().unwrap() <= rows[i - 1]["expected_return"].as_f64().unwrap());
        }
    }
    assert_eq!(rows[0]["action"], "buy");
    assert_eq!(rows[4]["action"], "sell");
    let it = get(a, "/v1/recommendations?sector=Information%20Technology").await.json();
    assert_eq!(it["recommendations"].as_array().unwrap().len(), 1);
    assert_eq!(it["recommendations"][0]["symbol"], "AAPL");
    let buys = get(a, "/v1/recommendations?action=buy&limit=3").await.json();
    assert!(buys["recommendations"].as_array().unwrap().iter().all(|r| r["action"] == "buy"));
    assert_eq!(get(a, "/v1/recommendations?limit=2").await.json()["recommendations"].as_array().unwrap().len(), 2);
    for bad in [
        "date=2012-13-01",
        "limit=0",
        "limit=abc",
        "action=short",
        "colour=red",
        "model=lin@",
        "model=a/b",
        "date=1&date=2",
    ] {
        let m = error(&get(a, &format!("/v1/recommendations?{bad}")).await, 400, "invalid_parameter");
        // The message names the parameter (the typed query struct's parser is also what /openapi.json documents).
        let key = bad.split('=').next().unwrap();
        assert!(m.contains(key), "{bad}: {m}");
    }
    let m = error(&get(a, "/v1/predictions?symbol=AAPL").await, 400, "invalid_parameter");
    assert!(m.contains("symbol") && m.contains("symbols"), "{m}");
    error(&get(a, "/v1/recommendations?model=other").await, 404, "not_found");
    // NAME@ALIAS is the same grammar as the CLI's: an unknown alias is not found, the champion's is the run.
    error(&get(a, "/v1/recommendations?model=lin@nope").await, 404, "not_found");
    let by_alias = get(a, "/v1/recommendations?model=lin@champion&limit=1").await;
    assert_eq!(by_alias.status, 200, "{}", by_alias.text());
    error(&get(a, "/v1/recommendations?date=2012-12-28").await, 404, "not_found");

    // Stored predictions.
    let p = get(a, "/v1/predictions?symbols=AAPL,MSFT,ZZZ").await.json();
    assert_eq!(p["predictions"].as_array().unwrap().len(), 2);
    assert_eq!(p["missing"], json!(["ZZZ"]));
    let score_aapl = p["predictions"][0]["score"].as_f64().unwrap();
    error(&get(a, "/v1/predictions?symbols=bad%20symbol").await, 400, "invalid_parameter");
    error(&get(a, "/v1/predictions?symbols=ZZZ").await, 404, "not_found");

    // Live scoring from stored prices agrees with the stored run.
    let live = post(a, "/v1/predict", &[], &json!({"symbols": ["AAPL"], "date": "2012-12-31"})).await;
    assert_eq!(live.status, 200, "{}", live.text());
    let live_aapl = live.json()["predictions"][0]["score"].as_f64().unwrap();
    let partial = post(a, "/v1/predict", &[], &json!({"symbols": ["AAPL", "ZZZ"], "date": "2012-12-31"})).await.json();
    assert_eq!(partial["missing"], json!(["ZZZ"]));
    assert!((live_aapl - score_aapl).abs() < 1e-12, "{live_aapl} vs {score_aapl}");
    // ... and from bars in the body: the stored history of AAPL and MSFT up to the date.
    let df = e.prices.until(date("2012-12-31")).unwrap().since(date("2011-06-01")).unwrap();
    let mut bars = Vec::new();
    for s in df.series().unwrap().iter().filter(|s| s.symbol == "AAPL" || s.symbol == "MSFT") {
        let (o, h, l, v) =
            (s.open.as_ref().unwrap(), s.high.as_ref().unwrap(), s.low.as_ref().unwrap(), s.volume.as_ref().unwrap());
        for i in 0..s.len() {
            bars.push(json!({"symbol": s.symbol, "date": s.dates[i], "open": o[i], "high": h[i], "low": l[i], "close": s.close[i], "volume": v[i]}));
        }
    }
    let big = ServeConfig { body_limit_bytes: 1 << 20, ..config(&e) };
    let s2 = Server::start(big).await;
    let from_bars = post(s2.addr, "/v1/predict", &[], &json!({"bars": bars})).await;
    assert_eq!(from_bars.status, 200, "{}", from_bars.text());
    let fb = from_bars.json();
    assert_eq!(fb["date"], "2012-12-31");
    assert_eq!(fb["predictions"].as_array().unwrap().len(), 2);
    // A bad bar is named.
    let mut broken = bars.clone();
    broken[3]["close"] = json!(-1.0);
    let msg = error(&post(s2.addr, "/v1/predict", &[], &json!({"bars": broken})).await, 422, "unprocessable");
    assert!(msg.contains("close") && msg.contains("AAPL"), "{msg}");
    // Close-only bars (the schema allows them) for a model whose features need more: 422 naming what is missing.
    let close_only: Vec<Value> =
        bars.iter().map(|b| json!({"symbol": b["symbol"], "date": b["date"], "close": b["close"]})).collect();
    let r = post(s2.addr, "/v1/predict", &[], &json!({"bars": close_only})).await;
    let msg = error(&r, 422, "unprocessable");
    assert!(msg.contains("open") && msg.contains("volume"), "{msg}");
    s2.stop().await;

    // Body errors: 413 too large, 400 not JSON, 415 wrong type, 422 wrong fields.
    let huge = json!({"symbols": vec!["AAPL"; 2_000]});
    error(&post(a, "/v1/predict", &[], &huge).await, 413, "payload_too_large");
    let mut c = HttpClient::connect(a).await.unwrap();
    let r = c.send("POST", "/v1/predict", &[], Some(b"{not json")).await.unwrap();
    error(&r, 400, "invalid_json");
    let r = c.send("POST", "/v1/predict", &[("content-type", "text/plain")], Some(b"{}")).await.unwrap();
    error(&r, 415, "unsupported_media_type");
    error(&post(a, "/v1/predict", &[], &json!({"symbols": "AAPL"})).await, 422, "unprocessable");
    error(&post(a, "/v1/predict", &[], &json!({})).await, 422, "unprocessable");
    error(&post(a, "/v1/predict", &[], &json!({"symbols": ["AAPL"], "extra": 1})).await, 422, "unprocessable");
    error(&post(a, "/v1/predict", &[], &json!({"symbols": ["a b"]})).await, 400, "invalid_parameter");
    error(&post(a, "/v1/predict", &[], &json!({"symbols": ["ZZZ"], "date": "2012-12-31"})).await, 404, "not_found");
    error(&post(a, "/v1/predict", &[], &json!({"symbols": ["AAPL"], "model": "nope"})).await, 404, "not_found");
    error(&get(a, "/nope").await, 404, "not_found");
    let mut c = HttpClient::connect(a).await.unwrap();
    error(&c.send("DELETE", "/v1/models", &[], None).await.unwrap(), 405, "method_not_allowed");

    // A given request id is echoed.
    let r = HttpClient::connect(a)
        .await
        .unwrap()
        .send("GET", "/healthz", &[("x-request-id", "abc-123")], None)
        .await
        .unwrap();
    assert_eq!(r.header("x-request-id"), Some("abc-123"));

    // Metrics count what happened.
    let text = get(a, "/metrics").await.text();
    assert!(
        text.contains("stockcast_http_requests_total{route=\"/v1/recommendations\",method=\"GET\",status=\"200\"}")
    );
    assert!(
        text.contains("stockcast_http_request_duration_seconds_bucket{le=\"+Inf\",route=\"/v1/predict\"}"),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"), "OpenMetrics text ends with # EOF");
    assert!(text.contains("stockcast_model_version_loaded{name=\"lin\",version=\"1\"} 1"));
    assert!(text.contains("stockcast_recommendation_runs_total 2"), "{text}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reload_swaps_versions_under_load_without_failures_and_refuses_a_damaged_one() {
    let e = env("reload").await;
    let s = Server::start(config(&e)).await;
    let a = s.addr;
    let r = post(a, "/v1/recommendations/run", &[AUTH], &json!({"date": "2012-12-31"})).await;
    assert_eq!(r.status, 200, "{}", r.text());

    // Load: live predictions and stored recommendations of version 1, 4 connections, 3 s.
    let load = tokio::spawn(http_client::load(a, 4, Duration::from_secs(3), |i| {
        if i % 2 == 0 {
            LoadRequest {
                method: "POST",
                path: "/v1/predict".into(),
                body: Some(br#"{"symbols":["AAPL","IBM"],"date":"2012-12-31"}"#.to_vec()),
            }
        } else {
            LoadRequest { method: "GET", path: "/v1/recommendations?model=lin@1&limit=3".into(), body: None }
        }
    }));
    tokio::time::sleep(Duration::from_millis(800)).await;
    let reg = e.reg.clone();
    let prices = e.prices.clone();
    let v2 = tokio::task::spawn_blocking(move || {
        let v = publish(&reg, "lin", "kind = \"linear\"\nalpha = 10.0\nl1_ratio = 0.0\n", &prices, date("2012-09-28"));
        promote(&reg, "lin", v);
        v
    })
    .await
    .unwrap();
    let rl = post(a, "/v1/admin/reload", &[AUTH], &json!({})).await;
    assert_eq!(rl.status, 200, "{}", rl.text());
    assert_eq!(rl.json()["loaded"], json!([format!("lin@{v2}")]));
    let report = load.await.unwrap().unwrap();
    assert!(report.requests > 100, "{report:?}");
    assert_eq!(report.failures, 0, "{report:?}");
    let p = post(a, "/v1/predict", &[], &json!({"symbols": ["AAPL"], "date": "2012-12-31"})).await.json();
    assert_eq!(p["model"], format!("lin@{v2}"));

    // A damaged new champion is refused; version 2 keeps serving.
    let v3 = publish(&e.reg, "lin", LINEAR, &e.prices, date("2012-11-30"));
    let dir = e.reg.version_dir("lin", v3);
    let victim = std::fs::read_dir(&dir)
        .unwrap()
        .map(|f| f.unwrap().path())
        .find(|p| p.file_name().unwrap() != "manifest.json" && p.is_file())
        .unwrap();
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes.extend_from_slice(b" ");
    std::fs::write(&victim, bytes).unwrap();
    promote(&e.reg, "lin", v3);
    let refused = post(a, "/v1/admin/reload", &[AUTH], &json!({})).await;
    let msg = error(&refused, 409, "reload_refused");
    assert!(msg.contains(&format!("lin@{v3}")) && msg.contains(&format!("lin@{v2}")), "{msg}");
    assert_eq!(get(a, "/v1/models").await.json()["models"][0]["version"], v2);
    let p = post(a, "/v1/predict", &[], &json!({"symbols": ["AAPL"], "date": "2012-12-31"})).await;
    assert_eq!(p.json()["model"], format!("lin@{v2}"));
    assert!(get(a, "/metrics").await.text().contains("stockcast_model_reloads_total{result=\"refused\"} 1"));
    s.stop().await;

    // A configured reference that no longer resolves (its version deleted) keeps the loaded version serving.
    let s = Server::start(ServeConfig { models: vec![format!("lin@{v2}").parse().unwrap()], ..config(&e) }).await;
    std::fs::remove_dir_all(e.reg.version_dir("lin", v2)).unwrap();
    let refused = post(s.addr, "/v1/admin/reload", &[AUTH], &json!({})).await;
    let msg = error(&refused, 409, "reload_refused");
    assert!(msg.contains(&format!("still serving lin@{v2}")), "{msg}");
    assert_eq!(get(s.addr, "/v1/models").await.json()["models"][0]["version"], v2);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_database_delays_one_refresh_per_key_not_every_read() {
    use sqlx::Executor as _;
    let e = env("slowdb").await;
    let s = Server::start(ServeConfig { cache_ttl_ms: 0, ..config(&e) }).await;
    let a = s.addr;
    post(a, "/v1/recommendations/run", &[AUTH], &json!({"date": "2012-12-31"})).await;
    let path = "/v1/recommendations?date=2012-12-31&limit=3";
    let first = get(a, path).await;
    assert_eq!(first.status, 200);
    // Another session locks the runs table: the server's next read of it blocks until the lock goes.
    let pool = store::connect(&e.url, store::PoolConfig::default()).await.unwrap();
    let mut locker = pool.begin().await.unwrap();
    locker.execute("LOCK TABLE recommendation_runs IN ACCESS EXCLUSIVE MODE").await.unwrap();
    let blocked = tokio::spawn(get(a, path));
    let waiting = "SELECT count(*) FROM pg_locks WHERE NOT granted";
    let t = std::time::Instant::now();
    while sqlx::query_scalar::<_, i64>(waiting).fetch_one(&pool).await.unwrap() == 0 {
        assert!(t.elapsed() < Duration::from_secs(10), "the refresh never reached the database");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // While that one refresh waits, every other read of the key answers at once with the previous body.
    for _ in 0..20 {
        let r = get(a, path).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-stale"), Some("refreshing"));
        assert_eq!(r.body, first.body);
    }
    assert!(!blocked.is_finished(), "the refresh cannot finish while the table is locked");
    locker.rollback().await.unwrap();
    let refreshed = blocked.await.unwrap();
    assert_eq!(refreshed.status, 200);
    assert_eq!(refreshed.header("x-stale"), None);
    assert_eq!(refreshed.body, first.body);
    // The claim is released: the next read refreshes again (fresh, not stale).
    assert_eq!(get(a, path).await.header("x-stale"), None);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_database_gives_503_on_database_routes_and_honest_health() {
    let e = env("lost").await;
    let s = Server::start(ServeConfig { cache_ttl_ms: 0, health_probe_ms: 300, ..config(&e) }).await;
    let a = s.addr;
    post(a, "/v1/recommendations/run", &[AUTH], &json!({"date": "2012-12-31"})).await;
    assert_eq!(get(a, "/v1/recommendations").await.status, 200);
    // A read answered before the outage (any age) is served again, marked stale, while the database is down.
    let early = get(a, "/v1/recommendations?date=2012-12-31&limit=3").await;
    assert_eq!(early.status, 200);
    let body = json!({"symbols": ["AAPL"], "date": "2012-12-31"});
    let scored = post(a, "/v1/predict", &[], &body).await;
    assert_eq!(scored.status, 200, "{}", scored.text());
    e.cluster.0.stop();
    // A day scored already is answered from memory: no database round trip, so the outage does not touch it.
    let again = post(a, "/v1/predict", &[], &body).await;
    assert_eq!((again.status, &again.body), (200, &scored.body), "{}", again.text());
    let stale = get(a, "/v1/recommendations?date=2012-12-31&limit=3").await;
    assert_eq!(stale.status, 200, "{}", stale.text());
    assert_eq!(stale.header("x-stale"), Some("database unavailable"));
    assert_eq!(stale.body, early.body);
    // A read never answered before has nothing to fall back on: 503.
    let msg = error(&get(a, "/v1/recommendations?limit=7").await, 503, "database_unavailable");
    assert!(!msg.contains("127.0.0.1"), "{msg}");
    error(&get(a, "/v1/predictions").await, 503, "database_unavailable");
    let r = get(a, "/readyz").await;
    assert_eq!((r.status, r.json()["database"].clone()), (503, json!("unavailable")));
    let h = get(a, "/healthz").await;
    assert_eq!((h.status, h.json()["database"].clone()), (200, json!("unavailable")));
    // Routes that do not need the database still work.
    assert_eq!(get(a, "/v1/models").await.status, 200);
    // Postgres comes back: health recovers by itself within the probe period (nobody calls /readyz).
    e.cluster.0.restart().unwrap();
    let t = std::time::Instant::now();
    let mut healthy = false;
    while t.elapsed() < Duration::from_secs(5) {
        if get(a, "/healthz").await.json()["database"] == json!("ok") {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(healthy, "/healthz still says unavailable after {:?}", t.elapsed());
    assert!(t.elapsed() < Duration::from_millis(2_500), "recovered after {:?}", t.elapsed());
    assert!(get(a, "/metrics").await.text().contains("stockcast_database_up 1"));
    // Database routes answer again (the run itself may be gone: the test cluster runs without fsync and was
    // killed in immediate mode, so a 404 "no run" is an honest answer too).
    assert_ne!(get(a, "/v1/recommendations").await.status, 503);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_at_start_is_retried_then_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ServeConfig {
        models_dir: dir.path().to_path_buf(),
        database_url: Some("postgres://app:hunter2@127.0.0.1:1/x".into()),
        db_connect_attempts: 3,
        db_connect_backoff_ms: 10,
        db_acquire_timeout_ms: 200,
        ..ServeConfig::default()
    };
    let start = std::time::Instant::now();
    let clock = stockcast_infer::server::Clock::fixed("2026-11-23T12:00:00Z".parse().unwrap());
    let err = stockcast_infer::server::build_state(cfg, clock).await.unwrap_err().to_string();
    assert!(err.contains("gave up after 3 attempts") && err.contains("127.0.0.1:1"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    // Back-off 10 ms then 20 ms.
    assert!(start.elapsed() >= Duration::from_millis(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_answers_429_and_spares_health_checks() {
    let e = env("rate").await;
    let s = Server::start(ServeConfig { rate_limit_per_s: 0.5, rate_limit_burst: 2.0, ..config(&e) }).await;
    let a = s.addr;
    assert_eq!(get(a, "/v1/models").await.status, 200);
    assert_eq!(get(a, "/v1/models").await.status, 200);
    let r = get(a, "/v1/models").await;
    error(&r, 429, "rate_limited");
    // 0.5 tokens a second: the next token is about 2 s away.
    assert_eq!(r.header("retry-after"), Some("2"));
    assert_eq!((r.header("ratelimit-limit"), r.header("ratelimit-remaining")), (Some("2"), Some("0")));
    // The holder of the API token is another client, with its own bucket.
    let authed = HttpClient::connect(a).await.unwrap().send("GET", "/v1/models", &[AUTH], None).await.unwrap();
    assert_eq!(authed.status, 200);
    assert_eq!(get(a, "/healthz").await.status, 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_poll_picks_up_a_new_champion_and_slow_requests_time_out() {
    let e = env("poll").await;
    let s = Server::start(ServeConfig { poll_s: 1, ..config(&e) }).await;
    let v2 = publish(&e.reg, "lin", "kind = \"linear\"\nalpha = 10.0\nl1_ratio = 0.0\n", &e.prices, date("2012-09-28"));
    promote(&e.reg, "lin", v2);
    let mut served = 0;
    for _ in 0..50 {
        served = get(s.addr, "/v1/models").await.json()["models"][0]["version"].as_u64().unwrap();
        if served == v2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(served, v2, "the poll did not load version {v2}");
    s.stop().await;

    // A run reads the prices table and scores every symbol: far more than 1 ms.
    let s = Server::start(ServeConfig { request_timeout_ms: 1, ..config(&e) }).await;
    let r = post(s.addr, "/v1/recommendations/run", &[AUTH], &json!({"date": "2012-12-31"})).await;
    let msg = error(&r, 503, "timeout");
    assert!(msg.contains("1 ms"), "{msg}");
    // A body that stops halfway is under the same timeout (read before the router, for the fast path).
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut c = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        c.write_all(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: 60\r\n\r\n{\"sym")
            .await
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&got).contains('}') {
            let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await.unwrap().unwrap();
            assert!(n > 0, "closed without an answer: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 503"), "{text}");
        assert!(text.contains("x-request-id: sc-") && text.contains(r#""error":"timeout""#), "{text}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_half_header_connections_are_closed_and_do_not_starve_others() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let e = env("slowloris").await;
    // Every client of the test is 127.0.0.1: the per-address bound (tested on its own) is off here, so this is
    // the header timeout and the global cap at work.
    let cfg = ServeConfig { header_read_timeout_ms: 1_000, max_connections_per_address: 0, ..config(&e) };
    let s = Server::start(cfg).await;
    let a = s.addr;
    // 2,000 clients that send half a request head and stall.
    let mut stalled = Vec::new();
    for _ in 0..2000 {
        let mut c = tokio::net::TcpStream::connect(a).await.unwrap();
        c.write_all(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
        stalled.push(c);
    }
    // A normal client is still served while they are open.
    let t = std::time::Instant::now();
    assert_eq!(get(a, "/v1/models").await.status, 200);
    assert!(t.elapsed() < Duration::from_millis(900), "served only after the stalled ones timed out");
    // After the header-read timeout the server has closed every stalled connection (EOF or reset).
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let mut closed = 0;
    for c in &mut stalled {
        let mut buf = [0u8; 512];
        loop {
            match tokio::time::timeout(Duration::from_secs(3), c.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => {
                    closed += 1;
                    break;
                }
                Ok(Ok(_)) => {}  // a 408 before the close
                Err(_) => break, // still open
            }
        }
    }
    assert_eq!(closed, 2000);
    assert_eq!(get(a, "/v1/models").await.status, 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_wait_instead_of_failing() {
    use tokio::io::AsyncWriteExt;
    let e = env("connlimit").await;
    let s = Server::start(ServeConfig { max_connections: 4, header_read_timeout_ms: 800, ..config(&e) }).await;
    let a = s.addr;
    // Four idle connections take every slot; a fifth client's request is answered once they time out.
    let mut idle = Vec::new();
    for _ in 0..4 {
        let mut c = tokio::net::TcpStream::connect(a).await.unwrap();
        c.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        idle.push(c);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = std::time::Instant::now();
    assert_eq!(get(a, "/v1/models").await.status, 200);
    let waited = t.elapsed();
    assert!(waited >= Duration::from_millis(500), "answered after {waited:?}: the limit was not applied");
    s.stop().await;
}

fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// Resident memory of this process (Linux `/proc/self/status`).
fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap();
    kb.trim().trim_end_matches("kB").trim().parse::<usize>().unwrap() * 1024
}

/// A prediction's body read before the router (for the fast path) and then routed counts from when the request
/// came: its latency includes the body's time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routed_prediction_counts_the_time_its_body_took() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let e = env("bodytime").await;
    let s = Server::start(config(&e)).await;
    let latency = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("stockcast_http_request_duration_seconds_sum") && l.contains("/v1/predict"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let before = latency(&get(s.addr, "/metrics").await.text());
    // A body the handler refuses (an unknown field: 422), sent in two parts 300 ms apart.
    let body = br#"{"symbols": ["AAPL"], "date": "2012-12-31", "extra": 1}"#;
    let mut c = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let head = format!(
        "POST /v1/predict HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    c.write_all(head.as_bytes()).await.unwrap();
    c.write_all(&body[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.write_all(&body[10..]).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&got).contains('}') {
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed without an answer");
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 422"), "{text}");
    let after = latency(&get(s.addr, "/metrics").await.text());
    // The server saw the head a little after it was written: 0.25 s leaves room for that, and fails a count from the
    // body's end (a few ms).
    assert!(after - before >= 0.25, "the latency counted {} s of a request that took 0.3 s", after - before);
    s.stop().await;
}

/// Stores a run of `n` ranked recommendations of `lin@1` for 2012-12-31 (symbols `Z0000`…, the first fifth buys,
/// seven sectors).
async fn store_ranked_run(e: &Env, n: u32) {
    use stockcast_infer::recommend::{Action, Recommendation};
    let pool = store::connect(&e.url, store::PoolConfig::default()).await.unwrap();
    let manifest = e.reg.manifest("lin", 1).unwrap();
    let rows: Vec<Recommendation> = (0..n)
        .map(|i| Recommendation {
            symbol: format!("Z{i:04}"),
            score: -f64::from(i),
            rank: i + 1,
            expected_return: 0.01 - f64::from(i) * 1e-6,
            action: if i < n / 5 { Action::Buy } else { Action::Hold },
            sector: Some(format!("sector{}", i % 7)),
        })
        .collect();
    let run = store::NewRun {
        manifest: &manifest,
        as_of: date("2012-12-31"),
        created_at: "2026-11-23T12:00:00Z".parse().unwrap(),
        params: json!({}),
        rows: &rows,
    };
    store::store_run(&pool, &run).await.unwrap();
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etags_pagination_and_bounded_caches() {
    let e = env("paging").await;
    let s = Server::start(ServeConfig { cache_max_bytes: 256 << 10, ..config(&e) }).await;
    let a = s.addr;
    // A stored run of 5,000 recommendations (more symbols than the prices have: a run stores what it was given).
    store_ranked_run(&e, 5000).await;
    // Paging with `after` returns each row exactly once, in rank order.
    let mut seen = Vec::new();
    let mut after: Option<i64> = None;
    loop {
        let path = match after {
            Some(x) => format!("/v1/recommendations?date=2012-12-31&limit=700&after={x}"),
            None => "/v1/recommendations?date=2012-12-31&limit=700".to_owned(),
        };
        let r = get(a, &path).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let body = r.json();
        for row in body["recommendations"].as_array().unwrap() {
            seen.push((row["rank"].as_i64().unwrap(), row["symbol"].as_str().unwrap().to_owned()));
        }
        match body["next_after"].as_i64() {
            Some(x) => after = Some(x),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5000);
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "ranks strictly increase");
    let unique: std::collections::BTreeSet<&String> = seen.iter().map(|x| &x.1).collect();
    assert_eq!(unique.len(), 5000);
    // ETag: a repeat with If-None-Match gets 304 and no body; a different page gets a different tag.
    let r = get(a, "/v1/recommendations?date=2012-12-31&limit=5").await;
    let tag = r.header("etag").expect("an ETag").to_owned();
    let again = HttpClient::connect(a)
        .await
        .unwrap()
        .send("GET", "/v1/recommendations?date=2012-12-31&limit=5", &[("if-none-match", &tag)], None)
        .await
        .unwrap();
    assert_eq!(again.status, 304);
    assert!(again.text().is_empty());
    assert_eq!(again.header("etag"), Some(tag.as_str()));
    let other = get(a, "/v1/recommendations?date=2012-12-31&limit=6").await;
    assert_ne!(other.header("etag"), Some(tag.as_str()));
    // A client that accepts gzip gets a compressed body that decodes to the same JSON.
    let plain = get(a, "/v1/recommendations?date=2012-12-31&limit=2000").await;
    let zipped = HttpClient::connect(a)
        .await
        .unwrap()
        .send("GET", "/v1/recommendations?date=2012-12-31&limit=2000", &[("accept-encoding", "gzip")], None)
        .await
        .unwrap();
    assert_eq!(zipped.header("content-encoding"), Some("gzip"));
    assert!(zipped.body.len() * 3 < plain.body.len(), "{} vs {} bytes", zipped.body.len(), plain.body.len());
    let mut decoded = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&zipped.body[..]), &mut decoded).unwrap();
    assert_eq!(decoded, plain.body);
    let p = get(a, "/v1/predictions?date=2012-12-31&symbols=Z0001").await;
    let ptag = p.header("etag").expect("predictions carry an ETag").to_owned();
    let p2 = HttpClient::connect(a)
        .await
        .unwrap()
        .send("GET", "/v1/predictions?date=2012-12-31&symbols=Z0001", &[("if-none-match", &ptag)], None)
        .await
        .unwrap();
    assert_eq!(p2.status, 304);
    // 5,000 distinct (limit, sector) queries: the cache stays within its byte bound, and so does the memory of
    // this process (the server runs in it): it grows by less than 32 MiB while the answers sum to far more.
    let rss_before = rss_bytes();
    let mut answered = 0usize;
    for i in 0..5000 {
        let r =
            get(a, &format!("/v1/recommendations?date=2012-12-31&limit={}&sector=sector{}", 1 + i % 900, i % 7)).await;
        assert_eq!(r.status, 200);
        answered += r.body.len();
    }
    let m = get(a, "/metrics").await.text();
    let bytes = metric_value(&m, "stockcast_cache_bytes");
    assert!(bytes > 0.0 && bytes <= f64::from(256 << 10), "cache holds {bytes} bytes");
    let grown = rss_bytes().saturating_sub(rss_before);
    assert!(answered > 4 * (32 << 20), "the answers ({answered} bytes) must dwarf the bound for this to mean much");
    eprintln!("RSS grew by {grown} bytes; {answered} bytes answered");
    assert!(grown < 32 << 20, "RSS grew by {grown} bytes over 5,000 distinct queries ({answered} bytes answered)");
    // Non-trading dates are answered from the calendar: no day is scored for any of them.
    let before = metric_value(&get(a, "/metrics").await.text(), "stockcast_day_computations_total");
    let mut slowest = Duration::ZERO;
    for d in 0..1000 {
        let day = chrono::NaiveDate::from_ymd_opt(2013, 6, 1).unwrap() + chrono::Duration::days(d);
        let t = std::time::Instant::now();
        let r = post(a, "/v1/predict", &[], &json!({"symbols": ["AAPL"], "date": day.to_string()})).await;
        if d > 0 {
            slowest = slowest.max(t.elapsed());
        }
        assert_eq!(r.status, 404, "{}", r.text());
    }
    let after_n = metric_value(&get(a, "/metrics").await.text(), "stockcast_day_computations_total");
    assert!((after_n - before).abs() < 0.5, "{before} -> {after_n}: non-trading dates were scored");
    // Reported, not asserted (timings belong to benchmarks): the slowest answer after the first.
    eprintln!("1,000 non-trading dates: slowest answer after the first {:.2} ms", slowest.as_secs_f64() * 1e3);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_sharing_redis_enforce_one_budget_per_client() {
    let e = env("replicas").await;
    let redis = stockcast_infer::testkit::LocalRedis::start().unwrap();
    let (rate, burst) = (2.0, 10.0);
    let shared = ServeConfig {
        rate_limit_per_s: rate,
        rate_limit_burst: burst,
        rate_limit_redis_url: Some(redis.url()),
        ..config(&e)
    };
    let a = Server::start(shared.clone()).await;
    let b = Server::start(shared).await;
    // One registry and one database: both replicas answer a read with the same body.
    let t = std::time::Instant::now();
    let (ra, rb) = (get(a.addr, "/v1/models").await, get(b.addr, "/v1/models").await);
    assert_eq!((ra.status, rb.status), (200, 200));
    assert!(!ra.body.is_empty() && ra.body == rb.body, "{:?} vs {:?}", ra.body, rb.body);
    // One client (this test's address) alternating between the replicas for a while.
    let mut ok = 2;
    for i in 0..120 {
        let r = get(if i % 2 == 0 { a.addr } else { b.addr }, "/v1/models").await;
        match r.status {
            200 => ok += 1,
            429 => assert!(r.header("retry-after").is_some()),
            s => panic!("status {s}"),
        }
    }
    let budget = burst + rate * t.elapsed().as_secs_f64();
    assert!(f64::from(ok) <= budget + 1.0, "{ok} requests allowed, the shared budget was {budget:.1}");
    assert!(ok >= 10, "{ok}");
    // Without Redis each replica would have its own bucket: the same run allows about twice as many.
    a.stop().await;
    b.stop().await;
    let own = ServeConfig { rate_limit_per_s: rate, rate_limit_burst: burst, ..config(&e) };
    let (a, b) = (Server::start(own.clone()).await, Server::start(own).await);
    let mut ok_local = 0;
    for i in 0..40 {
        if get(if i % 2 == 0 { a.addr } else { b.addr }, "/v1/models").await.status == 200 {
            ok_local += 1;
        }
    }
    assert!(ok_local >= 20, "separate buckets per replica: {ok_local}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arbitrary_request_bodies_get_json_errors_never_a_500() {
    use rand::{Rng, SeedableRng};
    let e = env("fuzzbody").await;
    let s = Server::start(config(&e)).await;
    let a = s.addr;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(13);
    let fragments: [&[u8]; 12] = [
        b"{",
        b"}",
        b"\"symbols\":",
        b"[\"AAPL\"]",
        b"\"date\":\"2012-12-31\"",
        b",",
        b"null",
        b"1e999",
        b"\"bars\":[{\"symbol\":\"X\",\"date\":\"2012-01-02\",\"close\":-1}]",
        b"\xff\xfe",
        b"\"model\":\"lin@9\"",
        b"[]",
    ];
    for i in 0..400 {
        let body: Vec<u8> = if i % 3 == 0 {
            (0..rng.random_range(0..200)).map(|_| rng.random::<u8>()).collect()
        } else {
            (0..rng.random_range(1..8)).flat_map(|_| fragments[rng.random_range(0..fragments.len())].to_vec()).collect()
        };
        let path = if i % 2 == 0 { "/v1/predict" } else { "/v1/recommendations/run" };
        let headers: &[(&str, &str)] = if i % 2 == 0 {
            &[("content-type", "application/json")]
        } else {
            &[("content-type", "application/json"), AUTH]
        };
        let r = HttpClient::connect(a).await.unwrap().send("POST", path, headers, Some(&body)).await.unwrap();
        assert!(
            r.status != 500 && r.status != 0,
            "{path} {:?}: {} {}",
            String::from_utf8_lossy(&body),
            r.status,
            r.text()
        );
        if r.status >= 400 {
            let j = r.json();
            assert!(j["error"].is_string() && j["message"].is_string(), "{path}: {}", r.text());
        }
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_cycling_through_old_days_cannot_evict_the_latest_day_or_hold_every_slot() {
    let e = env("thrash").await;
    // The per-client rate of computations is tested on its own; here the in-flight bound and the eviction.
    let s = Server::start(ServeConfig { compute_per_client_per_s: 0.0, ..config(&e) }).await;
    let a = s.addr;
    let computed = || async move { metric_value(&get(a, "/metrics").await.text(), "stockcast_day_computations_total") };
    // The latest day is computed ahead at start (in the background): wait for it, then a request for it computes
    // nothing.
    let t = std::time::Instant::now();
    while computed().await < 1.0 {
        assert!(t.elapsed() < Duration::from_mins(1), "the latest day was not computed ahead");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let warm = computed().await;
    let latest = json!({"symbols": ["AAPL"]});
    assert_eq!(post(a, "/v1/predict", &[], &latest).await.status, 200);
    assert!((computed().await - warm).abs() < 0.5, "served from the warm-up");
    // A client (the API token: its own client key) cycles 8 connections through 70 earlier trading days, each
    // a fresh computation, until it has made 80 of them: more days than the cache keeps.
    let calendar = e.prices.calendar().unwrap();
    let old: Vec<String> = calendar[calendar.len() - 71..calendar.len() - 1].iter().map(ToString::to_string).collect();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let thrashers: Vec<_> = (0..8)
        .map(|k| {
            let (old, done) = (old.clone(), done.clone());
            tokio::spawn(async move {
                let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
                let mut i = k * 9;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let body = json!({"symbols": ["AAPL"], "date": old[i % old.len()]});
                    *statuses.entry(post(a, "/v1/predict", &[AUTH], &body).await.status).or_default() += 1;
                    i += 1;
                }
                statuses
            })
        })
        .collect();
    // Meanwhile the normal client asks for the latest day: every answer is 200, from the cache.
    let mut normal = Vec::new();
    while computed().await < warm + 80.0 {
        assert!(t.elapsed() < Duration::from_mins(2), "the thrash made too few computations");
        normal.push(post(a, "/v1/predict", &[], &latest).await.status);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for t in thrashers {
        for (k, v) in t.await.unwrap() {
            *statuses.entry(k).or_default() += v;
        }
    }
    assert!(normal.len() >= 5 && normal.iter().all(|s| *s == 200), "normal client: {normal:?}");
    // The thrasher had one computation in flight at a time: its other connections got 429.
    assert!(statuses.get(&429).copied().unwrap_or(0) > 0, "{statuses:?}");
    // After 80 other days the latest is still cached: asking for it computes nothing.
    let before = computed().await;
    assert_eq!(post(a, "/v1/predict", &[], &latest).await.status, 200);
    assert!((computed().await - before).abs() < 0.5, "the latest day was evicted and computed again");
    eprintln!("thrash: {statuses:?}; normal client: {} requests, all 200", normal.len());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_fill_the_connection_cap() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let e = env("peraddress").await;
    let cfg = ServeConfig { max_connections: 8, max_connections_per_address: 4, ..config(&e) };
    let s = Server::start(cfg).await;
    let a = s.addr;
    // Twelve half-header connections from 127.0.0.2 (more than the global cap of 8): four are held, the rest
    // are closed at once.
    let mut hostile = Vec::new();
    for _ in 0..12 {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let mut c = sock.connect(a).await.unwrap();
        let _ = c.write_all(b"GET / HTTP/1.1\r\n").await;
        hostile.push(c);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut closed = 0;
    for c in &mut hostile {
        let mut buf = [0u8; 64];
        // Closed: end of stream or a reset; a held connection waits for the rest of its header (no answer yet).
        if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_millis(500), c.read(&mut buf)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, 8, "beyond 4 per address, connections are closed at once");
    // A client from another address is answered at once, not after the 10 s header timeout of the held ones.
    let t = std::time::Instant::now();
    assert_eq!(get(a, "/v1/models").await.status, 200);
    assert!(t.elapsed() < Duration::from_secs(5), "waited {:?}", t.elapsed());
    drop(hostile);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_starting_computations_faster_than_its_rate_gets_429() {
    let e = env("computerate").await;
    let s = Server::start(ServeConfig { compute_per_client_per_s: 0.01, ..config(&e) }).await;
    let a = s.addr;
    let calendar = e.prices.calendar().unwrap();
    let old: Vec<String> = calendar[calendar.len() - 40..calendar.len() - 1].iter().map(ToString::to_string).collect();
    // The token's bucket holds 20 computations: the 21st uncached day is refused, naming the setting.
    let mut statuses = Vec::new();
    for d in &old[..22] {
        let r = post(a, "/v1/predict", &[AUTH], &json!({"symbols": ["AAPL"], "date": d})).await;
        statuses.push(r.status);
        if r.status == 429 {
            let m = error(&r, 429, "too_many_computations");
            assert!(m.contains("compute_per_client_per_s"), "{m}");
        }
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 20, "{statuses:?}");
    assert_eq!(&statuses[20..], [429, 429]);
    // A day already computed costs nothing and is still answered; another client has its own bucket.
    assert_eq!(post(a, "/v1/predict", &[AUTH], &json!({"symbols": ["AAPL"], "date": old[0]})).await.status, 200);
    assert_eq!(post(a, "/v1/predict", &[], &json!({"symbols": ["AAPL"], "date": old[30]})).await.status, 200);
    s.stop().await;
}

/// Status, headers (the request id blanked) in order, the request id and the body of a response.
async fn response_parts(r: axum::response::Response) -> (u16, Vec<(String, String)>, String, Vec<u8>) {
    let status = r.status().as_u16();
    let mut id = String::new();
    let mut headers = Vec::new();
    for (k, v) in r.headers() {
        let v = v.to_str().unwrap().to_owned();
        if k == "x-request-id" {
            id.clone_from(&v);
        }
        // The request id differs per request; its place among the headers must not.
        headers.push((k.to_string(), if k == "x-request-id" { String::new() } else { v }));
    }
    let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap().to_vec();
    // As hyper puts it on the wire: the length of a body of known size after the headers when no header
    // gives it (the compression layer gives it in a header), and no length on a 304.
    if status == 304 {
        headers.retain(|(k, _)| k != "content-length");
    } else if !headers.iter().any(|(k, _)| k == "content-length") {
        headers.push(("content-length".to_owned(), body.len().to_string()));
    }
    (status, headers, id, body)
}
/// The sum of a metric's samples for `/v1/recommendations`, read through the router.
async fn recommendation_metric(app: &axum::Router, name: &str) -> f64 {
    let r = tower::ServiceExt::oneshot(
        app.clone(),
        axum::http::Request::builder().uri("/metrics").body(axum::body::Body::empty()).unwrap(),
    )
    .await
    .unwrap();
    let text = String::from_utf8(axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap();
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains("route=\"/v1/recommendations\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The server's fast paths (`server::fast_answer` and `server::fast_prediction`, taken by every connection before
/// the router) answer a fresh cached `GET /v1/recommendations` (a 304 for its ETag too) and a `POST /v1/predict`
/// of a scored day exactly as the routed path does (status, headers in order, body), count them in the metrics,
/// and decline everything they must not answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_reads_and_scored_days_are_answered_without_the_router_exactly_as_through_it() {
    use axum::body::Body;
    use axum::http::Request;
    use stockcast_infer::server::{self, fast_answer, fast_prediction};
    use tower::ServiceExt as _;

    let e = env("fastpath").await;
    let clock = server::Clock::fixed("2026-11-23T12:00:00Z".parse().unwrap());
    let state = server::build_state(config(&e), clock).await.unwrap();
    let app = server::router(state.clone());
    store_ranked_run(&e, 20).await;

    let uri = "/v1/recommendations?date=2012-12-31&limit=5";
    let req = |headers: &[(&str, &str)], uri: &str| {
        let mut b = Request::builder().method("GET").uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Body::empty()).unwrap()
    };
    // Not cached yet: declined (the routed path reads the database and caches the answer).
    assert!(fast_answer(&state, &req(&[], uri)).is_none());
    let first = response_parts(app.clone().oneshot(req(&[], uri)).await.unwrap()).await;
    assert_eq!(first.0, 200, "{}", String::from_utf8_lossy(&first.3));
    let before = recommendation_metric(&app, "stockcast_http_requests_total").await;
    let fast = response_parts(fast_answer(&state, &req(&[], uri)).expect("a fresh cached read is answered")).await;
    let after = recommendation_metric(&app, "stockcast_http_requests_total").await;
    assert!((after - before - 1.0).abs() < 1e-9, "the fast answer is counted: {before} -> {after}");
    // The routed path answering from the same cache entry (`accept-encoding: identity` keeps it off the fast path
    // and leaves the body uncompressed).
    let routed = response_parts(app.clone().oneshot(req(&[("accept-encoding", "identity")], uri)).await.unwrap()).await;
    assert_eq!((fast.0, &fast.1, &fast.3), (routed.0, &routed.1, &routed.3));
    assert_eq!(first.3, fast.3);
    assert!(fast.1.iter().any(|(k, v)| k == "vary" && v == "accept-encoding"), "{:?}", fast.1);
    assert!(fast.2.starts_with("sc-") && routed.2.starts_with("sc-") && fast.2 != routed.2, "{} {}", fast.2, routed.2);
    let body: Value = serde_json::from_slice(&fast.3).unwrap();
    assert_eq!(body["recommendations"].as_array().unwrap().len(), 5);
    // A client's request id is echoed; its ETag gets the same 304 both ways.
    let tag = fast.1.iter().find(|(k, _)| k == "etag").unwrap().1.clone();
    let mine = [("x-request-id", "client-42"), ("if-none-match", tag.as_str())];
    let fast304 = response_parts(fast_answer(&state, &req(&mine, uri)).unwrap()).await;
    let routed304 = response_parts(
        app.clone().oneshot(req(&[mine[0], mine[1], ("accept-encoding", "identity")], uri)).await.unwrap(),
    )
    .await;
    assert_eq!(fast304.0, 304);
    assert_eq!(fast304.2, "client-42");
    assert_eq!((fast304.0, &fast304.1, &fast304.3), (routed304.0, &routed304.1, &routed304.3));
    // A client that takes gzip gets the answer's gzip copy (compressed once, when first asked for) both ways.
    let gz = [("accept-encoding", "gzip, deflate")];
    let fast_gz = response_parts(fast_answer(&state, &req(&gz, uri)).expect("answered for gzip too")).await;
    let routed_gz = response_parts(app.clone().oneshot(req(&gz, uri)).await.unwrap()).await;
    assert_eq!((fast_gz.0, &fast_gz.1, &fast_gz.3), (routed_gz.0, &routed_gz.1, &routed_gz.3));
    assert!(fast_gz.1.iter().any(|(k, v)| k == "content-encoding" && v == "gzip"), "{:?}", fast_gz.1);
    let mut decoded = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&fast_gz.3[..]), &mut decoded).unwrap();
    assert_eq!(decoded, fast.3);
    // Declined: another route or method, a query the handler refuses, a page not cached; each then answers
    // through the router as before.
    assert!(fast_answer(&state, &req(&[], "/v1/predictions?date=2012-12-31")).is_none());
    let post = Request::builder().method("POST").uri(uri).body(Body::empty()).unwrap();
    assert!(fast_answer(&state, &post).is_none());
    for bad in ["/v1/recommendations?date=2012-12-31&limit=5&bogus=1", "/v1/recommendations?limit=0"] {
        assert!(fast_answer(&state, &req(&[], bad)).is_none(), "{bad}");
        assert_eq!(app.clone().oneshot(req(&[], bad)).await.unwrap().status(), 400, "{bad}");
    }
    assert!(fast_answer(&state, &req(&[], "/v1/recommendations?date=2012-12-31&limit=6")).is_none());

    // `POST /v1/predict` of stored symbols: declined until the day is scored, then answered as the routed path
    // answers from the day's scores (a symbol without a score missing, a repeated one once).
    let body = json!({"symbols": ["ZZZ", "AAPL", "AAPL"], "date": "2012-12-31"}).to_string();
    let post = |headers: &[(&str, &str)], body: &str| {
        let mut b = Request::builder().method("POST").uri("/v1/predict").header("content-type", "application/json");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Body::from(body.to_owned())).unwrap()
    };
    let none = axum::http::HeaderMap::new();
    let mut takes_gzip = axum::http::HeaderMap::new();
    takes_gzip.insert("accept-encoding", axum::http::HeaderValue::from_static("gzip"));
    assert!(fast_prediction(&state, &none, body.as_bytes()).is_none());
    let scored = response_parts(app.clone().oneshot(post(&[], &body)).await.unwrap()).await;
    assert_eq!(scored.0, 200, "{}", String::from_utf8_lossy(&scored.3));
    let fast = response_parts(fast_prediction(&state, &none, body.as_bytes()).expect("a scored day is answered")).await;
    let routed =
        response_parts(app.clone().oneshot(post(&[("accept-encoding", "identity")], &body)).await.unwrap()).await;
    assert_eq!((fast.0, &fast.1, &fast.3), (routed.0, &routed.1, &routed.3));
    assert_eq!(scored.3, fast.3);
    let v: Value = serde_json::from_slice(&fast.3).unwrap();
    assert_eq!(v["missing"], json!(["ZZZ"]));
    assert_eq!(v["predictions"].as_array().unwrap().len(), 1);
    assert_eq!(v["predictions"][0]["symbol"], "AAPL");
    // A client that takes gzip is routed (the compression layer compresses this answer).
    assert!(fast_prediction(&state, &takes_gzip, body.as_bytes()).is_none());
    // Declined: a day not scored, no date (the latest is a database read), bars, fields or symbols the handler
    // refuses, a model not served, only unscored symbols (the handler's 404).
    for declined in [
        json!({"symbols": ["AAPL"], "date": "2012-12-28"}),
        json!({"symbols": ["AAPL"]}),
        json!({"bars": [{"symbol": "AAPL", "date": "2012-12-31", "close": 1.0}], "date": "2012-12-31"}),
        json!({"symbols": ["AAPL"], "date": "2012-12-31", "extra": 1}),
        json!({"symbols": [], "date": "2012-12-31"}),
        json!({"symbols": ["not a symbol"], "date": "2012-12-31"}),
        json!({"symbols": ["AAPL"], "date": "2012-12-31", "model": "nope"}),
        json!({"symbols": ["ZZZ"], "date": "2012-12-31"}),
    ] {
        let text = declined.to_string();
        assert!(fast_prediction(&state, &none, text.as_bytes()).is_none(), "{text}");
    }
    assert!(fast_prediction(&state, &none, b"{not json").is_none());
}
