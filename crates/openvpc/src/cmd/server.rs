//! `openvpc server` and `openvpc accounts`: the regional API on its store (the
//! embedded redb file, or an etcd cluster several servers share), and the
//! accounts that may use it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use openvpc_control::account::{self, Account};
use openvpc_control::fleet;
use openvpc_control::server::{ApiState, serve};
use openvpc_store::{EtcdStore, RedbStore, Store};

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address to serve the EC2 API on.
    #[arg(long, default_value = "127.0.0.1:8773")]
    listen: SocketAddr,
    /// Where the store and the credentials file live.
    #[arg(long, default_value = "./openvpc-data")]
    data_dir: PathBuf,
    /// The store: `etcd://host:port[,host:port...]` for an etcd cluster that
    /// several servers share; by default the embedded store in --data-dir.
    #[arg(long)]
    store: Option<String>,
    /// The region clients should name (requests carry theirs in the signature).
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// For running moto's test suite only: accept any well-formed signature
    /// as account 123456789012 and serve `POST /moto-api/reset`, which
    /// deletes every resource. Never on a server anyone else can reach.
    #[arg(long)]
    moto_compat: bool,
    /// The region's public IPv4 pool: where Elastic IPs and auto-assigned
    /// public addresses come from, and what the edge nodes announce over
    /// BGP. Repeat it (or separate with commas) for several ranges. Kept in
    /// the store, so a restart without it keeps the last one; a region
    /// never given one uses 198.51.100.0/24 and 203.0.113.0/24 (RFC 5737
    /// documentation ranges).
    #[arg(long, value_name = "CIDR", value_delimiter = ',')]
    public_pool: Vec<ipnet::Ipv4Net>,
    /// Flow logs to S3: a file is published once its oldest record is this
    /// old (AWS: 5 minutes). Files go under --data-dir/s3/<bucket>/.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    flow_log_publish_secs: u64,
    /// Flow logs to S3: a file is cut at this many bytes of records (AWS:
    /// 75 MB).
    #[arg(long, value_name = "BYTES", default_value_t = 75_000_000)]
    flow_log_max_bytes: usize,
}

#[derive(Debug, Args)]
pub struct AccountsArgs {
    #[command(subcommand)]
    command: AccountsCommand,
}

#[derive(Debug, Subcommand)]
enum AccountsCommand {
    /// Create an account with its own keys, added to the credentials file as
    /// profile NAME. Run it while the server is stopped.
    Create {
        name: String,
        #[arg(long, default_value = "./openvpc-data")]
        data_dir: PathBuf,
        /// The server's --store, if it has one.
        #[arg(long)]
        store: Option<String>,
    },
}

/// The etcd store `url` names, or else the redb file in `data_dir` (which is
/// made either way: the credentials file lives there).
fn open_store(data_dir: &Path, url: Option<&str>) -> anyhow::Result<Arc<dyn Store>> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    if let Some(url) = url {
        let store = EtcdStore::open_url(url)
            .with_context(|| format!("opening the etcd store {url}: is etcd running there?"))?;
        return Ok(Arc::new(store));
    }
    let path = data_dir.join("store.redb");
    let store = RedbStore::open(&path).with_context(|| {
        format!(
            "opening the store {}: if an openvpc server is running on this data directory, stop it first",
            path.display()
        )
    })?;
    Ok(Arc::new(store))
}

fn credentials_path(data_dir: &Path) -> PathBuf {
    data_dir.join("credentials")
}

/// Adds a profile to the credentials file, creating it owner-readable only.
fn append_credentials(data_dir: &Path, profile: &str, account: &Account) -> anyhow::Result<()> {
    use std::io::Write;
    let path = credentials_path(data_dir);
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    writeln!(file, "{}", account.credentials_ini(profile))?;
    Ok(())
}

/// A region ready to serve: its store, its state, and the credentials file.
pub struct Region {
    pub state: ApiState,
    pub credentials: PathBuf,
    pub token: String,
}

