//! The SAE client itself: how it reaches SAE ([`SaeClientConfig`]), the [`SaeClient`] handle with
//! its optional [`RequestObserver`], and the one path every request takes: sign, send, read with
//! a cap, and sort the outcome into an envelope or a [`SaeError`] whose class says whether SAE
//! could have executed the call.
//!
//! The sorting is the point. `DeleteInstances` is not idempotent, so an answer we cannot read must
//! never be mistaken for "not executed": anything seen after the request may have left this
//! process is `NoAnswer` unless SAE itself said what happened.
//!
//! The operations are in `operations` and `listing`, the answer types in `model` (re-exported
//! here for older paths). No Kubernetes or metrics types: callers count requests through the
//! observer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, Url};

use super::clock::{SaeClocks, parse_http_date};
use super::envelope::{EXCERPT_CHARS, Envelope, Secrets, interpret};
use super::error::invalid;
use super::sign::{self, SignInput, SignatureVersion};
use super::throttle_hint::{MAX_RETRY_AFTER, retry_after};
use super::transport::{
    BodyProblem, Target, error_chain, header_map, read_bounded, resolve_endpoint,
};
use super::{Credentials, Operation, SaeError};

pub use super::listing::{MAX_INSTANCE_PAGES, no_gate};
pub use super::model::{
    AppInstances, ApplicationGroup, ChangeOrderDetail, ChangeOrderPage, ChangeOrderSummary,
    DeleteAccepted, InstancePage,
};

/// SAE's API version; every SAE operation the controller uses belongs to it.
pub(super) const API_VERSION: &str = "2019-05-06";
/// Gateways that answer without a JSON body may still name the request here.
const REQUEST_ID_HEADER: &str = "x-acs-request-id";

/// How the client reaches SAE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaeClientConfig {
    /// Endpoint template; `{regionId}` is substituted. Default "https://sae.{regionId}.aliyuncs.com".
    /// Also "http://127.0.0.1:PORT" (no placeholder) for the simulator, or a VPC endpoint.
    pub endpoint: String,
    pub signature_version: SignatureVersion,
    /// Time allowed to establish the connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// Total time allowed per request, from connecting until the body is read.
    pub timeout: Duration,
    /// Cap on a response body read; a longer body is treated as no usable answer.
    pub max_body_bytes: usize,
    /// Longest throttling pause an answer's headers may ask for; longer asks are cut to this.
    /// Never more than [`MAX_RETRY_AFTER`] (a larger value is lowered to it).
    pub max_retry_after: Duration,
}

impl Default for SaeClientConfig {
    fn default() -> Self {
        Self {
            endpoint: "https://sae.{regionId}.aliyuncs.com".to_string(),
            signature_version: SignatureVersion::V1,
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(30),
            max_body_bytes: 1024 * 1024,
            max_retry_after: MAX_RETRY_AFTER,
        }
    }
}

/// Told about every SAE request the client made: which operation, whether it succeeded (the
/// answer parsed too) and how long it took, checks before sending included. This is how a caller
/// counts requests (say, in metrics) without the client knowing about metrics.
pub type RequestObserver = Arc<dyn Fn(Operation, Result<(), &SaeError>, Duration) + Send + Sync>;

/// A client for SAE's ROA API. Cloning shares the connection pool (and the observer).
#[derive(Clone)]
pub struct SaeClient {
    /// For the reads: connections are kept and reused.
    http: reqwest::Client,
    /// For DeleteInstances: a new connection each time (see [`SaeClient::new`]).
    unpooled: reqwest::Client,
    config: SaeClientConfig,
    observer: Option<RequestObserver>,
    /// SAE's clock against ours per region, from the `Date` of every answer.
    clocks: SaeClocks,
}

impl std::fmt::Debug for SaeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaeClient")
            .field("config", &self.config)
            .field("observer", &self.observer.is_some())
            .finish_non_exhaustive()
    }
}

