//! Our own HTTP/1.1 accept loop, driving poem's endpoint through hyper.
//!
//! poem 3.1's `Server` has no header-read, body-read or idle timeout and no connection cap,
//! and it retries a failing `accept` (`EMFILE`) at once, spinning a core: any client could
//! hold sockets open for ever and starve everyone else. Here:
//!
//! - a connection must send a request head within the header-read timeout, counted from its
//!   start or from the first byte after an idle keep-alive pause; else it is closed;
//! - between requests, a keep-alive connection may stay idle for the idle timeout. (hyper's own
//!   `header_read_timeout` starts when the previous response is done, so it alone would make
//!   the idle timeout equal the header timeout; it stays on, at their sum, as a backstop.)
//! - a request body must be complete within the body-read timeout after its head: else 408
//!   `{"detail": "Request timeout"}` and the connection is closed;
//! - a request head over the cap gets 431 `{"detail": "Request header fields too large"}`;
//!   hyper's read buffer is twice the cap, so a head that overflows even that is refused by
//!   hyper itself (431 without a body) and memory per connection stays bounded;
//! - one client address (IPv4 address, or IPv6 /64) holds at most so many connections; further
//!   ones are closed at once;
//! - all connections together stay below the open-file limit: at the cap the loop stops
//!   accepting (new connections wait in the kernel's listen queue) and logs once per burst;
//!   `accept` errors back off (10 ms doubling to 1 s) instead of spinning.
//!
//! HTTP/1.1 only (no h2c): every client of this API speaks it, and each protocol would need
//! its own timeouts.

