//! `openvpc lab up|restart|status|down`: several hosts as network namespaces on this
//! machine, with a server and an agent per host, and an outside world (a
//! BIRD router and edge nodes), for tests and demos. `lab datacenter
//! connect|disconnect` runs the customer's side of a Site-to-Site VPN
//! connection (strongSwan and BIRD, or FRR) in the lab's datacenter.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use openvpc_lab::{LabPlan, Launch};

#[derive(Debug, Args)]
pub struct LabArgs {
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(Debug, Subcommand)]
enum LabCommand {
    /// Build a lab: N host namespaces on an underlay bridge, a server, and
    /// one agent per host, AZs REGIONa, REGIONb, … spread over the hosts.
    /// With edges, also an outside world: a namespace acting as the
    /// internet's router (BIRD, learning the public pool 203.0.113.0/24
    /// from every edge over BGP and spreading flows over them) with test
    /// servers' address 198.51.100.10, and one namespace per edge node.
    /// And a Hyperplane fleet (hp1, hp2, …) serving NAT gateways.
    /// Writes DIR/endpoint and DIR/credentials for the aws CLI, and
    /// DIR/outside (the outside's namespace), DIR/outside-ip and
    /// DIR/public-pool, then returns, leaving the lab running until `lab
    /// down`.
    Up {
        /// How many hosts.
        #[arg(long, default_value_t = 3)]
        hosts: usize,
        /// How many edge nodes (e1, e2, …); 0 builds no outside world.
        #[arg(long, default_value_t = 2)]
        edges: usize,
        /// How many hyperplane nodes (hp1, hp2, …), each in a namespace on
        /// the underlay; NAT gateways get shards of 2 of them.
        #[arg(long, default_value_t = openvpc_lab::DEFAULT_HYPERPLANE_NODES)]
        hyperplane_nodes: usize,
        /// The hyperplane nodes' NAT idle timeout in seconds (AWS: 350), for
        /// tests of idle expiry.
        #[arg(long, hide = true)]
        nat_idle_timeout: Option<u32>,
        /// The hyperplane nodes' translated ports, FIRST-LAST, for tests of
        /// port exhaustion.
        #[arg(long, hide = true)]
        nat_ports: Option<String>,
        /// The server's flow-log file interval in seconds (AWS: 300), for
        /// tests of flow logs to S3.
        #[arg(long, hide = true)]
        flow_log_publish_secs: Option<u64>,
        /// How many availability zones (at most as many as hosts).
        #[arg(long, default_value_t = 2)]
        azs: usize,
        /// Where the lab keeps its state, logs, endpoint and credentials.
        #[arg(long, default_value = "./openvpc-lab")]
        dir: PathBuf,
        /// The region; its zones are REGIONa, REGIONb, …
        #[arg(long, default_value = "us-east-1")]
        region: String,
        /// Only check for the programs instances need and stop if one is
        /// missing, instead of installing their Debian packages (see
        /// `openvpc up --help`).
        #[arg(long)]
        no_install: bool,
        /// Also a customer's datacenter on the outside (needs edges): a
        /// namespace whose public address (DIR/datacenter-ip, outside the
        /// public pool) is a customer gateway's IP, with a LAN server at
        /// DIR/datacenter-server-ip in DIR/datacenter-prefix; the
        /// namespace's name is in DIR/datacenter-netns. `lab datacenter
        /// connect` runs a VPN connection's customer side there.
        #[arg(long)]
        datacenter: bool,
    },
    /// The datacenter's customer gateway and router (`lab up --datacenter`).
    Datacenter {
        #[command(subcommand)]
        command: DatacenterCommand,
    },
    /// Restart one part of a running lab: `server`, a host ID (h1, …), an
    /// edge ID (e1, …), a hyperplane node ID (hp1, …) or `outside-router`. Instances and their addresses
    /// stay; the agent or edge node resyncs.
    Restart {
        /// `server`, the host ID of an agent, the edge ID of an edge node,
        /// or `outside-router`.
        part: String,
        /// The lab's directory, as given to `lab up`.
        #[arg(long, default_value = "./openvpc-lab")]
        dir: PathBuf,
        /// Stop it with SIGKILL, as a crash would, instead of SIGTERM.
        #[arg(long)]
        kill: bool,
    },
    /// Show each host's dataplane counters (what its agent last wrote to
    /// `status.json` in its state directory, once a second): flows,
    /// frames through TAPs and the underlay, drops by reason, mapping
    /// lookups, frames waiting for a mapping; then each host's instances
    /// whose setup (namespace, TAP, DHCP) is not `ok`, with the reason;
    /// then each edge node's counters (translated packets both ways,
    /// drops by reason) and the outside router's BGP sessions.
    Status {
        /// The lab's directory, as given to `lab up`.
        #[arg(long, default_value = "./openvpc-lab")]
        dir: PathBuf,
        /// Print one JSON object: `hosts` (host ID → that host's status),
        /// `edges` (edge ID → that edge node's status) and `outside_router`
        /// (`birdc show protocols`, one line per session).
        #[arg(long)]
        json: bool,
    },
    /// Take a lab down: stop its processes, remove its instances,
    /// namespaces and links. Also cleans up after a crashed `up`.
    Down {
        /// The lab's directory, as given to `lab up`.
        #[arg(long, default_value = "./openvpc-lab")]
        dir: PathBuf,
    },
}

