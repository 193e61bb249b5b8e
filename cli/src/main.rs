//! The `sluice` command-line tool: topic and group administration against
//! any Kafka-compatible cluster (default bootstrap 127.0.0.1:9092), built on
//! the `sluice` client crate.
//!
//! # Layout
//! - `main.rs`: argument parsing, the admin commands and `iam-token`.

mod perf;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sluice::admin::{AlterConfigOp, ConfigResource};
use sluice::{AdminClient, ClientConfig, NewTopic};

#[derive(Parser, Debug)]
#[command(
    name = "sluice",
    version,
    about = "Topics, groups, produce, consume and perf for Kafka-compatible clusters"
)]
struct Cli {
    /// Bootstrap servers, HOST:PORT[,HOST:PORT...]
    #[arg(
        long,
        short = 'b',
        global = true,
        default_value = "127.0.0.1:9092",
        env = "SLUICE_BOOTSTRAP"
    )]
    bootstrap: String,
    /// Extra client property, NAME=VALUE with Kafka's names (repeatable).
    #[arg(
        long = "property",
        short = 'X',
        global = true,
        value_name = "NAME=VALUE"
    )]
    properties: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create, list, describe, alter and delete topics.
    #[command(subcommand)]
    Topics(TopicsCmd),
    /// List and describe consumer groups (with lag).
    #[command(subcommand)]
    Groups(GroupsCmd),
    /// Manage SCRAM users (AlterUserScramCredentials / DescribeUserScramCredentials).
    #[command(subcommand)]
    Users(UsersCmd),
    /// Send lines from stdin as records (KEY<sep>VALUE with --key-separator).
    Produce(ProduceArgs),
    /// Print records from a topic (as a group member with --group).
    Consume(ConsumeArgs),
    /// Print an AWS MSK IAM OAUTHBEARER token (what aws-msk-iam-sasl-signer
    /// makes). Credentials come from the flags, else the standard AWS sources.
    IamToken(IamTokenArgs),
    /// Load generators: produce or consume N records, report records/s,
    /// MB/s and latency percentiles.
    #[command(subcommand)]
    Perf(perf::PerfCmd),
}

#[derive(clap::Args, Debug)]
struct ProduceArgs {
    topic: String,
    /// Split each line into key and value at the first occurrence of this.
    #[arg(long)]
    key_separator: Option<String>,
    /// acks: 0, 1 or all.
    #[arg(long, default_value = "all")]
    acks: String,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    compression: String,
    /// Send every record to this partition.
    #[arg(long, short = 'p')]
    partition: Option<i32>,
}

#[derive(clap::Args, Debug)]
struct ConsumeArgs {
    topic: String,
    /// Consume as a member of this group (offsets are committed).
    #[arg(long, short = 'g')]
    group: Option<String>,
    /// Start from the earliest offset when there is no committed one.
    #[arg(long)]
    from_beginning: bool,
    /// Stop after this many records.
    #[arg(long, short = 'n')]
    max_messages: Option<u64>,
    /// Stop after this long without a record (ms); default: never.
    #[arg(long)]
    idle_timeout_ms: Option<u64>,
    /// Print keys too, separated from the value by --key-separator.
    #[arg(long)]
    print_key: bool,
    #[arg(long, default_value = "\t")]
    key_separator: String,
}

#[derive(clap::Args, Debug)]
struct IamTokenArgs {
    /// AWS region of the MSK cluster.
    #[arg(long)]
    region: String,
    #[arg(long, requires = "secret_access_key")]
    access_key_id: Option<String>,
    #[arg(long, requires = "access_key_id")]
    secret_access_key: Option<String>,
    #[arg(long)]
    session_token: Option<String>,
    /// Credentials from this profile of the shared files instead of the
    /// default chain (aws-msk-iam-auth's awsProfileName).
    #[arg(long, conflicts_with = "access_key_id")]
    profile: Option<String>,
    /// Assume this role with the credentials found and sign as it.
    #[arg(long)]
    role_arn: Option<String>,
    /// RoleSessionName for --role-arn (default aws-msk-iam-auth).
    #[arg(long, requires = "role_arn")]
    role_session_name: Option<String>,
    /// ExternalId for --role-arn.
    #[arg(long, requires = "role_arn")]
    role_external_id: Option<String>,
    /// Region of the STS endpoint for --role-arn (default: --region).
    #[arg(long, requires = "role_arn")]
    sts_region: Option<String>,
    /// Print the credentials' access key id and expiry to stderr (as
    /// aws-msk-iam-auth's awsDebugCreds), never the secret.
    #[arg(long)]
    debug_creds: bool,
    /// Sign as of this Unix time (seconds) instead of now.
    #[arg(long)]
    at_epoch: Option<u64>,
    /// User-Agent appended to the token (after signing).
    #[arg(long)]
    user_agent: Option<String>,
}

