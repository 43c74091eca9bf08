//! The two profiles: what a gateway host and a load-generator host need, and why.
//!
//! Every setting carries its reason; the reason is printed by `check` and written above the
//! value in the drop-in file, so whoever finds `/etc/sysctl.d/60-switchboard-gateway.conf`
//! on a host knows what each line is for without finding this tool.

use crate::want::{Field, Want};

/// One sysctl key, the rule for its value and why.
#[derive(Debug, Clone)]
pub struct Setting {
    /// Dotted sysctl name, e.g. `net.core.somaxconn`.
    pub key: &'static str,
    pub want: Want,
    pub why: &'static str,
}

impl Setting {
    /// The key's file under /proc/sys.
    pub fn proc_path(&self) -> String {
        self.key.replace('.', "/")
    }
}

/// The profile names accepted on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProfileName {
    /// A host running the gateway: very many mostly idle connections.
    Gateway,
    /// A host running `loadtest`: very many outgoing connections.
    Loadgen,
}

impl ProfileName {
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileName::Gateway => "gateway",
            ProfileName::Loadgen => "loadgen",
        }
    }
}

/// Open files the limits drop-in grants (soft and hard). Must stay below `fs.nr_open`.
pub const NOFILE: u64 = 1_048_576;

/// A profile: sysctl settings plus the per-process limits written to limits.d.
#[derive(Debug, Clone)]
pub struct Profile {
    pub name: ProfileName,
    pub settings: Vec<Setting>,
    /// `(domain, item, value)` lines for /etc/security/limits.d.
    pub limits: Vec<(&'static str, &'static str, String)>,
}

fn common_fd_settings() -> Vec<Setting> {
    vec![
        Setting {
            key: "fs.nr_open",
            want: Want::at_least(2 * NOFILE),
            why: "Ceiling for any process's RLIMIT_NOFILE. LimitNOFILE in the units (1048576) must be below it; one connection is one file.",
        },
        Setting {
            key: "fs.file-max",
            want: Want::at_least(4 * NOFILE),
            why: "System-wide open files: gateway and bridge connections, plus everything else on the host.",
        },
    ]
}

impl Profile {
    /// The profile for the running kernel (its page size sets the socket buffer minimums).
    pub fn get(name: ProfileName) -> Profile {
        Self::for_page_size(name, crate::host::page_size())
    }

    /// The profile for a kernel with pages of `page_size` bytes.
    pub fn for_page_size(name: ProfileName, page_size: u64) -> Profile {
        match name {
            ProfileName::Gateway => Self::gateway(page_size),
            ProfileName::Loadgen => Self::loadgen(),
        }
    }

    fn gateway(page_size: u64) -> Profile {
        // The kernel sets the socket buffer minimum to one page and charges socket memory
        // in pages: asking for less than a page (4096 on a 64 KiB-page aarch64 kernel)
        // gains nothing, and would show an untouched host as drifted.
        let small_buffer = page_size.max(4096);
        let default_buffer = page_size.max(16384);
        let mut settings = common_fd_settings();
        settings.extend([
            Setting {
                key: "net.core.somaxconn",
                want: Want::at_least(65535),
                why: "Caps every listen() backlog. The gateway asks for `backlog` (4096 by default) per shard; a reconnect storm after a deploy fills a small queue and clients see resets.",
            },
            Setting {
                key: "net.ipv4.tcp_max_syn_backlog",
                want: Want::at_least(65535),
                why: "Half-open connections queued during a handshake burst (thousands of widgets reconnecting at once).",
            },
            Setting {
                key: "net.core.netdev_max_backlog",
                want: Want::at_least(16384),
                why: "Packets queued per core between the NIC and the TCP stack; bursts of small chat frames overflow the default 1000.",
            },
            Setting {
                key: "net.ipv4.tcp_rmem",
                want: Want(vec![Field::AtMost(small_buffer), Field::AtMost(default_buffer), Field::AtLeast(4_194_304)]),
                why: "Receive buffer min/default/max per socket. Chat frames are small: a 16 KiB default (or one page, where pages are larger) keeps 100k+ sockets from each holding large buffers under a burst; autotuning still grows a busy socket to 4 MiB. The minimum is the kernel's own: one page.",
            },
            Setting {
                key: "net.ipv4.tcp_wmem",
                want: Want(vec![Field::AtMost(small_buffer), Field::AtMost(default_buffer), Field::AtLeast(4_194_304)]),
                why: "Send buffer min/default/max per socket; same reasoning as tcp_rmem. The gateway bounds its own per-connection queue (max_outbox_bytes) above this.",
            },
            Setting {
                key: "net.ipv4.tcp_keepalive_time",
                want: Want::at_most(600),
                why: "Seconds before TCP probes a silent peer. Phones drop off networks without a FIN; the gateway's idle deadline closes WebSockets, this frees sockets whose peer vanished mid-write.",
            },
            Setting {
                key: "net.ipv4.tcp_keepalive_intvl",
                want: Want::at_most(30),
                why: "Seconds between keepalive probes.",
            },
            Setting {
                key: "net.ipv4.tcp_keepalive_probes",
                want: Want::at_most(5),
                why: "Unanswered probes before the socket is dropped (600 + 5 x 30 s = 12.5 min instead of over 2 h).",
            },
            Setting {
                key: "net.ipv4.tcp_fin_timeout",
                want: Want::at_most(15),
                why: "Seconds an orphaned socket stays in FIN-WAIT-2; mass disconnects otherwise pin memory for a minute.",
            },
            Setting {
                key: "net.ipv4.tcp_tw_reuse",
                want: Want::exactly("1"),
                why: "Reuse TIME-WAIT sockets for new outgoing connections (bridge, PostgreSQL, Redis reconnects). Safe with timestamps; tcp_tw_recycle is never used.",
            },
            Setting {
                key: "net.netfilter.nf_conntrack_max",
                want: Want::at_least(2 * NOFILE),
                why: "Only when conntrack is loaded (a firewall with state rules): every connection is tracked, and a full table drops new connections silently.",
            },
            Setting {
                key: "kernel.io_uring_disabled",
                want: Want::exactly("0"),
                why: "The gateway runs on io_uring (glommio). 1 limits it to one group, 2 disables it and the gateway cannot start.",
            },
        ]);
        Profile {
            name: ProfileName::Gateway,
            settings,
            limits: vec![
                ("switchboard", "nofile", NOFILE.to_string()),
                // io_uring buffers count against RLIMIT_MEMLOCK (`Needs::memlock_bytes`).
                ("switchboard", "memlock", "unlimited".to_string()),
            ],
        }
    }

