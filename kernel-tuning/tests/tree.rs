//! Every step against temporary /proc, /sys and root trees: the keys a network namespace
//! cannot hold (fs.*, kernel.*), the limits of a real running process, the root check and
//! the IRQ spreading.

mod common;

use common::{read, run, stdout, write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn fake_proc(dir: &Path) {
    for (k, v) in [
        ("sys/fs/nr_open", "1048576"),
        ("sys/fs/file-max", "9223372036854775807"),
        ("sys/net/core/somaxconn", "4096"),
        ("sys/net/ipv4/tcp_max_syn_backlog", "512"),
        ("sys/net/ipv4/tcp_rmem", "4096\t131072\t6291456"),
        ("sys/net/ipv4/tcp_wmem", "4096\t16384\t4194304"),
        ("sys/net/ipv4/tcp_tw_reuse", "2"),
        ("sys/net/ipv4/tcp_fin_timeout", "60"),
        ("sys/net/ipv4/ip_local_port_range", "32768\t60999"),
        ("sys/kernel/io_uring_disabled", "2"),
        ("sys/kernel/osrelease", "6.1.0-test"),
    ] {
        write(dir, k, &format!("{v}\n"));
    }
}

/// A temporary directory holding a fake /proc (as `fake_proc` writes it) and a root for
/// the files `apply` writes: (the directory, its proc, its root).
fn fake_host() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let (proc_dir, root) = (t.path().join("proc"), t.path().join("root"));
    fake_proc(&proc_dir);
    (t, proc_dir, root)
}

