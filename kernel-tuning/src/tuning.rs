//! Check, diff, apply and revert one profile's sysctl settings and limits.
//!
//! `apply` saves every current value before it changes anything (once: a second `apply` keeps
//! the first saved values, so `revert` always returns to the host as it was), writes one
//! drop-in under /etc/sysctl.d so the values survive a reboot, writes the limits drop-in,
//! sets each value and reads it back. `revert` restores the saved values, reads them back and
//! removes the drop-ins. Keys the running kernel lacks are skipped everywhere.

use crate::host::{write_atomically, Host};
use crate::profile::{Profile, Setting};
use crate::want::same_value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum TuningError {
    #[error("cannot read {key}: {source}")]
    Read { key: String, source: io::Error },
    #[error("cannot write {path}: {source}")]
    WriteFile { path: PathBuf, source: io::Error },
    #[error("cannot read saved values {path}: {source}")]
    ReadState { path: PathBuf, source: io::Error },
    #[error("saved values {path} line {line}: expected `key = value`")]
    BadState { path: PathBuf, line: usize },
}

/// One setting as found on the host.
#[derive(Debug, Clone)]
pub enum Finding {
    /// The running kernel (or this network namespace) has no such key.
    Missing(Setting),
    /// Present but read-only here (a per-host key seen from a network namespace).
    ReadOnly {
        setting: Setting,
        current: String,
    },
    Ok {
        setting: Setting,
        current: String,
    },
    Drift {
        setting: Setting,
        current: String,
        target: String,
    },
}

impl Finding {
    pub fn key(&self) -> &'static str {
        match self {
            Finding::Missing(s) => s.key,
            Finding::ReadOnly { setting, .. } => setting.key,
            Finding::Ok { setting, .. } | Finding::Drift { setting, .. } => setting.key,
        }
    }
}

/// Reads every setting of the profile and judges it.
pub fn inspect(host: &Host, profile: &Profile) -> Result<Vec<Finding>, TuningError> {
    profile
        .settings
        .iter()
        .map(|s| {
            let current = host
                .read_sysctl(s.key)
                .map_err(|source| TuningError::Read {
                    key: s.key.to_string(),
                    source,
                })?;
            Ok(match current {
                None => Finding::Missing(s.clone()),
                Some(current) if !host.sysctl_writable(s.key) => Finding::ReadOnly {
                    setting: s.clone(),
                    current,
                },
                Some(current) if s.want.satisfied_by(&current) => Finding::Ok {
                    setting: s.clone(),
                    current,
                },
                Some(current) => Finding::Drift {
                    setting: s.clone(),
                    target: s.want.target(&current),
                    current,
                },
            })
        })
        .collect()
}

/// The files a profile owns on a host.
#[derive(Debug, Clone)]
pub struct Files {
    pub sysctl_dropin: PathBuf,
    pub limits_dropin: PathBuf,
    pub saved: PathBuf,
}

impl Files {
    pub fn of(host: &Host, profile: &Profile) -> Files {
        let name = profile.name.as_str();
        Files {
            sysctl_dropin: host.under_root(&format!("etc/sysctl.d/60-switchboard-{name}.conf")),
            limits_dropin: host
                .under_root(&format!("etc/security/limits.d/60-switchboard-{name}.conf")),
            // Not under /var/lib/switchboard: that is the services' StateDirectory, owned by
            // the unprivileged service user, and root restores these values on `revert`.
            saved: host.under_root(&format!("var/lib/kernel-tuning/switchboard-{name}.saved")),
        }
    }
}

/// What happened to one key during `apply` or `revert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Unchanged {
        key: String,
        value: String,
    },
    Changed {
        key: String,
        from: String,
        to: String,
    },
    Skipped {
        key: String,
    },
    /// Writing failed or the value read back differs.
    Failed {
        key: String,
        wanted: String,
        reason: String,
    },
}

impl Outcome {
    pub fn failed(&self) -> bool {
        matches!(self, Outcome::Failed { .. })
    }
}

fn wrap_comment(text: &str, out: &mut String) {
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() + word.len() > 92 {
            out.push_str(&line);
            out.push('\n');
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
}

/// The sysctl drop-in: every present key with the value `apply` sets, each explained.
pub fn render_sysctl_dropin(profile: &Profile, findings: &[Finding], files: &Files) -> String {
    let name = profile.name.as_str();
    let mut out = format!(
        "# Switchboard kernel settings, profile `{name}`.\n\
         # Written by `kernel-tuning apply --profile {name}`; `kernel-tuning revert --profile {name}`\n\
         # removes this file and restores the values saved in {}.\n\
         # Values that already met the recommendation were kept as they were.\n",
        files.saved.display()
    );
    for f in findings {
        let (setting, value) = match f {
            Finding::Missing(s) => {
                let _ = writeln!(out, "\n# {} is not in this kernel; skipped.", s.key);
                continue;
            }
            Finding::ReadOnly { setting, .. } => {
                let _ = writeln!(out, "\n# {} is read-only here; skipped.", setting.key);
                continue;
            }
            Finding::Ok { setting, current } => (setting, current.clone()),
            Finding::Drift {
                setting, target, ..
            } => (setting, target.clone()),
        };
        out.push('\n');
        wrap_comment(setting.why, &mut out);
        let _ = writeln!(out, "# recommended: {}", setting.want);
        let shown: Vec<&str> = value.split_whitespace().collect();
        let _ = writeln!(out, "{} = {}", setting.key, shown.join(" "));
    }
    out
}

/// The limits drop-in (PAM sessions; systemd units set their own limits).
pub fn render_limits_dropin(profile: &Profile) -> String {
    let mut out = format!(
        "# Switchboard limits, profile `{}`, written by kernel-tuning.\n\
         # Applies to login sessions (PAM). systemd services ignore this file: the units in\n\
         # deploy/systemd set LimitNOFILE= and LimitMEMLOCK= themselves.\n",
        profile.name.as_str()
    );
    for (domain, item, value) in &profile.limits {
        for kind in ["soft", "hard"] {
            let _ = writeln!(out, "{domain:<12} {kind:<4} {item:<8} {value}");
        }
    }
    out
}

fn read_saved(path: &PathBuf) -> Result<Option<BTreeMap<String, String>>, TuningError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(TuningError::ReadState {
                path: path.clone(),
                source,
            })
        }
    };
    let mut saved = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line.split_once('=').ok_or(TuningError::BadState {
            path: path.clone(),
            line: i + 1,
        })?;
        saved.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(Some(saved))
}