    fn loadgen() -> Profile {
        let mut settings = common_fd_settings();
        settings.extend([
            Setting {
                key: "net.ipv4.ip_local_port_range",
                want: Want(vec![Field::AtMost(1024), Field::AtLeast(65535)]),
                why: "Ephemeral ports per (source address, destination). The default 32768-60999 allows ~28k connections per source address; loadtest --source spreads over 127.0.0.x for more.",
            },
            Setting {
                key: "net.ipv4.tcp_tw_reuse",
                want: Want::exactly("1"),
                why: "Reuse TIME-WAIT ports for new outgoing connections, so back-to-back runs and churn scenarios do not run out of ports.",
            },
            Setting {
                key: "net.ipv4.tcp_fin_timeout",
                want: Want::at_most(15),
                why: "Closed client sockets leave FIN-WAIT-2 sooner between runs.",
            },
            Setting {
                key: "net.ipv4.tcp_max_tw_buckets",
                want: Want::at_least(262_144),
                why: "TIME-WAIT sockets kept; past it the kernel destroys them early and logs a warning per run.",
            },
        ]);
        Profile {
            name: ProfileName::Loadgen,
            settings,
            limits: vec![("*", "nofile", NOFILE.to_string())],
        }
    }

    /// Only the settings whose key starts with one of `prefixes` (all when empty).
    pub fn only(mut self, prefixes: &[String]) -> Profile {
        if !prefixes.is_empty() {
            self.settings
                .retain(|s| prefixes.iter().any(|p| s.key.starts_with(p.as_str())));
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_explains_itself_and_keys_are_unique() {
        for name in [ProfileName::Gateway, ProfileName::Loadgen] {
            let p = Profile::get(name);
            let mut keys: Vec<_> = p.settings.iter().map(|s| s.key).collect();
            keys.sort_unstable();
            let n = keys.len();
            keys.dedup();
            assert_eq!(keys.len(), n, "duplicate key in {}", name.as_str());
            assert!(p.settings.iter().all(|s| s.why.len() > 20));
        }
    }

    #[test]
    fn nr_open_stays_above_the_limits_granted() {
        for name in [ProfileName::Gateway, ProfileName::Loadgen] {
            let p = Profile::get(name);
            let nr_open = p.settings.iter().find(|s| s.key == "fs.nr_open").unwrap();
            assert!(nr_open.want.satisfied_by(&(NOFILE * 2).to_string()));
            assert!(!nr_open.want.satisfied_by(&NOFILE.to_string()));
        }
    }

    #[test]
    fn only_filters_by_prefix() {
        let p = Profile::get(ProfileName::Gateway).only(&["net.".to_string()]);
        assert!(!p.settings.is_empty());
        assert!(p.settings.iter().all(|s| s.key.starts_with("net.")));
    }

    #[test]
    fn socket_buffer_minimums_follow_the_page_size() {
        let rmem = |page_size| {
            Profile::for_page_size(ProfileName::Gateway, page_size)
                .settings
                .into_iter()
                .find(|s| s.key == "net.ipv4.tcp_rmem")
                .unwrap()
                .want
        };
        // What each kernel sets at boot: the minimum is one page.
        let stock_4k = "4096\t131072\t6291456";
        let stock_64k = "65536\t131072\t6291456";
        let tuned_64k = "65536\t65536\t6291456";
        assert!(
            !rmem(4096).satisfied_by(stock_4k),
            "the default is too large"
        );
        assert!(rmem(4096).satisfied_by("4096\t16384\t6291456"));
        assert!(!rmem(4096).satisfied_by(tuned_64k));
        // A 64 KiB-page kernel's own minimum is not drift; a 16 KiB default below one page
        // is not asked for.
        assert!(!rmem(65536).satisfied_by(stock_64k));
        assert!(rmem(65536).satisfied_by(tuned_64k));
        assert!(rmem(16384).satisfied_by("16384\t16384\t6291456"));
    }
}
