//! Command line of `kernel-tuning`. Exit codes: 0 all good, 1 drift or a failed step,
//! 2 bad usage or an error (not root, unreadable files).

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use kernel_tuning::checks::{self, Check, Needs, Status};
use kernel_tuning::host::{self, Host};
use kernel_tuning::irq;
use kernel_tuning::profile::{Profile, ProfileName};
use kernel_tuning::tuning::{self, Finding, Outcome};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "kernel-tuning",
    version,
    about = "Check, diff, apply and revert the kernel settings Switchboard needs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Common {
    /// Which host this is.
    #[arg(long, value_enum, default_value = "gateway")]
    profile: ProfileName,
    /// Only keys starting with this prefix (repeatable), e.g. `--only net.`; `check` then
    /// skips the host and service checks, and `apply` writes a drop-in holding only those
    /// keys (replacing a full one): meant for trying a subset, e.g. in a network namespace.
    #[arg(long)]
    only: Vec<String>,
    /// Where /proc is (live sysctl values are under <proc>/sys).
    #[arg(long, default_value = "/proc", hide = true)]
    proc: PathBuf,
    /// Where /sys is.
    #[arg(long, default_value = "/sys", hide = true)]
    sys: PathBuf,
    /// Root for the files this tool writes (drop-ins, saved values).
    #[arg(long, default_value = "/", hide = true)]
    root: PathBuf,
    /// The kernel's page size in bytes (default: the running kernel's).
    #[arg(long, hide = true)]
    page_size: Option<u64>,
}

impl Common {
    fn host(&self) -> Host {
        Host {
            proc: self.proc.clone(),
            root: self.root.clone(),
            sys: self.sys.clone(),
        }
    }
    fn page_size(&self) -> u64 {
        self.page_size.unwrap_or_else(host::page_size)
    }
    fn profile(&self) -> Profile {
        Profile::for_page_size(self.profile, self.page_size()).only(&self.only)
    }
}

#[derive(Args)]
struct CheckArgs {
    #[command(flatten)]
    common: Common,
    /// Gateway PID whose limits to check (default: every process named `gateway`).
    #[arg(long)]
    pid: Vec<u32>,
    /// Shards per gateway (default: one per online core, as the gateway's `shards = 0`).
    #[arg(long)]
    shards: Option<usize>,
    /// The gateway's `io_memory_kib`.
    #[arg(long, default_value_t = 64)]
    io_memory_kib: u64,
    /// Connections one gateway process should hold.
    #[arg(long, default_value_t = 100_000)]
    connections: u64,
    /// Cores the shards run on (default: the first `shards` cores, as `pin = true` does).
    #[arg(long)]
    shard_cores: Option<String>,
}

