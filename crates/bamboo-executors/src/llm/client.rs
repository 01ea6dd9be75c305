//! The HTTP side of the agent loop: one streaming chat-completions request,
//! with bounded retries for 429 and 5xx, cancellable at every await.

use std::time::Duration;

use bamboo_subagent::Secret;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Response, StatusCode};
use tokio_util::sync::CancellationToken;

/// How many times, and how fast, 429 and 5xx answers are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub retries: u32,
    /// Delay before the first retry; doubled for each further one.
    pub base_delay: Duration,
    /// Longest single delay, also the cap on a server's `Retry-After`.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            retries: 3,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(retry.min(16)));
        exp.max(retry_after.unwrap_or_default()).min(self.max_delay)
    }
}

/// Why a model request failed. Each message names the provider and what to check.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// The server answered with an error status.
    #[error("{provider} returned {status}: {hint}")]
    Status {
        /// Provider name.
        provider: String,
        /// The status, e.g. `401 Unauthorized`.
        status: StatusCode,
        /// What to check.
        hint: String,
    },
    /// No connection could be made, or it broke.
    #[error("could not reach {provider} at {url}: {detail}: check base_url and the network")]
    Connect {
        /// Provider name.
        provider: String,
        /// The endpoint.
        url: String,
        /// The transport error.
        detail: String,
    },
    /// The server went quiet.
    #[error("{provider} sent nothing for {secs} s: the server is stalled or overloaded; try again later")]
    Timeout {
        /// Provider name.
        provider: String,
        /// How long we waited.
        secs: u64,
    },
    /// The stream was not a chat-completions stream.
    #[error("{provider} sent a malformed stream: {detail}: check that base_url points at an OpenAI-compatible chat-completions API")]
    Malformed {
        /// Provider name.
        provider: String,
        /// What was wrong.
        detail: String,
    },
    /// The server reported an error inside the stream.
    #[error("{provider} reported an error mid-stream: {message}")]
    Provider {
        /// Provider name.
        provider: String,
        /// Its message.
        message: String,
    },
    /// The HTTP client could not be built.
    #[error("could not set up the HTTP client: {0}")]
    Setup(String),
    /// The run was cancelled.
    #[error("cancelled")]
    Cancelled,
}

/// A chat-completions endpoint with its credential. `Debug` never shows the key.
#[derive(Debug, Clone)]
pub struct ChatClient {
    http: reqwest::Client,
    url: String,
    provider: String,
    model: String,
    key: Secret,
    retry: RetryPolicy,
    idle_timeout: Duration,
}

/// Longest pause between two pieces of a stream before the run gives up.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

