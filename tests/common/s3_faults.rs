//! A fault-injecting HTTP/1.1 proxy between an S3 client and the real S3-API
//! server (RELIABILITY F6: 5xx on put, on multipart complete, on list; a
//! timeout or a lost answer after the server already stored the object).
//!
//! Point the store's endpoint at [`S3Proxy::endpoint`]. The proxy forwards the
//! request bytes unchanged (the `Host` header included), so SigV4 signatures
//! stay valid, and relays the server's answer — unless a queued [`Fault`]
//! matches the request, in which case its [`FaultKind`] decides what the
//! client sees. Every request is logged ([`S3Proxy::requests`]).
//!
//! Framing: request bodies by `Content-Length` or `Transfer-Encoding:
//! chunked` (object_store always sends `Content-Length`); responses by
//! `Content-Length`, chunked, or close-delimited; HEAD, 1xx, 204 and 304 carry
//! no body. Client connections are kept alive; each request gets its own
//! upstream connection. `Expect: 100-continue` is not supported (reqwest does
//! not send it).

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What a matching request gets instead of a plain relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Answer this status with an S3 XML error body (`SlowDown` for 503,
    /// `InternalError` for 500, ...). The request never reaches the server.
    Status(u16),
    /// Forward the request (the server acts on it: the object IS stored),
    /// read the server's whole answer, then close the client connection
    /// cleanly (FIN) without answering. hyper reports an incomplete message,
    /// which object_store classes as "request not sent" and retries, whatever
    /// the method.
    StoreThenDrop,
    /// Like [`FaultKind::StoreThenDrop`] but abort the connection (RST). The
    /// client sees "connection reset", which object_store retries only for
    /// requests it considers idempotent.
    StoreThenReset,
    /// Forward, then hold the server's answer this long before relaying it.
    /// Longer than the client's request timeout, this is "a timeout after the
    /// server already stored the object".
    Delay(Duration),
}

/// A fault to inject into the next `times` requests that match every given
/// condition (`None` matches anything).
#[derive(Debug, Clone)]
pub struct Fault {
    /// HTTP method, e.g. `"PUT"`.
    pub method: Option<&'static str>,
    /// A substring of the path (`/bucket/prefix/key`).
    pub path_contains: Option<String>,
    /// A substring of the query string (without `?`), e.g. `"list-type=2"`
    /// for a list or `"uploadId="` for multipart part/complete/abort.
    pub query_contains: Option<String>,
    /// How many matching requests it applies to.
    pub times: usize,
    pub kind: FaultKind,
}

impl Fault {
    /// A fault for the next request, whatever it is; narrow it with the
    /// builder methods.
    pub fn new(kind: FaultKind) -> Fault {
        Fault {
            method: None,
            path_contains: None,
            query_contains: None,
            times: 1,
            kind,
        }
    }

    pub fn method(mut self, method: &'static str) -> Fault {
        self.method = Some(method);
        self
    }

    pub fn path_contains(mut self, part: impl Into<String>) -> Fault {
        self.path_contains = Some(part.into());
        self
    }

    pub fn query_contains(mut self, part: impl Into<String>) -> Fault {
        self.query_contains = Some(part.into());
        self
    }

    pub fn times(mut self, times: usize) -> Fault {
        self.times = times;
        self
    }

    fn matches(&self, method: &str, path: &str, query: &str) -> bool {
        self.method.is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self
                .path_contains
                .as_deref()
                .is_none_or(|p| path.contains(p))
            && self
                .query_contains
                .as_deref()
                .is_none_or(|q| query.contains(q))
    }
}

/// One request the proxy received, in arrival order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    pub method: String,
    /// Path and query as sent (`/bucket/key?uploadId=...`).
    pub target: String,
    /// The fault applied to it, if any.
    pub fault: Option<FaultKind>,
    /// The status the server answered; `None` when the request was not
    /// forwarded (a [`FaultKind::Status`] fault) or the server did not answer.
    pub upstream_status: Option<u16>,
}

impl Exchange {
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(p, _)| p)
    }

    pub fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }
}

struct Shared {
    /// `host:port` of the real server.
    upstream: String,
    faults: Mutex<Vec<Fault>>,
    fired: AtomicUsize,
    log: Mutex<Vec<Exchange>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    /// Logs the request and takes the first queued fault that matches it.
    fn arrive(&self, method: &str, target: &str) -> (usize, Option<FaultKind>) {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let kind = {
            let mut faults = lock(&self.faults);
            let found = faults.iter().position(|f| f.matches(method, path, query));
            found.and_then(|i| {
                let f = faults.get_mut(i)?;
                let kind = f.kind;
                f.times = f.times.saturating_sub(1);
                if f.times == 0 {
                    faults.remove(i);
                }
                Some(kind)
            })
        };
        if kind.is_some() {
            self.fired.fetch_add(1, Ordering::SeqCst);
        }
        let mut log = lock(&self.log);
        log.push(Exchange {
            method: method.to_string(),
            target: target.to_string(),
            fault: kind,
            upstream_status: None,
        });
        (log.len() - 1, kind)
    }

