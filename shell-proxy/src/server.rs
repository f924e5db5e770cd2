//! The HTTP server: accepts connections (HTTP/1.1 and HTTP/2, hyper-util), routes each request, applies
//! authentication and the body size limit, answers the routes it owns and hands every other known route to
//! a [`RouteHandler`] (the lead wires core's planners there).
//!
//! Request pipeline, in Meilisearch's order (the limits are described in [`crate::limits`]):
//! 0. Limits that need no routing: the request target within `server.max_uri_bytes` (else 414
//!    `miroir_uri_too_long`), the headers within `server.max_header_bytes` (else 431
//!    `miroir_headers_too_large`).
//! 1. Route ([`Route::parse`]). Unknown path: 404 with an empty body; known path, other method: 405 with
//!    an `Allow` header (both as actix-web answers for Meilisearch).
//! 2. Authentication ([`crate::auth`]): `/health` is public, `/_miroir/*` needs the admin key, everything
//!    else the master key. A malformed path parameter (`invalid_index_uid`, ...) is reported after
//!    authentication, so it reveals nothing to unauthenticated clients.
//! 3. Concurrency: a slot of `server.max_concurrent_requests`, else 503 `miroir_overloaded` with
//!    `Retry-After` (never queued). `/health` and `/metrics` take no slot.
//! 4. Body: read whole, at most `server.max_body_bytes` (else 413 `payload_too_large`) within
//!    `server.body_read_timeout_ms` (else 408 `miroir_body_timeout`); a JSON or NDJSON body nesting
//!    deeper than `server.max_json_depth` is refused with 400 `miroir_json_too_deep` before any parsing.
//! 5. Dispatch: `/health`, `/version`, `/metrics`, `/_miroir/ready` here; other routes to the handler.
//!    Without a handler, or for an unknown `/_miroir/*` path, the answer is 404 with an empty body.
//!    An answer not ready within `server.request_timeout_ms` is 504 `miroir_request_timeout`. The
//!    handler runs as its own task: on a timeout, a read is abandoned, but a write keeps running to its
//!    end (holding its concurrency slot), so a write already sent to the nodes is still decided and,
//!    when acknowledged, recorded as a task; the client is told to check `GET /tasks`.
//!
//! Slow clients: hyper closes a connection whose request head is not complete within
//! `server.header_read_timeout_ms`; its read buffer is sized so the header and URI limits above are the
//! ones clients meet.
//!
//! Every request is counted in the metrics and logged (method, path without query, route class, status,
//! duration); headers, and so keys, are never logged.
//!
//! The optional metrics listener (`server.metrics_port`) serves only `GET /metrics` and `GET /health`,
//! without authentication: bind it to an internal network.

use crate::auth;
use crate::http_util::{empty_response, error_response, json_response, read_body, ProxyResponse};
use crate::limits::{self, ConcurrencyGate};
use crate::metrics::{Metrics, CONTENT_TYPE as METRICS_CONTENT_TYPE};
use crate::node_client::NodeClient;
use crate::routes::{AdminRoute, Route, RouteError};
use crate::store::TaskStore;
use async_trait::async_trait;
use bytes::Bytes;
use http::header::{ALLOW, CONNECTION, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use miroir_core::auth::Access;
use miroir_core::config::Config;
use miroir_core::{ErrorType, MeiliError};
use serde_json::json;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How long in-flight requests get to finish after a shutdown signal.
pub const GRACEFUL_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// An authenticated request whose body has been read (within the size limit).
#[derive(Debug, Clone)]
pub struct ProxyRequest {
    /// The method.
    pub method: Method,
    /// The full URI (path and query as the client sent them).
    pub uri: Uri,
    /// The request headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
    /// What the request's key opens ([`Access::Full`] for the master key or an open proxy); handlers of
    /// routes that list or act on several indexes filter by it, searches add its tenant-token rules.
    pub access: Access,
}

/// Answers the routes the server does not own (documents, search, settings, tasks, ...).
#[async_trait]
pub trait RouteHandler: Send + Sync {
    /// Answers an authenticated, size-checked request for `route`.
    async fn handle(&self, state: &AppState, route: Route, request: ProxyRequest) -> ProxyResponse;

    /// Authenticates a client request for `route`: the master key only, unless the handler knows the
    /// fleet's API keys.
    async fn authorize(
        &self,
        state: &AppState,
        route: &Route,
        headers: &HeaderMap,
    ) -> Result<Access, MeiliError> {
        let _ = route;
        auth::check_client(headers, state.config.master_key.expose()).map(|()| Access::Full)
    }

    /// Whether the request carries a valid credential at all (the master key or any API key), before its
    /// route could be parsed: a malformed path is then reported as such.
    async fn authenticate(&self, state: &AppState, headers: &HeaderMap) -> Result<(), MeiliError> {
        auth::check_client(headers, state.config.master_key.expose())
    }
}

/// Everything a request needs.
pub struct AppState {
    /// The configuration.
    pub config: Arc<Config>,
    /// The task store.
    pub store: Arc<dyn TaskStore>,
    /// The metrics registry.
    pub metrics: Metrics,
    /// The node client (with `scatter.node_timeout_ms` as its default timeout).
    pub nodes: NodeClient,
    /// The handler of the routes the server does not own.
    pub handler: Option<Arc<dyn RouteHandler>>,
    /// The `server.max_concurrent_requests` gate.
    pub gate: ConcurrencyGate,
}

impl AppState {
    /// Builds the state: a fresh metrics registry and a node client recording into it.
    pub fn new(
        config: Config,
        store: Arc<dyn TaskStore>,
        handler: Option<Arc<dyn RouteHandler>>,
    ) -> AppState {
        let metrics = Metrics::new();
        let nodes = NodeClient::new(
            &config.node_master_key,
            Duration::from_millis(config.scatter.node_timeout_ms),
        )
        .with_metrics(metrics.clone())
        .with_max_response_bytes(config.server.max_node_response_bytes);
        let gate = ConcurrencyGate::new(config.server.max_concurrent_requests);
        AppState {
            gate,
            config: Arc::new(config),
            store,
            metrics,
            nodes,
            handler,
        }
    }
}

/// Which listener a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The Meilisearch-compatible API (`server.port`).
    Main,
    /// The metrics listener (`server.metrics_port`): only `/metrics` and `/health`.
    MetricsOnly,
}