impl ChatClient {
    /// A client for `<base_url>/chat/completions`.
    pub fn new(
        provider: &str,
        model: &str,
        base_url: &str,
        key: Secret,
        retry: RetryPolicy,
    ) -> Result<Self, LlmError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| LlmError::Setup(e.to_string()))?;
        Ok(Self {
            http,
            url: format!("{}/chat/completions", base_url.trim_end_matches('/')),
            provider: provider.to_owned(),
            model: model.to_owned(),
            key,
            retry,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        })
    }

    /// Replaces the retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets how long a stream may stay silent.
    pub fn with_idle_timeout(mut self, idle: Duration) -> Self {
        self.idle_timeout = idle;
        self
    }

    /// The provider name, for messages.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// Sends `body` and returns the streaming response once its status is OK,
    /// retrying 429 and 5xx up to the policy; each retry is told to
    /// `events` as a `retrying` event first, so a person sees why the child
    /// waits.
    pub async fn open(
        &self,
        body: &serde_json::Value,
        cancel: &CancellationToken,
        events: Option<&bamboo_subagent::executor::EventSink>,
    ) -> Result<Response, LlmError> {
        let mut retry = 0;
        loop {
            let response = self.send(body, cancel).await?;
            let status = response.status();
            if status.is_success() {
                return Ok(response);
            }
            let retryable = status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
            if retryable && retry < self.retry.retries {
                let after = retry_after(&response);
                let delay = self.retry.delay(retry, after);
                tracing::warn!(provider = %self.provider, %status, ?delay, "retrying model request");
                drop(response);
                if let Some(events) = events {
                    let note = bamboo_domain::AgentEvent::Retrying {
                        what: format!("{} model request", self.provider),
                        attempt: retry + 2,
                        delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        reason: status.to_string(),
                    };
                    // A run that ended takes no more events; the retry goes on.
                    let _ = events.emit(note).await;
                }
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return Err(LlmError::Cancelled),
                    _ = tokio::time::sleep(delay) => {}
                }
                retry += 1;
                continue;
            }
            let detail = self.body_snippet(response, cancel).await;
            return Err(LlmError::Status {
                provider: self.provider.clone(),
                status,
                hint: self.hint(status, retry, &detail),
            });
        }
    }

    async fn send(
        &self,
        body: &serde_json::Value,
        cancel: &CancellationToken,
    ) -> Result<Response, LlmError> {
        let mut request = self.http.post(&self.url);
        // An empty key is a keyless endpoint (a local model server): no
        // Authorization header at all, rather than an empty bearer.
        if !self.key.expose().is_empty() {
            let mut auth = HeaderValue::from_str(&format!("Bearer {}", self.key.expose()))
                .map_err(|_| LlmError::Setup(format!(
                    "the API key for provider {} contains characters not allowed in an HTTP header: check the key",
                    self.provider
                )))?;
            // Keeps the key out of any Debug output of the request.
            auth.set_sensitive(true);
            request = request.header(AUTHORIZATION, auth);
        }
        let request = request
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "text/event-stream")
            .body(body.to_string())
            .send();
        let result = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(LlmError::Cancelled),
            r = tokio::time::timeout(self.idle_timeout, request) => r,
        };
        match result {
            Err(_) => Err(self.timeout()),
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) if e.is_timeout() => Err(self.timeout()),
            Ok(Err(e)) => Err(LlmError::Connect {
                provider: self.provider.clone(),
                url: self.url.clone(),
                detail: error_chain(&e),
            }),
        }
    }

    /// The next piece of the body: `None` at its end.
    pub async fn next_chunk(
        &self,
        response: &mut Response,
        cancel: &CancellationToken,
    ) -> Result<Option<bytes::Bytes>, LlmError> {
        let read = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(LlmError::Cancelled),
            r = tokio::time::timeout(self.idle_timeout, response.chunk()) => r,
        };
        match read {
            Err(_) => Err(self.timeout()),
            Ok(Ok(chunk)) => Ok(chunk),
            Ok(Err(e)) if e.is_timeout() => Err(self.timeout()),
            Ok(Err(e)) => Err(LlmError::Connect {
                provider: self.provider.clone(),
                url: self.url.clone(),
                detail: format!("the stream broke: {}", error_chain(&e)),
            }),
        }
    }

    /// An error for a malformed stream.
    pub fn malformed(&self, detail: impl Into<String>) -> LlmError {
        LlmError::Malformed {
            provider: self.provider.clone(),
            detail: detail.into(),
        }
    }

    /// An error the provider reported in the stream.
    pub fn provider_error(&self, message: impl Into<String>) -> LlmError {
        LlmError::Provider {
            provider: self.provider.clone(),
            message: self.scrub(&message.into()),
        }
    }

    fn timeout(&self) -> LlmError {
        LlmError::Timeout {
            provider: self.provider.clone(),
            secs: self.idle_timeout.as_secs(),
        }
    }

    fn hint(&self, status: StatusCode, retries: u32, detail: &str) -> String {
        let p = &self.provider;
        let mut hint = match status.as_u16() {
            401 | 403 => return format!("check the API key for provider {p}"),
            404 => format!("check the model name {:?} and the base_url for provider {p}", self.model),
            429 => format!("rate limited, gave up after {retries} retries: wait, or raise the quota for provider {p}"),
            s if s >= 500 => format!("the server failed, gave up after {retries} retries: try again later or check the status of provider {p}"),
            _ => format!("the request was rejected: check the model name {:?} and the spec", self.model),
        };
        if !detail.is_empty() {
            hint.push_str(" (server said: ");
            hint.push_str(detail);
            hint.push(')');
        }
        hint
    }

    /// The start of an error body, for the message; never includes the key.
    async fn body_snippet(&self, response: Response, cancel: &CancellationToken) -> String {
        let text = tokio::select! {
            _ = cancel.cancelled() => return String::new(),
            _ = tokio::time::sleep(Duration::from_secs(5)) => return String::new(),
            t = response.text() => t.unwrap_or_default(),
        };
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| {
                v.pointer("/error/message")
                    .and_then(|m| m.as_str())
                    .map(str::to_owned)
            })
            .unwrap_or(text);
        let short: String = message.trim().chars().take(300).collect();
        self.scrub(&short)
    }

    fn scrub(&self, text: &str) -> String {
        let key = self.key.expose();
        if key.len() >= 4 {
            text.replace(key, "<redacted>")
        } else {
            text.to_owned()
        }
    }
}

fn retry_after(response: &Response) -> Option<Duration> {
    response
        .headers()
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// An error with its sources, one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}
