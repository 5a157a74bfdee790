//! Runs Ansible's `amazon.aws` modules against a real `openvpc server`: the
//! playbook in tests/clients/ansible builds a VPC with two subnets, an
//! internet gateway, a routed public table, a security group and an Elastic
//! IP; run again it must change nothing; the teardown playbook must leave
//! the region as it found it.
//!
//! `ansible` comes from PyPI into the venv scripts/test makes
//! (scripts/requirements.txt). Without it the test skips, unless
//! `OPENVPC_REQUIRE_TOOLS` is set. Ansible runs offline: no galaxy, its
//! config, home and temporary directories inside the test's temp dir.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Server, python, start};

/// What the region holds, by resource kind: the IDs a describe call lists.
/// The teardown must bring it back to what it was before the first run.
const INVENTORY: &str = r#"
import json, os, boto3
ec2 = boto3.client("ec2", endpoint_url=os.environ["AWS_URL"])
print(json.dumps({
    "vpcs": sorted(v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]),
    "subnets": sorted(s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]),
    "igws": sorted(g["InternetGatewayId"] for g in ec2.describe_internet_gateways()["InternetGateways"]),
    "route_tables": sorted(t["RouteTableId"] for t in ec2.describe_route_tables()["RouteTables"]),
    "security_groups": sorted(g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]),
    "addresses": sorted(a["AllocationId"] for a in ec2.describe_addresses()["Addresses"]),
}, sort_keys=True))
"#;

#[test]
fn ansible_builds_the_vpc_idempotently_and_tears_it_down() {
    let Some(python) = python() else {
        return;
    };
    let Some(playbook_bin) = ansible_playbook(Path::new(&python)) else {
        return;
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("data");
    let server = start(&data);
    let ansible = AnsibleEnv::new(dir.path(), &server, &python, playbook_bin);

    let before = inventory(&ansible, &python);

    // First run: everything is made.
    let first = ansible.run("vpc.yml");
    assert_eq!(first.failures(), 0, "the first run failed: {}", first.raw);
    assert_eq!(
        first.changed(),
        6,
        "each of the 6 building tasks (VPC, subnets, gateway, table, group, EIP) creates: {}",
        first.raw
    );
    let built = inventory(&ansible, &python);
    for (kind, made) in [
        ("vpcs", 1),
        ("subnets", 2),
        ("igws", 1),
        ("route_tables", 2),    // the new VPC's main table and the public one
        ("security_groups", 2), // the new VPC's default group and the web one
        ("addresses", 1),
    ] {
        assert_eq!(
            built[kind].as_array().map(Vec::len),
            before[kind].as_array().map(|a| a.len() + made),
            "{kind} after the first run: {built}"
        );
    }

    // Second run: idempotence, the recap counts no change.
    let second = ansible.run("vpc.yml");
    assert_eq!(
        second.failures(),
        0,
        "the second run failed: {}",
        second.raw
    );
    assert_eq!(
        second.changed(),
        0,
        "a second run of the same playbook changes nothing: {}",
        second.changed_tasks().join(", ")
    );
    assert_eq!(
        inventory(&ansible, &python),
        built,
        "the second run made nothing new"
    );

    // Teardown, dependants first (spec 1.7: DeleteVpc refuses while
    // anything in the VPC remains), twice: the second finds nothing.
    let down = ansible.run("teardown.yml");
    assert_eq!(down.failures(), 0, "the teardown failed: {}", down.raw);
    assert!(down.changed() > 0, "the teardown deletes: {}", down.raw);
    assert_eq!(
        inventory(&ansible, &python),
        before,
        "the teardown leaves nothing behind"
    );
    let again = ansible.run("teardown.yml");
    assert_eq!(
        again.failures(),
        0,
        "the second teardown failed: {}",
        again.raw
    );
    assert_eq!(
        again.changed(),
        0,
        "nothing is left to delete: {}",
        again.raw
    );
}

/// `ansible-playbook` next to the venv's Python, or `None` (the test skips)
/// when ansible is not installed there and tools are not required.
fn ansible_playbook(python: &Path) -> Option<PathBuf> {
    let bin = python.with_file_name("ansible-playbook");
    if bin.is_file() {
        return Some(bin);
    }
    assert!(
        std::env::var_os("OPENVPC_REQUIRE_TOOLS").is_none(),
        "{} is missing: scripts/test installs ansible from scripts/requirements.txt",
        bin.display()
    );
    eprintln!(
        "skipping: {} is missing (scripts/test installs ansible from scripts/requirements.txt)",
        bin.display()
    );
    None
}

/// How every ansible-playbook run is started: the server's endpoint, keys
/// and region in the environment amazon.aws reads, and Ansible kept off the
/// network and out of the user's home.
struct AnsibleEnv {
    bin: PathBuf,
    python: PathBuf,
    env: Vec<(String, String)>,
}

impl AnsibleEnv {
    fn new(dir: &Path, server: &Server, python: &std::ffi::OsStr, bin: PathBuf) -> Self {
        let var = |name: &str| {
            server
                .env
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("the server prints {name}"))
        };
        let credentials = std::fs::read_to_string(var("AWS_SHARED_CREDENTIALS_FILE"))
            .expect("the server's credentials file");
        let key = |name: &str| {
            credentials
                .lines()
                .skip_while(|l| l.trim() != "[default]")
                .find_map(|l| {
                    let (k, v) = l.split_once('=')?;
                    (k.trim() == name).then(|| v.trim().to_owned())
                })
                .unwrap_or_else(|| panic!("{name} in the [default] profile"))
        };
        let home = dir.join("ansible");
        let tmp = home.join("tmp");
        std::fs::create_dir_all(&tmp).expect("ansible's directories");
        let config = home.join("ansible.cfg");
        std::fs::write(&config, "").expect("an empty ansible.cfg");
        let path = |p: &Path| p.to_string_lossy().into_owned();
        let env = vec![
            ("AWS_URL".into(), var("AWS_ENDPOINT_URL")),
            ("AWS_REGION".into(), var("AWS_DEFAULT_REGION")),
            ("AWS_DEFAULT_REGION".into(), var("AWS_DEFAULT_REGION")),
            ("AWS_ACCESS_KEY_ID".into(), key("aws_access_key_id")),
            ("AWS_SECRET_ACCESS_KEY".into(), key("aws_secret_access_key")),
            // No other credentials or endpoints leak in from the caller.
            (
                "AWS_SHARED_CREDENTIALS_FILE".into(),
                path(&home.join("none")),
            ),
            ("AWS_CONFIG_FILE".into(), path(&home.join("none"))),
            // Ansible insists on a UTF-8 locale.
            ("LC_ALL".into(), "C.UTF-8".into()),
            ("ANSIBLE_CONFIG".into(), path(&config)),
            ("ANSIBLE_HOME".into(), path(&home)),
            ("ANSIBLE_LOCAL_TEMP".into(), path(&tmp)),
            ("ANSIBLE_REMOTE_TEMP".into(), path(&tmp)),
            // Collections come from the ansible package in the venv only.
            (
                "ANSIBLE_COLLECTIONS_PATH".into(),
                path(&home.join("collections")),
            ),
            (
                "ANSIBLE_STDOUT_CALLBACK".into(),
                "ansible.builtin.json".into(),
            ),
            ("ANSIBLE_NOCOLOR".into(), "1".into()),
            ("ANSIBLE_RETRY_FILES_ENABLED".into(), "0".into()),
            ("ANSIBLE_HOST_KEY_CHECKING".into(), "0".into()),
            ("ANSIBLE_LOCALHOST_WARNING".into(), "0".into()),
            ("ANSIBLE_INVENTORY_UNPARSED_WARNING".into(), "0".into()),
        ];
        Self {
            bin,
            python: PathBuf::from(python),
            env,
        }
    }

    /// Runs one playbook of tests/clients/ansible on localhost with the
    /// venv's Python and returns the json callback's report.
    fn run(&self, playbook: &str) -> Report {
        let playbook = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/clients/ansible")
            .join(playbook);
        let out = Command::new(&self.bin)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(["-i", "localhost,", "-c", "local", "-e"])
            .arg(format!(
                "ansible_python_interpreter={}",
                self.python.display()
            ))
            .arg(&playbook)
            .output()
            .expect("running ansible-playbook");
        let raw = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        // The json callback prints one document, possibly after warnings.
        let json = raw.find('{').map_or("", |i| &raw[i..]);
        let report: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| {
            panic!(
                "{} printed no JSON report ({e}): {raw}\n{stderr}",
                playbook.display()
            )
        });
        assert!(
            out.status.success() || report["stats"]["localhost"]["failures"] != 0,
            "ansible-playbook failed without a failed task: {raw}\n{stderr}"
        );
        Report { report, raw }
    }
}