    fn answered(&self, index: usize, status: u16) {
        if let Some(e) = lock(&self.log).get_mut(index) {
            e.upstream_status = Some(status);
        }
    }
}

/// The proxy; it stops accepting connections when dropped.
pub struct S3Proxy {
    /// `http://127.0.0.1:<port>`: use it as the S3 endpoint.
    pub endpoint: String,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl S3Proxy {
    /// Starts a proxy on an ephemeral local port in front of `upstream`
    /// (`http://host:port`). It forwards everything until faults are queued.
    pub async fn start(upstream: &str) -> S3Proxy {
        let url = url::Url::parse(upstream).expect("upstream is a URL");
        assert_eq!(url.scheme(), "http", "the proxy speaks plain HTTP only");
        let host = url.host_str().expect("upstream has a host");
        let port = url.port_or_known_default().unwrap_or(80);
        let shared = Arc::new(Shared {
            upstream: format!("{host}:{port}"),
            faults: Mutex::new(Vec::new()),
            fired: AtomicUsize::new(0),
            log: Mutex::new(Vec::new()),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("proxy address"));
        let accept = tokio::spawn({
            let shared = Arc::clone(&shared);
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let _ = client.set_nodelay(true);
                    tokio::spawn(serve(client, Arc::clone(&shared)));
                }
            }
        });
        S3Proxy {
            endpoint,
            shared,
            accept,
        }
    }

    /// Queues a fault. Faults are tried in the order queued; the first that
    /// matches a request is applied to it.
    pub fn inject(&self, fault: Fault) {
        if fault.times > 0 {
            lock(&self.shared.faults).push(fault);
        }
    }

    /// How many requests got a fault so far.
    pub fn injected(&self) -> usize {
        self.shared.fired.load(Ordering::SeqCst)
    }

    /// How many queued fault applications have not fired yet.
    pub fn pending(&self) -> usize {
        lock(&self.shared.faults).iter().map(|f| f.times).sum()
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Exchange> {
        lock(&self.shared.log).clone()
    }

    /// The requests with this method whose target contains `target_part`.
    pub fn requests_matching(&self, method: &str, target_part: &str) -> Vec<Exchange> {
        self.requests()
            .into_iter()
            .filter(|e| e.method.eq_ignore_ascii_case(method) && e.target.contains(target_part))
            .collect()
    }
}

impl Drop for S3Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Serves one client connection until it closes or a fault drops it.
async fn serve(client: TcpStream, shared: Arc<Shared>) {
    let mut client = Reader::new(client);
    loop {
        let request = match client.read_message(None).await {
            Ok(Some(r)) => r,
            Ok(None) | Err(_) => return,
        };
        let (method, target) = {
            let mut parts = request.start_line.split(' ');
            let method = parts.next().unwrap_or("").to_string();
            let target = parts.next().unwrap_or("").to_string();
            (method, target)
        };
        let client_close = request.connection_close();
        let (index, fault) = shared.arrive(&method, &target);

        if let Some(FaultKind::Status(status)) = fault {
            let answer = error_response(status, &target, client_close);
            if client.stream.write_all(&answer).await.is_err() || client_close {
                return;
            }
            continue;
        }

        let (response, upstream_close) = match forward(&shared.upstream, &method, &request).await {
            Ok(Some(response)) => {
                shared.answered(index, response.status());
                let close = response.close_delimited || response.connection_close();
                (response.bytes(), close)
            }
            Ok(None) | Err(_) => (error_response(502, &target, true), true),
        };
        match fault {
            Some(FaultKind::StoreThenDrop) => {
                let _ = client.stream.shutdown().await;
                return;
            }
            Some(FaultKind::StoreThenReset) => {
                let _ = client.stream.set_zero_linger();
                return;
            }
            Some(FaultKind::Delay(delay)) => tokio::time::sleep(delay).await,
            Some(FaultKind::Status(_)) | None => {}
        }
        if client.stream.write_all(&response).await.is_err() || client_close || upstream_close {
            return;
        }
    }
}

/// Sends the request on a fresh upstream connection and reads the answer.
async fn forward(upstream: &str, method: &str, request: &Message) -> io::Result<Option<Message>> {
    let mut server = TcpStream::connect(upstream).await?;
    server.set_nodelay(true)?;
    server.write_all(&request.bytes()).await?;
    let mut server = Reader::new(server);
    server.read_message(Some(method)).await
}

/// An S3-style error answer.
fn error_response(status: u16, resource: &str, close: bool) -> Vec<u8> {
    let (reason, code) = match status {
        400 => ("Bad Request", "InvalidRequest"),
        403 => ("Forbidden", "AccessDenied"),
        404 => ("Not Found", "NoSuchKey"),
        409 => ("Conflict", "OperationAborted"),
        412 => ("Precondition Failed", "PreconditionFailed"),
        429 => ("Too Many Requests", "SlowDown"),
        500 => ("Internal Server Error", "InternalError"),
        502 => ("Bad Gateway", "BadGateway"),
        503 => ("Service Unavailable", "SlowDown"),
        504 => ("Gateway Timeout", "RequestTimeout"),
        _ => ("Injected Fault", "InjectedFault"),
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
         <Message>injected by the test proxy</Message><Resource>{}</Resource>\
         <RequestId>s3-faults</RequestId></Error>",
        resource.replace('&', "&amp;").replace('<', "&lt;")
    );
    let connection = if close { "close" } else { "keep-alive" };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n\
         Content-Length: {}\r\nConnection: {connection}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// One HTTP/1.1 message, head and body kept as received.
struct Message {
    head: Vec<u8>,
    start_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// The body ran to the end of the connection.
    close_delimited: bool,
}

impl Message {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The sender closes the connection after this message (`Connection:
    /// close`, or HTTP/1.0 without `Connection`).
    fn connection_close(&self) -> bool {
        let http10 =
            self.start_line.starts_with("HTTP/1.0") || self.start_line.ends_with("HTTP/1.0");
        match self.header("connection") {
            Some(v) => v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")),
            None => http10,
        }
    }

    /// The status of a response (0 if unparsable).
    fn status(&self) -> u16 {
        self.start_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.head.len() + self.body.len());
        out.extend_from_slice(&self.head);
        out.extend_from_slice(&self.body);
        out
    }
}

const MAX_HEAD: usize = 64 * 1024;

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// A buffered reader of HTTP/1.1 messages.
struct Reader {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Reader {
    fn new(stream: TcpStream) -> Reader {
        Reader {
            stream,
            buf: Vec::new(),
        }
    }

