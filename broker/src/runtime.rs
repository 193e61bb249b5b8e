//! Start-up and shutdown. Probes io_uring first (and exits with the cause
//! and the fix if it is unavailable), opens the metadata store, binds one
//! SO_REUSEPORT listener per shard, starts one pinned thread per shard with
//! its own io_uring runtime, and waits. SIGTERM/SIGINT stop accepting,
//! let in-flight requests finish, then sync every log and exit.

use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::auth::Listener;
use crate::cluster::member::ClusterMember;
use crate::cluster::{Endpoint, Metadata, MetadataStore, OFFSETS_TOPIC};
use crate::config::{BrokerConfig, FlushPolicy};
use crate::peer::PeerSecurity;
use crate::shard::{Broker, Job, Shard};

/// Builds a throwaway io_uring runtime to learn whether io_uring works here.
pub fn probe_io_uring() -> anyhow::Result<()> {
    match compio::runtime::Runtime::new() {
        Ok(_) => Ok(()),
        Err(e) => {
            let cause = match e.raw_os_error() {
                Some(libc::ENOSYS) => "the kernel has no io_uring (ENOSYS): Linux 5.11 or newer is needed",
                Some(libc::EPERM) => "io_uring is forbidden (EPERM): a seccomp profile or sysctl kernel.io_uring_disabled=2 blocks it",
                Some(libc::EACCES) => "io_uring is restricted (EACCES): sysctl kernel.io_uring_disabled=1 limits it to the io_uring_group",
                Some(libc::ENOMEM) => "io_uring could not lock memory (ENOMEM): raise RLIMIT_MEMLOCK (ulimit -l)",
                _ => "io_uring setup failed",
            };
            anyhow::bail!(
                "io_uring is unavailable: {cause} ({e}).\n\
                 Fix: run on Linux 5.11+ with io_uring enabled (sysctl kernel.io_uring_disabled=0); \
                 in a container, allow io_uring_setup/io_uring_enter/io_uring_register in the seccomp profile \
                 (e.g. docker run --security-opt seccomp=unconfined)."
            )
        }
    }
}

/// The lock file in a data directory, as Kafka's `.lock`.
pub const DATA_DIR_LOCK: &str = ".lock";

