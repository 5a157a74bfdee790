//! The host programs an instance needs, and the Debian packages that carry
//! them: `ip` (the agent makes namespaces and links with it), the DHCP
//! client and its hook script (each instance asks the virtual router for its
//! address with them), and what the README's walkthrough runs inside
//! instances (ping, curl, python3).
//!
//! `openvpc up` and `openvpc agent` check them before serving, so a missing
//! one stops the start with the line that installs it, rather than leaving
//! instances without an address. The lookup is plain: a program is present
//! when an executable file of that name is in a directory of `PATH` (what
//! `Command::new` will find), a file when it exists.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::netns::UDHCPC_SCRIPT;

/// What must be on the host: a program found on `PATH`, or a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Program(&'static str),
    File(&'static str),
}

/// One thing instances need, the Debian package that provides it, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tool {
    pub need: Need,
    pub package: &'static str,
    pub why: &'static str,
}

impl Tool {
    /// The program's name or the file's path.
    pub fn name(&self) -> &'static str {
        match self.need {
            Need::Program(p) | Need::File(p) => p,
        }
    }
}

/// Everything an instance on this host needs, in the order a user meets it.
pub const INSTANCE_TOOLS: &[Tool] = &[
    Tool {
        need: Need::Program("ip"),
        package: "iproute2",
        why: "namespaces, TAP links and `openvpc exec`",
    },
    Tool {
        need: Need::Program("udhcpc"),
        package: "udhcpc",
        why: "each instance's DHCP client",
    },
    Tool {
        need: Need::File(UDHCPC_SCRIPT),
        package: "udhcpc",
        why: "the DHCP client's hook script, which sets the address",
    },
    Tool {
        need: Need::Program("ping"),
        package: "iputils-ping",
        why: "the README's walkthrough",
    },
    Tool {
        need: Need::Program("curl"),
        package: "curl",
        why: "the README's walkthrough",
    },
    Tool {
        need: Need::Program("python3"),
        package: "python3",
        why: "the README's walkthrough (`python3 -m http.server`)",
    },
];

/// True if `dir/name` is a file someone may execute.
fn executable_in(dir: &Path, name: &str) -> bool {
    std::fs::metadata(dir.join(name))
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether `need` is met, looking for programs in the directories of
/// `path_var` (a `PATH` value) and for files under `root` (`/` on a host;
/// a scratch directory in tests).
pub fn present(need: Need, path_var: &OsStr, root: &Path) -> bool {
    match need {
        Need::Program(name) => std::env::split_paths(path_var)
            .filter(|d| !d.as_os_str().is_empty())
            .any(|d| executable_in(&d, name)),
        Need::File(file) => root.join(file.trim_start_matches('/')).exists(),
    }
}

/// The tools of `tools` that are missing.
pub fn missing_in(tools: &[Tool], path_var: &OsStr, root: &Path) -> Vec<Tool> {
    tools
        .iter()
        .filter(|t| !present(t.need, path_var, root))
        .copied()
        .collect()
}

/// The instance tools missing on this host (this process's `PATH`).
pub fn missing() -> Vec<Tool> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    missing_in(INSTANCE_TOOLS, &path, Path::new("/"))
}

/// The packages that provide `tools`, each once, in order.
pub fn packages(tools: &[Tool]) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for t in tools {
        if !out.contains(&t.package) {
            out.push(t.package);
        }
    }
    out
}

/// The command that installs `packages`, as the user types it.
pub fn apt_line(packages: &[&str]) -> String {
    format!("apt-get install -y {}", packages.join(" "))
}

fn describe(tools: &[Tool]) -> String {
    tools
        .iter()
        .map(|t| format!("{} ({})", t.name(), t.why))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why the host cannot run instances yet.
#[derive(Debug, thiserror::Error)]
pub enum ToolsError {
    #[error(
        "instances need tools this host lacks: {what}; install them with `{line}` (as root), or run as root with apt-get available and without --no-install to have them installed"
    )]
    Missing { what: String, line: String },
    #[error(
        "installing the tools instances need failed ({status}): {output}; run `{line}` by hand (as root) and start again"
    )]
    InstallFailed {
        line: String,
        status: String,
        output: String,
    },
    #[error(
        "`{line}` ran but {what} is still missing; check that its directory is on PATH, or install it by hand"
    )]
    StillMissing { what: String, line: String },
}

/// What to do about missing tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Install them with apt-get when root and apt-get is there; else stop.
    Install,
    /// Only check; stop if one is missing.
    CheckOnly,
}

/// What the decision for a set of missing tools is (sans-IO: the caller
/// says whether it is root and has apt-get).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Nothing is missing.
    Ready,
    /// Run `apt-get install -y` with these packages.
    Install(Vec<&'static str>),
    /// Stop: the error says what to run.
    Stop(String, String),
}

/// Decides what to do about `missing`.
pub fn plan(missing: &[Tool], policy: Policy, root: bool, have_apt: bool) -> Plan {
    if missing.is_empty() {
        return Plan::Ready;
    }
    let pkgs = packages(missing);
    if policy == Policy::Install && root && have_apt {
        Plan::Install(pkgs)
    } else {
        Plan::Stop(describe(missing), apt_line(&pkgs))
    }
}

/// True if this process runs as root (`/proc/self` belongs to the
/// effective user).
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
}