/// Bound listeners, ready to serve.
pub struct Server {
    main: TcpListener,
    metrics: Option<TcpListener>,
    state: Arc<AppState>,
}

impl Server {
    /// Binds `server.bind:server.port` and, unless `server.metrics_port` is 0, the metrics listener on
    /// the same address. Port 0 binds an ephemeral port (tests).
    pub async fn bind(state: Arc<AppState>) -> std::io::Result<Server> {
        let ip: IpAddr = state.config.server.bind.parse().map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("invalid bind address {:?}", state.config.server.bind),
            )
        })?;
        let main = TcpListener::bind(SocketAddr::new(ip, state.config.server.port)).await?;
        let metrics = match state.config.server.metrics_port {
            0 => None,
            port => Some(TcpListener::bind(SocketAddr::new(ip, port)).await?),
        };
        Ok(Server {
            main,
            metrics,
            state,
        })
    }

    /// The address of the main listener.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.main.local_addr()
    }

    /// The address of the metrics listener, if any.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` completes, then stops accepting and lets in-flight requests finish (at
    /// most [`GRACEFUL_SHUTDOWN_TIMEOUT`]).
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = tx.send(true);
        });
        let main = accept_loop(
            self.main,
            Arc::clone(&self.state),
            Listener::Main,
            rx.clone(),
        );
        match self.metrics {
            Some(m) => {
                let metrics = accept_loop(m, self.state, Listener::MetricsOnly, rx);
                tokio::join!(main, metrics);
            }
            None => main.await,
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<AppState>,
    mode: Listener,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let builder = connection_builder(&state.config);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let state = Arc::clone(&state);
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let state = Arc::clone(&state);
                        async move { Ok::<_, Infallible>(handle(&state, mode, req).await) }
                    });
                    let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(GRACEFUL_SHUTDOWN_TIMEOUT) => {
            tracing::warn!("graceful shutdown timed out; dropping open connections");
        }
    }
}

/// The connection settings: HTTP/1 with the slow-client header timeout and a read buffer large enough
/// for the header and URI limits (so the proxy's own Meilisearch-shaped 414/431 are what clients get),
/// HTTP/2 with the same header list bound.
fn connection_builder(config: &Config) -> auto::Builder<TokioExecutor> {
    let server = &config.server;
    let head = server
        .max_header_bytes
        .saturating_add(server.max_uri_bytes)
        .saturating_add(16 * 1024);
    // hyper refuses a buffer below 8 KiB.
    let buf = usize::try_from(head).unwrap_or(usize::MAX).max(8 * 1024);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(server.header_read_timeout_ms))
        .max_buf_size(buf);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(head).unwrap_or(u32::MAX));
    builder
}