/// Takes an exclusive lock on `dir` for as long as the returned file lives:
/// two processes writing one log would corrupt it, and a cluster node's
/// `directory.id` stands for exactly one running process.
pub fn lock_data_dir(dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join(DATA_DIR_LOCK);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "data directory {} is in use by another sluiced process (it holds {}); \
             each broker needs its own log.dirs",
            dir.display(),
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// How this broker secures its connections to other brokers (replica
/// fetchers), from `inter.broker.listener.name`'s protocol: TLS for SSL and
/// SASL_SSL, a SASL login (`sasl.mechanism.inter.broker.protocol` with the
/// listener's `sasl.jaas.config`) for SASL_PLAINTEXT and SASL_SSL. Refuses,
/// naming the property, what cannot work.
fn inter_broker_security(config: &BrokerConfig) -> anyhow::Result<PeerSecurity> {
    let Some(name) = config.inter_broker_listener_name() else {
        return Ok(PeerSecurity::default());
    };
    let protocol = config
        .protocol_of(name)
        .with_context(|| format!("inter-broker listener {name} has no security protocol"))?;
    let sasl = if protocol.uses_sasl() {
        let login = config.inter_broker_login(name).map_err(|reason| {
            anyhow::anyhow!(
                "inter-broker listener {name} is {}: {reason}",
                protocol.name()
            )
        })?;
        if !config
            .sasl_enabled_mechanisms
            .iter()
            .any(|m| m == login.mechanism.name())
        {
            anyhow::bail!(
                "{}={} is not in sasl.enabled.mechanisms ({}): the other brokers would refuse it",
                crate::config::names::SASL_MECHANISM_INTER_BROKER_PROTOCOL,
                login.mechanism.name(),
                config.sasl_enabled_mechanisms.join(",")
            );
        }
        Some(login)
    } else {
        None
    };
    let tls = if protocol.uses_tls() {
        let tls = crate::tls::client_config(&config.ssl)
            .with_context(|| format!("inter-broker listener {name} is {}", protocol.name()))?;
        Some(tls)
    } else {
        None
    };
    Ok(PeerSecurity { tls, sasl })
}

pub fn run(config: BrokerConfig) -> anyhow::Result<()> {
    probe_io_uring()?;
    let config = Arc::new(config);
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    // Held until the broker has stopped.
    let _data_dir_lock = lock_data_dir(&config.data_dir)?;
    let swept = crate::log::deletion::sweep(&config.data_dir);
    if swept > 0 {
        tracing::info!(
            directories = swept,
            "removed partition directories a crash left half-deleted"
        );
    }
    let n = config.shards.max(1);
    let mut senders = Vec::with_capacity(n);
    let mut receivers = Vec::with_capacity(n);
    for _ in 0..n {
        let (tx, rx) = flume::unbounded::<Job>();
        senders.push(tx);
        receivers.push(rx);
    }
    let mut per_shard_listeners: Vec<Vec<(Arc<Listener>, std::net::TcpListener)>> =
        (0..n).map(|_| Vec::new()).collect();
    let mut listeners = Vec::with_capacity(config.listeners.len());
    let mut bound = Vec::new();
    // The controller listener is the quorum's, not a Kafka listener.
    for spec in config.client_listeners() {
        let addr = spec.addr;
        let ls = crate::net::bind_reuseport(addr, n)
            .with_context(|| format!("cannot listen on {}://{addr}", spec.name))?;
        let local = ls[0].local_addr()?;
        let protocol = config
            .protocol_of(&spec.name)
            .with_context(|| format!("listener {} has no security protocol", spec.name))?;
        let tls = if protocol.uses_tls() {
            Some(
                crate::tls::server_config(&config.ssl)
                    .with_context(|| format!("cannot set up TLS for listener {}", spec.name))?,
            )
        } else {
            None
        };
        let (advertised_host, advertised_port) = match config
            .advertised_listeners
            .iter()
            .find(|a| a.name == spec.name)
        {
            Some(a) => (a.host.clone(), a.port),
            None if local.ip().is_unspecified() => ("127.0.0.1".to_string(), local.port()),
            None => (local.ip().to_string(), local.port()),
        };
        let info = Arc::new(Listener {
            name: spec.name.clone(),
            protocol,
            advertised_host,
            advertised_port,
            tls,
        });
        bound.push(format!("{}://{local}", spec.name));
        listeners.push(info.clone());
        for (i, l) in ls.into_iter().enumerate() {
            per_shard_listeners[i].push((info.clone(), l));
        }
    }
    let inter_broker_security = if config.cluster.enabled() {
        inter_broker_security(&config)?
    } else {
        PeerSecurity::default()
    };
    let metadata = if config.cluster.enabled() {
        let endpoints = listeners
            .iter()
            .map(|l| Endpoint {
                name: l.name.clone(),
                host: l.advertised_host.clone(),
                port: l.advertised_port,
                security_protocol: l.protocol.kafka_id(),
            })
            .collect();
        let member = ClusterMember::start(config.clone(), endpoints)?;
        member.wait_until_serving()?;
        tracing::info!(
            node_id = config.node_id,
            broker_epoch = member.broker_epoch(),
            "joined the cluster"
        );
        Metadata::Cluster(member)
    } else {
        Metadata::Standalone(MetadataStore::open(config.clone())?)
    };
    let security = crate::auth::Security::from_config(&config)?;
    let broker = Arc::new(Broker::new(
        config.clone(),
        metadata,
        senders,
        listeners,
        security,
        inter_broker_security,
    ));
    if let Some(member) = broker.metadata.member() {
        // In a cluster the SCRAM credentials are the metadata log's.
        let follower = Arc::downgrade(&broker);
        member.follow_scram_credentials(move |creds| {
            let Some(broker) = follower.upgrade() else {
                return;
            };
            let store = crate::api::alter_user_scram_credentials::cluster_store(creds);
            let security = &broker.security;
            if let Err(e) = store.save(&security.scram_path) {
                tracing::warn!(error = %e, "cannot save this broker's copy of the SCRAM credentials");
            }
            *security.scram.write().unwrap_or_else(|e| e.into_inner()) = store;
        });
    }

    if let Some(m) = config.metrics_listen {
        let weak = Arc::downgrade(&broker);
        crate::metrics::METRICS.set_replica_figures(Box::new(move || {
            weak.upgrade()
                .map(|b| b.metadata.image().replica_figures(b.config.node_id))
                .unwrap_or_default()
        }));
        let local =
            crate::metrics::serve(m).with_context(|| format!("cannot serve metrics on {m}"))?;
        tracing::info!(%local, "metrics endpoint");
    }

    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let drained = Arc::new(AtomicUsize::new(0));
    let ready = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::with_capacity(n);
    for (i, (rx, listeners)) in receivers.into_iter().zip(per_shard_listeners).enumerate() {
        let broker = broker.clone();
        let core = cores
            .get(i % cores.len().max(1))
            .map(|c| c.id)
            .filter(|_| config.shards_pin_cores);
        let drained = drained.clone();
        let ready = ready.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("sluice-shard-{i}"))
                .spawn(move || shard_thread(i, core, broker, rx, listeners, drained, ready))
                .context("cannot start shard thread")?,
        );
    }

    // Signals: stop accepting, drain, sync, exit.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .context("cannot install signal handlers")?;
    let handle = signals.handle();
    let sig_broker = broker.clone();
    let signal_thread = std::thread::Builder::new()
        .name("sluice-signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                tracing::info!(signal = sig, "shutting down");
                if let Some(member) = sig_broker.metadata.member() {
                    // Leaderships move before the partitions close, so
                    // clients see only retriable errors.
                    futures::executor::block_on(
                        member.controlled_shutdown(Duration::from_secs(10)),
                    );
                }
                request_shutdown(&sig_broker);
            }
        })?;

    while ready.load(Ordering::SeqCst) < n {
        if threads.iter().any(|t| t.is_finished()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if ready.load(Ordering::SeqCst) == n {
        tracing::info!(listeners = ?bound, shards = n, data_dir = %config.data_dir.display(), "sluiced ready");
    }
    let mut failed = None;
    for t in threads {
        match t.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                request_shutdown(&broker);
                failed.get_or_insert(e);
            }
            Err(_) => {
                request_shutdown(&broker);
                failed.get_or_insert(anyhow::anyhow!("a shard thread panicked"));
            }
        }
    }
    handle.close();
    let _ = signal_thread.join();
    match failed {
        Some(e) => Err(e),
        None => {
            tracing::info!("sluiced stopped cleanly");
            Ok(())
        }
    }
}