/// `lab datacenter connect --router`.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum RouterArg {
    Bird,
    Frr,
}

impl From<RouterArg> for openvpc_lab::datacenter::Router {
    fn from(r: RouterArg) -> Self {
        match r {
            RouterArg::Bird => Self::Bird,
            RouterArg::Frr => Self::Frr,
        }
    }
}

#[derive(Debug, Subcommand)]
enum DatacenterCommand {
    /// Read a VPN connection through the API (its customer gateway
    /// configuration: per tunnel the outside address, inside /30, PSK and
    /// ASNs; the attached VPC's CIDRs) and start in the datacenter
    /// strongSwan's charon as its customer gateway, initiating both
    /// tunnels, and unless the connection is static-routes-only BIRD (or
    /// FRR, `--router frr`) as its customer router (eBGP over each tunnel,
    /// announcing the datacenter's prefix). Replaces what an earlier `connect` started.
    Connect {
        /// The lab's directory, as given to `lab up`.
        #[arg(long, default_value = "./openvpc-lab")]
        dir: PathBuf,
        /// The connection (vpn-…), made for the customer gateway at
        /// DIR/datacenter-ip.
        #[arg(long)]
        vpn_connection_id: String,
        /// The API endpoint [default: DIR/endpoint].
        #[arg(long)]
        endpoint: Option<String>,
        /// The shared credentials file [default: DIR/credentials].
        #[arg(long)]
        credentials: Option<PathBuf>,
        /// The profile in it.
        #[arg(long, default_value = "default")]
        profile: String,
        /// The customer router: BIRD 2, or FRR 8 (its bgpd and zebra).
        #[arg(long, value_enum, default_value_t = RouterArg::Bird)]
        router: RouterArg,
    },
    /// Stop the datacenter's customer gateway and router.
    Disconnect {
        /// The lab's directory, as given to `lab up`.
        #[arg(long, default_value = "./openvpc-lab")]
        dir: PathBuf,
    },
}

