//! Route53 through aws-sdk-route53.
//!
//! Configuration follows the standard AWS chain (environment, shared profile, web identity
//! token for IRSA, ECS and EC2 instance metadata); `AWS_ENDPOINT_URL` (or
//! [`Route53Options::endpoint_url`]) points it elsewhere, which is how tests reach moto.
//!
//! **Pacing.** Route53 allows a few requests per second per account. Every call first takes
//! a token from one [`TokenBucket`] (default 5 per second), so sluice stays under the budget
//! by itself; when Route53 still answers `Throttling` or `PriorRequestNotComplete` the bucket
//! is drained, so the next call waits a full refill, and the error is returned as
//! [`ProviderError::Throttled`] for the caller to back off.
//!
//! **No SDK retries.** The SDK's standard retry mode retries throttling errors itself (three
//! attempts with its own backoff). That is turned off (`max_attempts = 1`): retries the SDK
//! makes bypass the request budget, triple the requests exactly when Route53 asks for fewer,
//! and hide the calls from the call counts. The sync step retries with [`crate::pace::Backoff`]
//! instead, and every attempt goes through the bucket.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_route53::Client;
use aws_sdk_route53::config::http::HttpResponse;
use aws_sdk_route53::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_route53::operation::change_resource_record_sets::ChangeResourceRecordSetsError;
use aws_sdk_route53::types::{
    self as r53, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
};
use futures::future::BoxFuture;

use super::{
    CallCounter, CallCounts, ChangeInfo, ChangeStatus, DnsProvider, ProviderError, operation,
};
use crate::dns::name::{fqdn, normalize};
use crate::dns::record::{Action, AliasTarget, Change, RecordSet, RecordType, Zone};
use crate::pace::TokenBucket;

/// Static credentials (tests against moto; production uses the AWS chain).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticCredentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token, if any.
    pub session_token: Option<String>,
}

/// How to reach Route53.
#[derive(Clone, Debug, PartialEq)]
pub struct Route53Options {
    /// Region; `None`: the AWS chain's, else `us-east-1` (Route53 is global).
    pub region: Option<String>,
    /// Endpoint; `None`: the AWS chain's (`AWS_ENDPOINT_URL`), else Route53's.
    pub endpoint_url: Option<String>,
    /// Shared-config profile; `None`: the AWS chain's (`AWS_PROFILE`).
    pub profile: Option<String>,
    /// Fixed credentials instead of the AWS chain.
    pub credentials: Option<StaticCredentials>,
    /// Requests per second for the whole account (`--aws-api-rate`, default 5).
    pub api_rate: f64,
    /// Requests that may be sent at once after a quiet period (default 5).
    pub api_burst: f64,
    /// Time limit of one request attempt (default 30 s).
    pub timeout: Duration,
}

impl Default for Route53Options {
    fn default() -> Self {
        Route53Options {
            region: None,
            endpoint_url: None,
            profile: None,
            credentials: None,
            api_rate: 5.0,
            api_burst: 5.0,
            timeout: Duration::from_secs(30),
        }
    }
}

/// Route53, paced (see the module documentation).
#[derive(Debug)]
pub struct Route53Provider {
    client: Client,
    bucket: Mutex<TokenBucket>,
    calls: CallCounter,
}