pub fn request_shutdown(broker: &Arc<Broker>) {
    broker.shutting_down.store(true, Ordering::SeqCst);
    for i in 0..broker.shard_count() {
        let b = broker.clone();
        // Fire and forget: each shard begins its own shutdown.
        std::thread::spawn(move || {
            let job: Job = Box::new(|shard: &Rc<Shard>| shard.begin_shutdown());
            let _ = b.mailbox(i).map(|m| m.send(job));
        });
    }
}

fn shard_thread(
    id: usize,
    core: Option<usize>,
    broker: Arc<Broker>,
    mailbox: flume::Receiver<Job>,
    listeners: Vec<(Arc<Listener>, std::net::TcpListener)>,
    drained: Arc<AtomicUsize>,
    ready: Arc<AtomicUsize>,
) -> anyhow::Result<()> {
    let mut builder = compio::runtime::RuntimeBuilder::new();
    if let Some(c) = core {
        builder.thread_affinity(std::iter::once(c).collect());
    }
    let rt = builder.build().context("cannot start io_uring runtime")?;
    crate::metrics::METRICS.register_shard_thread(id);
    rt.block_on(async move {
        let shard = Shard::new(id, broker.clone());
        Shard::set_current(&shard);
        {
            let shard = shard.clone();
            compio::runtime::spawn(async move {
                while let Ok(job) = mailbox.recv_async().await {
                    job(&shard);
                }
            })
            .detach();
        }
        match broker.metadata.member() {
            // The metadata image decides each partition's role, and group
            // coordination follows __consumer_offsets leadership.
            Some(member) => {
                crate::shard::groups::start(&shard).await?;
                crate::shard::txns::start(&shard)?;
                crate::shard::roles::sync(&shard, &member.image()).await;
                crate::shard::roles::install(&shard, member);
            }
            // Groups load from the offsets partitions opened first.
            None => {
                open_owned_partitions(&shard).await?;
                crate::shard::groups::start(&shard).await?;
                crate::shard::txns::start(&shard)?;
            }
        }
        spawn_housekeeping(&shard);
        for (info, l) in listeners {
            compio::runtime::spawn(crate::net::accept_loop(shard.clone(), info, l)).detach();
        }
        ready.fetch_add(1, Ordering::SeqCst);
        shard.shutdown.clone().await;

        // Drain: connections stop reading new requests and answer the
        // ones in flight; wait for them (bounded), then for every shard,
        // since in-flight requests may need other shards' partitions.
        let deadline = Instant::now() + Duration::from_secs(10);
        while crate::metrics::METRICS.connections_open.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            compio::time::sleep(Duration::from_millis(10)).await;
        }
        drained.fetch_add(1, Ordering::SeqCst);
        while drained.load(Ordering::SeqCst) < broker.shard_count() && Instant::now() < deadline {
            compio::time::sleep(Duration::from_millis(5)).await;
        }
        if let Some(c) = shard.coordinator() {
            c.shutdown();
        }
        if let Some(c) = shard.txn_coordinator() {
            c.shutdown();
        }
        shard.roles.stop_fetchers();
        for p in shard.open_partitions() {
            if let Err(e) = p.flush().await {
                tracing::error!(topic = %p.topic, partition = p.partition, error = %e, "final sync failed");
            }
            if let Some(a) = p.state.borrow().active() {
                let _ = a.persist_indexes();
            }
            p.close();
        }
        crate::shard::hw_checkpoint::at_shutdown(&shard);
        Ok::<(), anyhow::Error>(())
    })
}

