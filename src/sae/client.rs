//! The typed SAE client: five ROA calls, signed, bounded, and every failure sorted into a
//! [`SaeError`] whose class says whether SAE could have executed the call.
//!
//! The sorting is the point of this module. `DeleteInstances` is not idempotent, so an answer we
//! cannot read must never be mistaken for "not executed": anything seen after the request may have
//! left this process is `NoAnswer` unless SAE itself said what happened.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, USER_AGENT};
use reqwest::{Method, Url};
use serde_json::{Map, Value};

use super::error::request_suffix;
use super::sign::{self, SignInput, SignatureVersion};
use super::{Credentials, Operation, SaeError};

/// SAE's API version; every SAE operation the controller uses belongs to it.
const API_VERSION: &str = "2019-05-06";
const REGION_PLACEHOLDER: &str = "{regionId}";
/// SAE's throttling hint, in milliseconds (as the official SDKs read it).
const RETRY_AFTER_HEADER: &str = "x-acs-retry-after";
/// Older gateways' throttling hints: `Limit:..,Remain:..,TimeLeft:<ms>,Reset:..`.
const RATE_LIMIT_HEADERS: [&str; 2] = ["x-ratelimit-user-api", "x-ratelimit-user"];
/// The longest pause an answer can ask for: the official SDKs never wait longer than two minutes
/// before retrying a throttled call, whatever the header says.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);
/// Gateways that answer without a JSON body may still name the request here.
const REQUEST_ID_HEADER: &str = "x-acs-request-id";
/// How much of an unexpected body goes into an error message.
const EXCERPT_CHARS: usize = 200;
/// Longest SAE `Message` kept in an error; status messages should stay readable.
const MESSAGE_CHARS: usize = 500;
/// Page size `list_all_instance_ids` asks for.
const INSTANCE_PAGE_SIZE: u32 = 50;
/// Most pages `list_all_instance_ids` reads per group (5,000 instances at 50 a page, far beyond
/// what an SAE app holds). A first page announcing more is refused rather than followed: each page
/// costs a request of the key's per-minute quota.
pub const MAX_INSTANCE_PAGES: u64 = 100;
pub(super) const USER_AGENT_VALUE: &str = concat!("sae-controller/", env!("CARGO_PKG_VERSION"));

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

/// SAE accepted a `DeleteInstances` call and opened a change order for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeleteAccepted {
    pub change_order_id: String,
    pub request_id: Option<String>,
    pub trace_id: Option<String>,
}

/// One change order as `DescribeChangeOrder` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeOrder {
    pub change_order_id: String,
    pub status: i64,
    pub sub_status: Option<i64>,
    pub co_type_code: Option<String>,
    pub error_message: Option<String>,
    pub create_time: Option<String>,
    pub request_id: Option<String>,
}