pub fn run(args: LabArgs) -> anyhow::Result<()> {
    match args.command {
        LabCommand::Up {
            hosts,
            edges,
            hyperplane_nodes,
            nat_idle_timeout,
            nat_ports,
            flow_log_publish_secs,
            azs,
            dir,
            region,
            no_install,
            datacenter,
        } => {
            let mut plan = LabPlan::new(&dir, hosts, azs, &region)?
                .with_edges(edges)?
                .with_hyperplane_nodes(hyperplane_nodes)?;
            if datacenter {
                plan = plan.with_datacenter()?;
            }
            super::agent::ensure_instance_tools(no_install, "lab")?;
            let mut hyperplane_args = Vec::new();
            if let Some(t) = nat_idle_timeout {
                hyperplane_args.extend(["--idle-timeout".to_owned(), t.to_string()]);
            }
            if let Some(p) = nat_ports {
                hyperplane_args.extend(["--ports".to_owned(), p]);
            }
            let launch = Launch {
                exe: std::env::current_exe().context("finding the openvpc binary")?,
                server_args: flow_log_publish_secs
                    .map(|t| vec!["--flow-log-publish-secs".to_owned(), t.to_string()])
                    .unwrap_or_default(),
                agent_args: Default::default(),
                hyperplane_args,
            };
            let state = openvpc_lab::up(&dir, plan, &launch, |step| eprintln!("lab: {step}"))
                .with_context(|| {
                    format!(
                        "building the lab in {0}; `openvpc lab down --dir {0}` removes what was made",
                        dir.display()
                    )
                })?;
            let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
            println!("AWS_ENDPOINT_URL={}", state.endpoint.unwrap_or_default());
            println!(
                "AWS_SHARED_CREDENTIALS_FILE={}",
                dir.join("credentials").display()
            );
            println!("AWS_DEFAULT_REGION={region}");
            eprintln!(
                "lab: ready; export the lines above, then e.g. `aws ec2 describe-availability-zones`; \
                 `openvpc lab down --dir {}` removes it",
                dir.display()
            );
            Ok(())
        }
        LabCommand::Restart { part, dir, kill } => {
            openvpc_lab::restart(&dir, &part, kill)?;
            eprintln!("lab: {part} restarted");
            Ok(())
        }
        LabCommand::Status { dir, json } => status(&dir, json),
        LabCommand::Datacenter {
            command:
                DatacenterCommand::Connect {
                    dir,
                    vpn_connection_id,
                    endpoint,
                    credentials,
                    profile,
                    router,
                },
        } => datacenter_connect(
            &dir,
            &vpn_connection_id,
            endpoint,
            credentials,
            &profile,
            router.into(),
        ),
        LabCommand::Datacenter {
            command: DatacenterCommand::Disconnect { dir },
        } => {
            if !openvpc_lab::datacenter::disconnect(&dir, |step| eprintln!("lab: {step}"))? {
                eprintln!("lab: the datacenter's gateway and router were not running");
            }
            Ok(())
        }
        LabCommand::Down { dir } => {
            openvpc_lab::down(
                &dir,
                |state_dir| {
                    if let Err(e) = openvpc_agent::remove_instances(state_dir) {
                        eprintln!(
                            "lab: removing the instances of {}: {e}",
                            state_dir.display()
                        );
                    }
                },
                |step| eprintln!("lab: {step}"),
            )?;
            Ok(())
        }
    }
}