/// Opens (recovering) every partition this shard owns, so recovery happens
/// at start-up rather than on a client's first request.
async fn open_owned_partitions(shard: &Rc<Shard>) -> anyhow::Result<()> {
    let image = shard.broker.metadata.image();
    let mut topics: Vec<_> = image.by_name.values().cloned().collect();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    for t in topics {
        // The coordinators' topics' partitions open lazily unless they
        // have data.
        let lazy = t.name == OFFSETS_TOPIC || t.name == crate::txn::TXN_TOPIC;
        for p in 0..t.partitions {
            if shard.broker.owner_of_partition(&t.id, p) != shard.id {
                continue;
            }
            let node = shard.broker.config.node_id;
            if !t.partition(p).is_some_and(|a| a.replicas.contains(&node)) {
                continue;
            }
            let dir = shard
                .broker
                .config
                .data_dir
                .join(crate::log::PartitionLog::dir_name(&t.name, p));
            if lazy && !dir.exists() {
                continue;
            }
            shard.partition(&t, p).await.map_err(|code| {
                anyhow::anyhow!("cannot open {}-{p} (error code {code})", t.name)
            })?;
        }
    }
    Ok(())
}

fn spawn_housekeeping(shard: &Rc<Shard>) {
    let s = shard.clone();
    compio::runtime::spawn(async move {
        // Group figures for /metrics, refreshed once a second.
        loop {
            compio::time::sleep(Duration::from_secs(1)).await;
            if s.is_shutting_down() {
                break;
            }
            let metrics = &crate::metrics::METRICS;
            if let Some(c) = s.coordinator() {
                metrics.set_group_figures(s.id, c.group_count(), c.rebalance_count());
                metrics.set_committed_offsets(s.id, c.committed_offsets_for_lag());
            }
            // High watermarks for consumer lag.
            for p in s.open_partitions() {
                p.metrics.set_high_watermark(p.high_watermark());
            }
        }
    })
    .detach();
    let cfg = shard.broker.config.clone();
    let s = shard.clone();
    compio::runtime::spawn(async move {
        let period = Duration::from_millis(cfg.log_retention_check_interval_ms.max(100));
        loop {
            compio::time::sleep(period).await;
            if s.is_shutting_down() {
                break;
            }
            let now = sluice_protocol::clock::now_ms();
            for p in s.open_partitions() {
                let deleted = p.apply_retention();
                if deleted > 0 {
                    tracing::info!(topic = %p.topic, partition = p.partition, segments = deleted, "retention deleted segments");
                }
                p.state.borrow_mut().producers.expire(now, cfg.producer_id_expiration_ms);
                let st = p.state.borrow();
                p.metrics.set_offsets(st.log_start_offset, st.log_end_offset, st.size_bytes());
            }
        }
    })
    .detach();
    if shard.broker.config.log_cleaner_enable {
        // The shard's log cleaner, over the shard's own compacted logs.
        let logs = shard.clone();
        let stop = shard.clone();
        compio::runtime::spawn(crate::log::cleaner::run(
            crate::log::cleaner::CleanerConfig::from_broker(&shard.broker.config),
            shard.broker.cleaner_checkpoint.clone(),
            move || logs.open_partitions(),
            move || stop.is_shutting_down(),
        ))
        .detach();
    }
    if cfg_flush_interval(&shard.broker.config) {
        let s = shard.clone();
        let period = Duration::from_millis(shard.broker.config.log_flush_interval_ms.max(1));
        compio::runtime::spawn(async move {
            loop {
                compio::time::sleep(period).await;
                if s.is_shutting_down() {
                    break;
                }
                for p in s.open_partitions() {
                    if let Err(e) = p.flush().await {
                        tracing::error!(topic = %p.topic, partition = p.partition, error = %e, "background sync failed");
                    }
                }
            }
        })
        .detach();
    }
}

