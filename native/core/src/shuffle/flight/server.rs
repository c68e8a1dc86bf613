//! The executor's Arrow Flight server: serves `DoGet` of shuffle blocks of the registered map
//! outputs (see [`super::block`]) to callers presenting the application's token.
//!
//! It runs on a small runtime of its own, so that it keeps serving however busy the task
//! threads and the engine's runtime are; file reads run on that runtime's blocking threads,
//! one message at a time, so a slow client holds no thread while it is not reading.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use datafusion::common::{DataFusionError, Result, exec_err};
use futures::Stream;
use futures::stream::BoxStream;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};

use super::block::{BlockError, BlockId, BlockReader, map_output};

/// Blocks and bytes served completely since the process started.
static BLOCKS_SERVED: AtomicU64 = AtomicU64::new(0);
static BYTES_SERVED: AtomicU64 = AtomicU64::new(0);

/// Blocks and their bytes (in the map output files) served completely so far.
pub fn served() -> (u64, u64) {
    (
        BLOCKS_SERVED.load(Ordering::Relaxed),
        BYTES_SERVED.load(Ordering::Relaxed),
    )
}

/// Keep-alive of the server's connections: a reducer that vanished without closing its
/// connection does not keep its streams open for ever.
const KEEPALIVE: Duration = Duration::from_secs(30);

/// The running server: its port and token.
static RUNNING: Mutex<Option<(u16, String)>> = Mutex::new(None);

/// Starts this process's shuffle server on `host:port` (port 0: a free one) and returns the
/// port it listens on. `host` is resolved and the first of its addresses that can be bound is
/// used: the server listens on all interfaces only if `host` says so (`0.0.0.0`). A second
/// call returns the running server's port, if it has the same token.
pub fn start_server(host: &str, port: u16, token: String) -> Result<u16> {
    let mut running = RUNNING.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((port, running_token)) = running.as_ref() {
        if !constant_time_eq(running_token.as_bytes(), token.as_bytes()) {
            return exec_err!("the shuffle server is already running with another token");
        }
        return Ok(*port);
    }
    if token.is_empty() {
        return exec_err!("the shuffle server needs a non-empty token");
    }
    let listener = bind(host, port)?;
    let bound = listener
        .local_addr()
        .map_err(|e| DataFusionError::Execution(format!("shuffle server address: {e}")))?;
    let runtime = server_runtime()?;
    let listener = {
        let _guard = runtime.enter();
        listener
            .set_nonblocking(true)
            .and_then(|_| tokio::net::TcpListener::from_std(listener))
            .map_err(|e| {
                DataFusionError::Execution(format!("shuffle server socket {bound}: {e}"))
            })?
    };
    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(KEEPALIVE));
    let expected = Arc::new(token.clone());
    let service = FlightServiceServer::with_interceptor(ShuffleFlightService, move |request| {
        authorize(request, &expected)
    });
    runtime.spawn(async move {
        let served = Server::builder()
            .http2_keepalive_interval(Some(KEEPALIVE))
            .add_service(service)
            .serve_with_incoming(incoming)
            .await;
        if let Err(e) = served {
            log::error!("the shuffle server on {bound} stopped: {e}");
        }
    });
    log::info!("shuffle server listening on {bound}");
    *running = Some((bound.port(), token));
    Ok(bound.port())
}

/// A listener on the first address of `host` that can be bound.
fn bind(host: &str, port: u16) -> Result<TcpListener> {
    let addresses: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| DataFusionError::Execution(format!("cannot resolve {host}: {e}")))?
        .collect();
    let mut last_error = None;
    for address in &addresses {
        match TcpListener::bind(address) {
            Ok(listener) => return Ok(listener),
            Err(e) => last_error = Some(format!("{address}: {e}")),
        }
    }
    exec_err!(
        "cannot bind the shuffle server to {host}:{port}: {}",
        last_error.unwrap_or_else(|| "no address".into())
    )
}

/// The server's runtime: two workers for the connections, blocking threads for file reads.
fn server_runtime() -> Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> =
        OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .thread_name("ballista-flight")
                .worker_threads(2)
                .max_blocking_threads(64)
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| {
            DataFusionError::Execution(format!("cannot start the shuffle server runtime: {e}"))
        })
}

/// Lets a call through if it carries `authorization: Bearer <token>`.
fn authorize(request: Request<()>, token: &str) -> std::result::Result<Request<()>, Status> {
    let presented = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    match presented {
        Some(p) if constant_time_eq(p, token.as_bytes()) => Ok(request),
        Some(_) => Err(Status::unauthenticated("invalid shuffle token")),
        None => Err(Status::unauthenticated("missing bearer token")),
    }
}