#[derive(Args)]
struct IrqArgs {
    /// The NIC, e.g. eth0.
    #[arg(long)]
    nic: String,
    /// Cores the shards run on, e.g. 0-5.
    #[arg(long)]
    shard_cores: String,
    /// Write the new affinities (default: print them).
    #[arg(long)]
    apply: bool,
    #[arg(long, default_value = "/proc", hide = true)]
    proc: PathBuf,
    #[arg(long, default_value = "/sys", hide = true)]
    sys: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Print every setting (current, recommended, why); exit 1 on drift.
    Check(CheckArgs),
    /// Print what `apply` would change.
    Diff(Common),
    /// Save current values, write the drop-ins, set and verify the values (root).
    Apply(Common),
    /// Restore the saved values and remove the drop-ins (root).
    Revert(Common),
    /// Spread a NIC's IRQs and RPS/XPS over the cores the shards do not use (opt-in, root).
    Irq(IrqArgs),
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kernel-tuning: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn require_root(what: &str) -> anyhow::Result<()> {
    if !host::running_as_root() {
        bail!("`{what}` changes kernel settings and files under /etc: run it as root (sudo kernel-tuning {what} ...)");
    }
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check(a) => check(a),
        Command::Diff(c) => diff(&c),
        Command::Apply(c) => {
            require_root("apply")?;
            let outcomes = tuning::apply(&c.host(), &c.profile())?;
            let files = tuning::Files::of(&c.host(), &c.profile());
            print_outcomes(&outcomes);
            println!("wrote {}", files.sysctl_dropin.display());
            println!("wrote {}", files.limits_dropin.display());
            println!("saved previous values in {}", files.saved.display());
            Ok(exit_for(&outcomes))
        }
        Command::Revert(c) => {
            require_root("revert")?;
            let outcomes = tuning::revert(&c.host(), &c.profile())?;
            if outcomes.is_empty() {
                println!(
                    "nothing to revert: no saved values for profile {}",
                    c.profile.as_str()
                );
                return Ok(ExitCode::SUCCESS);
            }
            print_outcomes(&outcomes);
            if outcomes.iter().any(Outcome::failed) {
                println!("some values could not be restored; drop-ins and saved values kept");
            } else {
                println!("restored saved values and removed the drop-ins");
            }
            Ok(exit_for(&outcomes))
        }
        Command::Irq(a) => {
            let host = Host {
                proc: a.proc,
                sys: a.sys,
                ..Host::default()
            };
            let cores = host::parse_cpu_list(&a.shard_cores).with_context(|| {
                format!(
                    "--shard-cores {:?}: expected a list like 0-3,8",
                    a.shard_cores
                )
            })?;
            let writes = irq::plan(&host, &a.nic, &cores)?;
            for w in &writes {
                println!("{} <- {}", w.path.display(), w.value);
            }
            if a.apply {
                require_root("irq --apply")?;
                irq::apply(&writes)?;
                println!(
                    "applied {} writes (not persistent: irqbalance or a reboot undo them)",
                    writes.len()
                );
            } else {
                println!("dry run: add --apply to write these");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn exit_for(outcomes: &[Outcome]) -> ExitCode {
    if outcomes.iter().any(Outcome::failed) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn print_outcomes(outcomes: &[Outcome]) {
    for o in outcomes {
        match o {
            Outcome::Unchanged { key, value } => {
                println!("unchanged {key} = {}", one_line(value))
            }
            Outcome::Changed { key, from, to } => println!("changed   {key}: {from} -> {to}"),
            Outcome::Skipped { key } => {
                println!("skipped   {key} (not in this kernel, or read-only here)")
            }
            Outcome::Failed {
                key,
                wanted,
                reason,
            } => println!("FAILED    {key} (wanted {wanted}): {reason}"),
        }
    }
}

fn one_line(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn print_check(c: &Check) {
    println!(
        "{:<7} {:<40} current: {}  recommended: {}",
        c.status.label(),
        c.what,
        c.current,
        c.recommended
    );
    println!("        {}", c.why);
}

fn check(a: CheckArgs) -> anyhow::Result<ExitCode> {
    let host = a.common.host();
    let profile = a.common.profile();
    let findings = tuning::inspect(&host, &profile)?;
    println!("profile {} (sysctl)", profile.name.as_str());
    let mut drift = false;
    for f in &findings {
        let c = match f {
            Finding::Missing(s) => Check {
                status: Status::Info,
                what: s.key.into(),
                current: "not in this kernel".into(),
                recommended: s.want.to_string(),
                why: s.why.into(),
            },
            Finding::ReadOnly { setting, current } => Check {
                status: Status::Info,
                what: setting.key.into(),
                current: format!("{} (read-only here)", one_line(current)),
                recommended: setting.want.to_string(),
                why: setting.why.into(),
            },
            Finding::Ok { setting, current } => Check {
                status: Status::Ok,
                what: setting.key.into(),
                current: one_line(current),
                recommended: setting.want.to_string(),
                why: setting.why.into(),
            },
            Finding::Drift {
                setting, current, ..
            } => Check {
                status: Status::Drift,
                what: setting.key.into(),
                current: one_line(current),
                recommended: setting.want.to_string(),
                why: setting.why.into(),
            },
        };
        drift |= c.status == Status::Drift;
        print_check(&c);
    }
    // `--only` narrows the run to those sysctl keys; the host checks belong to a full check.
    if profile.name == ProfileName::Gateway && a.common.only.is_empty() {
        let online = checks::online_cores(&host);
        let shards = a.shards.unwrap_or(online.len()).max(1);
        let shard_cores = match &a.shard_cores {
            Some(s) => host::parse_cpu_list(s)
                .with_context(|| format!("--shard-cores {s:?}: expected a list like 0-3,8"))?,
            None => online.iter().copied().take(shards).collect(),
        };
        let (_, kernel) = checks::kernel_release(&host);
        let needs = Needs {
            shards,
            io_memory_kib: a.io_memory_kib,
            connections: a.connections,
            shard_cores,
            page_size: a.common.page_size(),
            rings_charged: kernel < (5, 12),
        };
        let pids = if a.pid.is_empty() {
            checks::find_processes(&host, "gateway")
        } else {
            a.pid.clone()
        };
        println!("\nhost and service");
        for c in checks::run(&host, &pids, &needs) {
            drift |= c.status == Status::Drift;
            print_check(&c);
        }
    }
    println!();
    if drift {
        println!("drift: run `kernel-tuning diff --profile {0}` to see the changes and `sudo kernel-tuning apply --profile {0}` to make them", profile.name.as_str());
        Ok(ExitCode::from(1))
    } else {
        println!("no drift");
        Ok(ExitCode::SUCCESS)
    }
}

fn diff(c: &Common) -> anyhow::Result<ExitCode> {
    let findings = tuning::inspect(&c.host(), &c.profile())?;
    let mut changes = 0;
    for f in &findings {
        match f {
            Finding::Drift {
                setting,
                current,
                target,
            } => {
                changes += 1;
                println!("- {} = {}", setting.key, one_line(current));
                println!("+ {} = {}", setting.key, target);
            }
            Finding::Missing(s) => println!("  {} (not in this kernel; skipped)", s.key),
            Finding::ReadOnly { setting, .. } => {
                println!("  {} (read-only here; skipped)", setting.key)
            }
            Finding::Ok { .. } => {}
        }
    }
    let files = tuning::Files::of(&c.host(), &c.profile());
    println!(
        "{changes} value(s) to change; apply also writes {} and {}",
        files.sysctl_dropin.display(),
        files.limits_dropin.display()
    );
    Ok(ExitCode::SUCCESS)
}