fn cfg_flush_interval(cfg: &BrokerConfig) -> bool {
    cfg.flush_policy == FlushPolicy::Interval
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_directory_serves_one_process_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock_data_dir(dir.path()).unwrap();
        let refused = lock_data_dir(dir.path()).unwrap_err().to_string();
        assert!(
            refused.contains("in use by another sluiced process"),
            "{refused}"
        );
        drop(held);
        lock_data_dir(dir.path()).expect("free again once the holder stopped");
    }

    #[test]
    fn the_inter_broker_listener_security_is_resolved_or_refused_with_the_reason() {
        let mut config = BrokerConfig::default();
        config
            .set(
                "listeners",
                "PLAINTEXT://127.0.0.1:9092,SASL_PLAINTEXT://127.0.0.1:9093",
            )
            .unwrap();
        let plain = inter_broker_security(&config).unwrap();
        assert!(plain.tls.is_none() && plain.sasl.is_none());
        config
            .set("inter.broker.listener.name", "SASL_PLAINTEXT")
            .unwrap();
        // Kafka's default mechanism, GSSAPI, is not spoken.
        let refused = inter_broker_security(&config).unwrap_err().to_string();
        assert!(
            refused.contains("sasl.mechanism.inter.broker.protocol=GSSAPI"),
            "{refused}"
        );
        config
            .set("sasl.mechanism.inter.broker.protocol", "SCRAM-SHA-512")
            .unwrap();
        let refused = inter_broker_security(&config).unwrap_err().to_string();
        assert!(
            refused.contains("listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config"),
            "{refused}"
        );
        config
            .set(
                "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config",
                r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="pw";"#,
            )
            .unwrap();
        let sasl = inter_broker_security(&config).unwrap();
        assert_eq!(sasl.sasl.map(|l| l.username), Some("broker".to_string()));
        assert!(sasl.tls.is_none());
        config
            .set("sasl.enabled.mechanisms", "PLAIN,SCRAM-SHA-256")
            .unwrap();
        let refused = inter_broker_security(&config).unwrap_err().to_string();
        assert!(
            refused.contains("not in sasl.enabled.mechanisms"),
            "{refused}"
        );
        config.set("listeners", "SSL://127.0.0.1:9093").unwrap();
        config.set("inter.broker.listener.name", "SSL").unwrap();
        let refused = format!("{:#}", inter_broker_security(&config).unwrap_err());
        assert!(
            refused.contains("needs ssl.truststore.location"),
            "{refused}"
        );
    }
}