impl Route53Provider {
    /// Loads the AWS configuration and builds the client (no request is made).
    pub async fn new(options: Route53Options) -> Route53Provider {
        let region =
            RegionProviderChain::first_try(options.region.clone().map(aws_config::Region::new))
                .or_default_provider()
                .or_else(aws_config::Region::new("us-east-1"));
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(region)
            .retry_config(RetryConfig::standard().with_max_attempts(1))
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_attempt_timeout(options.timeout)
                    .build(),
            );
        if let Some(url) = &options.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(p) = &options.profile {
            loader = loader.profile_name(p);
        }
        if let Some(c) = &options.credentials {
            loader = loader.credentials_provider(aws_sdk_route53::config::Credentials::new(
                &c.access_key_id,
                &c.secret_access_key,
                c.session_token.clone(),
                None,
                "sluice-static",
            ));
        }
        let config = loader.load().await;
        Route53Provider {
            client: Client::new(&config),
            bucket: Mutex::new(TokenBucket::new(
                options.api_rate,
                options.api_burst,
                Instant::now(),
            )),
            calls: CallCounter::default(),
        }
    }

    /// The SDK client (tests use it to create zones; it is not paced).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Waits for a token of the request budget, then counts the call.
    async fn pace(&self, op: &'static str) {
        loop {
            let wait = {
                let mut b = self
                    .bucket
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let now = Instant::now();
                if b.try_take(now) {
                    break;
                }
                b.wait(now)
            };
            tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
        }
        self.calls.count(op);
    }

    fn classify<E>(&self, op: &'static str, err: SdkError<E, HttpResponse>) -> ProviderError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let e = classify(op, &err);
        if matches!(e, ProviderError::Throttled { .. }) {
            self.bucket
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .drain(Instant::now());
        }
        e
    }

    async fn list_zones_inner(&self) -> Result<Vec<Zone>, ProviderError> {
        let mut zones = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            self.pace(operation::LIST_ZONES).await;
            let out = self
                .client
                .list_hosted_zones()
                .set_marker(marker.clone())
                .send()
                .await
                .map_err(|e| self.classify(operation::LIST_ZONES, e))?;
            for z in out.hosted_zones() {
                let private = z
                    .config()
                    .is_some_and(aws_sdk_route53::types::HostedZoneConfig::private_zone);
                zones.push(Zone::new(z.id(), z.name(), private));
            }
            match out.next_marker() {
                Some(m) if out.is_truncated() => marker = Some(m.to_string()),
                _ => break,
            }
        }
        Ok(zones)
    }

    async fn list_records_inner(&self, zone: &Zone) -> Result<Vec<RecordSet>, ProviderError> {
        let mut records = Vec::new();
        let mut start: Option<(String, RrType, Option<String>)> = None;
        loop {
            self.pace(operation::LIST_RECORDS).await;
            let mut req = self
                .client
                .list_resource_record_sets()
                .hosted_zone_id(&zone.id)
                .max_items(300);
            if let Some((name, rtype, id)) = &start {
                req = req
                    .start_record_name(name)
                    .start_record_type(rtype.clone())
                    .set_start_record_identifier(id.clone());
            }
            let out = req
                .send()
                .await
                .map_err(|e| self.classify(operation::LIST_RECORDS, e))?;
            records.extend(out.resource_record_sets().iter().map(from_sdk));
            match (
                out.is_truncated(),
                out.next_record_name(),
                out.next_record_type(),
            ) {
                (true, Some(n), Some(t)) => {
                    start = Some((
                        n.to_string(),
                        t.clone(),
                        out.next_record_identifier().map(str::to_string),
                    ));
                }
                _ => break,
            }
        }
        Ok(records)
    }

    async fn apply_inner(
        &self,
        zone: &Zone,
        changes: &[Change],
    ) -> Result<ChangeInfo, ProviderError> {
        let sdk_changes = changes
            .iter()
            .map(to_sdk_change)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|message| ProviderError::Other {
                operation: operation::CHANGE,
                message,
                retryable: false,
            })?;
        let batch = ChangeBatch::builder()
            .set_changes(Some(sdk_changes))
            .build()
            .map_err(|e| ProviderError::Other {
                operation: operation::CHANGE,
                message: e.to_string(),
                retryable: false,
            })?;
        self.pace(operation::CHANGE).await;
        let out = self
            .client
            .change_resource_record_sets()
            .hosted_zone_id(&zone.id)
            .change_batch(batch)
            .send()
            .await
            .map_err(|e| {
                let detail = invalid_batch_messages(&e);
                let mut err = self.classify(operation::CHANGE, e);
                if let (ProviderError::Rejected { message, .. }, Some(d)) = (&mut err, detail) {
                    *message = d;
                }
                err
            })?;
        let info = out.change_info();
        Ok(ChangeInfo {
            id: info.map(|i| i.id().to_string()).unwrap_or_default(),
            status: status(info.map(aws_sdk_route53::types::ChangeInfo::status)),
        })
    }

    async fn change_status_inner(&self, id: &str) -> Result<ChangeStatus, ProviderError> {
        self.pace(operation::GET_CHANGE).await;
        let out = self
            .client
            .get_change()
            .id(id)
            .send()
            .await
            .map_err(|e| self.classify(operation::GET_CHANGE, e))?;
        Ok(status(
            out.change_info()
                .map(aws_sdk_route53::types::ChangeInfo::status),
        ))
    }
}

fn status(s: Option<&r53::ChangeStatus>) -> ChangeStatus {
    match s {
        Some(r53::ChangeStatus::Insync) => ChangeStatus::InSync,
        _ => ChangeStatus::Pending,
    }
}

/// The error codes Route53 uses to say "slow down".
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "PriorRequestNotComplete",
    "RequestLimitExceeded",
    "TooManyRequestsException",
];