#[derive(Subcommand, Debug)]
enum TopicsCmd {
    /// Create a topic.
    Create {
        name: String,
        #[arg(long, short = 'p', default_value_t = -1)]
        partitions: i32,
        #[arg(long, short = 'r', default_value_t = -1)]
        replication_factor: i16,
        /// Topic config, NAME=VALUE (repeatable).
        #[arg(long = "config", short = 'c', value_name = "NAME=VALUE")]
        configs: Vec<String>,
    },
    /// List topics.
    List {
        /// Include internal topics such as __consumer_offsets.
        #[arg(long)]
        internal: bool,
    },
    /// Show partitions, leaders and non-default configs.
    Describe { name: String },
    /// Set (NAME=VALUE) or delete (NAME) topic configs.
    Alter {
        name: String,
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
        #[arg(long = "delete", value_name = "NAME")]
        delete: Vec<String>,
        /// Grow the topic to this many partitions.
        #[arg(long)]
        partitions: Option<i32>,
    },
    /// Delete topics.
    Delete { names: Vec<String> },
}

#[derive(Subcommand, Debug)]
enum UsersCmd {
    /// Add or replace a user's SCRAM credential. The password is read from
    /// --password, else the SLUICE_USER_PASSWORD variable, else stdin.
    Add {
        user: String,
        #[arg(long, default_value = "SCRAM-SHA-512")]
        mechanism: String,
        #[arg(long, default_value_t = 8192)]
        iterations: u32,
        #[arg(long, env = "SLUICE_USER_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
    /// List users and their SCRAM mechanisms.
    List,
    /// Delete a user's SCRAM credential (both mechanisms unless --mechanism).
    Delete {
        user: String,
        #[arg(long)]
        mechanism: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum GroupsCmd {
    /// List consumer groups.
    List,
    /// Members, assignments and lag per partition.
    Describe { group: String },
}

fn split_kv(s: &str, what: &str) -> anyhow::Result<(String, String)> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| anyhow::anyhow!("{what} expects NAME=VALUE, got `{s}`"))?;
    Ok((k.trim().to_string(), v.trim().to_string()))
}

fn client_config(cli: &Cli) -> anyhow::Result<ClientConfig> {
    let mut props = vec![
        ("bootstrap.servers".to_string(), cli.bootstrap.clone()),
        ("client.id".to_string(), "sluice-cli".to_string()),
    ];
    for p in &cli.properties {
        props.push(split_kv(p, "--property")?);
    }
    Ok(ClientConfig::from_properties(
        props.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )?)
}

async fn topics(cli: &Cli, cmd: &TopicsCmd) -> anyhow::Result<()> {
    let admin = AdminClient::connect(client_config(cli)?).await?;
    match cmd {
        TopicsCmd::Create {
            name,
            partitions,
            replication_factor,
            configs,
        } => {
            let mut t = NewTopic::new(name, *partitions, *replication_factor);
            for c in configs {
                let (k, v) = split_kv(c, "--config")?;
                t = t.config(k, v);
            }
            for (name, r) in admin.create_topics(vec![t], false).await? {
                r?;
                println!("created topic {name}");
            }
        }
        TopicsCmd::List { internal } => {
            for t in admin.list_topics(*internal).await? {
                println!("{}", t.name);
            }
        }
        TopicsCmd::Describe { name } => {
            let t = admin.describe_topics(std::slice::from_ref(name)).await?;
            for t in t {
                println!(
                    "topic {}  id {}  partitions {}{}",
                    t.name,
                    t.id,
                    t.partitions.len(),
                    if t.internal { "  (internal)" } else { "" }
                );
                println!(
                    "{:>10}  {:>7}  {:>6}  {:<12}  {:<12}",
                    "partition", "leader", "epoch", "replicas", "isr"
                );
                for p in &t.partitions {
                    println!(
                        "{:>10}  {:>7}  {:>6}  {:<12}  {:<12}",
                        p.partition,
                        p.leader,
                        p.leader_epoch,
                        format!("{:?}", p.replicas),
                        format!("{:?}", p.isr)
                    );
                }
                let cfg = admin
                    .describe_configs(&ConfigResource::Topic(t.name.clone()))
                    .await?;
                let overrides: Vec<_> = cfg.iter().filter(|c| !c.is_default()).collect();
                if !overrides.is_empty() {
                    println!("configs:");
                    for c in overrides {
                        println!("  {}={}", c.name, c.value.as_deref().unwrap_or(""));
                    }
                }
            }
        }
        TopicsCmd::Alter {
            name,
            set,
            delete,
            partitions,
        } => {
            let mut ops = Vec::new();
            for s in set {
                let (k, v) = split_kv(s, "--set")?;
                ops.push(AlterConfigOp::Set(k, v));
            }
            ops.extend(delete.iter().map(|d| AlterConfigOp::Delete(d.clone())));
            if !ops.is_empty() {
                admin
                    .alter_configs(&ConfigResource::Topic(name.clone()), &ops)
                    .await?;
                println!("altered configs of {name}");
            }
            if let Some(n) = partitions {
                admin.create_partitions(name, *n).await?;
                println!("{name} now has {n} partitions");
            }
        }
        TopicsCmd::Delete { names } => {
            for (name, r) in admin.delete_topics(names).await? {
                r?;
                println!("deleted topic {name}");
            }
        }
    }
    Ok(())
}

async fn groups(cli: &Cli, cmd: &GroupsCmd) -> anyhow::Result<()> {
    let admin = AdminClient::connect(client_config(cli)?).await?;
    match cmd {
        GroupsCmd::List => {
            println!("{:<40}  {:<20}  protocol type", "group", "state");
            for g in admin.list_groups().await? {
                println!("{:<40}  {:<20}  {}", g.group_id, g.state, g.protocol_type);
            }
        }
        GroupsCmd::Describe { group } => {
            for d in admin.describe_groups(std::slice::from_ref(group)).await? {
                println!(
                    "group {}  state {}  protocol {}/{}  members {}",
                    d.group_id,
                    d.state,
                    d.protocol_type,
                    d.protocol,
                    d.members.len()
                );
                for m in &d.members {
                    let parts: Vec<String> = m
                        .assignment
                        .iter()
                        .map(|(t, p)| format!("{t}-{p}"))
                        .collect();
                    println!(
                        "  {}  {}  {}  [{}]",
                        m.member_id,
                        m.client_id,
                        m.host,
                        parts.join(", ")
                    );
                }
            }
            let lag = admin.group_lag(group).await?;
            println!(
                "{:<40}  {:>9}  {:>12}  {:>12}  {:>8}",
                "topic", "partition", "committed", "log end", "lag"
            );
            let mut total = 0;
            for l in &lag {
                total += l.lag;
                println!(
                    "{:<40}  {:>9}  {:>12}  {:>12}  {:>8}",
                    l.topic, l.partition, l.committed, l.log_end, l.lag
                );
            }
            println!("total lag {total}");
        }
    }
    Ok(())
}

async fn users(cli: &Cli, cmd: &UsersCmd) -> anyhow::Result<()> {
    use sluice::admin::ScramCredentialChange;
    let admin = AdminClient::connect(client_config(cli)?).await?;
    let changes = match cmd {
        UsersCmd::List => {
            println!("{:<32}  credentials", "user");
            for u in admin.describe_user_scram_credentials(None).await? {
                let creds: Vec<String> = u
                    .credentials
                    .iter()
                    .map(|(m, i)| format!("{m} (iterations {i})"))
                    .collect();
                println!("{:<32}  {}", u.user, creds.join(", "));
            }
            return Ok(());
        }
        UsersCmd::Add {
            user,
            mechanism,
            iterations,
            password,
        } => {
            let password = match password {
                Some(p) => p.clone(),
                None => {
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line)?;
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            if password.is_empty() {
                anyhow::bail!("empty password");
            }
            vec![ScramCredentialChange::Upsert {
                user: user.clone(),
                mechanism: mechanism.clone(),
                iterations: *iterations,
                password,
            }]
        }
        UsersCmd::Delete { user, mechanism } => match mechanism {
            Some(m) => vec![ScramCredentialChange::Delete {
                user: user.clone(),
                mechanism: m.clone(),
            }],
            None => {
                // Delete what exists: asking for a missing one is an error.
                let existing = admin
                    .describe_user_scram_credentials(Some(std::slice::from_ref(user)))
                    .await?;
                existing
                    .into_iter()
                    .flat_map(|u| u.credentials)
                    .map(|(m, _)| ScramCredentialChange::Delete {
                        user: user.clone(),
                        mechanism: m,
                    })
                    .collect()
            }
        },
    };
    for (user, r) in admin.alter_user_scram_credentials(&changes).await? {
        r.map_err(|e| anyhow::anyhow!("{user}: {e}"))?;
        println!("{user}: done");
    }
    Ok(())
}

fn producer_config(cli: &Cli, extra: &[(&str, String)]) -> anyhow::Result<sluice::ProducerConfig> {
    let mut props = vec![
        ("bootstrap.servers".to_string(), cli.bootstrap.clone()),
        ("client.id".to_string(), "sluice-cli".to_string()),
    ];
    props.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    for p in &cli.properties {
        props.push(split_kv(p, "--property")?);
    }
    Ok(sluice::ProducerConfig::from_properties(
        props.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )?)
}

async fn produce(cli: &Cli, args: &ProduceArgs) -> anyhow::Result<()> {
    use tokio::io::AsyncBufReadExt;
    let mut extra = vec![
        ("acks", args.acks.clone()),
        ("compression.type", args.compression.clone()),
    ];
    if args.acks != "all" && args.acks != "-1" {
        extra.push(("enable.idempotence", "false".to_string()));
    }
    let producer = sluice::Producer::connect(producer_config(cli, &extra)?).await?;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut pending = Vec::new();
    let mut sent = 0u64;
    while let Some(line) = lines.next_line().await? {
        let (key, value) = match &args.key_separator {
            Some(sep) => match line.split_once(sep.as_str()) {
                Some((k, v)) => (Some(k.to_string()), v.to_string()),
                None => (None, line),
            },
            None => (None, line),
        };
        let mut rec = sluice::ProducerRecord::new(args.topic.clone()).value(value.into_bytes());
        if let Some(k) = key {
            rec = rec.key(k.into_bytes());
        }
        if let Some(p) = args.partition {
            rec = rec.partition(p);
        }
        pending.push(producer.enqueue(rec).await?);
        sent += 1;
        if pending.len() >= 10_000 {
            for d in pending.drain(..) {
                d.await?;
            }
        }
    }
    for d in pending {
        d.await?;
    }
    producer.close(std::time::Duration::from_secs(30)).await?;
    eprintln!("sent {sent} records to {}", args.topic);
    Ok(())
}

fn consumer_config(cli: &Cli, extra: &[(&str, String)]) -> anyhow::Result<sluice::ConsumerConfig> {
    let mut props = vec![
        ("bootstrap.servers".to_string(), cli.bootstrap.clone()),
        ("client.id".to_string(), "sluice-cli".to_string()),
    ];
    props.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    for p in &cli.properties {
        props.push(split_kv(p, "--property")?);
    }
    Ok(sluice::ConsumerConfig::from_properties(
        props.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )?)
}

async fn consume(cli: &Cli, args: &ConsumeArgs) -> anyhow::Result<()> {
    use std::io::Write;
    let reset = if args.from_beginning {
        "earliest"
    } else {
        "latest"
    };
    let mut extra = vec![("auto.offset.reset", reset.to_string())];
    if let Some(g) = &args.group {
        extra.push(("group.id", g.clone()));
        // Commit exactly what was printed, not whatever the last poll returned.
        extra.push(("enable.auto.commit", "false".to_string()));
    }
    let mut consumer = sluice::Consumer::connect(consumer_config(cli, &extra)?).await?;
    if args.group.is_some() {
        consumer.subscribe(&[&args.topic])?;
    } else {
        let cluster = consumer.cluster().clone();
        cluster
            .ensure_topics(std::slice::from_ref(&args.topic))
            .await?;
        let t = cluster
            .topic(&args.topic)
            .ok_or_else(|| anyhow::anyhow!("topic {} does not exist", args.topic))?;
        consumer.assign(
            t.partitions
                .iter()
                .map(|p| (args.topic.clone(), p.partition)),
        )?;
        let all: Vec<sluice::TopicPartition> = t
            .partitions
            .iter()
            .map(|p| sluice::TopicPartition::new(args.topic.clone(), p.partition))
            .collect();
        if args.from_beginning {
            consumer.seek_to_beginning(&all)?;
        } else {
            consumer.seek_to_end(&all)?;
        }
    }
    let sep = args.key_separator.replace("\\t", "\t");
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut seen: u64 = 0;
    let mut printed: std::collections::HashMap<sluice::TopicPartition, i64> =
        std::collections::HashMap::new();
    let mut idle_since = std::time::Instant::now();
    loop {
        let records = consumer.poll(std::time::Duration::from_millis(500)).await?;
        if records.is_empty() {
            out.flush()?;
            if args
                .idle_timeout_ms
                .is_some_and(|ms| idle_since.elapsed().as_millis() as u64 >= ms)
            {
                break;
            }
            continue;
        }
        idle_since = std::time::Instant::now();
        for r in records {
            if args.print_key {
                out.write_all(r.key.as_deref().unwrap_or_default())?;
                out.write_all(sep.as_bytes())?;
            }
            out.write_all(r.value.as_deref().unwrap_or_default())?;
            out.write_all(b"\n")?;
            printed.insert(r.topic_partition(), r.offset + 1);
            seen += 1;
            if args.max_messages.is_some_and(|m| seen >= m) {
                break;
            }
        }
        if args.max_messages.is_some_and(|m| seen >= m) {
            break;
        }
    }
    out.flush()?;
    drop(out);
    if args.group.is_some() && !printed.is_empty() {
        consumer.commit_sync_offsets(printed).await?;
    }
    consumer.close().await?;
    Ok(())
}

async fn iam_token(args: &IamTokenArgs) -> anyhow::Result<()> {
    use sluice::net::sasl::msk_iam::{AwsCredentials, MskIamTokenProvider};
    use sluice::net::sasl::TokenProvider;
    // The same aws.* settings a client takes.
    let cfg = ClientConfig {
        aws_region: Some(args.region.clone()),
        aws_profile: args.profile.clone(),
        aws_role_arn: args.role_arn.clone(),
        aws_role_session_name: args.role_session_name.clone(),
        aws_role_external_id: args.role_external_id.clone(),
        aws_sts_region: args.sts_region.clone(),
        ..ClientConfig::default()
    };
    let mut signer = MskIamTokenProvider::from_client_config(&cfg);
    if let (Some(id), Some(secret)) = (&args.access_key_id, &args.secret_access_key) {
        signer = signer.with_credentials(AwsCredentials::new(
            id.clone(),
            secret.clone(),
            args.session_token.clone(),
        ));
    }
    if let Some(s) = args.at_epoch {
        signer = signer.with_clock(std::time::UNIX_EPOCH + std::time::Duration::from_secs(s));
    }
    if let Some(ua) = &args.user_agent {
        signer = signer.with_user_agent(ua.clone());
    }
    if args.debug_creds {
        let c = signer.credentials().await?;
        eprintln!(
            "access_key_id={} session_token={} expires={:?}",
            c.access_key_id,
            c.session_token.is_some(),
            c.expires_at
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs())
        );
    }
    let token = signer.token().await?;
    println!("{}", token.value);
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let r = match &cli.command {
        Command::Topics(c) => topics(&cli, c).await,
        Command::Groups(c) => groups(&cli, c).await,
        Command::Users(c) => users(&cli, c).await,
        Command::Produce(a) => produce(&cli, a).await,
        Command::Consume(a) => consume(&cli, a).await,
        Command::IamToken(a) => iam_token(a).await,
        Command::Perf(c) => perf::run(&cli, c).await,
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice: {e:#}");
            ExitCode::FAILURE
        }
    }
}