/// One row of `ListChangeOrders`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeOrderSummary {
    pub change_order_id: String,
    pub status: i64,
    pub co_type_code: Option<String>,
    pub create_time: Option<String>,
    /// When it ended, once it has (SAE's `FinishTime`, same forms as `CreateTime`).
    pub finish_time: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeOrderPage {
    pub total: u64,
    pub current_page: u32,
    pub page_size: u32,
    pub change_orders: Vec<ChangeOrderSummary>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplicationGroup {
    pub group_id: String,
    pub group_name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstancePage {
    pub total: u64,
    pub current_page: u32,
    pub page_size: u32,
    pub instance_ids: Vec<String>,
    /// Those of them SAE reports as being terminated (`InstanceContainerStatus: Terminating`).
    pub terminating: Vec<String>,
}

/// Every instance of an app (all groups), and which of them are being terminated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppInstances {
    pub ids: Vec<String>,
    pub terminating: Vec<String>,
}

/// Told about every SAE request the client made: which operation, whether it succeeded (the
/// answer parsed too) and how long it took, checks before sending included. This is how a caller
/// counts requests (say, in metrics) without the client knowing about metrics.
pub type RequestObserver = Arc<dyn Fn(Operation, Result<(), &SaeError>, Duration) + Send + Sync>;

/// A client for SAE's ROA API. Cloning shares the connection pool (and the observer).
#[derive(Clone)]
pub struct SaeClient {
    http: reqwest::Client,
    config: SaeClientConfig,
    observer: Option<RequestObserver>,
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
struct Call<'a> {
    /// Which operation; it names the method, path and action.
    operation: Operation,
    query: Vec<(String, String)>,
    /// The app or change order the call is about, for the log line.
    subject: &'a str,
}

/// A successful SAE envelope, kept whole so each operation picks its own `Data` fields.
#[derive(Debug)]
struct Envelope {
    body: Map<String, Value>,
    http_status: u16,
    request_id: Option<String>,
    trace_id: Option<String>,
    /// Start of the body, cleaned, for the error if `Data` turns out unusable.
    excerpt: String,
}

/// Where a resolved endpoint points: `base` is `scheme://host[:port]`, `host` what goes in `Host`.
struct Target {
    base: String,
    host: String,
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
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            // A redirected PUT would be a second, unsigned delivery of a non-idempotent call.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| SaeError::InvalidRequest {
                operation: OPERATION,
                detail: format!("cannot build the HTTP client: {}", error_chain(&e)),
            })?;
        Ok(Self {
            http,
            config,
            observer: None,
        })
    }

    /// This client, telling `observer` about each request it makes from now on (each page of a
    /// listing separately), in place of any observer it had.
    pub fn with_observer(mut self, observer: RequestObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Runs one operation's request and parsing, and tells the observer how it went.
    async fn observed<T>(
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

    /// Asks SAE to delete the given instances. Not idempotent: SAE has no token to recognise a
    /// repeat, so a `NoAnswer` here must be resolved by looking at SAE, never by sending again.
    pub async fn delete_instances(
        &self,
        creds: &Credentials,
        region_id: &str,
        app_id: &str,
        instance_ids: &[String],
    ) -> Result<DeleteAccepted, SaeError> {
        self.observed(Operation::DeleteInstances, async {
            const OPERATION: &str = Operation::DeleteInstances.name();
            require_value(OPERATION, "AppId", app_id)?;
            if instance_ids.is_empty() {
                return Err(invalid(OPERATION, "no instance ids given"));
            }
            for id in instance_ids {
                // SAE splits the list on commas, so a comma inside an id would name other instances.
                if id.trim().is_empty() || id.contains(',') {
                    return Err(invalid(
                        OPERATION,
                        "an instance id is empty or contains a comma",
                    ));
                }
            }
            let call = Call {
                operation: Operation::DeleteInstances,
                query: vec![
                    pair("AppId", app_id),
                    pair("InstanceIds", &instance_ids.join(",")),
                ],
                subject: app_id,
            };
            let envelope = self.call(creds, region_id, call).await?;
            let data = data_object(OPERATION, &envelope)?;
            let change_order_id = id_field(data, "ChangeOrderId")
                .ok_or_else(|| unusable(OPERATION, &envelope, "Data.ChangeOrderId is missing"))?;
            Ok(DeleteAccepted {
                change_order_id,
                request_id: envelope.request_id,
                trace_id: envelope.trace_id,
            })
        })
        .await
    }

    pub async fn describe_change_order(
        &self,
        creds: &Credentials,
        region_id: &str,
        change_order_id: &str,
    ) -> Result<ChangeOrder, SaeError> {
        self.observed(Operation::DescribeChangeOrder, async {
            const OPERATION: &str = Operation::DescribeChangeOrder.name();
            require_value(OPERATION, "ChangeOrderId", change_order_id)?;
            let call = Call {
                operation: Operation::DescribeChangeOrder,
                query: vec![pair("ChangeOrderId", change_order_id)],
                subject: change_order_id,
            };
            let envelope = self.call(creds, region_id, call).await?;
            let data = data_object(OPERATION, &envelope)?;
            let status = int_field(data, "Status").ok_or_else(|| {
                unusable(
                    OPERATION,
                    &envelope,
                    "Data.Status is missing or not a number",
                )
            })?;
            Ok(ChangeOrder {
                // We know which one we asked for; an answer that omits the id still describes it.
                change_order_id: id_field(data, "ChangeOrderId")
                    .unwrap_or_else(|| change_order_id.to_string()),
                status,
                sub_status: int_field(data, "SubStatus"),
                co_type_code: id_field(data, "CoTypeCode"),
                error_message: id_field(data, "ErrorMessage"),
                create_time: id_field(data, "CreateTime"),
                request_id: envelope.request_id.clone(),
            })
        })
        .await
    }

    pub async fn list_change_orders(
        &self,
        creds: &Credentials,
        region_id: &str,
        app_id: &str,
        co_type: Option<&str>,
        current_page: u32,
        page_size: u32,
    ) -> Result<ChangeOrderPage, SaeError> {
        self.observed(Operation::ListChangeOrders, async {
            const OPERATION: &str = Operation::ListChangeOrders.name();
            require_value(OPERATION, "AppId", app_id)?;
            let mut query = vec![
                pair("AppId", app_id),
                pair("CurrentPage", &current_page.to_string()),
                pair("PageSize", &page_size.to_string()),
            ];
            if let Some(co_type) = co_type {
                query.push(pair("CoType", co_type));
            }
            let call = Call {
                operation: Operation::ListChangeOrders,
                query,
                subject: app_id,
            };
            let envelope = self.call(creds, region_id, call).await?;
            let data = data_object(OPERATION, &envelope)?;
            let rows = page_rows(OPERATION, &envelope, data, "ChangeOrderList")?;
            let mut change_orders = Vec::with_capacity(rows.len());
            for row in rows {
                let row = row.as_object().ok_or_else(|| {
                    unusable(
                        OPERATION,
                        &envelope,
                        "a ChangeOrderList row is not an object",
                    )
                })?;
                let (Some(change_order_id), Some(status)) =
                    (id_field(row, "ChangeOrderId"), int_field(row, "Status"))
                else {
                    return Err(unusable(
                        OPERATION,
                        &envelope,
                        "a ChangeOrderList row lacks ChangeOrderId or Status",
                    ));
                };
                change_orders.push(ChangeOrderSummary {
                    change_order_id,
                    status,
                    co_type_code: id_field(row, "CoTypeCode"),
                    create_time: id_field(row, "CreateTime"),
                    finish_time: id_field(row, "FinishTime"),
                });
            }
            Ok(ChangeOrderPage {
                total: uint_field(data, "TotalSize").unwrap_or(change_orders.len() as u64),
                current_page: u32_field(data, "CurrentPage").unwrap_or(current_page),
                page_size: u32_field(data, "PageSize").unwrap_or(page_size),
                change_orders,
            })
        })
        .await
    }

    pub async fn describe_application_groups(
        &self,
        creds: &Credentials,
        region_id: &str,
        app_id: &str,
    ) -> Result<Vec<ApplicationGroup>, SaeError> {
        self.observed(Operation::DescribeApplicationGroups, async {
            const OPERATION: &str = Operation::DescribeApplicationGroups.name();
            require_value(OPERATION, "AppId", app_id)?;
            let call = Call {
                operation: Operation::DescribeApplicationGroups,
                query: vec![pair("AppId", app_id)],
                subject: app_id,
            };
            let envelope = self.call(creds, region_id, call).await?;
            let rows = envelope
                .body
                .get("Data")
                .and_then(Value::as_array)
                .ok_or_else(|| unusable(OPERATION, &envelope, "Data is missing or not a list"))?;
            rows.iter()
                .map(|row| {
                    let row = row.as_object();
                    let group_id = row.and_then(|r| id_field(r, "GroupId"));
                    match group_id {
                        Some(group_id) => Ok(ApplicationGroup {
                            group_id,
                            group_name: row.and_then(|r| id_field(r, "GroupName")),
                        }),
                        None => Err(unusable(OPERATION, &envelope, "a group lacks GroupId")),
                    }
                })
                .collect()
        })
        .await
    }

    pub async fn describe_application_instances(
        &self,
        creds: &Credentials,
        region_id: &str,
        app_id: &str,
        group_id: &str,
        current_page: u32,
        page_size: u32,
    ) -> Result<InstancePage, SaeError> {
        self.observed(Operation::DescribeApplicationInstances, async {
            const OPERATION: &str = Operation::DescribeApplicationInstances.name();
            require_value(OPERATION, "AppId", app_id)?;
            require_value(OPERATION, "GroupId", group_id)?;
            let call = Call {
                operation: Operation::DescribeApplicationInstances,
                query: vec![
                    pair("AppId", app_id),
                    pair("GroupId", group_id),
                    pair("CurrentPage", &current_page.to_string()),
                    pair("PageSize", &page_size.to_string()),
                ],
                subject: app_id,
            };
            let envelope = self.call(creds, region_id, call).await?;
            let data = data_object(OPERATION, &envelope)?;
            let rows = page_rows(OPERATION, &envelope, data, "Instances")?;
            let instance_ids = rows
                .iter()
                .map(|row| {
                    row.as_object()
                        .and_then(|r| id_field(r, "InstanceId"))
                        .ok_or_else(|| {
                            unusable(OPERATION, &envelope, "an instance lacks InstanceId")
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            // SAE documents Running, Terminating, Pending, Failed, ... for InstanceContainerStatus;
            // only the one that says "being removed" matters here.
            let terminating = rows
                .iter()
                .filter_map(|row| {
                    let row = row.as_object()?;
                    let status = text_field(row, "InstanceContainerStatus")?;
                    status
                        .trim()
                        .eq_ignore_ascii_case("Terminating")
                        .then(|| id_field(row, "InstanceId"))?
                })
                .collect();
            Ok(InstancePage {
                total: uint_field(data, "TotalSize").unwrap_or(instance_ids.len() as u64),
                current_page: u32_field(data, "CurrentPage").unwrap_or(current_page),
                page_size: u32_field(data, "PageSize").unwrap_or(page_size),
                instance_ids,
                terminating,
            })
        })
        .await
    }

    /// Every instance id of the app: its groups, then every page of each group, without
    /// duplicates. That is 1 + (pages per group, summed) HTTP requests, and `gate` is awaited before
    /// each one, so the caller can take one quota token per request. A gate that refuses (`Err`)
    /// stops the listing there, nothing more is sent, and its error is the outer one; the inner
    /// result is SAE's. [`no_gate`] lets every request go.
    ///
    /// A group is paged as far as its first page said (`TotalSize` over `PageSize`), never further,
    /// and a first page announcing more than [`MAX_INSTANCE_PAGES`] pages is an error rather than
    /// hundreds of requests: a garbled total must not spend the key's quota.
    pub async fn list_all_instance_ids<G, F, E>(
        &self,
        creds: &Credentials,
        region_id: &str,
        app_id: &str,
        gate: G,
    ) -> Result<Result<Vec<String>, SaeError>, E>
    where
        G: FnMut() -> F,
        F: Future<Output = Result<(), E>>,
    {
        Ok(self
            .list_all_instances(creds, region_id, app_id, gate)
            .await?
            .map(|all| all.ids))
    }

    /// Like [`Self::list_all_instance_ids`], with which instances are being terminated.
    pub async fn list_all_instances<G, F, E>(
        &self,
        creds: &Credentials,
        region_id: &str,
        app_id: &str,
        mut gate: G,
    ) -> Result<Result<AppInstances, SaeError>, E>
    where
        G: FnMut() -> F,
        F: Future<Output = Result<(), E>>,
    {
        gate().await?;
        let groups = match self
            .describe_application_groups(creds, region_id, app_id)
            .await
        {
            Ok(groups) => groups,
            Err(e) => return Ok(Err(e)),
        };
        let mut seen = HashSet::new();
        let mut ids = Vec::new();
        let mut terminating = Vec::new();
        for group in groups {
            let mut pages: u64 = 1;
            let mut fetched: u64 = 0;
            let mut page_number: u32 = 1;
            loop {
                gate().await?;
                let page = self
                    .describe_application_instances(
                        creds,
                        region_id,
                        app_id,
                        &group.group_id,
                        page_number,
                        INSTANCE_PAGE_SIZE,
                    )
                    .await;
                let page = match page {
                    Ok(page) => page,
                    Err(e) => return Ok(Err(e)),
                };
                if page_number == 1 {
                    pages = match page_count(app_id, &group.group_id, &page) {
                        Ok(pages) => pages,
                        Err(e) => return Ok(Err(e)),
                    };
                }
                fetched += page.instance_ids.len() as u64;
                let empty = page.instance_ids.is_empty();
                terminating.extend(page.terminating);
                for id in page.instance_ids {
                    // Instances that move between pages while we page would otherwise appear twice.
                    if seen.insert(id.clone()) {
                        ids.push(id);
                    }
                }
                if empty || fetched >= page.total || u64::from(page_number) >= pages {
                    break;
                }
                page_number += 1;
            }
        }
        terminating.sort();
        terminating.dedup();
        Ok(Ok(AppInstances { ids, terminating }))
    }

    /// Signs, sends and reads one request, and sorts the outcome. On `Ok` the envelope is a
    /// success as far as the envelope can tell; the caller still checks its `Data`.
    async fn call(
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

        let response = self
            .http
            .request(method, url)
            .headers(headers)
            .send()
            .await
            .map_err(|e| self.transport_error(operation, &target, e))?;

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

/// The gate of [`SaeClient::list_all_instance_ids`] for a caller without a quota: every request goes.
pub fn no_gate() -> std::future::Ready<Result<(), std::convert::Infallible>> {
    std::future::ready(Ok(()))
}

/// How many pages a group's first page announces, refused beyond [`MAX_INSTANCE_PAGES`].
fn page_count(app_id: &str, group_id: &str, first: &InstancePage) -> Result<u64, SaeError> {
    // A page size of 0 would be a garbled answer; count by the size we asked for then.
    let page_size = match first.page_size {
        0 => INSTANCE_PAGE_SIZE,
        n => n,
    };
    let pages = first.total.div_ceil(u64::from(page_size)).max(1);
    if pages > MAX_INSTANCE_PAGES {
        return Err(SaeError::NoAnswer {
            operation: Operation::DescribeApplicationInstances.name(),
            detail: format!(
                "group {group_id} of app {app_id} announces TotalSize {} at PageSize {page_size}, \
                 that is {pages} pages; reading more than {MAX_INSTANCE_PAGES} pages per group is \
                 refused (each page is one request of the AccessKey's quota)",
                first.total
            ),
        });
    }
    Ok(pages)
}

fn pair(name: &str, value: &str) -> (String, String) {
    (name.to_string(), value.to_string())
}

fn invalid(operation: &'static str, detail: &str) -> SaeError {
    SaeError::InvalidRequest {
        operation,
        detail: detail.to_string(),
    }
}

fn require_value(operation: &'static str, name: &str, value: &str) -> Result<(), SaeError> {
    if value.trim().is_empty() {
        Err(invalid(operation, &format!("{name} is empty")))
    } else {
        Ok(())
    }
}

/// Substitutes the region and checks the endpoint is a bare `http(s)://host[:port]`: a path prefix
/// would not be part of what we sign, and userinfo would put a credential into error messages.
fn resolve_endpoint(
    template: &str,
    region_id: &str,
    operation: &'static str,
) -> Result<Target, SaeError> {
    let text = if template.contains(REGION_PLACEHOLDER) {
        // The region becomes part of a host name; anything beyond a region's alphabet could
        // redirect the call elsewhere.
        let valid = !region_id.is_empty()
            && region_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !valid {
            return Err(invalid(
                operation,
                &format!("region id {region_id:?} is not a valid region id"),
            ));
        }
        template.replace(REGION_PLACEHOLDER, region_id)
    } else {
        template.to_string()
    };
    let url = Url::parse(text.trim())
        .map_err(|e| invalid(operation, &format!("endpoint is not a URL: {e}")))?;
    if !url.username().is_empty() || url.password().is_some() {
        // Deliberately not echoing the endpoint: it holds a credential.
        return Err(invalid(operation, "endpoint must not contain user info"));
    }
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(invalid(
            operation,
            &format!("endpoint {text:?} must be http or https"),
        ));
    }
    let Some(host) = url.host_str() else {
        return Err(invalid(
            operation,
            &format!("endpoint {text:?} has no host"),
        ));
    };
    if !(url.path().is_empty() || url.path() == "/")
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(invalid(
            operation,
            &format!("endpoint {text:?} must have no path, query or fragment"),
        ));
    }
    let host = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    Ok(Target {
        base: format!("{}://{host}", url.scheme()),
        host,
    })
}

fn header_map(operation: &'static str, signed: &[(String, String)]) -> Result<HeaderMap, SaeError> {
    let mut map = HeaderMap::with_capacity(signed.len() + 1);
    for (name, value) in signed {
        let header_name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(operation, &format!("header name {name:?} is not valid")))?;
        // The value is not echoed: it may be the security token.
        let mut header_value = HeaderValue::from_str(value).map_err(|_| {
            invalid(
                operation,
                &format!("the value of header {name} cannot be sent in HTTP"),
            )
        })?;
        if name == "authorization" || name == "x-acs-security-token" {
            header_value.set_sensitive(true);
        }
        map.insert(header_name, header_value);
    }
    map.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
    Ok(map)
}

/// The pause a throttling answer asks for, as the official SDKs read it: `x-acs-retry-after` in
/// milliseconds, else the larger `TimeLeft` (also milliseconds) of the older `x-ratelimit-user-api`
/// and `x-ratelimit-user` headers. Only positive integers count; anything else (absent, empty,
/// `0`, negative, fractional, text) is no hint at all. The result is cut to `cap` (itself at most
/// [`MAX_RETRY_AFTER`]), so no header can stop a key for longer than two minutes.
fn retry_after(headers: &HeaderMap, cap: Duration) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let millis = text(RETRY_AFTER_HEADER)
        .and_then(positive_millis)
        .or_else(|| {
            RATE_LIMIT_HEADERS
                .iter()
                .filter_map(|name| text(name).and_then(time_left))
                .max()
        })?;
    Some(Duration::from_millis(millis).min(cap.min(MAX_RETRY_AFTER)))
}

/// A positive integer count of milliseconds. Digits beyond `u64` saturate (they can only mean
/// "long", and the cap applies anyway).
fn positive_millis(value: &str) -> Option<u64> {
    let digits = value.trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let millis = digits.parse::<u64>().unwrap_or(u64::MAX);
    (millis > 0).then_some(millis)
}

/// `TimeLeft` of a `Key:Value,Key:Value` rate-limit header.
fn time_left(value: &str) -> Option<u64> {
    value.split(',').find_map(|pair| {
        let (key, value) = pair.split_once(':')?;
        (key.trim() == "TimeLeft")
            .then(|| positive_millis(value))
            .flatten()
    })
}

pub(super) enum BodyProblem {
    TooLarge,
    Failed(reqwest::Error),
}

/// Reads at most `max` bytes; a longer body is abandoned (and its connection dropped) rather than
/// buffered, so a misbehaving peer cannot make us allocate without bound.
pub(super) async fn read_bounded(
    mut response: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, BodyProblem> {
    if response
        .content_length()
        .is_some_and(|len| len > max as u64)
    {
        return Err(BodyProblem::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyProblem::Failed)? {
        if body.len() + chunk.len() > max {
            return Err(BodyProblem::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// What must never reach an error message, in case a server echoes it back.
struct Secrets<'a> {
    values: Vec<&'a str>,
}

impl<'a> Secrets<'a> {
    fn of(creds: &'a Credentials) -> Self {
        let values = [Some(creds.access_key_secret()), creds.security_token()]
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
            .collect();
        Self { values }
    }

    /// Server-provided text made safe for an error: secrets redacted (before cutting, so no
    /// prefix of one survives), one line, at most `max_chars` characters.
    fn clean(&self, text: &str, max_chars: usize) -> String {
        let mut text = text.to_string();
        for secret in &self.values {
            if text.contains(secret) {
                text = text.replace(secret, "<redacted>");
            }
        }
        let one_line: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect::<String>()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let mut chars = one_line.chars();
        let mut out: String = chars.by_ref().take(max_chars).collect();
        if chars.next().is_some() {
            out.push('…');
        }
        out
    }

    fn excerpt(&self, body: &[u8]) -> String {
        if body.is_empty() {
            return "empty body".to_string();
        }
        // Enough bytes for the excerpt and any secret that straddles its end.
        let head = &body[..body.len().min(4096)];
        format!(
            "body: {}",
            self.clean(&String::from_utf8_lossy(head), EXCERPT_CHARS)
        )
    }
}

/// Sorts an HTTP answer into a usable envelope or an error. Pure, so every branch is testable.
fn interpret(
    operation: &'static str,
    http_status: u16,
    retry_after: Option<Duration>,
    header_request_id: Option<String>,
    body: &[u8],
    secrets: &Secrets<'_>,
) -> Result<Envelope, SaeError> {
    let excerpt = secrets.excerpt(body);
    let is_success = (200..300).contains(&http_status);
    let Some(Value::Object(object)) = serde_json::from_slice::<Value>(body).ok() else {
        return Err(if (400..500).contains(&http_status) {
            // A 4xx refused the call before SAE ran it, even when a proxy wrote the body.
            SaeError::Api {
                operation,
                http_status,
                code: format!("HTTP{http_status}"),
                message: format!("answer is not an SAE JSON object; {excerpt}"),
                request_id: header_request_id.map(|id| secrets.clean(&id, EXCERPT_CHARS)),
                retry_after,
            }
        } else {
            SaeError::NoAnswer {
                operation,
                detail: format!("HTTP {http_status} answer is not an SAE JSON object; {excerpt}"),
            }
        });
    };

    let request_id = text_field(&object, "RequestId")
        .or(header_request_id)
        .map(|id| secrets.clean(&id, EXCERPT_CHARS));
    let code = error_code(&object);
    let success_flag = bool_field(&object, "Success");
    let message = || {
        text_field(&object, "Message")
            .or_else(|| text_field(&object, "ErrorMessage"))
            .map(|m| secrets.clean(&m, MESSAGE_CHARS))
            .unwrap_or_else(|| excerpt.clone())
    };
    let api_error = |code: String| SaeError::Api {
        operation,
        http_status,
        code: secrets.clean(&code, EXCERPT_CHARS),
        message: message(),
        request_id: request_id.clone(),
        retry_after,
    };

    if is_success {
        if success_flag == Some(false) {
            // Without a code we cannot tell a refusal from anything else.
            return Err(match code {
                Some(code) => api_error(code),
                None => SaeError::NoAnswer {
                    operation,
                    detail: format!(
                        "HTTP {http_status} answer says Success false but gives no error code; {excerpt}"
                    ),
                },
            });
        }
        let trace_id = text_field(&object, "TraceId").map(|id| secrets.clean(&id, EXCERPT_CHARS));
        return Ok(Envelope {
            body: object,
            http_status,
            request_id,
            trace_id,
            excerpt,
        });
    }
    match code {
        Some(code) => Err(api_error(code)),
        None if (400..500).contains(&http_status) => Err(api_error(format!("HTTP{http_status}"))),
        // 5xx and 3xx without SAE's word on it: the call may have run.
        None => Err(SaeError::NoAnswer {
            operation,
            detail: format!("HTTP {http_status} answer carries no SAE error code; {excerpt}"),
        }),
    }
}

/// SAE's error code: `Code` unless it is only an HTTP-like number, then `ErrorCode`.
fn error_code(object: &Map<String, Value>) -> Option<String> {
    let meaningful = |s: String| {
        let s = s.trim().to_string();
        (!s.is_empty() && !s.bytes().all(|b| b.is_ascii_digit())).then_some(s)
    };
    text_field(object, "Code")
        .and_then(meaningful)
        .or_else(|| text_field(object, "ErrorCode").and_then(meaningful))
}

fn data_object<'a>(
    operation: &'static str,
    envelope: &'a Envelope,
) -> Result<&'a Map<String, Value>, SaeError> {
    envelope
        .body
        .get("Data")
        .and_then(Value::as_object)
        .ok_or_else(|| unusable(operation, envelope, "Data is missing or not an object"))
}

/// The rows of a paged answer. A missing or null list is an empty page only when SAE's total agrees.
fn page_rows<'a>(
    operation: &'static str,
    envelope: &Envelope,
    data: &'a Map<String, Value>,
    list_name: &str,
) -> Result<&'a [Value], SaeError> {
    match data.get(list_name) {
        Some(Value::Array(rows)) => Ok(rows),
        None | Some(Value::Null) if uint_field(data, "TotalSize").unwrap_or(0) == 0 => Ok(&[]),
        _ => Err(unusable(
            operation,
            envelope,
            &format!("Data.{list_name} is missing or not a list"),
        )),
    }
}

fn unusable(operation: &'static str, envelope: &Envelope, what: &str) -> SaeError {
    SaeError::NoAnswer {
        operation,
        detail: format!(
            "HTTP {} answer is not usable: {what}; {}{}",
            envelope.http_status,
            envelope.excerpt,
            request_suffix(envelope.request_id.as_deref())
        ),
    }
}

/// A string or number field as text; SAE is inconsistent about which it sends.
fn text_field(object: &Map<String, Value>, name: &str) -> Option<String> {
    match object.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A text field that must carry something to count as present.
fn id_field(object: &Map<String, Value>, name: &str) -> Option<String> {
    text_field(object, name).filter(|s| !s.trim().is_empty())
}

fn int_field(object: &Map<String, Value>, name: &str) -> Option<i64> {
    match object.get(name)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn uint_field(object: &Map<String, Value>, name: &str) -> Option<u64> {
    int_field(object, name).and_then(|n| u64::try_from(n).ok())
}

fn u32_field(object: &Map<String, Value>, name: &str) -> Option<u32> {
    int_field(object, name).and_then(|n| u32::try_from(n).ok())
}

fn bool_field(object: &Map<String, Value>, name: &str) -> Option<bool> {
    match object.get(name)? {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// An error and its causes on one line: reqwest's own message alone ("error sending request")
/// hides the useful part ("Connection refused").
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ").replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::body::{Body, Bytes};
    use axum::extract::Request;
    use axum::response::Response;
    use futures::StreamExt;
    use percent_encoding::percent_decode_str;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::sae::ErrorClass;

    const AK: &str = "LTAItestkeyid";
    const SECRET: &str = "sk-Very-Secret-Value-0123456789";
    const TOKEN: &str = "sts-Token-Value-abcdefghijklmnop";

    fn creds() -> Credentials {
        Credentials::new(AK, SECRET, None)
    }

    fn sts_creds() -> Credentials {
        Credentials::new("STS.tempkeyid", SECRET, Some(TOKEN.to_string()))
    }

    /// What a scripted server saw of one request.
    #[derive(Clone, Debug)]
    struct Seen {
        method: String,
        path: String,
        raw_query: String,
        headers: Vec<(String, String)>,
    }

    impl Seen {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        }

        fn decoded_query(&self) -> Vec<(String, String)> {
            if self.raw_query.is_empty() {
                return Vec::new();
            }
            self.raw_query
                .split('&')
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    let decode =
                        |s: &str| percent_decode_str(s).decode_utf8().unwrap().into_owned();
                    (decode(k), decode(v))
                })
                .collect()
        }
    }

    type Log = Arc<Mutex<Vec<Seen>>>;

    fn record(log: &Log, req: &Request) {
        let headers = req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    v.to_str().unwrap_or("<binary>").to_string(),
                )
            })
            .collect();
        log.lock().unwrap().push(Seen {
            method: req.method().to_string(),
            path: req.uri().path().to_string(),
            raw_query: req.uri().query().unwrap_or("").to_string(),
            headers,
        });
    }

    async fn serve(router: Router) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        addr
    }

    /// A server answering every request with the same status, headers and body, and logging requests.
    async fn canned(
        status: u16,
        headers: &[(&'static str, &'static str)],
        body: impl Into<String>,
    ) -> (SocketAddr, Log) {
        let log: Log = Arc::default();
        let body: String = body.into();
        let headers = headers.to_vec();
        let seen = log.clone();
        let router = Router::new().fallback(move |req: Request| {
            let (body, headers, seen) = (body.clone(), headers.clone(), seen.clone());
            async move {
                record(&seen, &req);
                let mut resp = Response::builder().status(status);
                for (k, v) in headers {
                    resp = resp.header(k, v);
                }
                resp.body(Body::from(body)).unwrap()
            }
        });
        (serve(router).await, log)
    }

    fn client_for(addr: SocketAddr) -> SaeClient {
        client_with(addr, |_| {})
    }

    fn client_with(addr: SocketAddr, adjust: impl FnOnce(&mut SaeClientConfig)) -> SaeClient {
        let mut config = SaeClientConfig {
            endpoint: format!("http://{addr}"),
            ..SaeClientConfig::default()
        };
        adjust(&mut config);
        SaeClient::new(config).unwrap()
    }

    fn ids(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    async fn delete_via(addr: SocketAddr) -> Result<DeleteAccepted, SaeError> {
        client_for(addr)
            .delete_instances(&creds(), "cn-hangzhou", "app-1", &ids(&["a", "b"]))
            .await
    }

    fn assert_ambiguous(
        result: Result<impl std::fmt::Debug, SaeError>,
        detail_has: &str,
    ) -> SaeError {
        let err = result.expect_err("expected an error");
        assert!(matches!(err, SaeError::NoAnswer { .. }), "{err:?}");
        assert_eq!(err.class(), ErrorClass::Ambiguous);
        assert!(err.to_string().contains(detail_has), "{err}");
        err
    }

    // ---- success envelopes -------------------------------------------------------------------

    #[tokio::test]
    async fn delete_instances_parses_change_order_with_numeric_code() {
        let body = r#"{"RequestId":"req-1","TraceId":"tr-1","Code":200,"Message":"success","Success":true,
            "Data":{"ChangeOrderId":"co-123"},"Extra":{"ignored":[1,2]}}"#;
        let (addr, log) = canned(200, &[], body).await;
        let accepted = delete_via(addr).await.unwrap();
        assert_eq!(
            accepted,
            DeleteAccepted {
                change_order_id: "co-123".into(),
                request_id: Some("req-1".into()),
                trace_id: Some("tr-1".into()),
            }
        );
        let seen = log.lock().unwrap()[0].clone();
        assert_eq!(seen.method, "PUT");
        assert_eq!(seen.path, "/pop/v1/sam/app/deleteInstances");
        assert!(
            seen.raw_query.contains("InstanceIds=a%2Cb"),
            "{}",
            seen.raw_query
        );
        assert!(seen.raw_query.contains("AppId=app-1"), "{}", seen.raw_query);
    }

    #[tokio::test]
    async fn describe_change_order_parses_fields_with_string_code_and_string_numbers() {
        let body = r#"{"RequestId":"req-2","Code":"200","Success":"true","Data":{"ChangeOrderId":"co-9",
            "Status":"1","SubStatus":0,"CoTypeCode":"CoDeleteInstances","ErrorMessage":"",
            "CreateTime":"2020-12-17 21:06:45","Pipelines":[{"PipelineId":"p"}]}}"#;
        let (addr, log) = canned(200, &[], body).await;
        let co = client_for(addr)
            .describe_change_order(&creds(), "cn-hangzhou", "co-9")
            .await
            .unwrap();
        assert_eq!(
            co,
            ChangeOrder {
                change_order_id: "co-9".into(),
                status: 1,
                sub_status: Some(0),
                co_type_code: Some("CoDeleteInstances".into()),
                error_message: None,
                create_time: Some("2020-12-17 21:06:45".into()),
                request_id: Some("req-2".into()),
            }
        );
        let seen = log.lock().unwrap()[0].clone();
        assert_eq!(seen.method, "GET");
        assert_eq!(seen.path, "/pop/v1/sam/changeorder/DescribeChangeOrder");
        assert_eq!(seen.raw_query, "ChangeOrderId=co-9");
    }

    #[tokio::test]
    async fn list_change_orders_parses_page() {
        let body = r#"{"RequestId":"req-3","Code":"200","Success":true,"Data":{"CurrentPage":2,"PageSize":"10",
            "TotalSize":12,"ChangeOrderList":[
              {"ChangeOrderId":"co-a","Status":2,"CoTypeCode":"CoDeleteInstances","CreateTime":"2020-12-17 21:06:45","FinishTime":"2020-12-17 21:07:02","AppId":"x"},
              {"ChangeOrderId":"co-b","Status":"3"}]}}"#;
        let (addr, log) = canned(200, &[], body).await;
        let page = client_for(addr)
            .list_change_orders(
                &creds(),
                "cn-hangzhou",
                "app-1",
                Some("CoDeleteInstances"),
                2,
                10,
            )
            .await
            .unwrap();
        assert_eq!(
            page,
            ChangeOrderPage {
                total: 12,
                current_page: 2,
                page_size: 10,
                change_orders: vec![
                    ChangeOrderSummary {
                        change_order_id: "co-a".into(),
                        status: 2,
                        co_type_code: Some("CoDeleteInstances".into()),
                        create_time: Some("2020-12-17 21:06:45".into()),
                        finish_time: Some("2020-12-17 21:07:02".into()),
                    },
                    ChangeOrderSummary {
                        change_order_id: "co-b".into(),
                        status: 3,
                        co_type_code: None,
                        create_time: None,
                        finish_time: None,
                    },
                ],
            }
        );
        let seen = log.lock().unwrap()[0].clone();
        assert_eq!(seen.path, "/pop/v1/sam/changeorder/ListChangeOrders");
        assert_eq!(
            seen.raw_query,
            "AppId=app-1&CoType=CoDeleteInstances&CurrentPage=2&PageSize=10"
        );
    }

    #[tokio::test]
    async fn list_change_orders_without_rows_is_an_empty_page() {
        let body = r#"{"Code":200,"Success":true,"Data":{"CurrentPage":1,"PageSize":10,"TotalSize":0,"ChangeOrderList":null}}"#;
        let (addr, log) = canned(200, &[], body).await;
        let page = client_for(addr)
            .list_change_orders(&creds(), "cn-hangzhou", "app-1", None, 1, 10)
            .await
            .unwrap();
        assert_eq!(page.total, 0);
        assert!(page.change_orders.is_empty());
        assert!(!log.lock().unwrap()[0].raw_query.contains("CoType"));
    }

    #[tokio::test]
    async fn describe_application_groups_parses_list() {
        let body = r#"{"RequestId":"req-4","Code":200,"Success":true,"Data":[
            {"GroupId":"g-1","GroupName":"default","GroupType":0},{"GroupId":"g-2"}]}"#;
        let (addr, log) = canned(200, &[], body).await;
        let groups = client_for(addr)
            .describe_application_groups(&creds(), "cn-hangzhou", "app-1")
            .await
            .unwrap();
        assert_eq!(
            groups,
            vec![
                ApplicationGroup {
                    group_id: "g-1".into(),
                    group_name: Some("default".into())
                },
                ApplicationGroup {
                    group_id: "g-2".into(),
                    group_name: None
                },
            ]
        );
        let seen = log.lock().unwrap()[0].clone();
        assert_eq!(seen.path, "/pop/v1/sam/app/describeApplicationGroups");
        assert_eq!(seen.raw_query, "AppId=app-1");
    }

    #[tokio::test]
    async fn describe_application_instances_parses_page() {
        let body = r#"{"RequestId":"req-5","Code":"200","Success":true,"Data":{"CurrentPage":1,"PageSize":2,
            "TotalSize":3,"Instances":[{"InstanceId":"i-1","GroupId":"g-1","InstanceContainerStatus":"Running"},
              {"InstanceId":"i-2","InstanceContainerStatus":"Terminating"},{"InstanceId":"i-3"}]}}"#;
        let (addr, log) = canned(200, &[], body).await;
        let page = client_for(addr)
            .describe_application_instances(&creds(), "cn-hangzhou", "app-1", "g-1", 1, 2)
            .await
            .unwrap();
        assert_eq!(
            page,
            InstancePage {
                total: 3,
                current_page: 1,
                page_size: 2,
                instance_ids: ids(&["i-1", "i-2", "i-3"]),
                terminating: ids(&["i-2"]),
            }
        );
        let seen = log.lock().unwrap()[0].clone();
        assert_eq!(seen.path, "/pop/v1/sam/app/describeApplicationInstances");
        assert_eq!(
            seen.raw_query,
            "AppId=app-1&CurrentPage=1&GroupId=g-1&PageSize=2"
        );
    }

    #[tokio::test]
    async fn list_all_instance_ids_walks_groups_and_pages() {
        let log: Log = Arc::default();
        let seen = log.clone();
        let router = Router::new().fallback(move |req: Request| {
            let seen = seen.clone();
            async move {
                record(&seen, &req);
                let last = seen.lock().unwrap().last().unwrap().clone();
                let q: std::collections::HashMap<_, _> = last.decoded_query().into_iter().collect();
                let body = if last.path.ends_with("describeApplicationGroups") {
                    r#"{"Code":200,"Success":true,"Data":[{"GroupId":"g-1"},{"GroupId":"g-2"}]}"#.to_string()
                } else {
                    // g-1 holds 60 instances (two pages of 50), g-2 holds one, also listed in g-1.
                    let page: usize = q["CurrentPage"].parse().unwrap();
                    let size: usize = q["PageSize"].parse().unwrap();
                    let all: Vec<String> = if q["GroupId"] == "g-1" {
                        (0..60).map(|i| format!("i-{i}")).collect()
                    } else {
                        vec!["i-7".to_string(), "i-x".to_string()]
                    };
                    let rows: Vec<_> = all
                        .iter()
                        .skip((page - 1) * size)
                        .take(size)
                        .map(|id| serde_json::json!({ "InstanceId": id }))
                        .collect();
                    serde_json::json!({"Code": 200, "Success": true, "Data": {
                        "CurrentPage": page, "PageSize": size, "TotalSize": all.len(), "Instances": rows}})
                    .to_string()
                };
                Response::new(Body::from(body))
            }
        });
        let addr = serve(router).await;
        // The gate sees each request before it is sent: it records how many were sent by then.
        let gated = Arc::new(Mutex::new(Vec::new()));
        let gate = || {
            let (gated, log) = (gated.clone(), log.clone());
            async move {
                gated.lock().unwrap().push(log.lock().unwrap().len());
                Ok::<(), ()>(())
            }
        };
        // The observer hears of each request under its own operation, not of "a listing".
        let observed = Arc::new(Mutex::new(Vec::new()));
        let observer: RequestObserver = {
            let observed = observed.clone();
            Arc::new(move |op, outcome, _| observed.lock().unwrap().push((op, outcome.is_ok())))
        };
        let all = client_for(addr)
            .with_observer(observer)
            .list_all_instance_ids(&creds(), "cn-hangzhou", "app-1", gate)
            .await
            .unwrap()
            .unwrap();
        let mut want: Vec<String> = (0..60).map(|i| format!("i-{i}")).collect();
        want.push("i-x".into());
        assert_eq!(all, want);
        // groups + two pages of g-1 + one page of g-2, each behind the gate once
        assert_eq!(log.lock().unwrap().len(), 4);
        assert_eq!(*gated.lock().unwrap(), [0, 1, 2, 3]);
        assert_eq!(
            *observed.lock().unwrap(),
            [
                (Operation::DescribeApplicationGroups, true),
                (Operation::DescribeApplicationInstances, true),
                (Operation::DescribeApplicationInstances, true),
                (Operation::DescribeApplicationInstances, true),
            ]
        );

        // A gate that refuses the third request stops the listing there.
        let before = log.lock().unwrap().len();
        let passes = Arc::new(Mutex::new(0));
        let gate = || {
            let passes = passes.clone();
            async move {
                let mut passes = passes.lock().unwrap();
                *passes += 1;
                if *passes > 2 { Err("deadline") } else { Ok(()) }
            }
        };
        let refused = client_for(addr)
            .list_all_instance_ids(&creds(), "cn-hangzhou", "app-1", gate)
            .await;
        assert_eq!(refused, Err("deadline"));
        assert_eq!(
            log.lock().unwrap().len() - before,
            2,
            "nothing sent after the refusal"
        );
    }

    /// A server answering every instance page with `total` and 50 fresh rows (its totals may grow).
    async fn paging_server(
        total: impl Fn(usize) -> u64 + Send + Sync + 'static,
    ) -> (SocketAddr, Log) {
        let log: Log = Arc::default();
        let seen = log.clone();
        let total = Arc::new(total);
        let router = Router::new().fallback(move |req: Request| {
            let (seen, total) = (seen.clone(), total.clone());
            async move {
                record(&seen, &req);
                let last = seen.lock().unwrap().last().unwrap().clone();
                let q: std::collections::HashMap<_, _> = last.decoded_query().into_iter().collect();
                let body = if last.path.ends_with("describeApplicationGroups") {
                    r#"{"Code":200,"Success":true,"Data":[{"GroupId":"g-1"}]}"#.to_string()
                } else {
                    let page: usize = q["CurrentPage"].parse().unwrap();
                    let rows: Vec<_> = (0..50)
                        .map(|i| serde_json::json!({ "InstanceId": format!("i-{page}-{i}") }))
                        .collect();
                    serde_json::json!({"Code": 200, "Success": true, "Data": {
                        "CurrentPage": page, "PageSize": 50, "TotalSize": total(page), "Instances": rows}})
                    .to_string()
                };
                Response::new(Body::from(body))
            }
        });
        (serve(router).await, log)
    }

    #[tokio::test]
    async fn a_garbled_total_is_refused_after_one_page_not_followed() {
        let (addr, log) = paging_server(|_| 10_000_000).await;
        let gates = Arc::new(Mutex::new(0));
        let gate = || {
            let gates = gates.clone();
            async move {
                *gates.lock().unwrap() += 1;
                Ok::<(), ()>(())
            }
        };
        let err = client_for(addr)
            .list_all_instance_ids(&creds(), "cn-hangzhou", "app-1", gate)
            .await
            .unwrap()
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("TotalSize 10000000")
                && text.contains("200000 pages")
                && text.contains(&format!("more than {MAX_INSTANCE_PAGES} pages")),
            "{text}"
        );
        assert_eq!(
            log.lock().unwrap().len(),
            2,
            "groups and the first page only"
        );
        assert_eq!(*gates.lock().unwrap(), 2);
    }

    #[tokio::test]
    async fn paging_stops_where_the_first_page_said_even_if_totals_grow() {
        // The first page says 120 instances (3 pages); later pages claim ever more.
        let (addr, log) = paging_server(|page| match page {
            1 => 120,
            later => 1000 * later as u64,
        })
        .await;
        let ids = client_for(addr)
            .list_all_instance_ids(&creds(), "cn-hangzhou", "app-1", no_gate)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ids.len(), 150);
        assert_eq!(log.lock().unwrap().len(), 4, "groups + 3 pages");

        // The most a group may announce is still read in full.
        let most = MAX_INSTANCE_PAGES * 50;
        let (addr, log) = paging_server(move |_| most).await;
        let ids = client_for(addr)
            .list_all_instance_ids(&creds(), "cn-hangzhou", "app-1", no_gate)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ids.len() as u64, most);
        assert_eq!(log.lock().unwrap().len() as u64, 1 + MAX_INSTANCE_PAGES);
    }

    // ---- SAE error answers ---------------------------------------------------------------------

    #[tokio::test]
    async fn sae_error_body_becomes_api_error_with_code_and_request_id() {
        let body = r#"{"RequestId":"req-e","Code":"Application.ChangerOrderRunning","Message":"a change order is running",
            "Success":false,"ErrorCode":"Application.ChangerOrderRunning","TraceId":"t"}"#;
        let (addr, _) = canned(400, &[], body).await;
        let err = delete_via(addr).await.unwrap_err();
        match &err {
            SaeError::Api {
                operation,
                http_status,
                code,
                message,
                request_id,
                retry_after,
            } => {
                assert_eq!(*operation, "DeleteInstances");
                assert_eq!(*http_status, 400);
                assert_eq!(code, "Application.ChangerOrderRunning");
                assert_eq!(message, "a change order is running");
                assert_eq!(request_id.as_deref(), Some("req-e"));
                assert_eq!(*retry_after, None);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(err.class(), ErrorClass::Retryable);
    }

    #[tokio::test]
    async fn numeric_code_defers_to_error_code_even_on_http_200() {
        let body = r#"{"RequestId":"req-f","Code":"400","Message":"bad","Success":false,"ErrorCode":"InvalidParameter.NotEmpty"}"#;
        let (addr, _) = canned(200, &[], body).await;
        let err = delete_via(addr).await.unwrap_err();
        assert_eq!(err.code(), Some("InvalidParameter.NotEmpty"));
        assert_eq!(err.request_id(), Some("req-f"));
        assert_eq!(err.class(), ErrorClass::Terminal);
    }

    #[tokio::test]
    async fn retry_after_header_is_read() {
        let body = r#"{"RequestId":"req-t","Code":"Throttling.User","Message":"slow down","Success":false}"#;
        let (addr, _) = canned(400, &[("x-acs-retry-after", "7000")], body).await;
        let err = delete_via(addr).await.unwrap_err();
        assert_eq!(
            err.retry_after(),
            Some(Duration::from_secs(7)),
            "milliseconds"
        );
        assert!(err.is_throttling());
        assert_eq!(err.class(), ErrorClass::Retryable);

        let (addr, _) = canned(400, &[("x-acs-retry-after", "18446744073709551615")], body).await;
        let err = delete_via(addr).await.unwrap_err();
        assert_eq!(err.retry_after(), Some(MAX_RETRY_AFTER));

        let (addr, _) = canned(
            400,
            &[(
                "x-ratelimit-user-api",
                "Limit:60,Remain:0,TimeLeft:1500,Reset:1",
            )],
            body,
        )
        .await;
        let err = delete_via(addr).await.unwrap_err();
        assert_eq!(err.retry_after(), Some(Duration::from_millis(1500)));

        // A client configured with a lower cap applies it.
        let (addr, _) = canned(400, &[("x-acs-retry-after", "60000")], body).await;
        let err = client_with(addr, |c| c.max_retry_after = Duration::from_secs(10))
            .delete_instances(&creds(), "cn-hangzhou", "app-1", &ids(&["i-1"]))
            .await
            .unwrap_err();
        assert_eq!(err.retry_after(), Some(Duration::from_secs(10)));
    }

    #[tokio::test]
    async fn gateway_error_without_success_field_is_api() {
        let body = r#"{"RequestId":"req-g","HostId":"sae.cn-hangzhou.aliyuncs.com","Code":"SignatureDoesNotMatch",
            "Message":"Specified signature is not matched with our calculation.","Recommend":"https://..."}"#;
        let (addr, _) = canned(400, &[], body).await;
        let err = delete_via(addr).await.unwrap_err();
        assert_eq!(err.code(), Some("SignatureDoesNotMatch"));
        assert_eq!(err.class(), ErrorClass::Terminal);
    }

    #[tokio::test]
    async fn server_error_with_sae_body_is_ambiguous_api() {
        let body =
            r#"{"RequestId":"req-5xx","Code":"InternalError","Message":"oops","Success":false}"#;
        let (addr, _) = canned(500, &[], body).await;
        let err = delete_via(addr).await.unwrap_err();
        assert!(
            matches!(
                err,
                SaeError::Api {
                    http_status: 500,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.code(), Some("InternalError"));
        assert_eq!(err.class(), ErrorClass::Ambiguous);
    }

    #[tokio::test]
    async fn service_unavailable_html_is_no_answer() {
        let (addr, _) = canned(
            503,
            &[("content-type", "text/html")],
            "<html>\n<body>503 Service\tUnavailable</body></html>",
        )
        .await;
        let err = assert_ambiguous(delete_via(addr).await, "HTTP 503");
        // The excerpt is on one line and shows what came back.
        let shown = err.to_string();
        assert!(
            shown.contains("<html> <body>503 Service Unavailable"),
            "{shown}"
        );
        assert!(!shown.contains('\n'));
    }

    #[tokio::test]
    async fn client_error_without_json_is_terminal_http_code() {
        let (addr, _) = canned(400, &[], "Bad Request").await;
        let err = delete_via(addr).await.unwrap_err();
        assert_eq!(err.code(), Some("HTTP400"));
        assert_eq!(err.class(), ErrorClass::Terminal);
        assert!(err.to_string().contains("Bad Request"), "{err}");
    }

    #[tokio::test]
    async fn success_false_without_code_is_no_answer() {
        let (addr, _) = canned(200, &[], r#"{"Success":false}"#).await;
        assert_ambiguous(delete_via(addr).await, "no error code");
    }

    // ---- unusable 2xx answers ------------------------------------------------------------------

    #[tokio::test]
    async fn success_status_with_non_json_body_is_no_answer() {
        let (addr, _) = canned(200, &[], "OK, deleted!").await;
        assert_ambiguous(delete_via(addr).await, "OK, deleted!");
    }

    #[tokio::test]
    async fn truncated_json_is_no_answer() {
        let (addr, _) = canned(200, &[], r#"{"RequestId":"r","Data":{"ChangeOrderId":"co-"#).await;
        assert_ambiguous(delete_via(addr).await, "not an SAE JSON object");
    }

    #[tokio::test]
    async fn success_without_change_order_id_is_no_answer() {
        let (addr, _) = canned(
            200,
            &[],
            r#"{"RequestId":"r-nd","Code":"200","Success":true,"Data":{}}"#,
        )
        .await;
        let err = assert_ambiguous(delete_via(addr).await, "ChangeOrderId is missing");
        assert!(err.to_string().contains("r-nd"), "{err}");
    }

    #[tokio::test]
    async fn read_only_operation_with_garbled_data_is_no_answer() {
        let (addr, _) = canned(
            200,
            &[],
            r#"{"Code":200,"Success":true,"Data":{"ChangeOrderId":"co","Status":"running"}}"#,
        )
        .await;
        let result = client_for(addr)
            .describe_change_order(&creds(), "cn-hangzhou", "co")
            .await;
        assert_ambiguous(result, "Data.Status");
        let (addr, _) = canned(
            200,
            &[],
            r#"{"Code":200,"Success":true,"Data":{"TotalSize":3}}"#,
        )
        .await;
        let result = client_for(addr)
            .describe_application_instances(&creds(), "cn-hangzhou", "app", "g", 1, 10)
            .await;
        assert_ambiguous(result, "Data.Instances");
        let (addr, _) = canned(
            200,
            &[],
            r#"{"Code":200,"Success":true,"Data":{"GroupId":"g"}}"#,
        )
        .await;
        let result = client_for(addr)
            .describe_application_groups(&creds(), "cn-hangzhou", "app")
            .await;
        assert_ambiguous(result, "not a list");
    }

    #[tokio::test]
    async fn declared_huge_body_is_refused_before_reading() {
        let router = Router::new().fallback(|| async {
            // Five MiB, declared up front, built from one static chunk so nothing is allocated.
            static CHUNK: [u8; 64 * 1024] = [b' '; 64 * 1024];
            let stream = futures::stream::iter(
                (0..80).map(|_| Ok::<_, std::io::Error>(Bytes::from_static(&CHUNK))),
            );
            Response::builder()
                .header("content-length", (80 * CHUNK.len()).to_string())
                .body(Body::from_stream(stream))
                .unwrap()
        });
        let addr = serve(router).await;
        assert_ambiguous(delete_via(addr).await, "larger than 1048576 bytes");
    }

    #[tokio::test]
    async fn endless_chunked_body_stops_at_the_cap() {
        // No length announced: the client must count while reading, and stop well before the end.
        static CHUNK: [u8; 64 * 1024] = [b'x'; 64 * 1024];
        const TOTAL_CHUNKS: usize = 1024; // 64 MiB if anyone read it all
        let produced = Arc::new(AtomicUsize::new(0));
        let counter = produced.clone();
        let router = Router::new().fallback(move || {
            let counter = counter.clone();
            async move {
                let stream = futures::stream::iter(0..TOTAL_CHUNKS).map(move |_| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, std::io::Error>(Bytes::from_static(&CHUNK))
                });
                Response::new(Body::from_stream(stream))
            }
        });
        let addr = serve(router).await;
        let result = client_with(addr, |c| c.max_body_bytes = 1024 * 1024)
            .describe_change_order(&creds(), "cn-hangzhou", "co")
            .await;
        assert_ambiguous(result, "stopped reading");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let produced = produced.load(Ordering::SeqCst);
        assert!(
            produced < TOTAL_CHUNKS / 2,
            "server produced {produced} chunks: the client kept reading"
        );
    }

    // ---- transport failures --------------------------------------------------------------------

    #[tokio::test]
    async fn answer_slower_than_timeout_is_no_answer() {
        let router = Router::new().fallback(|| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            "late"
        });
        let addr = serve(router).await;
        let client = client_with(addr, |c| c.timeout = Duration::from_millis(300));
        let started = Instant::now();
        let err = assert_ambiguous(
            client
                .delete_instances(&creds(), "cn-hangzhou", "app-1", &ids(&["a"]))
                .await,
            "no answer within",
        );
        assert!(started.elapsed() < Duration::from_secs(3), "{err}");
    }

    #[tokio::test]
    async fn refused_connection_is_not_sent() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = delete_via(addr).await.unwrap_err();
        assert!(matches!(err, SaeError::NotSent { .. }), "{err:?}");
        assert_eq!(err.class(), ErrorClass::Retryable);
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }

    #[tokio::test]
    async fn unresolvable_host_is_not_sent() {
        let config = SaeClientConfig {
            endpoint: "http://sae.{regionId}.invalid".into(),
            connect_timeout: Duration::from_secs(3),
            ..SaeClientConfig::default()
        };
        let err = SaeClient::new(config)
            .unwrap()
            .delete_instances(&creds(), "cn-hangzhou", "app", &ids(&["a"]))
            .await
            .unwrap_err();
        assert!(matches!(err, SaeError::NotSent { .. }), "{err:?}");
    }

    /// A raw server: reads the request head, writes `answer`, then closes the connection.
    async fn raw_server(answer: &'static [u8]) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = socket.write_all(answer).await;
                let _ = socket.shutdown().await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn connection_closed_without_answer_is_no_answer() {
        let addr = raw_server(b"").await;
        assert_ambiguous(delete_via(addr).await, "connection lost");
    }

    #[tokio::test]
    async fn connection_closed_mid_body_is_no_answer() {
        let addr = raw_server(
            b"HTTP/1.1 200 OK\r\nContent-Length: 200\r\n\r\n{\"RequestId\":\"r\",\"Data\":",
        )
        .await;
        assert_ambiguous(delete_via(addr).await, "body read failed");
    }

    // ---- requests that cannot be built ---------------------------------------------------------

    #[test]
    fn bad_endpoints_are_invalid_requests() {
        for endpoint in [
            "not a url",
            "ftp://sae.example.com",
            "http://sae.example.com/prefix",
            "http://u:pw@sae.example.com",
        ] {
            let err = SaeClient::new(SaeClientConfig {
                endpoint: endpoint.into(),
                ..SaeClientConfig::default()
            })
            .unwrap_err();
            assert!(
                matches!(err, SaeError::InvalidRequest { .. }),
                "{endpoint}: {err:?}"
            );
            assert_eq!(err.class(), ErrorClass::Terminal);
            assert!(!err.to_string().contains("pw@"), "{err}");
        }
        assert!(SaeClient::new(SaeClientConfig::default()).is_ok());
        assert!(
            SaeClient::new(SaeClientConfig {
                endpoint: "http://127.0.0.1:8080/".into(),
                ..Default::default()
            })
            .is_ok()
        );
    }

    #[tokio::test]
    async fn bad_inputs_are_refused_before_sending() {
        let (addr, log) = canned(200, &[], "{}").await;
        let client = client_for(addr);
        let regional = SaeClient::new(SaeClientConfig {
            endpoint: "http://{regionId}.sae.test:1".into(),
            ..SaeClientConfig::default()
        });
        // The template is valid; only the region given at call time is not.
        let err = regional
            .unwrap()
            .describe_change_order(&creds(), "cn/../evil", "co")
            .await
            .unwrap_err();
        assert!(matches!(err, SaeError::InvalidRequest { .. }), "{err:?}");
        let sae = SaeClient::new(SaeClientConfig::default()).unwrap();
        let err = sae
            .describe_change_order(&creds(), "evil.com/x?", "co")
            .await
            .unwrap_err();
        assert!(matches!(err, SaeError::InvalidRequest { .. }), "{err:?}");

        for bad in [ids(&[]), ids(&["a,b"]), ids(&["a", " "])] {
            let err = client
                .delete_instances(&creds(), "r", "app", &bad)
                .await
                .unwrap_err();
            assert!(
                matches!(err, SaeError::InvalidRequest { .. }),
                "{bad:?}: {err:?}"
            );
        }
        let err = client
            .delete_instances(&creds(), "r", "", &ids(&["a"]))
            .await
            .unwrap_err();
        assert!(matches!(err, SaeError::InvalidRequest { .. }), "{err:?}");

        // A token that cannot travel in a header: refused without echoing it.
        let odd = Credentials::new(AK, SECRET, Some(format!("{TOKEN}\nInjected: yes")));
        let err = client
            .delete_instances(&odd, "r", "app", &ids(&["a"]))
            .await
            .unwrap_err();
        assert!(matches!(err, SaeError::InvalidRequest { .. }), "{err:?}");
        assert!(!format!("{err} {err:?}").contains(TOKEN), "{err}");

        assert!(log.lock().unwrap().is_empty(), "a request was sent");
    }

    // ---- what goes on the wire -----------------------------------------------------------------

    const SUCCESS: &str =
        r#"{"RequestId":"r","Code":"200","Success":true,"Data":{"ChangeOrderId":"co-1"}}"#;

    fn check_common_headers(seen: &Seen, addr: SocketAddr) {
        assert!(
            seen.header("user-agent")
                .unwrap()
                .starts_with("sae-controller/"),
            "{seen:?}"
        );
        assert_eq!(seen.header("host"), Some(addr.to_string().as_str()));
        assert_eq!(seen.header("x-acs-action"), Some("DeleteInstances"));
        assert_eq!(seen.header("x-acs-version"), Some("2019-05-06"));
        let nonce = seen.header("x-acs-signature-nonce").unwrap();
        assert_eq!(nonce.len(), 32, "{nonce}");
        assert!(
            seen.raw_query.contains("InstanceIds=a%2Cb"),
            "{}",
            seen.raw_query
        );
    }

    #[tokio::test]
    async fn v1_request_carries_a_valid_signature() {
        let (addr, log) = canned(200, &[], SUCCESS).await;
        client_for(addr)
            .delete_instances(&sts_creds(), "cn-hangzhou", "app-1", &ids(&["a", "b"]))
            .await
            .unwrap();
        let seen = log.lock().unwrap()[0].clone();
        check_common_headers(&seen, addr);
        assert_eq!(seen.header("x-acs-security-token"), Some(TOKEN));
        assert_eq!(seen.header("x-acs-signature-method"), Some("HMAC-SHA1"));

        let query = seen.decoded_query();
        assert!(query.contains(&("InstanceIds".into(), "a,b".into())));
        let string_to_sign =
            sign::roa_v1_string_to_sign(&seen.method, &seen.path, &query, &seen.headers);
        let expected = format!(
            "acs STS.tempkeyid:{}",
            sign::roa_v1_signature(SECRET, &string_to_sign)
        );
        assert_eq!(seen.header("authorization"), Some(expected.as_str()));
        let forged = sign::roa_v1_signature("wrong-secret", &string_to_sign);
        assert!(!seen.header("authorization").unwrap().ends_with(&forged));

        // Exactly the signed headers, user-agent, and the framing hyper adds for a bodiless PUT.
        let input = SignInput {
            method: "PUT",
            host: "h",
            path: "/",
            query: &[],
            action: "DeleteInstances",
            api_version: API_VERSION,
            body: b"",
            now: jiff::Timestamp::now(),
            nonce: "n",
        };
        let signed_names: Vec<String> =
            sign::signed_headers(SignatureVersion::V1, &sts_creds(), &input)
                .into_iter()
                .map(|(k, _)| k)
                .collect();
        for (name, _) in &seen.headers {
            assert!(
                signed_names.contains(name) || name == "user-agent" || name == "content-length",
                "unexpected header {name}"
            );
        }
        for name in &signed_names {
            assert!(seen.header(name).is_some(), "missing header {name}");
        }
    }

    #[tokio::test]
    async fn v3_request_carries_a_valid_signature() {
        let (addr, log) = canned(200, &[], SUCCESS).await;
        let client = client_with(addr, |c| c.signature_version = SignatureVersion::V3);
        client
            .delete_instances(&creds(), "cn-hangzhou", "app-1", &ids(&["a", "b"]))
            .await
            .unwrap();
        let seen = log.lock().unwrap()[0].clone();
        check_common_headers(&seen, addr);

        let authorization = seen.header("authorization").unwrap();
        let signed_list = authorization
            .split("SignedHeaders=")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .unwrap();
        let names: Vec<&str> = signed_list.split(';').collect();
        assert!(
            names.contains(&"host") && names.contains(&"x-acs-date"),
            "{signed_list}"
        );
        let signed: Vec<(String, String)> = seen
            .headers
            .iter()
            .filter(|(k, _)| names.contains(&k.as_str()))
            .cloned()
            .collect();
        let expected = sign::v3_authorization(
            AK,
            SECRET,
            &seen.method,
            &seen.path,
            &seen.decoded_query(),
            &signed,
            seen.header("x-acs-content-sha256").unwrap(),
        );
        assert_eq!(authorization, expected);
    }

    #[tokio::test]
    async fn each_request_has_a_fresh_nonce() {
        let (addr, log) = canned(200, &[], SUCCESS).await;
        let client = client_for(addr);
        for _ in 0..3 {
            client
                .delete_instances(&creds(), "r", "app", &ids(&["a"]))
                .await
                .unwrap();
        }
        let nonces: HashSet<String> = log
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.header("x-acs-signature-nonce").unwrap().to_string())
            .collect();
        assert_eq!(nonces.len(), 3);
    }

    // ---- secrets -------------------------------------------------------------------------------

    #[tokio::test]
    async fn no_error_shows_the_secret_or_token() {
        let mut errors = Vec::new();
        // Servers that echo the credentials back in every place we might copy from.
        let echo = format!(
            r#"{{"RequestId":"{TOKEN}","Code":"Bad{SECRET}","Message":"you sent {SECRET} and {TOKEN}","Success":false}}"#
        );
        let (addr, _) = canned(400, &[], echo.clone()).await;
        errors.push(
            client_for(addr)
                .delete_instances(&sts_creds(), "r", "app", &ids(&["a"]))
                .await
                .unwrap_err(),
        );
        let (addr, _) = canned(200, &[], format!("not json {SECRET} {TOKEN}")).await;
        errors.push(
            client_for(addr)
                .delete_instances(&sts_creds(), "r", "app", &ids(&["a"]))
                .await
                .unwrap_err(),
        );
        let (addr, _) = canned(
            403,
            &[("x-acs-request-id", TOKEN)],
            format!("<html>{SECRET}</html>"),
        )
        .await;
        errors.push(
            client_for(addr)
                .delete_instances(&sts_creds(), "r", "app", &ids(&["a"]))
                .await
                .unwrap_err(),
        );
        let (addr, _) = canned(
            200,
            &[],
            format!(r#"{{"Success":true,"Data":{{"Status":"{SECRET}"}}}}"#),
        )
        .await;
        errors.push(
            client_for(addr)
                .describe_change_order(&sts_creds(), "r", "co")
                .await
                .unwrap_err(),
        );

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed = listener.local_addr().unwrap();
        drop(listener);
        errors.push(delete_via(closed).await.unwrap_err());
        errors.push(
            client_for(closed)
                .delete_instances(&sts_creds(), "r", "", &ids(&["a"]))
                .await
                .unwrap_err(),
        );

        assert_eq!(errors.len(), 6);
        for err in &errors {
            for shown in [err.to_string(), format!("{err:?}"), format!("{err:#?}")] {
                assert!(!shown.contains(SECRET), "secret leaked: {shown}");
                assert!(!shown.contains(TOKEN), "token leaked: {shown}");
            }
        }
        // The echo was still reported, redacted.
        assert!(
            errors[0].to_string().contains("<redacted>"),
            "{}",
            errors[0]
        );
        // The client itself prints no credential either.
        let client = client_for(closed);
        assert!(!format!("{client:?}").contains(SECRET));
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn retry_after_is_milliseconds_and_only_positive_integers_count() {
        let ms = Duration::from_millis;
        for (value, want) in [
            ("1000", Some(ms(1000))),
            ("7", Some(ms(7))),
            (" 12 ", Some(ms(12))),
            ("000250", Some(ms(250))),
            ("0", None),
            ("", None),
            ("   ", None),
            ("-3", None),
            ("+5", None),
            ("soon", None),
            ("1.5", None),
            ("1e3", None),
            ("10 s", None),
        ] {
            assert_eq!(
                retry_after(&headers(&[(RETRY_AFTER_HEADER, value)]), MAX_RETRY_AFTER),
                want,
                "{value:?}"
            );
        }
        assert_eq!(retry_after(&HeaderMap::new(), MAX_RETRY_AFTER), None);
    }

    #[test]
    fn retry_after_is_capped_at_two_minutes_or_the_configured_cap() {
        let cap = MAX_RETRY_AFTER;
        for huge in [
            "120001",
            "18446744073709551615",
            // Beyond u64: still just "long".
            "99999999999999999999999999999999",
        ] {
            assert_eq!(
                retry_after(&headers(&[(RETRY_AFTER_HEADER, huge)]), cap),
                Some(Duration::from_secs(120)),
                "{huge}"
            );
        }
        assert_eq!(
            retry_after(&headers(&[(RETRY_AFTER_HEADER, "120000")]), cap),
            Some(Duration::from_secs(120))
        );
        // A lower configured cap applies; a higher one cannot raise the ceiling.
        let h = headers(&[(RETRY_AFTER_HEADER, "90000")]);
        assert_eq!(
            retry_after(&h, Duration::from_secs(30)),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after(&h, Duration::from_secs(3600)),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            retry_after(&headers(&[(RETRY_AFTER_HEADER, "u64::MAX")]), cap),
            None
        );
        assert_eq!(
            retry_after(
                &headers(&[(RETRY_AFTER_HEADER, "18446744073709551615")]),
                Duration::MAX
            ),
            Some(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn older_rate_limit_headers_give_time_left_in_milliseconds() {
        let ms = Duration::from_millis;
        let read = |pairs: &[(&str, &str)]| retry_after(&headers(pairs), MAX_RETRY_AFTER);
        let full = "Limit:60,Remain:0,TimeLeft:2000,Reset:1234";
        assert_eq!(read(&[("x-ratelimit-user", full)]), Some(ms(2000)));
        assert_eq!(read(&[("x-ratelimit-user-api", full)]), Some(ms(2000)));
        // Both: the longer wait; spaces around keys and values are allowed.
        assert_eq!(
            read(&[
                ("x-ratelimit-user-api", "Remain:0, TimeLeft : 3500 "),
                ("x-ratelimit-user", "TimeLeft:1500"),
            ]),
            Some(ms(3500))
        );
        // One unusable, the other counts.
        assert_eq!(
            read(&[
                ("x-ratelimit-user-api", "TimeLeft:-1"),
                ("x-ratelimit-user", "TimeLeft:800"),
            ]),
            Some(ms(800))
        );
        for useless in [
            "",
            "Limit:60,Remain:0",
            "TimeLeft:0",
            "TimeLeft:",
            "TimeLeft:soon",
            "TimeLeft:1.5",
            "timeleft:100",
            "TimeLeft",
            ",,,:::",
        ] {
            assert_eq!(read(&[("x-ratelimit-user", useless)]), None, "{useless:?}");
        }
        assert_eq!(
            read(&[("x-ratelimit-user", "TimeLeft:18446744073709551615")]),
            Some(MAX_RETRY_AFTER)
        );
        // x-acs-retry-after, when usable, is the answer's word; the older headers are a fallback.
        assert_eq!(
            read(&[
                (RETRY_AFTER_HEADER, "400"),
                ("x-ratelimit-user", "TimeLeft:9000")
            ]),
            Some(ms(400))
        );
        assert_eq!(
            read(&[
                (RETRY_AFTER_HEADER, "0"),
                ("x-ratelimit-user", "TimeLeft:9000")
            ]),
            Some(ms(9000))
        );
    }

    #[test]
    fn interpret_never_panics_on_odd_bodies() {
        let creds = creds();
        let secrets = Secrets::of(&creds);
        let bodies: &[&[u8]] = &[
            b"",
            b"null",
            b"[]",
            b"42",
            b"\xff\xfe\x00garbage",
            br#"{"Code":null,"Success":"maybe"}"#,
            br#"{"Code":{"nested":1},"ErrorCode":[1]}"#,
            "{\"Message\":\"\u{1F600}\u{1F600}\"}".as_bytes(),
        ];
        for status in [100, 200, 204, 301, 400, 404, 429, 500, 599] {
            for body in bodies {
                let outcome = interpret("DeleteInstances", status, None, None, body, &secrets);
                if let Err(err) = outcome {
                    assert!(!err.to_string().contains('\n'));
                }
            }
        }
    }

    #[test]
    fn excerpt_is_cut_on_a_character_boundary() {
        let creds = creds();
        let secrets = Secrets::of(&creds);
        let long = "é".repeat(1000);
        let shown = secrets.excerpt(long.as_bytes());
        assert_eq!(shown.chars().filter(|c| *c == 'é').count(), EXCERPT_CHARS);
        assert!(shown.ends_with('…'));
    }
}