fn render_saved(saved: &BTreeMap<String, String>) -> String {
    let mut out = String::from(
        "# Values before `kernel-tuning apply` changed anything; `revert` restores them.\n",
    );
    for (k, v) in saved {
        let shown: Vec<&str> = v.split_whitespace().collect();
        let _ = writeln!(out, "{k} = {}", shown.join(" "));
    }
    out
}

fn set_and_verify(host: &Host, key: &str, from: &str, to: &str) -> Outcome {
    if same_value(from, to) {
        return Outcome::Unchanged {
            key: key.to_string(),
            value: from.to_string(),
        };
    }
    let failed = |reason: String| Outcome::Failed {
        key: key.to_string(),
        wanted: to.to_string(),
        reason,
    };
    if let Err(e) = host.write_sysctl(key, to) {
        return failed(format!("write failed: {e}"));
    }
    match host.read_sysctl(key) {
        Ok(Some(back)) if same_value(&back, to) => Outcome::Changed {
            key: key.to_string(),
            from: from.to_string(),
            to: to.to_string(),
        },
        Ok(Some(back)) => failed(format!("read back {back:?}")),
        Ok(None) => failed("key vanished".to_string()),
        Err(e) => failed(format!("read back failed: {e}")),
    }
}

fn write_file(path: &Path, contents: &str) -> Result<(), TuningError> {
    write_atomically(path, contents).map_err(|source| TuningError::WriteFile {
        path: path.to_path_buf(),
        source,
    })
}

/// Applies the profile. Saved values are written before anything changes.
pub fn apply(host: &Host, profile: &Profile) -> Result<Vec<Outcome>, TuningError> {
    let files = Files::of(host, profile);
    let findings = inspect(host, profile)?;

    // Keep the first saved value of each key; add keys seen for the first time.
    let mut saved = read_saved(&files.saved)?.unwrap_or_default();
    let before = saved.len();
    for f in &findings {
        if let Finding::Ok { setting, current }
        | Finding::Drift {
            setting, current, ..
        } = f
        {
            saved
                .entry(setting.key.to_string())
                .or_insert_with(|| current.clone());
        }
    }
    if saved.len() != before || !files.saved.exists() {
        write_file(&files.saved, &render_saved(&saved))?;
    }
    write_file(
        &files.sysctl_dropin,
        &render_sysctl_dropin(profile, &findings, &files),
    )?;
    write_file(&files.limits_dropin, &render_limits_dropin(profile))?;

    Ok(findings
        .iter()
        .map(|f| match f {
            Finding::Missing(s) => Outcome::Skipped {
                key: s.key.to_string(),
            },
            Finding::ReadOnly { setting, .. } => Outcome::Skipped {
                key: setting.key.to_string(),
            },
            Finding::Ok { setting, current } => Outcome::Unchanged {
                key: setting.key.to_string(),
                value: current.clone(),
            },
            Finding::Drift {
                setting,
                current,
                target,
            } => set_and_verify(host, setting.key, current, target),
        })
        .collect())
}

/// Restores the saved values and removes the drop-ins. With nothing saved there is nothing
/// to revert (an empty list).
pub fn revert(host: &Host, profile: &Profile) -> Result<Vec<Outcome>, TuningError> {
    let files = Files::of(host, profile);
    let Some(saved) = read_saved(&files.saved)? else {
        return Ok(Vec::new());
    };
    let mut outcomes = Vec::new();
    for (key, value) in &saved {
        let current = host.read_sysctl(key).map_err(|source| TuningError::Read {
            key: key.clone(),
            source,
        })?;
        outcomes.push(match current {
            None => Outcome::Skipped { key: key.clone() },
            Some(current) => set_and_verify(host, key, &current, value),
        });
    }
    if outcomes.iter().any(Outcome::failed) {
        // Keep the saved values and drop-ins so a second `revert` can finish the job.
        return Ok(outcomes);
    }
    for path in [&files.sysctl_dropin, &files.limits_dropin, &files.saved] {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(TuningError::WriteFile {
                    path: path.clone(),
                    source,
                })
            }
        }
    }
    Ok(outcomes)
}
