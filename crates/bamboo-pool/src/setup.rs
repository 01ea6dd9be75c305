//! Opening a pool on the server: its work-queue stream and shared durable
//! consumer, its runs stream and its lease bucket, created on first use by
//! whichever side comes first (both ask for the same configuration).

use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, stream, Context};

use crate::error::PoolError;
use crate::subjects::PoolName;

/// Server-side settings of a pool, fixed by whoever creates it first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// A worker that stops renewing its lease is gone after this long.
    pub lease_ttl: Duration,
    /// How long a run's frames stay in the runs stream (for an engine that
    /// restarts and reads on).
    pub runs_max_age: Duration,
    /// How long a queued run may stay in the work queue at most.
    pub work_max_age: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_secs(6),
            runs_max_age: Duration::from_secs(24 * 3600),
            work_max_age: Duration::from_secs(24 * 3600),
        }
    }
}

/// Handles on one pool's server objects.
#[derive(Debug, Clone)]
pub struct PoolHandles {
    /// The pool.
    pub name: PoolName,
    /// The connection.
    pub client: async_nats::Client,
    /// JetStream context.
    pub js: Context,
    /// The work queue.
    pub work: stream::Stream,
    /// Every run's frames.
    pub runs: stream::Stream,
    /// Worker leases.
    pub leases: kv::Store,
}

/// Opens (creating when missing) the pool `name`.
pub async fn open_pool(
    client: &async_nats::Client,
    name: &PoolName,
    settings: PoolSettings,
) -> Result<PoolHandles, PoolError> {
    let js = jetstream::new(client.clone());
    let work = stream_of(
        &js,
        stream::Config {
            name: name.work_stream(),
            subjects: vec![name.work_subject()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            max_age: settings.work_max_age,
            ..Default::default()
        },
    )
    .await
    .map_err(|e| PoolError::js(format!("opening the work queue of pool {name}"), e))?;
    let runs = stream_of(
        &js,
        stream::Config {
            name: name.runs_stream(),
            subjects: vec![name.runs_wildcard()],
            storage: stream::StorageType::File,
            max_age: settings.runs_max_age,
            ..Default::default()
        },
    )
    .await
    .map_err(|e| PoolError::js(format!("opening the runs stream of pool {name}"), e))?;
    let bucket = name.lease_bucket();
    let leases = match js.get_key_value(&bucket).await {
        Ok(store) => store,
        Err(_) => {
            create_lease_bucket(&js, &bucket, settings.lease_ttl).await?;
            js.get_key_value(&bucket)
                .await
                .map_err(|e| PoolError::js(format!("opening the lease bucket {bucket}"), e))?
        }
    };
    Ok(PoolHandles {
        name: name.clone(),
        client: client.clone(),
        js,
        work,
        runs,
        leases,
    })
}

/// Creates the lease bucket's stream the way a key-value bucket is laid out
/// (`KV_<bucket>` over `$KV.<bucket>.>`, one value per key, the TTL as max
/// age). Done by hand because the client's own bucket creation first asks
/// for account limits in a shape nats-server 2.9 does not answer with.
async fn create_lease_bucket(js: &Context, bucket: &str, ttl: Duration) -> Result<(), PoolError> {
    stream_of(
        js,
        stream::Config {
            name: format!("KV_{bucket}"),
            subjects: vec![format!("$KV.{bucket}.>")],
            max_messages_per_subject: 1,
            max_age: ttl,
            storage: stream::StorageType::File,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: stream::DiscardPolicy::New,
            num_replicas: 1,
            ..Default::default()
        },
    )
    .await
    .map_err(|e| PoolError::js(format!("creating the lease bucket {bucket}"), e))?;
    Ok(())
}

/// Opens the stream `config` names, creating it when missing. An engine and
/// a worker (or two of either) opening a new pool at the same moment race
/// to create it, and the server may refuse the loser ("subjects overlap
/// with an existing stream"): the stream the winner made is then used.
async fn stream_of(
    js: &Context,
    config: stream::Config,
) -> Result<stream::Stream, jetstream::context::CreateStreamError> {
    let name = config.name.clone();
    match js.get_or_create_stream(config).await {
        Ok(s) => Ok(s),
        Err(e) => js.get_stream(&name).await.map_err(|_| e),
    }
}

impl PoolHandles {
    /// The durable pull consumer all workers of the pool share: each queued
    /// run goes to exactly one of them.
    pub async fn work_consumer(&self) -> Result<consumer::PullConsumer, PoolError> {
        self.work
            .get_or_create_consumer(
                self.name.work_consumer(),
                consumer::pull::Config {
                    durable_name: Some(self.name.work_consumer().to_owned()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    // A worker acks a run as soon as it has taken it; one
                    // that dies before that frees the run after this.
                    ack_wait: Duration::from_secs(30),
                    max_ack_pending: 100_000,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| {
                PoolError::js(
                    format!("opening the work consumer of pool {}", self.name),
                    e,
                )
            })
    }

    /// The lease of `worker`, when it is alive. `Err`: the server could not
    /// be asked (the caller should not conclude anything).
    pub async fn lease(&self, worker: &str) -> Result<Option<crate::LeaseRecord>, PoolError> {
        let raw = self
            .leases
            .get(worker)
            .await
            .map_err(|e| PoolError::js(format!("reading the lease of worker {worker}"), e))?;
        Ok(raw.and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// Every live worker's lease. The keys come from the bucket stream's
    /// subject list (one request), not from `keys()`, whose ordered consumer
    /// can wait out its whole timeout when a lease is rewritten meanwhile.
    pub async fn workers(&self) -> Result<Vec<crate::LeaseRecord>, PoolError> {
        use futures::TryStreamExt;
        let prefix = format!("$KV.{}.", self.leases.name);
        let listing = async {
            let subjects = self
                .leases
                .stream
                .info_with_subjects(format!("{prefix}>"))
                .await
                .map_err(|e| PoolError::js("listing worker leases", e))?;
            subjects
                .map_ok(|(subject, _)| subject)
                .try_collect::<Vec<String>>()
                .await
                .map_err(|e| PoolError::js("listing worker leases", e))
        };
        let subjects = tokio::time::timeout(Duration::from_secs(5), listing)
            .await
            .map_err(|_| PoolError::js("listing worker leases", "no answer within 5 s"))??;
        let keys = subjects
            .iter()
            .filter_map(|s| s.strip_prefix(&prefix).map(str::to_owned));
        let mut out = Vec::new();
        for k in keys {
            if let Ok(Some(rec)) = self.lease(&k).await {
                out.push(rec);
            }
        }
        Ok(out)
    }
}
