//! `stockcast-bench http-floor`: the floor under the server's throughput on this machine. A bare hyper HTTP/1
//! server on the same tokio runtime (worker threads, keep-alive, `TCP_NODELAY`) answering every request with one
//! fixed JSON body and the product's response headers, and nothing else: no router, no middleware, no handler.
//! `bench/serve_wrk.sh` runs wrk against it beside `stockcast serve`, so what the product's layers cost a request
//! is the difference, and what no layer can remove (the sockets, the kernel, wrk on the same cores) is this.

use std::convert::Infallible;

use anyhow::Context as _;
use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Response, header};
use hyper_util::rt::TokioIo;

use crate::BenchHttpFloorArgs;

/// Serves until killed.
///
/// # Errors
/// The runtime or the listener could not start.
pub(crate) fn run(args: &BenchHttpFloorArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .context("http-floor: tokio runtime")?;
    // A body of the given size shaped like the cached recommendations page (JSON, one repeated filler field).
    let filler = args.body_bytes.saturating_sub(11);
    let body = Bytes::from(format!("{{\"pad\":\"{}\"}}\n", "x".repeat(filler)));
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.addr)
            .await
            .with_context(|| format!("http-floor: binding {}", args.addr))?;
        crate::out(&format!("http-floor: serving {} bytes on {}", body.len(), listener.local_addr()?));
        // Request ids from one counter, as the product numbers them.
        let seq = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            let body = body.clone();
            let seq = std::sync::Arc::clone(&seq);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| {
                    let n = seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    // The headers the cached GET answers with (content type, ETag, Vary, request id).
                    let mut resp = Response::new(Body::from(body.clone()));
                    let h = resp.headers_mut();
                    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                    h.insert(header::ETAG, HeaderValue::from_static("\"469e1e83dc732382\""));
                    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
                    h.insert(
                        "x-request-id",
                        HeaderValue::from_str(&format!("sc-{n:x}")).unwrap_or(HeaderValue::from_static("sc")),
                    );
                    std::future::ready(Ok::<_, Infallible>(resp))
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    })
}