/// `lab datacenter connect`: the connection through the API, then the
/// customer gateway and router in the datacenter.
fn datacenter_connect(
    dir: &Path,
    id: &str,
    endpoint: Option<String>,
    credentials: Option<PathBuf>,
    profile: &str,
    router: openvpc_lab::datacenter::Router,
) -> anyhow::Result<()> {
    use openvpc_control::client::{Client, ClientError};
    use openvpc_lab::datacenter::{Connection, all_inner, unescape};

    let state = openvpc_lab::load(dir)?;
    let plan = state
        .plan
        .with_context(|| format!("{} holds no plan: was `lab up` interrupted?", dir.display()))?;
    let endpoint = match endpoint {
        Some(e) => e,
        None => std::fs::read_to_string(dir.join("endpoint"))
            .map(|e| e.trim().to_owned())
            .with_context(|| {
                format!(
                    "reading {}: give --endpoint, or wait until `lab up` is done",
                    dir.join("endpoint").display()
                )
            })?,
    };
    let path = credentials.unwrap_or_else(|| dir.join("credentials"));
    let ini = ini::Ini::load_from_file(&path)
        .with_context(|| format!("reading the credentials file {}", path.display()))?;
    let section = ini.section(Some(profile)).with_context(|| {
        format!(
            "the credentials file {} has no profile [{profile}]",
            path.display()
        )
    })?;
    let (Some(key), Some(secret)) = (
        section.get("aws_access_key_id"),
        section.get("aws_secret_access_key"),
    ) else {
        anyhow::bail!(
            "profile [{profile}] of {} lacks aws_access_key_id or aws_secret_access_key",
            path.display()
        );
    };
    let client = Client::new(&endpoint, key, secret, &plan.region);
    let call = |action: &str, params: &[(&str, &str)]| -> anyhow::Result<String> {
        match client.call(action, params) {
            Ok(xml) => Ok(xml),
            Err(ClientError::Api(e)) => anyhow::bail!("{action}: {}: {}", e.code, e.message),
            Err(e) => Err(e.into()),
        }
    };
    let xml = call("DescribeVpnConnections", &[("VpnConnectionId.1", id)])?;
    let mut connection = Connection::from_describe(&xml, id)?;
    // The VPC side's prefixes, for the tunnels' remote traffic selectors:
    // the CIDRs of the VPC the VPN gateway is attached to (none known:
    // 0.0.0.0/0, as AWS's sample configuration).
    if let Some(vgw) = connection
        .vpn_gateway_id
        .clone()
        .filter(|g| g.starts_with("vgw-"))
    {
        let xml = call("DescribeVpnGateways", &[("VpnGatewayId.1", &vgw)])?;
        let vpcs: Vec<String> = all_inner(&xml, "item")
            .into_iter()
            .filter(|item| item.contains("<state>attached</state>"))
            .filter_map(|item| all_inner(item, "vpcId").first().map(|v| unescape(v)))
            .collect();
        for vpc in vpcs {
            let xml = call("DescribeVpcs", &[("VpcId.1", &vpc)])?;
            for cidr in all_inner(&xml, "cidrBlock") {
                let cidr = unescape(cidr);
                if !connection.remote_prefixes.contains(&cidr) {
                    connection.remote_prefixes.push(cidr);
                }
            }
        }
    }
    openvpc_lab::datacenter::connect(dir, &connection, router, |step| eprintln!("lab: {step}"))
        .with_context(|| {
            format!(
                "connecting the datacenter to {id}; `openvpc lab datacenter disconnect --dir {}` stops what was started",
                dir.display()
            )
        })?;
    eprintln!(
        "lab: {id}'s customer side runs; `openvpc lab status --dir {}` shows its tunnels{}",
        dir.display(),
        if connection.has_bgp() {
            " and BGP sessions"
        } else {
            ""
        }
    );
    Ok(())
}

/// The VPN tunnels the edges serve (their `status.json`'s `vpn`): IPsec
/// and BGP, the routes learned, packets each way, and why one is down.
fn print_vpn_tunnels(edges: &serde_json::Map<String, serde_json::Value>) {
    let tunnels: Vec<(&String, &serde_json::Value)> = edges
        .iter()
        .flat_map(|(edge, v)| {
            v.pointer("/vpn/tunnels")
                .and_then(serde_json::Value::as_array)
                .into_iter()
                .flatten()
                .map(move |t| (edge, t))
        })
        .collect();
    if tunnels.is_empty() {
        return;
    }
    println!(
        "\n{:<6} {:<22} {:<15} {:>5} {:>11} {:>8} {:>10} {:>10}  why down",
        "edge", "vpn connection", "tunnel", "ipsec", "bgp", "routes", "in", "out"
    );
    let text = |t: &serde_json::Value, k: &str| {
        t.get(k)
            .and_then(serde_json::Value::as_str)
            .unwrap_or("-")
            .to_owned()
    };
    for (edge, t) in tunnels {
        let up = |k: &str| {
            if t.get(k).and_then(serde_json::Value::as_bool) == Some(true) {
                "up"
            } else {
                "down"
            }
        };
        println!(
            "{edge:<6} {:<22} {:<15} {:>5} {:>11} {:>8} {:>10} {:>10}  {}",
            text(t, "vpn_connection_id"),
            text(t, "outside_ip"),
            up("ipsec_up"),
            t.get("bgp_state")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("static"),
            t.get("routes")
                .and_then(serde_json::Value::as_array)
                .map_or(0, Vec::len),
            n(t, &["packets_in"]),
            n(t, &["packets_out"]),
            text(t, "status_message"),
        );
    }
}

