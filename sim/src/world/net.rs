//! Request/response messaging over madsim's simulated network.
//!
//! Messages travel as madsim payloads (no serialization: the simulated network carries Rust values), so a request
//! type and its response type are plain structs. Each call gets its own reply tag; a caller that gives up after its
//! timeout simply never reads a late reply. Loss, latency and partitions come from madsim's `NetSim`; duplication
//! is injected by the receiving host (see `host`).

use madsim::net::{Endpoint, Payload};
use madsim::time;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The tag every server listens on for requests.
pub const REQUEST_TAG: u64 = 1;

/// Why a call produced no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallError {
    /// No answer before the timeout: lost, partitioned, crashed or slow — the caller cannot tell which.
    Timeout,
    /// The local endpoint failed to send.
    Send,
}

/// A request with the tag its reply must carry.
pub struct Envelope<Q> {
    pub reply_tag: u64,
    pub request: Q,
}

/// The calling side: one endpoint and a counter of reply tags.
pub struct RpcClient {
    ep: Endpoint,
    next_tag: AtomicU64,
}

impl RpcClient {
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        Ok(RpcClient {
            ep: Endpoint::bind(addr).await?,
            next_tag: AtomicU64::new(1 << 32),
        })
    }

    /// Sends `request` to `dst` and waits up to `timeout` for its reply.
    pub async fn call<Q, R>(
        &self,
        dst: SocketAddr,
        request: Q,
        timeout: Duration,
    ) -> Result<R, CallError>
    where
        Q: Send + Sync + 'static,
        R: Send + Sync + 'static,
    {
        let tag = self.next_tag.fetch_add(1, Ordering::Relaxed);
        let envelope: Payload = Box::new(Envelope {
            reply_tag: tag,
            request,
        });
        self.ep
            .send_to_raw(dst, REQUEST_TAG, envelope)
            .await
            .map_err(|_| CallError::Send)?;
        match time::timeout(timeout, self.ep.recv_from_raw(tag)).await {
            Ok(Ok((payload, _))) => payload
                .downcast::<R>()
                .map(|r| *r)
                .map_err(|_| CallError::Send),
            _ => Err(CallError::Timeout),
        }
    }
}

/// Receives the next request of type `Q` on a server endpoint, with the address and tag to reply to.
/// Payloads of another type are dropped (a stray message is a lost message).
pub async fn next_request<Q: Send + Sync + 'static>(
    ep: &Endpoint,
) -> std::io::Result<(Q, SocketAddr, u64)> {
    loop {
        let (payload, from) = ep.recv_from_raw(REQUEST_TAG).await?;
        if let Ok(env) = payload.downcast::<Envelope<Q>>() {
            let env = *env;
            return Ok((env.request, from, env.reply_tag));
        }
    }
}

/// Sends a reply; a failure to send is a lost reply, which callers already handle as a timeout.
pub async fn reply<R: Send + Sync + 'static>(ep: &Endpoint, to: SocketAddr, tag: u64, response: R) {
    let _ = ep.send_to_raw(to, tag, Box::new(response)).await;
}

/// Virtual milliseconds since the Unix epoch: the `now` handed to core and to the node model.
pub fn now_ms() -> u64 {
    time::TimeHandle::current()
        .now_time()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