/// Opens the store, makes the admin account on first start, and starts
/// the agent API (its token is written to `data_dir/agent-token`).
pub fn open_region(
    data_dir: &Path,
    store_url: Option<&str>,
    region: &str,
    moto_compat: bool,
    public_pool: &[ipnet::Ipv4Net],
    delivery: fleet::DeliveryConfig,
) -> anyhow::Result<Region> {
    let store = open_store(data_dir, store_url)?;
    if account::list(&*store)?.is_empty() {
        let admin = Account::generate("admin", None);
        account::create(&*store, &admin)?;
        append_credentials(data_dir, "default", &admin)?;
        eprintln!(
            "created the admin account {} (keys in the credentials file)",
            admin.id
        );
    }
    let internet = openvpc_control::moto_compat::internet_policy(moto_compat);
    let settings = fleet::nodes::configure_region(
        &*store,
        region,
        (!public_pool.is_empty()).then_some(public_pool),
        internet,
    )
    .context("writing the region's settings")?;
    tracing::info!(pool = ?settings.public_pool, "the region's public pool");
    let moto_compat = openvpc_control::moto_compat::setup(&*store, moto_compat)?;
    let token = fleet::agent_token(store.as_ref()).context("reading the agent token")?;
    let agent = fleet::start_with(Arc::clone(&store), region, data_dir, delivery)
        .context("starting the agent API")?;
    let credentials = std::fs::canonicalize(credentials_path(data_dir))
        .unwrap_or_else(|_| credentials_path(data_dir));
    Ok(Region {
        state: ApiState {
            store,
            moto_compat,
            agent: Some(agent),
        },
        credentials,
        token,
    })
}

/// Binds `listen` and prints the three lines a client exports.
pub async fn bind_and_announce(
    listen: SocketAddr,
    region: &Region,
    region_name: &str,
) -> anyhow::Result<(tokio::net::TcpListener, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}: is another server using it?"))?;
    let local = listener.local_addr()?;
    println!("AWS_ENDPOINT_URL=http://{local}");
    println!(
        "AWS_SHARED_CREDENTIALS_FILE={}",
        region.credentials.display()
    );
    println!("AWS_DEFAULT_REGION={region_name}");
    Ok((listener, local))
}

pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    let region = open_region(
        &args.data_dir,
        args.store.as_deref(),
        &args.region,
        args.moto_compat,
        &args.public_pool,
        fleet::DeliveryConfig {
            publish_every_secs: args.flow_log_publish_secs,
            max_bytes: args.flow_log_max_bytes,
        },
    )?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let result = runtime.block_on(async move {
        let (listener, _) = bind_and_announce(args.listen, &region, &args.region).await?;
        let server = ApiServer::start(listener, region.state);
        server.run_until(tokio::signal::ctrl_c()).await
    });
    // Agents' long polls may still be open: they reconnect to the next server.
    runtime.shutdown_timeout(Duration::from_millis(200));
    result
}

/// The API served on a task, stopped on request.
pub struct ApiServer {
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    shutdown: tokio::sync::oneshot::Sender<()>,
}

/// How long a stopping server waits for requests in flight. Agents' watch
/// requests wait up to 25 s for a change, so they are cut, not awaited.
const STOP_GRACE: Duration = Duration::from_secs(2);

impl ApiServer {
    pub fn start(listener: tokio::net::TcpListener, state: ApiState) -> ApiServer {
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, state, async {
            let _ = stopped.await;
        }));
        ApiServer { task, shutdown }
    }

    /// Serves until `stop` completes (or the server fails), then stops.
    pub async fn run_until(mut self, stop: impl Future<Output = impl Sized>) -> anyhow::Result<()> {
        tokio::select! {
            result = &mut self.task => return finished(result),
            _ = stop => {}
        }
        self.stop().await
    }

    /// Stops taking requests and waits [`STOP_GRACE`] for those in flight.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(());
        match tokio::time::timeout(STOP_GRACE, self.task).await {
            Ok(result) => finished(result),
            Err(_) => Ok(()),
        }
    }
}

fn finished(result: Result<std::io::Result<()>, tokio::task::JoinError>) -> anyhow::Result<()> {
    result
        .context("the API server task failed")?
        .context("serving the API")
}

pub fn accounts(args: AccountsArgs) -> anyhow::Result<()> {
    match args.command {
        AccountsCommand::Create {
            name,
            data_dir,
            store,
        } => {
            let store = open_store(&data_dir, store.as_deref())?;
            let account = Account::generate(&name, None);
            account::create(&*store, &account)?;
            append_credentials(&data_dir, &name, &account)?;
            println!("{}", account.id);
            eprintln!(
                "account {} ({name}) created; its keys are profile [{name}] in {}",
                account.id,
                credentials_path(&data_dir).display()
            );
            Ok(())
        }
    }
}