/// The json callback's output of one run.
struct Report {
    report: serde_json::Value,
    raw: String,
}

impl Report {
    fn stat(&self, name: &str) -> u64 {
        self.report["stats"]["localhost"][name]
            .as_u64()
            .unwrap_or_else(|| panic!("the recap has {name}: {}", self.raw))
    }

    fn changed(&self) -> u64 {
        self.stat("changed")
    }

    fn failures(&self) -> u64 {
        self.stat("failures") + self.stat("unreachable")
    }

    /// The tasks that reported a change, for a readable failure.
    fn changed_tasks(&self) -> Vec<String> {
        let mut names = Vec::new();
        for play in self.report["plays"].as_array().into_iter().flatten() {
            for task in play["tasks"].as_array().into_iter().flatten() {
                let result = &task["hosts"]["localhost"];
                let changed = result["changed"] == true
                    || result["results"]
                        .as_array()
                        .is_some_and(|r| r.iter().any(|i| i["changed"] == true));
                if changed {
                    names.push(format!("{}: {}", task["task"]["name"], result));
                }
            }
        }
        names
    }
}

/// The region's resources as describe calls list them (boto3, the same
/// keys and endpoint as the playbooks).
fn inventory(ansible: &AnsibleEnv, python: &std::ffi::OsStr) -> serde_json::Value {
    let out = Command::new(python)
        .envs(ansible.env.iter().map(|(k, v)| (k, v)))
        .args(["-c", INVENTORY])
        .output()
        .expect("running the describe calls");
    assert!(
        out.status.success(),
        "the describe calls failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the describe calls print JSON")
}