/// One request to make: what the operation-specific methods hand to [`SaeClient::call`].
pub(super) struct Call<'a> {
    /// Which operation; it names the method, path and action.
    pub(super) operation: Operation,
    pub(super) query: Vec<(String, String)>,
    /// The app or change order the call is about, for the log line.
    pub(super) subject: &'a str,
}

impl SaeClient {
    /// Checks the endpoint template and builds the HTTP client. Nothing is sent.
    pub fn new(config: SaeClientConfig) -> Result<Self, SaeError> {
        const OPERATION: &str = "client setup";
        // Substituting a real-looking region catches a malformed template now, not on the first call.
        resolve_endpoint(&config.endpoint, "cn-hangzhou", OPERATION)?;
        if config.max_body_bytes == 0 {
            return Err(SaeError::InvalidRequest {
                operation: OPERATION,
                detail: "max_body_bytes must be positive".into(),
            });
        }
        let build = |idle_per_host: usize| {
            reqwest::Client::builder()
                .connect_timeout(config.connect_timeout)
                .timeout(config.timeout)
                // A redirected PUT would be a second, unsigned delivery of a non-idempotent call.
                .redirect(reqwest::redirect::Policy::none())
                .pool_max_idle_per_host(idle_per_host)
                .build()
                .map_err(|e| SaeError::InvalidRequest {
                    operation: OPERATION,
                    detail: format!("cannot build the HTTP client: {}", error_chain(&e)),
                })
        };
        // DeleteInstances never goes out on a connection that sat idle in the pool. A server or
        // load balancer closes idle keep-alive connections when it likes; a request written just
        // as that happens gets no answer, and to the client that looks exactly like a request SAE
        // executed and whose answer was lost: an attempt that must be resolved from SAE's lists,
        // which takes the settle time and looks. On a new connection the same close cannot
        // happen, and a connection that cannot be made is a clean "not sent". The cost is one
        // handshake per DeleteInstances. Reads keep the pool: a lost read is simply asked again.
        let http = build(usize::MAX)?;
        let unpooled = build(0)?;
        Ok(Self {
            http,
            unpooled,
            config,
            observer: None,
            clocks: SaeClocks::default(),
        })
    }