    /// Reads more bytes into the buffer; false at end of stream.
    async fn fill(&mut self) -> io::Result<bool> {
        self.buf.reserve(64 * 1024);
        Ok(self.stream.read_buf(&mut self.buf).await? > 0)
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        let rest = self.buf.split_off(n.min(self.buf.len()));
        std::mem::replace(&mut self.buf, rest)
    }

    /// Bytes up to and including the first occurrence of `delimiter`.
    async fn take_through(&mut self, delimiter: &[u8]) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(i) = self
                .buf
                .windows(delimiter.len())
                .position(|w| w == delimiter)
            {
                return Ok(Some(self.take(i + delimiter.len())));
            }
            if self.buf.len() > MAX_HEAD {
                return Err(invalid("line too long"));
            }
            if !self.fill().await? {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(invalid("truncated message"))
                };
            }
        }
    }

    async fn take_exact(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill().await? {
                return Err(invalid("truncated body"));
            }
        }
        Ok(self.take(n))
    }

    /// Reads a request (`request_method` = None) or the response to a request
    /// with that method. `None` when the stream ends before a message starts.
    async fn read_message(&mut self, request_method: Option<&str>) -> io::Result<Option<Message>> {
        let Some(head) = self.take_through(b"\r\n\r\n").await? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&head).into_owned();
        let mut lines = text.split("\r\n");
        let start_line = lines.next().unwrap_or("").to_string();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        let mut message = Message {
            head,
            start_line,
            headers,
            body: Vec::new(),
            close_delimited: false,
        };
        let chunked = message
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let length = match message.header("content-length") {
            Some(v) => Some(
                v.parse::<usize>()
                    .map_err(|_| invalid("bad Content-Length"))?,
            ),
            None => None,
        };
        let bodiless = request_method.is_some_and(|m| {
            let status = message.status();
            m.eq_ignore_ascii_case("HEAD") || status < 200 || status == 204 || status == 304
        });
        message.body = if bodiless {
            Vec::new()
        } else if chunked {
            self.read_chunked().await?
        } else if let Some(n) = length {
            self.take_exact(n).await?
        } else if request_method.is_some() {
            // A response without framing runs to the end of the connection.
            while self.fill().await? {}
            message.close_delimited = true;
            std::mem::take(&mut self.buf)
        } else {
            Vec::new()
        };
        Ok(Some(message))
    }

    /// A chunked body, raw (sizes, data, trailers), up to its final CRLF.
    async fn read_chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut raw = Vec::new();
        loop {
            let line = self
                .take_through(b"\r\n")
                .await?
                .ok_or_else(|| invalid("truncated chunk"))?;
            let size_text = String::from_utf8_lossy(&line);
            let size_text = size_text.split(';').next().unwrap_or("").trim();
            let size =
                usize::from_str_radix(size_text, 16).map_err(|_| invalid("bad chunk size"))?;
            raw.extend_from_slice(&line);
            if size == 0 {
                // Trailers, then the empty line.
                loop {
                    let line = self
                        .take_through(b"\r\n")
                        .await?
                        .ok_or_else(|| invalid("truncated trailer"))?;
                    raw.extend_from_slice(&line);
                    if line == b"\r\n" {
                        return Ok(raw);
                    }
                }
            }
            raw.extend_from_slice(&self.take_exact(size + 2).await?);
        }
    }
}