/// Answers one request (any body type), recording metrics and a log line.
pub async fn handle<B>(state: &Arc<AppState>, mode: Listener, req: Request<B>) -> ProxyResponse
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let started = Instant::now();
    // A guard, so a request whose client goes away (the future is dropped) still leaves the gauge.
    let _in_flight = InFlight::enter(&state.metrics);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let (class, resp) = route_and_answer(state, mode, req).await;
    let elapsed = started.elapsed();
    state
        .metrics
        .observe_request(class, &method, resp.status().as_u16(), elapsed);
    tracing::info!(
        method = %method,
        path = %path,
        route = class,
        status = resp.status().as_u16(),
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    resp
}

struct InFlight(prometheus::IntGauge);

impl InFlight {
    fn enter(metrics: &Metrics) -> InFlight {
        let g = metrics.in_flight().clone();
        g.inc();
        InFlight(g)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

async fn route_and_answer<B>(
    state: &Arc<AppState>,
    mode: Listener,
    req: Request<B>,
) -> (&'static str, ProxyResponse)
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| req.uri().path().to_string());
    let limits = &state.config.server;
    if target.len() as u64 > limits.max_uri_bytes {
        return (
            "invalid",
            error_response(&limits::uri_too_long(target.len(), limits.max_uri_bytes)),
        );
    }
    let head = limits::header_bytes(req.headers());
    if head > limits.max_header_bytes {
        return (
            "invalid",
            error_response(&limits::headers_too_large(head, limits.max_header_bytes)),
        );
    }
    let route = match Route::parse(req.method(), &target) {
        Ok(route) => route,
        Err(RouteError::NotFound) => return ("unmatched", empty_response(StatusCode::NOT_FOUND)),
        Err(RouteError::MethodNotAllowed { allowed }) => {
            let mut r = empty_response(StatusCode::METHOD_NOT_ALLOWED);
            let allow = allowed
                .iter()
                .map(Method::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            if let Ok(v) = HeaderValue::from_str(&allow) {
                r.headers_mut().insert(ALLOW, v);
            }
            return ("unmatched", r);
        }
        Err(RouteError::Invalid(e)) => {
            if mode == Listener::MetricsOnly {
                return ("unmatched", empty_response(StatusCode::NOT_FOUND));
            }
            let authenticated = match &state.handler {
                Some(h) => h.authenticate(state, req.headers()).await,
                None => auth::check_client(req.headers(), state.config.master_key.expose()),
            };
            let answer = match authenticated {
                Err(auth_error) => auth_error,
                Ok(()) => e,
            };
            return ("invalid", error_response(&answer));
        }
    };
    let class = route.class();

    if mode == Listener::MetricsOnly {
        return match route {
            Route::Metrics => (class, metrics_response(state)),
            Route::Health => (class, health_response()),
            _ => ("unmatched", empty_response(StatusCode::NOT_FOUND)),
        };
    }

    // Health and metrics stay reachable under any load: they take no slot.
    let slot = match route {
        Route::Health | Route::Metrics => None,
        _ => match state.gate.try_enter() {
            Ok(permit) => Some(permit),
            Err(e) => {
                let mut r = error_response(&e);
                r.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(limits::RETRY_AFTER_SECS));
                return (class, r);
            }
        },
    };

    let authorized = if route.is_public() {
        Ok(Access::Full)
    } else if route.is_admin() {
        auth::check_admin(
            req.headers(),
            state.config.admin.enabled,
            state.config.admin.api_key.expose(),
        )
        .map(|()| Access::Full)
    } else if let Some(h) = &state.handler {
        h.authorize(state, &route, req.headers()).await
    } else {
        auth::check_client(req.headers(), state.config.master_key.expose()).map(|()| Access::Full)
    };
    let access = match authorized {
        Ok(access) => access,
        Err(e) => return (class, error_response(&e)),
    };

    let (parts, body) = req.into_parts();
    let body_timeout = Duration::from_millis(limits.body_read_timeout_ms);
    let read = tokio::time::timeout(
        body_timeout,
        read_body(&parts.headers, body, limits.max_body_bytes),
    );
    let body = match read.await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return (class, error_response(&e)),
        Err(_) => {
            // The rest of the body is not worth waiting for: close the connection.
            let mut r = error_response(&limits::body_timeout(limits.body_read_timeout_ms));
            r.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
            return (class, r);
        }
    };
    let content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if limits::is_json_content_type(content_type)
        && limits::json_too_deep_in(&body, limits.max_json_depth)
    {
        return (
            class,
            error_response(&limits::json_too_deep(limits.max_json_depth)),
        );
    }