    /// This client, telling `observer` about each request it makes from now on (each page of a
    /// listing separately), in place of any observer it had.
    pub fn with_observer(mut self, observer: RequestObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    /// SAE's clock minus ours in `region`, as its recent answers showed it (None before any).
    pub fn clock_offset(&self, region_id: &str) -> Option<jiff::SignedDuration> {
        self.clocks.offset(region_id)
    }

    /// Runs one operation's request and parsing, and tells the observer how it went.
    pub(super) async fn observed<T>(
        &self,
        operation: Operation,
        request: impl Future<Output = Result<T, SaeError>>,
    ) -> Result<T, SaeError> {
        let started = Instant::now();
        let result = request.await;
        if let Some(observer) = &self.observer {
            observer(operation, result.as_ref().map(|_| ()), started.elapsed());
        }
        result
    }

    /// Signs, sends and reads one request, and sorts the outcome. On `Ok` the envelope is a
    /// success as far as the envelope can tell; the caller still checks its `Data`.
    pub(super) async fn call(
        &self,
        creds: &Credentials,
        region_id: &str,
        call: Call<'_>,
    ) -> Result<Envelope, SaeError> {
        let started = Instant::now();
        let operation = call.operation.name();
        let subject = call.subject;
        let result = self.exchange(creds, region_id, call).await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match &result {
            Ok(envelope) => tracing::debug!(
                operation,
                subject,
                http_status = envelope.http_status,
                request_id = envelope.request_id.as_deref(),
                elapsed_ms,
                "SAE call answered"
            ),
            Err(err) => tracing::debug!(
                operation,
                subject,
                http_status = match err {
                    SaeError::Api { http_status, .. } => Some(*http_status),
                    _ => None,
                },
                request_id = err.request_id(),
                elapsed_ms,
                error = %err,
                "SAE call failed"
            ),
        }
        result
    }

    async fn exchange(
        &self,
        creds: &Credentials,
        region_id: &str,
        call: Call<'_>,
    ) -> Result<Envelope, SaeError> {
        let op = call.operation;
        let operation = op.name();
        let target = resolve_endpoint(&self.config.endpoint, region_id, operation)?;
        // The query is encoded here, once, so the bytes on the wire are the ones that were signed;
        // `Url` leaves an already percent-encoded query alone.
        let encoded_query = sign::encode_query(&call.query);
        let mut url_text = format!("{}{}", target.base, op.path());
        if !encoded_query.is_empty() {
            url_text.push('?');
            url_text.push_str(&encoded_query);
        }
        let url = Url::parse(&url_text)
            .map_err(|e| invalid(operation, &format!("cannot form the request URL: {e}")))?;

        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let input = SignInput {
            method: op.method(),
            host: &target.host,
            path: op.path(),
            query: &call.query,
            action: operation,
            api_version: API_VERSION,
            body: b"",
            now: jiff::Timestamp::now(),
            nonce: &nonce,
        };
        let signed = sign::signed_headers(self.config.signature_version, creds, &input);
        let headers = header_map(operation, &signed)?;
        let method = Method::from_bytes(op.method().as_bytes())
            .map_err(|_| invalid(operation, "the HTTP method is not valid"))?;

        let sent = jiff::Timestamp::now();
        let http = if op.is_idempotent() {
            &self.http
        } else {
            &self.unpooled
        };
        let response = http
            .request(method, url)
            .headers(headers)
            .send()
            .await
            .map_err(|e| self.transport_error(operation, &target, e))?;
        // Only SAE's own answers (they name a RequestId) show SAE's clock; a proxy's would not.
        if let Some(date) = response
            .headers()
            .get(reqwest::header::DATE)
            .filter(|_| response.headers().contains_key(REQUEST_ID_HEADER))
            .and_then(|v| v.to_str().ok())
            .and_then(parse_http_date)
        {
            self.clocks
                .record(region_id, date, sent, jiff::Timestamp::now());
        }

        let http_status = response.status().as_u16();
        let retry_after = retry_after(response.headers(), self.config.max_retry_after);
        let header_request_id = response
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let secrets = Secrets::of(creds);
        let body = match read_bounded(response, self.config.max_body_bytes).await {
            Ok(body) => body,
            Err(BodyProblem::TooLarge) => {
                return Err(SaeError::NoAnswer {
                    operation,
                    detail: format!(
                        "HTTP {http_status} answer body is larger than {} bytes; stopped reading it",
                        self.config.max_body_bytes
                    ),
                });
            }
            Err(BodyProblem::Failed(e)) => {
                let what = if e.is_timeout() {
                    "timed out"
                } else {
                    "failed"
                };
                return Err(SaeError::NoAnswer {
                    operation,
                    detail: format!(
                        "HTTP {http_status} answer body read {what}: {}",
                        secrets.clean(&error_chain(&e.without_url()), EXCERPT_CHARS)
                    ),
                });
            }
        };
        interpret(
            operation,
            http_status,
            retry_after,
            header_request_id,
            &body,
            &secrets,
        )
    }

    fn transport_error(
        &self,
        operation: &'static str,
        target: &Target,
        err: reqwest::Error,
    ) -> SaeError {
        let (is_builder, is_connect, is_timeout) =
            (err.is_builder(), err.is_connect(), err.is_timeout());
        let detail = error_chain(&err.without_url());
        if is_builder {
            invalid(operation, &detail)
        } else if is_connect {
            // Connect failures include DNS, TCP refusal and TLS handshake: SAE saw nothing.
            SaeError::NotSent {
                operation,
                endpoint: target.base.clone(),
                detail,
            }
        } else if is_timeout {
            SaeError::NoAnswer {
                operation,
                detail: format!(
                    "no answer within {:?} after sending: {detail}",
                    self.config.timeout
                ),
            }
        } else {
            SaeError::NoAnswer {
                operation,
                detail: format!("connection lost before an answer: {detail}"),
            }
        }
    }
}