/// Makes sure every tool instances need is present: installs the missing
/// Debian packages when `policy` allows it, we are root and apt-get is
/// there (saying so through `say`, in one line), otherwise fails with the
/// exact `apt-get install` line to run.
pub fn ensure(policy: Policy, mut say: impl FnMut(&str)) -> Result<(), ToolsError> {
    let missing = missing();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let have_apt = present(Need::Program("apt-get"), &path, Path::new("/"));
    let pkgs = match plan(&missing, policy, is_root(), have_apt) {
        Plan::Ready => return Ok(()),
        Plan::Stop(what, line) => return Err(ToolsError::Missing { what, line }),
        Plan::Install(pkgs) => pkgs,
    };
    let line = apt_line(&pkgs);
    say(&format!("installing missing tools for instances: {line}"));
    // Exactly the line said above, so what ran is what the user read.
    if let Err(first) = apt_get(&["install", "-y"], &pkgs) {
        // A fresh machine may have no package lists yet.
        if apt_get(&["update"], &[]).is_err() {
            return Err(with_line(first, &line));
        }
        apt_get(&["install", "-y"], &pkgs).map_err(|e| with_line(e, &line))?;
    }
    let left = self::missing();
    if !left.is_empty() {
        return Err(ToolsError::StillMissing {
            what: describe(&left),
            line,
        });
    }
    Ok(())
}

fn with_line(e: (String, String), line: &str) -> ToolsError {
    ToolsError::InstallFailed {
        line: line.to_owned(),
        status: e.0,
        output: e.1,
    }
}

/// Runs apt-get without questions; on failure, its status and the tail of
/// what it printed.
fn apt_get(args: &[&str], pkgs: &[&str]) -> Result<(), (String, String)> {
    let out = Command::new("apt-get")
        .args(args)
        .args(pkgs)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| ("not started".to_owned(), e.to_string()))?;
    if out.status.success() {
        return Ok(());
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let tail: Vec<&str> = text.lines().rev().take(5).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    Err((out.status.to_string(), tail.join(" / ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;
    use std::path::PathBuf;

    /// A scratch `PATH` directory holding executables named `names`, and a
    /// scratch root holding `files`.
    fn host(names: &[&str], files: &[&str]) -> (tempfile::TempDir, OsString, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for n in names {
            let p = bin.join(n);
            std::fs::write(&p, b"#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let root = dir.path().join("root");
        for f in files {
            let p = root.join(f.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, b"").unwrap();
        }
        let path = std::env::join_paths([Path::new("/nonexistent"), &bin]).unwrap();
        (dir, path, root)
    }

    #[test]
    fn finds_what_is_missing_on_path() {
        let (_dir, path, root) = host(&["ip", "curl", "python3"], &[UDHCPC_SCRIPT]);
        let missing = missing_in(INSTANCE_TOOLS, &path, &root);
        let names: Vec<&str> = missing.iter().map(Tool::name).collect();
        assert_eq!(names, ["udhcpc", "ping"]);
        assert_eq!(packages(&missing), ["udhcpc", "iputils-ping"]);
        assert_eq!(
            apt_line(&packages(&missing)),
            "apt-get install -y udhcpc iputils-ping"
        );
    }

    #[test]
    fn a_file_that_is_not_executable_is_not_a_program() {
        let (dir, path, root) = host(&[], &[]);
        let p = dir.path().join("bin").join("ping");
        std::fs::write(&p, b"").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(!present(Need::Program("ping"), &path, &root));
    }

    #[test]
    fn one_package_is_named_once() {
        let (_dir, path, root) = host(&["ip", "ping", "curl", "python3"], &[]);
        let missing = missing_in(INSTANCE_TOOLS, &path, &root);
        // udhcpc and its hook script come from the same package.
        assert_eq!(missing.len(), 2);
        assert_eq!(packages(&missing), ["udhcpc"]);
    }

    #[test]
    fn everything_present_is_ready() {
        let (_dir, path, root) = host(
            &["ip", "udhcpc", "ping", "curl", "python3"],
            &[UDHCPC_SCRIPT],
        );
        let missing = missing_in(INSTANCE_TOOLS, &path, &root);
        assert!(missing.is_empty());
        assert_eq!(plan(&missing, Policy::Install, false, false), Plan::Ready);
    }

    #[test]
    fn installs_only_as_root_with_apt_and_when_allowed() {
        let (_dir, path, root) = host(&["ip", "ping", "curl", "python3"], &[UDHCPC_SCRIPT]);
        let missing = missing_in(INSTANCE_TOOLS, &path, &root);
        assert_eq!(
            plan(&missing, Policy::Install, true, true),
            Plan::Install(vec!["udhcpc"])
        );
        for (policy, root, apt) in [
            (Policy::CheckOnly, true, true),
            (Policy::Install, false, true),
            (Policy::Install, true, false),
        ] {
            let Plan::Stop(what, line) = plan(&missing, policy, root, apt) else {
                panic!("{policy:?} root={root} apt={apt} must stop");
            };
            assert_eq!(line, "apt-get install -y udhcpc");
            assert!(
                what.contains("udhcpc (each instance's DHCP client)"),
                "{what}"
            );
        }
        let err = ToolsError::Missing {
            what: "udhcpc (x)".into(),
            line: "apt-get install -y udhcpc".into(),
        };
        assert!(err.to_string().contains("`apt-get install -y udhcpc`"));
    }
}