#[test]
fn apply_and_revert_against_a_temporary_tree() {
    let (_t, proc_dir, root) = fake_host();
    let p = proc_dir.to_str().unwrap();
    let r = root.to_str().unwrap();
    let before = read(&proc_dir, "sys/net/ipv4/tcp_rmem");

    let out = run(
        &[],
        &[
            "apply",
            "--profile",
            "gateway",
            "--proc",
            p,
            "--root",
            r,
            "--page-size",
            "4096",
        ],
    );
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(
        text.contains("skipped   net.core.netdev_max_backlog"),
        "keys the kernel lacks are skipped"
    );
    assert_eq!(read(&proc_dir, "sys/fs/nr_open"), "2097152\n");
    assert_eq!(
        read(&proc_dir, "sys/fs/file-max"),
        "9223372036854775807\n",
        "a higher floor is kept"
    );
    assert_eq!(
        read(&proc_dir, "sys/net/ipv4/tcp_rmem"),
        "4096 16384 6291456\n",
        "only the failing field moves"
    );
    assert_eq!(read(&proc_dir, "sys/kernel/io_uring_disabled"), "0\n");
    let dropin = read(&root, "etc/sysctl.d/60-switchboard-gateway.conf");
    assert!(dropin.contains("# net.core.netdev_max_backlog is not in this kernel; skipped."));
    assert!(dropin.contains("# recommended: >=65535\nnet.core.somaxconn = 65535\n"));

    let out = run(
        &[],
        &["revert", "--profile", "gateway", "--proc", p, "--root", r],
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(read(&proc_dir, "sys/fs/nr_open"), "1048576\n");
    assert_eq!(read(&proc_dir, "sys/kernel/io_uring_disabled"), "2\n");
    let restored = read(&proc_dir, "sys/net/ipv4/tcp_rmem");
    assert!(kernel_tuning::want::same_value(&restored, &before));
    assert!(!root
        .join("etc/sysctl.d/60-switchboard-gateway.conf")
        .exists());
}

#[test]
fn a_64k_page_kernel_keeps_its_one_page_socket_buffer_minimum() {
    // What a Kunpeng host on a 64 KiB-page kernel shows before tuning: the kernel sets
    // each minimum to one page.
    let (_t, proc_dir, root) = fake_host();
    write(
        &proc_dir,
        "sys/net/ipv4/tcp_rmem",
        "65536\t131072\t6291456\n",
    );
    write(
        &proc_dir,
        "sys/net/ipv4/tcp_wmem",
        "65536\t16384\t4194304\n",
    );
    let (p, r) = (proc_dir.to_str().unwrap(), root.to_str().unwrap());
    let args = |cmd| {
        vec![
            cmd,
            "--only",
            "net.ipv4.tcp_",
            "--proc",
            p,
            "--root",
            r,
            "--page-size",
            "65536",
        ]
    };
    let out = run(&[], &args("apply"));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        read(&proc_dir, "sys/net/ipv4/tcp_rmem"),
        "65536 65536 6291456\n",
        "the default comes down to one page, the minimum stays"
    );
    assert_eq!(
        read(&proc_dir, "sys/net/ipv4/tcp_wmem"),
        "65536\t16384\t4194304\n",
        "already right for 64 KiB pages: untouched"
    );
    let out = run(&[], &args("check"));
    assert_eq!(out.status.code(), Some(0), "tuned is tuned");
    // The same values judged as a 4 KiB-page kernel's are drift.
    let mut four_k = args("check");
    *four_k.last_mut().unwrap() = "4096";
    let out = run(&[], &four_k);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn loadgen_profile_widens_the_port_range() {
    let t = tempfile::tempdir().unwrap();
    fake_proc(t.path());
    let p = t.path().to_str().unwrap();
    let r = t.path().join("root");
    let out = run(
        &[],
        &[
            "diff",
            "--profile",
            "loadgen",
            "--proc",
            p,
            "--root",
            r.to_str().unwrap(),
        ],
    );
    assert!(stdout(&out).contains("+ net.ipv4.ip_local_port_range = 1024 65535"));
    assert!(!r.exists(), "diff writes nothing");
    let out = run(
        &[],
        &[
            "apply",
            "--profile",
            "loadgen",
            "--proc",
            p,
            "--root",
            r.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        read(t.path(), "sys/net/ipv4/ip_local_port_range"),
        "1024 65535\n"
    );
    assert!(common::has_line(
        &read(&r, "etc/security/limits.d/60-switchboard-loadgen.conf"),
        "* hard nofile 1048576"
    ));
}

#[test]
fn apply_and_revert_refuse_to_run_without_root() {
    let t = tempfile::tempdir().unwrap();
    fake_proc(t.path());
    let p = t.path().to_str().unwrap();
    for cmd in ["apply", "revert"] {
        let out = run(
            &[
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
            ],
            &[cmd, "--proc", p, "--root", p],
        );
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("run it as root"));
    }
    assert_eq!(
        read(t.path(), "sys/net/core/somaxconn"),
        "4096\n",
        "nothing changed"
    );
}

#[test]
fn check_explains_every_line_on_this_machine() {
    let out = run(
        &[],
        &[
            "check",
            "--profile",
            "gateway",
            "--pid",
            &std::process::id().to_string(),
        ],
    );
    assert!(matches!(out.status.code(), Some(0) | Some(1)));
    let text = stdout(&out);
    for s in
        kernel_tuning::profile::Profile::get(kernel_tuning::profile::ProfileName::Gateway).settings
    {
        let line = text
            .lines()
            .position(|l| l.contains(s.key))
            .unwrap_or_else(|| panic!("{} not reported", s.key));
        let why = text.lines().nth(line + 1).unwrap();
        assert!(why.trim().len() > 20, "{} has no explanation", s.key);
    }
    assert!(text.contains("kernel version"));
    assert!(text.contains("Max open files"));
    assert!(text.contains("transparent huge pages"));
}

#[test]
fn check_reports_a_running_process_whose_limits_are_too_low() {
    let mut child = Command::new("prlimit")
        .args(["--nofile=500:500", "--memlock=65536:65536", "sleep", "30"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // prlimit execs sleep, so the child's PID is the limited process.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let pid = child.id().to_string();
    let out = run(
        &[],
        &[
            "check",
            "--pid",
            &pid,
            "--connections",
            "1000",
            "--shards",
            "2",
            // 2 shards x 3 rings x (64 KiB + the page it straddles) in 64 KiB pages.
            "--page-size",
            "65536",
        ],
    );
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let nofile = text.lines().find(|l| l.contains("Max open files")).unwrap();
    assert!(
        nofile.starts_with("DRIFT") && nofile.contains("current: 500") && nofile.contains(">=2024"),
        "{nofile}"
    );
    let memlock = text
        .lines()
        .find(|l| l.contains("Max locked memory"))
        .unwrap();
    assert!(
        memlock.starts_with("DRIFT") && memlock.contains(">=786432"),
        "{memlock}"
    );
}

#[test]
fn irq_finds_vectors_named_after_the_pci_device() {
    // Kunpeng 920's on-board NIC (hns3) names its vectors after the driver and the PCI
    // address, not the interface; sysfs's device link names the address.
    let t = tempfile::tempdir().unwrap();
    let proc_dir = t.path().join("proc");
    let sys = t.path().join("sys");
    write(&sys, "devices/system/cpu/online", "0-3\n");
    let pci = sys.join("devices/pci0000:7c/0000:7c:00.0/0000:7d:00.0");
    std::fs::create_dir_all(&pci).unwrap();
    write(&sys, "class/net/enp125s0f0/queues/rx-0/rps_cpus", "0\n");
    std::os::unix::fs::symlink(&pci, sys.join("class/net/enp125s0f0/device")).unwrap();
    write(
        &proc_dir,
        "interrupts",
        "            CPU0  CPU1  CPU2  CPU3\n120:  9 0 0 0  ITS-MSI 65536000 Edge  hns3-0000:7d:00.0-TxRx-0\n121:  0 9 0 0  ITS-MSI 65536001 Edge  hns3-0000:7d:00.0-TxRx-1\n122:  0 0 9 0  ITS-MSI 65538000 Edge  hns3-0000:7d:00.1-TxRx-0\n",
    );
    for irq in [120, 121, 122] {
        write(&proc_dir, &format!("irq/{irq}/smp_affinity_list"), "0-3\n");
    }
    let (p, s) = (proc_dir.to_str().unwrap(), sys.to_str().unwrap());
    let out = run(
        &[],
        &[
            "irq",
            "--nic",
            "enp125s0f0",
            "--shard-cores",
            "0-1",
            "--proc",
            p,
            "--sys",
            s,
            "--apply",
        ],
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(read(&proc_dir, "irq/120/smp_affinity_list"), "2\n");
    assert_eq!(read(&proc_dir, "irq/121/smp_affinity_list"), "3\n");
    assert_eq!(
        read(&proc_dir, "irq/122/smp_affinity_list"),
        "0-3\n",
        "the other port's (another PCI function) untouched"
    );
}

#[test]
fn irq_spreads_queues_over_the_cores_shards_leave_free() {
    let t = tempfile::tempdir().unwrap();
    let proc_dir = t.path().join("proc");
    let sys = t.path().join("sys");
    write(&sys, "devices/system/cpu/online", "0-3\n");
    std::fs::create_dir_all(sys.join("class/net/eth9/device")).unwrap();
    for q in ["rx-0", "rx-1"] {
        write(&sys, &format!("class/net/eth9/queues/{q}/rps_cpus"), "0\n");
    }
    for q in ["tx-0", "tx-1"] {
        write(&sys, &format!("class/net/eth9/queues/{q}/xps_cpus"), "0\n");
    }
    write(
        &proc_dir,
        "interrupts",
        "           CPU0  CPU1  CPU2  CPU3\n 40:  1 0 0 0  PCI-MSI  eth9-TxRx-0\n 41:  0 1 0 0  PCI-MSI  eth9-TxRx-1\n 42:  0 0 0 0  PCI-MSI  eth10-TxRx-0\n",
    );
    for irq in [40, 41, 42] {
        write(&proc_dir, &format!("irq/{irq}/smp_affinity_list"), "0-3\n");
    }
    let p = proc_dir.to_str().unwrap();
    let s = sys.to_str().unwrap();
    let base = [
        "irq",
        "--nic",
        "eth9",
        "--shard-cores",
        "0-1",
        "--proc",
        p,
        "--sys",
        s,
    ];
    let out = run(&[], &base);
    assert!(stdout(&out).contains("dry run"));
    assert_eq!(read(&proc_dir, "irq/40/smp_affinity_list"), "0-3\n");

    let mut args = base.to_vec();
    args.push("--apply");
    let out = run(&[], &args);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(read(&proc_dir, "irq/40/smp_affinity_list"), "2\n");
    assert_eq!(read(&proc_dir, "irq/41/smp_affinity_list"), "3\n");
    assert_eq!(
        read(&proc_dir, "irq/42/smp_affinity_list"),
        "0-3\n",
        "another NIC's IRQ untouched"
    );
    assert_eq!(
        read(&sys, "class/net/eth9/queues/rx-1/rps_cpus"),
        "0000000c\n"
    );
    assert_eq!(
        read(&sys, "class/net/eth9/queues/tx-1/xps_cpus"),
        "00000008\n"
    );

    let out = run(
        &[],
        &[
            "irq",
            "--nic",
            "eth9",
            "--shard-cores",
            "0-3",
            "--proc",
            p,
            "--sys",
            s,
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("leave at least one core"));
}
