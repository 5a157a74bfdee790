//! What the VPN lab tests share (issue 19): the datacenter's files and
//! commands (`openvpc lab datacenter`), its charon's SAs and BIRD's
//! sessions, a VPN connection made with the aws CLI, and a poll helper.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::lab::{Instance, Lab, OPENVPC};

pub const CHARON: &str = "/usr/lib/ipsec/charon";

/// The customer gateway's BGP ASN in these tests.
pub const CUSTOMER_ASN: &str = "65000";

/// What only the VPN tests ask of a lab.
impl Lab {
    pub fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name))
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|e| panic!("DIR/{name}: {e}"))
    }

    /// Runs `cmd` in the datacenter's namespace.
    pub fn in_datacenter(&self, cmd: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.file("datacenter-netns")])
            .args(cmd)
            .output()
            .unwrap()
    }

    /// `openvpc lab datacenter ARGS --dir DIR`: (success, stderr).
    pub fn datacenter(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(OPENVPC)
            .args(["lab", "datacenter"])
            .args(args)
            .arg("--dir")
            .arg(self.dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        eprint!("{stderr}");
        (out.status.success(), stderr)
    }

    pub fn charon_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("datacenter/charon.log")).unwrap_or_default()
    }

    /// `swanctl --list-sas` against the datacenter's charon.
    pub fn sas(&self) -> String {
        let uri = format!(
            "unix://{}",
            self.dir.path().join("datacenter/charon.vici").display()
        );
        let out = Command::new("swanctl")
            .args(["--list-sas", "--uri", &uri])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `birdc show protocols` against the datacenter's BIRD.
    pub fn dc_protocols(&self) -> String {
        let out = Command::new("birdc")
            .arg("-s")
            .arg(self.dir.path().join("datacenter/bird.ctl"))
            .args(["show", "protocols"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn process_running(&self, part: &str) -> bool {
        self.lab_json()["processes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["part"] == part)
            .and_then(|p| p["pid"].as_u64())
            .is_some_and(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
            })
    }

    /// A VPN connection of `cgw` and `vgw`: its ID, its tunnels' outside
    /// addresses and its pre-shared keys.
    pub fn vpn_connection(
        &self,
        cgw: &str,
        vgw: &str,
        static_routes: bool,
    ) -> (String, Vec<String>, Vec<String>) {
        let mut args = vec![
            "create-vpn-connection",
            "--type",
            "ipsec.1",
            "--customer-gateway-id",
            cgw,
            "--vpn-gateway-id",
            vgw,
        ];
        if static_routes {
            args.extend(["--options", "StaticRoutesOnly=true"]);
        }
        let v = self.ec2(&args);
        let c = &v["VpnConnection"];
        let tunnels = c["Options"]["TunnelOptions"].as_array().unwrap();
        assert_eq!(tunnels.len(), 2, "spec 10.2: two tunnels: {c}");
        let field = |name: &str| -> Vec<String> {
            tunnels
                .iter()
                .map(|t| t[name].as_str().unwrap().to_owned())
                .collect()
        };
        (
            c["VpnConnectionId"].as_str().unwrap().to_owned(),
            field("OutsideIpAddress"),
            field("PreSharedKey"),
        )
    }
}

/// Polls `check` every 300 ms for up to `secs`, panicking with `what`.
pub fn within(secs: u64, what: &str, mut check: impl FnMut() -> Option<String>) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let Some(why) = check() else {
            return;
        };
        assert!(Instant::now() < deadline, "{what} within {secs} s: {why}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

pub fn strongswan_missing() -> bool {
    if Path::new(CHARON).exists() && Command::new("swanctl").arg("--version").output().is_ok() {
        return false;
    }
    assert!(
        std::env::var_os("OPENVPC_REQUIRE_TOOLS").is_none(),
        "{CHARON} or swanctl is missing: scripts/test installs strongSwan"
    );
    eprintln!(
        "skipping: strongSwan is missing (apt-get install strongswan-charon strongswan-swanctl libcharon-extra-plugins)"
    );
    true
}

/// A VPC with an instance (its group lets the datacenter's network in for
/// ICMP and TCP 8080), a customer gateway at the datacenter's address, a
/// VPN gateway attached to the VPC, a dynamic (BGP) connection between
/// them, and its customer side running in the datacenter.
pub struct VpnWorld {
    pub vpc: String,
    pub subnet: String,
    pub group: String,
    pub instance: Instance,
    pub cgw: String,
    pub vgw: String,
    pub vpn: String,
    pub outside_ips: Vec<String>,
    pub psks: Vec<String>,
}

impl VpnWorld {
    /// Makes it all with the aws CLI and runs `openvpc lab datacenter
    /// connect` with `extra` arguments.
    pub fn connect(lab: &Lab, extra: &[&str]) -> VpnWorld {
        let dc_ip = lab.file("datacenter-ip");
        let vpc = lab.vpc("10.0.0.0/16");
        let subnet = lab.subnet(&vpc, "10.0.1.0/24", "us-east-1a", false);
        let group = lab.group(&vpc, "from-datacenter", &[]);
        lab.allow(&group, "icmp", "-1", "172.16.0.0/16");
        lab.allow(&group, "tcp", "8080", "172.16.0.0/16");
        let instance = lab.instance(&subnet, &group, None);
        let cgw = lab.ec2(&[
            "create-customer-gateway",
            "--type",
            "ipsec.1",
            "--public-ip",
            &dc_ip,
            "--bgp-asn",
            CUSTOMER_ASN,
        ])["CustomerGateway"]["CustomerGatewayId"]
            .as_str()
            .unwrap()
            .to_owned();
        let vgw =
            lab.ec2(&["create-vpn-gateway", "--type", "ipsec.1"])["VpnGateway"]["VpnGatewayId"]
                .as_str()
                .unwrap()
                .to_owned();
        lab.ec2(&[
            "attach-vpn-gateway",
            "--vpn-gateway-id",
            &vgw,
            "--vpc-id",
            &vpc,
        ]);
        let (vpn, outside_ips, psks) = lab.vpn_connection(&cgw, &vgw, false);
        for ip in &outside_ips {
            assert!(
                ip.starts_with("203.0.113."),
                "a tunnel outside the pool: {ip}"
            );
        }
        let mut args = vec!["connect", "--vpn-connection-id", vpn.as_str()];
        args.extend_from_slice(extra);
        let (ok, stderr) = lab.datacenter(&args);
        assert!(ok, "lab datacenter connect: {stderr}");
        VpnWorld {
            vpc,
            subnet,
            group,
            instance,
            cgw,
            vgw,
            vpn,
            outside_ips,
            psks,
        }
    }
}

/// FRR's daemons, the customer router of `lab datacenter connect --router
/// frr`.
pub const BGPD: &str = "/usr/lib/frr/bgpd";
pub const ZEBRA: &str = "/usr/lib/frr/zebra";

/// What only the FRR interop test asks of a lab.
impl Lab {
    /// `vtysh -d DAEMON -c CMD` against the datacenter's FRR (its vty
    /// sockets in DIR/datacenter/frr), parsed as JSON (`Null` if it is
    /// not).
    pub fn dc_frr(&self, daemon: &str, cmd: &str) -> serde_json::Value {
        let out = Command::new("vtysh")
            .arg("--vty_socket")
            .arg(self.dir.path().join("datacenter/frr"))
            .args(["-d", daemon, "-c", cmd])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }
}

/// True (said why) without FRR's bgpd, zebra and vtysh, unless
/// OPENVPC_REQUIRE_TOOLS is set.
pub fn frr_missing() -> bool {
    if Path::new(BGPD).exists()
        && Path::new(ZEBRA).exists()
        && Command::new("vtysh").arg("--version").output().is_ok()
    {
        return false;
    }
    assert!(
        std::env::var_os("OPENVPC_REQUIRE_TOOLS").is_none(),
        "{BGPD}, {ZEBRA} or vtysh is missing: scripts/test installs frr"
    );
    eprintln!("skipping: FRR is missing (apt-get install frr)");
    true
}

/// spec 2.7, 10.3: turns propagation from `vgw` on in `table`, then waits
/// until the datacenter's 172.16.0.0/16 shows there, active, with Origin
/// `EnableVgwRoutePropagation`.
pub fn propagate_and_wait(lab: &Lab, table: &str, vgw: &str) {
    lab.ec2(&[
        "enable-vgw-route-propagation",
        "--route-table-id",
        table,
        "--gateway-id",
        vgw,
    ]);
    within(30, "172.16.0.0/16 propagated into the route table", || {
        let v = lab.ec2(&["describe-route-tables", "--route-table-ids", table]);
        let routes = v["RouteTables"][0]["Routes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let found = routes.iter().any(|r| {
            r["DestinationCidrBlock"] == "172.16.0.0/16"
                && r["GatewayId"] == vgw
                && r["Origin"] == "EnableVgwRoutePropagation"
                && r["State"] == "active"
        });
        (!found).then(|| format!("{routes:?}"))
    });
}

/// The JSON line a helper script printed last (its report).
pub fn last_json(out: &std::process::Output, what: &str) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "{what}'s report: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}
