//! The OpenAPI 3.1 description served at `/openapi.json`.

use serde_json::{Value, json};

fn error_response(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
}

fn query(name: &str, description: &str, schema: &Value) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": description, "schema": schema })
}

/// The document.
pub(super) fn document() -> Value {
    let date = json!({ "type": "string", "format": "date" });
    let model = query("model", "NAME or NAME@VERSION (default: the only model served)", &json!({ "type": "string" }));
    let errors = |codes: &[&str]| -> Value {
        let mut m = serde_json::Map::new();
        for c in codes {
            let d = match *c {
                "400" => "invalid query parameter",
                "401" => "missing or wrong bearer token",
                "404" => "no such model, run, symbol or route",
                "409" => "a new model version was refused; the old one keeps serving",
                "413" => "request body too large",
                "415" => "body is not JSON",
                "422" => "body has wrong fields or values",
                "429" => "rate limited",
                _ => "database unavailable, no model served, or timeout",
            };
            m.insert((*c).to_owned(), error_response(d));
        }
        Value::Object(m)
    };
    let merge = |ok: Value, err: Value| -> Value {
        let mut m = err.as_object().cloned().unwrap_or_default();
        m.insert("200".into(), ok);
        Value::Object(m)
    };
    let ok =
        |d: &str| json!({ "description": d, "content": { "application/json": { "schema": { "type": "object" } } } });
    let bearer = json!([{ "bearer": [] }]);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "stockcast inference API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Predictions and daily recommendations of the promoted stockcast models. Errors are JSON {error, message}; every response has an x-request-id header."
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "message"],
                    "properties": { "error": { "type": "string" }, "message": { "type": "string" } }
                },
                "Bar": {
                    "type": "object",
                    "required": ["symbol", "date", "close"],
                    "properties": {
                        "symbol": { "type": "string" }, "date": date, "open": { "type": "number" },
                        "high": { "type": "number" }, "low": { "type": "number" }, "close": { "type": "number" },
                        "volume": { "type": "number" }
                    }
                }
            }
        },
        "paths": {
            "/healthz": { "get": { "summary": "Liveness, with the database state and the models served", "responses": { "200": ok("alive") } } },
            "/readyz": { "get": { "summary": "Ready when the database answers and a model is served", "responses": merge(ok("ready"), errors(&["503"])) } },
            "/metrics": { "get": { "summary": "Prometheus metrics", "responses": { "200": { "description": "text exposition format" } } } },
            "/openapi.json": { "get": { "summary": "This document", "responses": { "200": ok("OpenAPI 3.1") } } },
            "/v1/models": { "get": { "summary": "Model versions served, with their manifests' metrics", "responses": { "200": ok("models") } } },
            "/v1/predictions": { "get": {
                "summary": "Stored scores of a recommendation run",
                "parameters": [
                    query("date", "as-of date (default: the newest run)", &date),
                    query("symbols", "comma-separated symbols (default: all)", &json!({ "type": "string" })),
                    model.clone()
                ],
                "responses": merge(ok("predictions"), errors(&["400", "404", "503"]))
            } },
            "/v1/recommendations": { "get": {
                "summary": "Ranked recommendations of a run (cached in memory for cache_ttl_ms)",
                "parameters": [
                    query("date", "as-of date (default: the newest run)", &date),
                    query("sector", "only this sector", &json!({ "type": "string" })),
                    query("action", "only this action", &json!({ "type": "string", "enum": ["buy", "hold", "sell"] })),
                    query("limit", "most rows (default 100)", &json!({ "type": "integer", "minimum": 1 })),
                    model
                ],
                "responses": merge(ok("recommendations by rank"), errors(&["400", "404", "503"]))
            } },
            "/v1/predict": { "post": {
                "summary": "Score symbols as of a date from the stored prices, or bars given in the body",
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "type": "object",
                    "properties": {
                        "model": { "type": "string" }, "date": date.clone(),
                        "symbols": { "type": "array", "items": { "type": "string" } },
                        "bars": { "type": "array", "items": { "$ref": "#/components/schemas/Bar" } }
                    }
                } } } },
                "responses": merge(ok("scores"), errors(&["400", "404", "413", "415", "422", "503"]))
            } },
            "/v1/recommendations/run": { "post": {
                "summary": "Compute and store a day's recommendations (one transaction per model version; a rerun replaces)",
                "security": bearer.clone(),
                "requestBody": { "required": true, "content": { "application/json": { "schema": {
                    "type": "object", "required": ["date"],
                    "properties": { "date": date, "model": { "type": "string" } }
                } } } },
                "responses": merge(ok("runs stored"), errors(&["401", "404", "413", "422", "503"]))
            } },
            "/v1/admin/reload": { "post": {
                "summary": "Load new champion versions (a damaged one is refused; the old one keeps serving)",
                "security": bearer,
                "responses": merge(ok("reloaded"), errors(&["401", "409"]))
            } }
        }
    })
}