/// `lab status`: each host's and each edge node's last `status.json`, and
/// the outside router's BGP sessions, as tables or as JSON.
fn status(dir: &Path, json: bool) -> anyhow::Result<()> {
    let state = openvpc_lab::load(dir)?;
    let plan = state
        .plan
        .with_context(|| format!("{} holds no plan: was `lab up` interrupted?", dir.display()))?;
    let read = |path: PathBuf| -> anyhow::Result<serde_json::Value> {
        match std::fs::read(&path) {
            Ok(text) => {
                serde_json::from_slice(&text).with_context(|| format!("reading {}", path.display()))
            }
            // Not written yet (the process is starting) or gone.
            Err(e) => Ok(serde_json::json!({ "error": format!("{}: {e}", path.display()) })),
        }
    };
    let mut all = serde_json::Map::new();
    for host in &plan.hosts {
        let path = openvpc_lab::host_dir(dir, &host.host_id).join(openvpc_agent::STATUS_FILE);
        all.insert(host.host_id.clone(), read(path)?);
    }
    let mut edges = serde_json::Map::new();
    for edge in &plan.edges {
        let path = openvpc_lab::edge_dir(dir, &edge.edge_id).join(openvpc_edge::node::STATUS_FILE);
        edges.insert(edge.edge_id.clone(), read(path)?);
    }
    let mut hyperplane = serde_json::Map::new();
    for node in &plan.hyperplane {
        let path = openvpc_lab::hyperplane_dir(dir, &node.node_id)
            .join(openvpc_hyperplane::node::STATUS_FILE);
        hyperplane.insert(node.node_id.clone(), read(path)?);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let processes: Vec<serde_json::Value> = state
        .processes
        .iter()
        .map(|p| {
            serde_json::json!({
                "name": p.part,
                "role": openvpc_lab::role_of(&p.part, Some(&plan)),
                "pid": p.pid,
                "running": openvpc_lab::process_alive(p.pid),
                "log": p.log,
            })
        })
        .collect();
    let nat_gateways = nat_shards(&hyperplane, &state.processes, now);
    let load_balancers = lb_shards(&hyperplane, &state.processes, now);
    let sessions = plan.outside.as_ref().map(|_| bgp_sessions(dir));
    let datacenter = openvpc_lab::datacenter::status(dir)?;
    if json {
        let sessions = sessions.map(|s| match s {
            Ok(lines) => serde_json::json!(lines),
            Err(e) => serde_json::json!({ "error": e }),
        });
        let out = serde_json::json!({
            "processes": processes,
            "hosts": all,
            "edges": edges,
            "hyperplane": hyperplane,
            "nat_gateways": nat_gateways,
            "load_balancers": load_balancers,
            "outside_router": sessions,
            "datacenter": datacenter.as_ref().map(|d| serde_json::json!({
                "netns": d.netns,
                "public_ip": d.public_ip,
                "server_ip": d.server_ip,
                "prefix": d.prefix,
                "gateway": { "pid": d.gateway_pid, "running": d.gateway_running },
                "router": {
                    "program": d.router,
                    "pid": d.router_pid,
                    "running": d.router_running,
                    "zebra": d.zebra_pid.map(|pid| serde_json::json!({ "pid": pid, "running": d.zebra_running })),
                },
                "sas": match &d.sas { Ok(t) => serde_json::json!(t), Err(e) => serde_json::json!({ "error": e }) },
                "protocols": d.protocols.as_ref().map(|p| match p {
                    Ok(t) => serde_json::json!(t),
                    Err(e) => serde_json::json!({ "error": e }),
                }),
            })),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "{:<6} {:>4} {:>6} {:>10} {:>10} {:>10} {:>10} {:>9} {:>7}  drops",
        "host", "age", "flows", "tap rx", "tap tx", "ul rx", "ul tx", "coalesced", "waiting"
    );
    for (host, v) in &all {
        if let Some(e) = v.get("error").and_then(serde_json::Value::as_str) {
            println!("{host:<6} {e}");
            continue;
        }
        println!(
            "{host:<6} {:>3}s {:>6} {:>10} {:>10} {:>10} {:>10} {:>9} {:>7}  {}",
            now.saturating_sub(n(v, &["unix_time"])),
            n(v, &["flows"]),
            n(v, &["io", "tap_rx"]),
            n(v, &["io", "tap_tx"]),
            n(v, &["io", "underlay_rx"]),
            n(v, &["io", "underlay_tx"]),
            n(v, &["io", "tap_coalesced_writes"]),
            n(v, &["pending"]),
            drops(v)
        );
    }
    // Instances whose setup is not done or failed, with the agent's reason.
    let mut header = false;
    for (host, v) in &all {
        let Some(instances) = v.get("instances").and_then(serde_json::Value::as_object) else {
            continue;
        };
        for (id, h) in instances {
            let setup = h
                .get("setup")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("unknown");
            if setup == "ok" {
                continue;
            }
            if !header {
                println!("\ninstances not ok:");
                header = true;
            }
            let reason = h.get("reason").and_then(serde_json::Value::as_str);
            println!(
                "{host:<6} {id} {setup}{}",
                reason.map(|r| format!(": {r}")).unwrap_or_default()
            );
        }
    }
    if !edges.is_empty() {
        println!(
            "\n{:<6} {:>4} {:>6} {:>9} {:>10} {:>10} {:>10} {:>10}  drops",
            "edge", "age", "held", "synced", "outbound", "inbound", "ul rx", "uplink rx"
        );
    }
    for (edge, v) in &edges {
        if let Some(e) = v.get("error").and_then(serde_json::Value::as_str) {
            println!("{edge:<6} {e}");
            continue;
        }
        let synced = v.get("synced").and_then(serde_json::Value::as_bool) == Some(true);
        println!(
            "{edge:<6} {:>3}s {:>6} {:>9} {:>10} {:>10} {:>10} {:>10}  {}",
            now.saturating_sub(n(v, &["unix_time"])),
            n(v, &["table"]),
            if synced { "yes" } else { "no" },
            n(v, &["translated", "outbound"]),
            n(v, &["translated", "inbound"]),
            n(v, &["io", "underlay_rx"]),
            n(v, &["io", "uplink_rx"]),
            drops(v)
        );
    }
    print_vpn_tunnels(&edges);
    if !hyperplane.is_empty() {
        println!(
            "\n{:<6} {:>4} {:>8} {:>10} {:>10} {:>8} {:>9}  drops",
            "node", "age", "gateways", "geneve rx", "geneve tx", "records", "forwarded"
        );
    }
    for (node, v) in &hyperplane {
        if let Some(e) = v.get("error").and_then(serde_json::Value::as_str) {
            println!("{node:<6} {e}");
            continue;
        }
        let gateways = v
            .get("gateways")
            .and_then(serde_json::Value::as_array)
            .map_or(0, Vec::len);
        println!(
            "{node:<6} {:>3}s {:>8} {:>10} {:>10} {:>8} {:>9}  {}",
            now.saturating_sub(n(v, &["unix_time"])),
            gateways,
            n(v, &["io", "geneve_rx"]),
            n(v, &["io", "geneve_tx"]),
            n(v, &["replication", "records_sent"]),
            n(v, &["replication", "forwarded"]),
            drops(v)
        );
    }
    print!(
        "{}",
        shard_table(
            "nat gateway",
            22,
            &nat_gateways,
            &[
                ("active", 7, "active_connection_count"),
                ("attempts", 8, "connection_attempt_count"),
                ("port errs", 9, "error_port_allocation"),
                ("idle", 8, "idle_timeout_count"),
                ("dropped", 8, "packets_drop_count"),
            ],
        )
    );
    print!(
        "{}",
        shard_table(
            "load balancer",
            18,
            &load_balancers,
            &[
                ("active", 7, "active_flow_count"),
                ("new flows", 9, "new_flow_count"),
                ("bytes", 12, "processed_bytes"),
                ("resets", 8, "tcp_target_reset_count"),
                ("dropped", 8, "packets_drop_count"),
            ],
        )
    );
    println!("\nprocesses:");
    for p in &processes {
        println!(
            "  {:<15} {:<11} pid {:<8} {}",
            p["name"].as_str().unwrap_or(""),
            p["role"].as_str().unwrap_or("?"),
            p["pid"],
            if p["running"] == true {
                "running"
            } else {
                "not running"
            }
        );
    }
    match sessions {
        Some(Ok(lines)) => {
            println!("\noutside router (birdc show protocols):");
            for line in lines {
                println!("  {line}");
            }
        }
        Some(Err(e)) => println!("\noutside router: {e}"),
        None => {}
    }
    if let Some(d) = datacenter {
        let running = |pid: Option<u32>, running: bool| match (pid, running) {
            (None, _) => "not started".to_owned(),
            (Some(pid), true) => format!("pid {pid}, running"),
            (Some(pid), false) => format!("pid {pid}, not running"),
        };
        println!(
            "\ndatacenter {} at {} (server {}, network {}):",
            d.netns, d.public_ip, d.server_ip, d.prefix
        );
        println!(
            "  customer gateway (strongSwan): {}",
            running(d.gateway_pid, d.gateway_running)
        );
        match &d.sas {
            Ok(text) => text.lines().for_each(|l| println!("    {l}")),
            Err(e) => println!("    {e}"),
        }
        println!(
            "  customer router ({}): {}",
            d.router.name(),
            running(d.router_pid, d.router_running)
        );
        if d.zebra_pid.is_some() {
            println!(
                "  its zebra (FRR): {}",
                running(d.zebra_pid, d.zebra_running)
            );
        }
        match &d.protocols {
            Some(Ok(text)) => text
                .lines()
                .skip_while(|l| l.starts_with("BIRD "))
                .for_each(|l| println!("    {l}")),
            Some(Err(e)) => println!("    {e}"),
            None => {}
        }
    }
    Ok(())
}

/// Each NAT gateway the live hyperplane nodes serve: its shard's nodes
/// (place, node, pid) and AWS's metrics summed over them.
fn nat_shards(
    hyperplane: &serde_json::Map<String, serde_json::Value>,
    processes: &[openvpc_lab::LabProcess],
    now: u64,
) -> serde_json::Value {
    const SUMMED: [&str; 6] = [
        "active_connection_count",
        "connection_attempt_count",
        "connection_established_count",
        "error_port_allocation",
        "idle_timeout_count",
        "packets_drop_count",
    ];
    shards_of(
        hyperplane,
        processes,
        now,
        "gateways",
        "nat_gateway_id",
        &SUMMED,
    )
}

/// Each load balancer the live hyperplane nodes serve: its shard's nodes
/// and AWS's NLB metrics summed over them.
fn lb_shards(
    hyperplane: &serde_json::Map<String, serde_json::Value>,
    processes: &[openvpc_lab::LabProcess],
    now: u64,
) -> serde_json::Value {
    const SUMMED: [&str; 5] = [
        "active_flow_count",
        "new_flow_count",
        "processed_bytes",
        "tcp_target_reset_count",
        "packets_drop_count",
    ];
    shards_of(
        hyperplane,
        processes,
        now,
        "load_balancers",
        "load_balancer_id",
        &SUMMED,
    )
}

/// The entries of list `list` in the live nodes' status files, by `id_key`:
/// the nodes that serve each (place, node, pid, places served) and the
/// `summed` counters added up.
fn shards_of(
    hyperplane: &serde_json::Map<String, serde_json::Value>,
    processes: &[openvpc_lab::LabProcess],
    now: u64,
    list: &str,
    id_key: &str,
    summed: &[&str],
) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for (node, v) in hyperplane {
        let pid = processes.iter().find(|p| &p.part == node).map(|p| p.pid);
        // A status file older than a few seconds is a dead node's.
        if pid.is_none_or(|p| !openvpc_lab::process_alive(p))
            || now.saturating_sub(n(v, &["unix_time"])) > 3
        {
            continue;
        }
        for g in v[list].as_array().into_iter().flatten() {
            let Some(id) = g[id_key].as_str() else {
                continue;
            };
            let entry = out.entry(id.to_owned()).or_insert_with(|| {
                let mut e = serde_json::Map::new();
                e.insert("nodes".into(), serde_json::json!([]));
                for k in summed {
                    e.insert((*k).into(), 0.into());
                }
                serde_json::Value::Object(e)
            });
            if let Some(nodes) = entry["nodes"].as_array_mut() {
                nodes.push(serde_json::json!({
                    "place": g["place"],
                    "node": node,
                    "pid": pid,
                    "serves_places": g["serves_places"],
                }));
            }
            for k in summed {
                entry[*k] = (n(entry, &[k]) + n(g, &[k])).into();
            }
        }
    }
    serde_json::Value::Object(out)
}

/// The table of what [`shards_of`] found (NAT gateways, load balancers),
/// after a blank line: one row per `kind` with its id (`id_width` wide),
/// its shard as `place:node`s and each column's (heading, width, summed
/// counter); empty when there are none.
fn shard_table(
    kind: &str,
    id_width: usize,
    shards: &serde_json::Value,
    columns: &[(&str, usize, &str)],
) -> String {
    let Some(shards) = shards.as_object().filter(|s| !s.is_empty()) else {
        return String::new();
    };
    let mut out = format!("\n{kind:<id_width$} {:<24}", "shard (place:node)");
    for (heading, width, _) in columns {
        out += &format!(" {heading:>width$}");
    }
    out.push('\n');
    for (id, s) in shards {
        let shard: Vec<String> = s["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| format!("{}:{}", m["place"], m["node"].as_str().unwrap_or("?")))
            .collect();
        out += &format!("{id:<id_width$} {:<24}", shard.join(" "));
        for (_, width, counter) in columns {
            out += &format!(" {:>width$}", n(s, &[counter]));
        }
        out.push('\n');
    }
    out
}

/// A counter at `path` in a status file, 0 when absent.
fn n(v: &serde_json::Value, path: &[&str]) -> u64 {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0)
}

/// A status file's non-zero drops as `reason=count …`, or `-`.
fn drops(v: &serde_json::Value) -> String {
    let drops: Vec<String> = v
        .get("drops")
        .and_then(serde_json::Value::as_object)
        .map(|m| {
            m.iter()
                .filter(|(_, c)| c.as_u64().unwrap_or(0) > 0)
                .map(|(k, c)| format!("{k}={}", c.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    if drops.is_empty() {
        "-".to_owned()
    } else {
        drops.join(" ")
    }
}

/// The outside router's protocols as `birdc show protocols` lists them
/// (one line per BGP session, with its state), or why they cannot be read.
fn bgp_sessions(dir: &Path) -> Result<Vec<String>, String> {
    let socket = openvpc_lab::router_socket(dir);
    let out = std::process::Command::new("birdc")
        .arg("-s")
        .arg(&socket)
        .args(["show", "protocols"])
        .output()
        .map_err(|e| format!("running birdc: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "birdc -s {}: {}{}",
            socket.display(),
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    // The first line is BIRD's banner; the rest is the table.
    Ok(text
        .lines()
        .skip_while(|l| l.starts_with("BIRD "))
        .map(str::to_owned)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    // `lab status` prints NAT gateways and load balancers in one layout:
    // the id, the shard's `place:node`s, then the counters right-aligned.
    #[test]
    fn lab_status_shard_table_lines_up_ids_shards_and_counters() {
        let lbs = serde_json::json!({
            "net/web/00a1": {
                "nodes": [{"place": 0, "node": "hp1"}, {"place": 1, "node": "hp2"}],
                "active_flow_count": 3,
                "processed_bytes": 123_456,
            }
        });
        let columns = [
            ("active", 7, "active_flow_count"),
            ("bytes", 12, "processed_bytes"),
        ];
        assert_eq!(
            shard_table("load balancer", 18, &lbs, &columns),
            format!(
                "\n{:<18} {:<24} {:>7} {:>12}\n{:<18} {:<24} {:>7} {:>12}\n",
                "load balancer",
                "shard (place:node)",
                "active",
                "bytes",
                "net/web/00a1",
                "0:hp1 1:hp2",
                3,
                123_456
            )
        );
        assert_eq!(
            shard_table("nat gateway", 22, &serde_json::json!({}), &columns),
            ""
        );
    }
}