/// Equality whose time depends only on the lengths, not on where the bytes differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn status(e: BlockError) -> Status {
    if matches!(e, BlockError::Corrupt(_) | BlockError::Io(_)) {
        // The reducer reports it as a fetch failure; the executor's log says why.
        log::warn!("cannot serve a shuffle block: {e}");
    }
    match &e {
        BlockError::InvalidTicket(_) => Status::invalid_argument(e.to_string()),
        BlockError::NotFound(_) => Status::not_found(e.to_string()),
        BlockError::Corrupt(_) => Status::data_loss(e.to_string()),
        BlockError::Io(_) => Status::internal(e.to_string()),
    }
}

/// Serves shuffle blocks; every other Flight call is unimplemented.
struct ShuffleFlightService;

type Unsupported<T> = Pin<Box<dyn Stream<Item = std::result::Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl FlightService for ShuffleFlightService {
    type HandshakeStream = Unsupported<HandshakeResponse>;
    type ListFlightsStream = Unsupported<FlightInfo>;
    type DoGetStream = BoxStream<'static, std::result::Result<FlightData, Status>>;
    type DoPutStream = Unsupported<PutResult>;
    type DoExchangeStream = Unsupported<FlightData>;
    type DoActionStream = Unsupported<arrow_flight::Result>;
    type ListActionsStream = Unsupported<ActionType>;

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> std::result::Result<Response<Self::DoGetStream>, Status> {
        let id = BlockId::parse(&request.get_ref().ticket).map_err(status)?;
        let output = map_output(id.shuffle_id, id.map_id).ok_or_else(|| {
            Status::not_found(format!(
                "map output {} of shuffle {} is not registered here",
                id.map_id, id.shuffle_id
            ))
        })?;
        let reader = blocking(move || BlockReader::open(id, &output))
            .await?
            .map_err(status)?;
        Ok(Response::new(Box::pin(messages(reader))))
    }

    async fn handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> std::result::Result<Response<Self::HandshakeStream>, Status> {
        Err(Status::unimplemented("handshake"))
    }

    async fn list_flights(
        &self,
        _request: Request<Criteria>,
    ) -> std::result::Result<Response<Self::ListFlightsStream>, Status> {
        Err(Status::unimplemented("list_flights"))
    }

    async fn get_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<FlightInfo>, Status> {
        Err(Status::unimplemented("get_flight_info"))
    }

    async fn poll_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<PollInfo>, Status> {
        Err(Status::unimplemented("poll_flight_info"))
    }

    async fn get_schema(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> std::result::Result<Response<SchemaResult>, Status> {
        Err(Status::unimplemented("get_schema"))
    }

    async fn do_put(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> std::result::Result<Response<Self::DoPutStream>, Status> {
        Err(Status::unimplemented("do_put"))
    }

    async fn do_exchange(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> std::result::Result<Response<Self::DoExchangeStream>, Status> {
        Err(Status::unimplemented("do_exchange"))
    }

    async fn do_action(
        &self,
        _request: Request<Action>,
    ) -> std::result::Result<Response<Self::DoActionStream>, Status> {
        Err(Status::unimplemented("do_action"))
    }

    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> std::result::Result<Response<Self::ListActionsStream>, Status> {
        Err(Status::unimplemented("list_actions"))
    }
}

/// `f` on a blocking thread of the server's runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> std::result::Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("shuffle block read failed: {e}")))
}

/// The block's messages, each read when the client is ready for it (the response's flow
/// control is the back pressure); a read error ends the stream with its status.
fn messages(reader: BlockReader) -> impl Stream<Item = std::result::Result<FlightData, Status>> {
    futures::stream::try_unfold(Some(reader), |state| async move {
        let Some(mut reader) = state else {
            return Ok(None);
        };
        let (next, reader) = blocking(move || (reader.next(), reader)).await?;
        match next {
            Some(Ok(data)) => Ok(Some((data, Some(reader)))),
            Some(Err(e)) => Err(status(e)),
            None => {
                BLOCKS_SERVED.fetch_add(1, Ordering::Relaxed);
                BYTES_SERVED.fetch_add(reader.len(), Ordering::Relaxed);
                Ok(None)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_tokens() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret1"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn authorizes_bearer_token_only() {
        let with = |value: &str| {
            let mut request = Request::new(());
            request
                .metadata_mut()
                .insert("authorization", value.parse().unwrap());
            request
        };
        assert!(authorize(with("Bearer s3cret"), "s3cret").is_ok());
        for bad in ["Bearer other", "bearer s3cret", "s3cret", "Bearer  s3cret"] {
            let refused = authorize(with(bad), "s3cret").unwrap_err();
            assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{bad}");
        }
        let missing = authorize(Request::new(()), "s3cret").unwrap_err();
        assert_eq!(missing.code(), tonic::Code::Unauthenticated);
    }
}