use std::{
    collections::HashMap,
    convert::Infallible,
    future::Future,
    io,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    pin::{Pin, pin},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use anyhow::bail;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use hyper::{
    body::{Bytes, Incoming},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use poem::{
    Addr, Endpoint, Response,
    endpoint::BoxEndpoint,
    http::{HeaderValue, StatusCode, header, uri::Scheme},
    web::{LocalAddr, RemoteAddr},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
    task::JoinSet,
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use crate::{
    api::error::{HEADER_FIELDS_TOO_LARGE, REQUEST_TIMEOUT, plain_error},
    config::ConnectionSettings,
    telemetry,
};

/// The default global cap never exceeds this, however high the open-file limit: each
/// connection can hold a read buffer of twice the header cap.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Descriptors kept for everything but client connections: standard streams, the listener,
/// the runtime, log files, the secret file. Each database connection is counted apart.
const RESERVED_DESCRIPTORS: u64 = 64;
/// Descriptors one pooled database connection may use (SQLite: database, `-wal`, `-shm`).
const DESCRIPTORS_PER_DATABASE_CONNECTION: u64 = 4;
const FIRST_ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);
/// How often the server looks whether a burst of connections is over, to give their memory back.
const MEMORY_CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// Connections closed since the last release that count as a burst worth releasing memory for.
const BURST_CONNECTIONS: usize = 32;

/// Raises the soft open-file limit to the hard one and returns the global connection cap: the
/// configured one, which must fit below the limit, or one derived from the limit.
pub fn connection_cap(
    settings: &ConnectionSettings,
    database_connections: u32,
) -> anyhow::Result<usize> {
    let limit = match rlimit::increase_nofile_limit(1 << 20) {
        Ok(limit) => limit,
        Err(err) => {
            tracing::warn!(error = %err, "cannot read or raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    };
    let reserved = RESERVED_DESCRIPTORS
        + DESCRIPTORS_PER_DATABASE_CONNECTION * u64::from(database_connections);
    let room = usize::try_from(limit.saturating_sub(reserved)).unwrap_or(usize::MAX);
    match settings.max_connections {
        Some(cap) if cap.get() > room => bail!(
            "PORTCULLIS_MAX_CONNECTIONS ({cap}) must be at most {room}: the open-file limit is \
             {limit} and {reserved} descriptors are kept for the database and files"
        ),
        Some(cap) => Ok(cap.get()),
        None if room == 0 => bail!(
            "the open-file limit ({limit}) is too low: at least {reserved} descriptors are needed \
             besides client connections"
        ),
        None => Ok(room.min(DEFAULT_MAX_CONNECTIONS)),
    }
}

/// Serves `endpoint` on `listener` until `signal`, then lets in-flight requests finish for
/// `grace` at most.
pub async fn serve(
    listener: TcpListener,
    endpoint: BoxEndpoint<'static, Response>,
    settings: ConnectionSettings,
    max_connections: usize,
    signal: impl Future<Output = ()>,
    grace: Duration,
) {
    let local = LocalAddr(
        listener
            .local_addr()
            .map_or(Addr::Custom("tcp", "".into()), |a| a.into()),
    );
    let shared = Arc::new(Shared {
        endpoint,
        settings,
        local,
    });
    let per_address = Arc::new(PerAddress {
        max: settings.max_connections_per_address,
        open: Mutex::new(HashMap::new()),
    });
    let slots = Arc::new(Semaphore::new(max_connections));
    let peak_open = Arc::new(AtomicUsize::new(0));
    let memory = tokio::spawn(release_memory_after_bursts(
        slots.clone(),
        max_connections,
        peak_open.clone(),
    ));
    let shutdown = CancellationToken::new();
    let mut connections = JoinSet::new();
    let mut at_cap = Burst::default();
    let mut backoff = FIRST_ACCEPT_BACKOFF;
    let mut failing = Burst::default();
    let mut signal = pin!(signal);
    tracing::info!(max_connections, "accepting connections");

    loop {
        while connections.try_join_next().is_some() {}
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if at_cap.hit() {
                    tracing::warn!(
                        max_connections,
                        "connection limit reached: new connections wait until others close"
                    );
                }
                let slot = tokio::select! {
                    slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
                    () = &mut signal => break,
                };
                at_cap.hit();
                slot
            }
        };
        if at_cap.ended() {
            tracing::info!("connection limit no longer reached");
        }
        peak_open.fetch_max(
            max_connections - slots.available_permits(),
            Ordering::Relaxed,
        );
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut signal => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                if failing.ended() {
                    tracing::info!("accepting connections again");
                }
                backoff = FIRST_ACCEPT_BACKOFF;
                let Some(address) = per_address.admit(peer.ip()) else {
                    // Closed at once: the socket is dropped before a byte is read.
                    continue;
                };
                let _ = stream.set_nodelay(true);
                connections.spawn(serve_connection(
                    stream,
                    peer,
                    shared.clone(),
                    shutdown.clone(),
                    Held(slot, address),
                ));
            }
            // About that one connection (the client gave up before we accepted it).
            Err(err) if is_connection_error(&err) => {}
            // EMFILE, ENFILE, ENOBUFS…: retrying at once would spin; wait, longer each time.
            Err(err) => {
                drop(slot);
                if failing.hit() {
                    tracing::warn!(error = %err, "cannot accept connections; backing off");
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {},
                    () = &mut signal => break,
                }
                backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
            }
        }
    }

    drop(listener);
    memory.abort();
    shutdown.cancel();
    if !connections.is_empty() {
        tracing::info!(
            open = connections.len(),
            "waiting for in-flight requests to finish"
        );
        let _ = tokio::time::timeout(grace, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
    }
    connections.shutdown().await;
}

/// Gives the allocator's free pages back once at start (what migrating and seeding left) and
/// then whenever many connections have closed since the last time: a flood's connection
/// buffers are freed into the allocator's heaps, which keep them resident otherwise. The
/// executable's pages the burst ran go too (see `crate::memory`).
async fn release_memory_after_bursts(
    slots: Arc<Semaphore>,
    max_connections: usize,
    peak_open: Arc<AtomicUsize>,
) {
    let mut checks = tokio::time::interval(MEMORY_CHECK_INTERVAL);
    checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut first = true;
    loop {
        checks.tick().await;
        let open = max_connections - slots.available_permits();
        if first || peak_open.load(Ordering::Relaxed) >= open + BURST_CONNECTIONS {
            first = false;
            peak_open.store(open, Ordering::Relaxed);
            // A few milliseconds for a large heap: not on an async worker.
            let _ = tokio::task::spawn_blocking(|| {
                crate::memory::release_free_memory();
                crate::memory::release_executable_pages();
            })
            .await;
        }
    }
}

/// A condition logged once per burst: a burst ends when the condition has not occurred for
/// [`BURST_GAP`], so a saturated server logs a line every so often, not one per connection.
#[derive(Default)]
struct Burst {
    last: Option<Instant>,
}

const BURST_GAP: Duration = Duration::from_secs(10);

impl Burst {
    /// Records an occurrence; `true` when it starts a burst.
    fn hit(&mut self) -> bool {
        let now = Instant::now();
        let starts = self.last.is_none_or(|last| now - last > BURST_GAP);
        self.last = Some(now);
        starts
    }

    /// `true`, once, when the burst is over.
    fn ended(&mut self) -> bool {
        let over = self.last.is_some_and(|last| last.elapsed() > BURST_GAP);
        if over {
            self.last = None;
        }
        over
    }
}

fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

struct Shared {
    endpoint: BoxEndpoint<'static, Response>,
    settings: ConnectionSettings,
    local: LocalAddr,
}

/// What a connection holds while it is open: its global slot and its address's.
#[expect(dead_code, reason = "the fields are held for their Drop")]
struct Held(OwnedSemaphorePermit, AddressSlot);

/// Open connections per client address.
struct PerAddress {
    max: usize,
    open: Mutex<HashMap<ClientKey, PerAddressEntry>>,
}

#[derive(Default)]
struct PerAddressEntry {
    open: usize,
    /// Whether a refusal was logged since this address last had no connection.
    refused: bool,
}

/// An IPv4 address, or the /64 an IPv6 address belongs to (one host usually gets a whole /64,
/// so counting single IPv6 addresses would give it 2^64 caps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ClientKey {
    V4(Ipv4Addr),
    V6Prefix(u64),
}

impl ClientKey {
    fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => ClientKey::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey::V4(v4),
                None => ClientKey::V6Prefix((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

impl PerAddress {
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<AddressSlot> {
        let key = ClientKey::of(ip);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = open.entry(key).or_default();
        if entry.open >= self.max {
            if !entry.refused {
                entry.refused = true;
                tracing::warn!(
                    client = %ip,
                    max = self.max,
                    "too many connections from one address: closing new ones"
                );
            }
            return None;
        }
        entry.open += 1;
        Some(AddressSlot {
            table: self.clone(),
            key,
        })
    }
}

struct AddressSlot {
    table: Arc<PerAddress>,
    key: ClientKey,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self
            .table
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = open.get_mut(&self.key) {
            entry.open -= 1;
            if entry.open == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// Where a connection is between requests, which says which timeout applies.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Reading a request head, since then: the header-read timeout.
    Head(Instant),
    /// Nothing received since the last response ended, then: the idle timeout.
    Idle(Instant),
    /// A request is being handled (its body has its own deadline).
    Busy,
    /// A response is ready, since then, and waits for hyper to take its body: the idle timeout.
    /// Without it, a client that pipelines a request and never reads the answers would hold
    /// the connection, and the responses queued for it, for ever.
    Writing(Instant),
}

struct ConnectionPhase(Mutex<Phase>);

impl ConnectionPhase {
    fn set(&self, phase: Phase) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = phase;
    }

    fn get(&self) -> Phase {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn bytes_arrived(&self) {
        let mut phase = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Phase::Idle(_) = *phase {
            *phase = Phase::Head(Instant::now());
        }
    }
}

/// The socket, telling the phase when bytes arrive.
struct WatchedStream {
    inner: TcpStream,
    phase: Arc<ConnectionPhase>,
}

impl AsyncRead for WatchedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.phase.bytes_arrived();
        }
        result
    }
}

impl AsyncWrite for WatchedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    _held: Held,
) {
    let settings = shared.settings;
    let phase = Arc::new(ConnectionPhase(Mutex::new(Phase::Head(Instant::now()))));
    let io = TokioIo::new(WatchedStream {
        inner: stream,
        phase: phase.clone(),
    });
    let service = service_fn({
        let phase = phase.clone();
        move |request| {
            phase.set(Phase::Busy);
            handle(request, peer, shared.clone(), phase.clone())
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout + settings.idle_timeout)
        .max_buf_size((2 * settings.max_header_bytes).max(16 * 1024));
    let mut connection = pin!(builder.serve_connection(io, service));

    let outcome = tokio::select! {
        outcome = watch(connection.as_mut(), &phase, &settings) => outcome,
        () = shutdown.cancelled() => {
            // Idle connections close now; a request in flight gets its response first.
            connection.as_mut().graceful_shutdown();
            watch(connection.as_mut(), &phase, &settings).await
        }
    };
    match outcome {
        Outcome::Ended(Ok(())) => {}
        Outcome::Ended(Err(err)) => {
            tracing::debug!(client = %peer, error = %err, "connection error")
        }
        Outcome::TimedOut(Phase::Idle(_)) => {
            tracing::debug!(client = %peer, "closing an idle keep-alive connection");
        }
        Outcome::TimedOut(Phase::Writing(_)) => {
            tracing::debug!(client = %peer, "closing a connection that does not read its responses");
        }
        Outcome::TimedOut(_) => {
            tracing::debug!(client = %peer, "closing a connection: no complete request head in time");
        }
    }
}

enum Outcome {
    Ended(hyper::Result<()>),
    TimedOut(Phase),
}

/// Drives the connection until it ends, or until the deadline of its current phase passes.
/// The phase only changes while the connection is polled (the socket is read, a request
/// starts or its response is done), so the deadline is looked at after each poll.
async fn watch<C>(
    mut connection: Pin<&mut C>,
    phase: &ConnectionPhase,
    settings: &ConnectionSettings,
) -> Outcome
where
    C: Future<Output = hyper::Result<()>>,
{
    let mut timer = pin!(tokio::time::sleep(Duration::ZERO));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(result) = connection.as_mut().poll(cx) {
            return Poll::Ready(Outcome::Ended(result));
        }
        let current = phase.get();
        let deadline = match current {
            Phase::Head(since) => since + settings.header_read_timeout,
            Phase::Idle(since) | Phase::Writing(since) => since + settings.idle_timeout,
            Phase::Busy => return Poll::Pending,
        };
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Outcome::TimedOut(current)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// Bytes of a request's head as sent: request line and header fields.
fn head_bytes(request: &hyper::Request<Incoming>) -> usize {
    let uri = request.uri();
    let target = uri.path_and_query().map_or(1, |pq| pq.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.scheme_str().map_or(0, |s| s.len() + 3);
    let fields: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    request.method().as_str().len() + 1 + target + " HTTP/1.1\r\n".len() + fields + 2
}

async fn handle(
    request: hyper::Request<Incoming>,
    peer: SocketAddr,
    shared: Arc<Shared>,
    phase: Arc<ConnectionPhase>,
) -> Result<hyper::Response<ResponseBody>, Infallible> {
    let response = if head_bytes(&request) > shared.settings.max_header_bytes {
        // The endpoint, whose middleware names every request, never sees this one.
        let request_id = telemetry::request_id(request.headers());
        tracing::debug!(client = %peer, request_id = request_id.to_str().unwrap_or_default(), "request head over the cap: 431");
        let mut response = closing(plain_error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            HEADER_FIELDS_TOO_LARGE,
        ));
        response
            .headers_mut()
            .insert(telemetry::X_REQUEST_ID, request_id);
        response
    } else {
        let has_body = !request.body().is_end_stream();
        let mut request = poem::Request::from((
            request,
            shared.local.clone(),
            RemoteAddr(Addr::SocketAddr(peer)),
            Scheme::HTTP,
        ));
        let timed_out = Arc::new(AtomicBool::new(false));
        if has_body {
            let body = TimedBody {
                inner: request.take_body().into(),
                deadline: Box::pin(tokio::time::sleep(shared.settings.body_read_timeout)),
                timed_out: timed_out.clone(),
            };
            request.set_body(poem::Body::from(BoxBody::new(body)));
        }
        let response = shared.endpoint.get_response(request).await;
        if timed_out.load(Ordering::Relaxed) {
            // Whatever the handler made of the failed read, the client was too slow. The
            // request keeps the id the endpoint gave it.
            let request_id = response.headers().get(telemetry::X_REQUEST_ID).cloned();
            tracing::info!(
                client = %peer,
                request_id = request_id.as_ref().and_then(|id| id.to_str().ok()).unwrap_or_default(),
                "request body not received in time: 408"
            );
            let mut timeout = closing(plain_error(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT));
            if let Some(request_id) = request_id {
                timeout
                    .headers_mut()
                    .insert(telemetry::X_REQUEST_ID, request_id);
            }
            timeout
        } else if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            // Shedding: a client told to come back after `Retry-After` does not keep a
            // connection (and its buffers) here meanwhile. In a login flood beyond the hashing
            // queue, the waiting clients then queue in the kernel's accept backlog, not in
            // this process's memory (Envoy's overload manager disables keep-alive the same way).
            closing(response)
        } else {
            response
        }
    };
    let response: hyper::Response<BoxBody<Bytes, io::Error>> = response.into();
    phase.set(Phase::Writing(Instant::now()));
    Ok(response.map(|inner| ResponseBody { inner, phase }))
}

/// A response after which the connection is closed (the rest of the request is not read).
fn closing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A request body that fails once its deadline passes without data.
struct TimedBody {
    inner: BoxBody<Bytes, io::Error>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timed_out: Arc<AtomicBool>,
}

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        // What has arrived is delivered even after the deadline.
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        match this.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.timed_out.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the request body did not arrive in time",
                ))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that marks the connection idle when hyper is done with it.
struct ResponseBody {
    inner: BoxBody<Bytes, io::Error>,
    phase: Arc<ConnectionPhase>,
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        self.phase.set(Phase::Idle(Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_addresses_count_by_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ClientKey::of(a), ClientKey::of(b));
        assert_ne!(ClientKey::of(a), ClientKey::of(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(ClientKey::of(mapped), ClientKey::of(v4));
    }

    #[test]
    fn the_per_address_cap_frees_slots() {
        let table = Arc::new(PerAddress {
            max: 2,
            open: Mutex::new(HashMap::new()),
        });
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        let first = table.admit(ip).unwrap();
        let _second = table.admit(ip).unwrap();
        assert!(table.admit(ip).is_none());
        assert!(table.admit("127.0.0.3".parse().unwrap()).is_some());
        drop(first);
        assert!(table.admit(ip).is_some());
    }
}