fn classify<E>(op: &'static str, err: &SdkError<E, HttpResponse>) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = err.code().unwrap_or_default().to_string();
    let message = err
        .message()
        .map(str::to_string)
        .unwrap_or_else(|| DisplayErrorContext(err).to_string());
    match err {
        SdkError::ServiceError(ctx) => {
            let http = ctx.raw().status().as_u16();
            if THROTTLING_CODES.contains(&code.as_str()) {
                ProviderError::Throttled {
                    operation: op,
                    code,
                    message,
                }
            } else if op == operation::CHANGE
                && (code == "InvalidChangeBatch" || code == "InvalidInput")
            {
                ProviderError::Rejected { code, message }
            } else {
                ProviderError::Other {
                    operation: op,
                    message: format!("{code}: {message} (HTTP {http})"),
                    retryable: http >= 500 || http == 429,
                }
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            ProviderError::Other {
                operation: op,
                message,
                retryable: true,
            }
        }
        _ => ProviderError::Other {
            operation: op,
            message,
            retryable: false,
        },
    }
}

/// The messages of an InvalidChangeBatch (one per change at fault), when there are some.
fn invalid_batch_messages(
    err: &SdkError<ChangeResourceRecordSetsError, HttpResponse>,
) -> Option<String> {
    match err.as_service_error()? {
        ChangeResourceRecordSetsError::InvalidChangeBatch(e) if !e.messages().is_empty() => {
            Some(e.messages().join("; "))
        }
        _ => None,
    }
}

fn from_sdk(rs: &ResourceRecordSet) -> RecordSet {
    RecordSet {
        name: normalize(rs.name()),
        rtype: RecordType::parse(rs.r#type().as_str()),
        ttl: rs.ttl().map(|t| t.clamp(0, i64::from(u32::MAX)) as u32),
        values: rs
            .resource_records()
            .iter()
            .map(|r| r.value().to_string())
            .collect(),
        alias: rs.alias_target().map(|a| AliasTarget {
            dns_name: a.dns_name().to_string(),
            hosted_zone_id: a.hosted_zone_id().to_string(),
            evaluate_target_health: a.evaluate_target_health(),
        }),
        set_identifier: rs.set_identifier().map(str::to_string),
    }
}

fn to_sdk_change(c: &Change) -> Result<r53::Change, String> {
    let rs = &c.record;
    let mut b = ResourceRecordSet::builder()
        .name(fqdn(&rs.name))
        .r#type(RrType::from(rs.rtype.as_str()))
        .set_ttl(rs.ttl.map(i64::from))
        .set_set_identifier(rs.set_identifier.clone());
    for v in &rs.values {
        b = b.resource_records(
            ResourceRecord::builder()
                .value(v)
                .build()
                .map_err(|e| e.to_string())?,
        );
    }
    if let Some(a) = &rs.alias {
        b = b.alias_target(
            r53::AliasTarget::builder()
                .dns_name(&a.dns_name)
                .hosted_zone_id(&a.hosted_zone_id)
                .evaluate_target_health(a.evaluate_target_health)
                .build()
                .map_err(|e| e.to_string())?,
        );
    }
    let action = match c.action {
        Action::Create => ChangeAction::Create,
        Action::Upsert => ChangeAction::Upsert,
        Action::Delete => ChangeAction::Delete,
    };
    r53::Change::builder()
        .action(action)
        .resource_record_set(b.build().map_err(|e| e.to_string())?)
        .build()
        .map_err(|e| e.to_string())
}

impl DnsProvider for Route53Provider {
    fn name(&self) -> &'static str {
        "route53"
    }

    fn list_zones(&self) -> BoxFuture<'_, Result<Vec<Zone>, ProviderError>> {
        Box::pin(self.list_zones_inner())
    }

    fn list_records<'a>(
        &'a self,
        zone: &'a Zone,
    ) -> BoxFuture<'a, Result<Vec<RecordSet>, ProviderError>> {
        Box::pin(self.list_records_inner(zone))
    }

    fn apply<'a>(
        &'a self,
        zone: &'a Zone,
        changes: &'a [Change],
    ) -> BoxFuture<'a, Result<ChangeInfo, ProviderError>> {
        Box::pin(self.apply_inner(zone, changes))
    }

    fn change_status<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<ChangeStatus, ProviderError>> {
        Box::pin(self.change_status_inner(id))
    }

    fn calls(&self) -> CallCounts {
        self.calls.snapshot()
    }
}