    let timeout = Duration::from_millis(limits.request_timeout_ms);
    let resp = match route {
        Route::Health => health_response(),
        Route::Metrics => metrics_response(state),
        Route::Version => match tokio::time::timeout(timeout, version_response(state)).await {
            Ok(r) => r,
            Err(_) => error_response(&limits::request_timeout(limits.request_timeout_ms)),
        },
        Route::Admin(AdminRoute::Ready) => {
            match tokio::time::timeout(timeout, ready_response(state)).await {
                Ok(r) => r,
                Err(_) => error_response(&limits::request_timeout(limits.request_timeout_ms)),
            }
        }
        other => match &state.handler {
            Some(h) => {
                let request = ProxyRequest {
                    method: parts.method,
                    uri: parts.uri,
                    headers: parts.headers,
                    body,
                    access,
                };
                run_handler(state, Arc::clone(h), other, request, slot).await
            }
            None => empty_response(StatusCode::NOT_FOUND),
        },
    };
    (class, resp)
}

/// Runs the handler as its own task under `server.request_timeout_ms`. On a timeout the client gets 504
/// `miroir_request_timeout`; a read (`GET`/`HEAD`) is abandoned, anything else runs to its end in the
/// background so a write already sent to the nodes is still decided and recorded (its slot is held until
/// then, so the concurrency limit counts it).
async fn run_handler(
    state: &Arc<AppState>,
    handler: Arc<dyn RouteHandler>,
    route: Route,
    request: ProxyRequest,
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
) -> ProxyResponse {
    let limit_ms = state.config.server.request_timeout_ms;
    let read_only = matches!(request.method, Method::GET | Method::HEAD);
    let task_state = Arc::clone(state);
    let mut task = tokio::spawn(async move {
        let resp = handler.handle(&task_state, route, request).await;
        drop(slot);
        resp
    });
    match tokio::time::timeout(Duration::from_millis(limit_ms), &mut task).await {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "request handler failed");
            error_response(&MeiliError::internal(
                "The request could not be completed because of an internal error.",
            ))
        }
        Err(_) => {
            if read_only {
                task.abort();
            } else {
                tracing::warn!(
                    limit_ms,
                    "request timed out; its write keeps running in the background"
                );
            }
            error_response(&limits::request_timeout(limit_ms))
        }
    }
}

fn health_response() -> ProxyResponse {
    json_response(200, &json!({"status": "available"}))
}

fn metrics_response(state: &AppState) -> ProxyResponse {
    let mut r = http::Response::new(Full::new(Bytes::from(state.metrics.render())));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_CONTENT_TYPE));
    r
}

/// 503 `miroir_no_node_available`: no node could answer a request Miroir forwards to any one node.
pub fn no_node_available(what: &str) -> MeiliError {
    MeiliError::new(
        503,
        "miroir_no_node_available",
        ErrorType::System,
        format!("No Meilisearch node answered `{what}`. Check the nodes' health."),
    )
}

/// 503 `miroir_not_ready`: the proxy cannot serve (task store unreachable).
pub fn not_ready(reason: &str) -> MeiliError {
    MeiliError::new(
        503,
        "miroir_not_ready",
        ErrorType::System,
        format!("Miroir is not ready: {reason}."),
    )
}

/// `GET /version`: the answer of the first node, in configuration order, that answers 200 within
/// `health.timeout_ms`.
async fn version_response(state: &AppState) -> ProxyResponse {
    let timeout = Duration::from_millis(state.config.health.timeout_ms);
    for node in &state.config.nodes {
        let answer = state
            .nodes
            .send_with_timeout(
                node.id.as_str(),
                &node.address,
                Method::GET,
                "/version",
                None,
                Bytes::new(),
                timeout,
            )
            .await;
        match answer {
            Ok(r)
                if r.status == 200
                    && serde_json::from_slice::<serde_json::Value>(&r.body).is_ok() =>
            {
                let mut resp = http::Response::new(Full::new(r.body));
                resp.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                return resp;
            }
            Ok(r) => {
                tracing::warn!(node = %node.id, status = r.status, "node refused GET /version")
            }
            Err(e) => {
                tracing::warn!(node = %node.id, error = %e, "node unreachable for GET /version")
            }
        }
    }
    error_response(&no_node_available("GET /version"))
}

/// `GET /_miroir/ready`: 200 when the task store answers, else 503 `miroir_not_ready`.
async fn ready_response(state: &AppState) -> ProxyResponse {
    match state.store.health().await {
        Ok(()) => json_response(
            200,
            &json!({"status": "ready", "taskStore": state.store.backend()}),
        ),
        Err(e) => {
            state.metrics.store_error(state.store.backend());
            tracing::error!(error = %e, "task store health check failed");
            error_response(&not_ready(&e.to_string()))
        }
    }
}
