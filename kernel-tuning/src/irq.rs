//! Opt-in: move a NIC's interrupts and packet steering off the cores the shards use.
//!
//! The gateway pins shard *i* to core *i*; on a host with cores to spare, the NIC's IRQs and
//! RPS/XPS belong on the others, so a burst of interrupts never preempts a shard mid-message.
//! Only run by `kernel-tuning irq --apply`; `check` just reports.

use crate::checks::{nics, online_cores, Nic};
use crate::host::{cpu_mask, format_cpu_list, Host};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum IrqError {
    #[error("no NIC named {0} with a device behind it under /sys/class/net")]
    NoSuchNic(String),
    #[error("the shards use every online core ({0}); leave at least one core for the NIC (fewer shards)")]
    NoSpareCores(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One file to write and its new contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IrqWrite {
    pub path: PathBuf,
    pub value: String,
}

/// The writes that spread `nic`'s IRQs round-robin over the cores the shards do not use,
/// and point every queue's RPS and XPS at those cores.
pub fn plan(host: &Host, nic: &str, shard_cores: &[usize]) -> Result<Vec<IrqWrite>, IrqError> {
    let nic: Nic = nics(host)
        .into_iter()
        .find(|n| n.name == nic)
        .ok_or_else(|| IrqError::NoSuchNic(nic.to_string()))?;
    let online = online_cores(host);
    let spare: Vec<usize> = online
        .iter()
        .copied()
        .filter(|c| !shard_cores.contains(c))
        .collect();
    if spare.is_empty() {
        return Err(IrqError::NoSpareCores(format_cpu_list(&online)));
    }
    let mut writes = Vec::new();
    for (i, irq) in nic.irqs.iter().enumerate() {
        writes.push(IrqWrite {
            path: host.under_proc(&format!("irq/{irq}/smp_affinity_list")),
            value: spare[i % spare.len()].to_string(),
        });
    }
    let mask = cpu_mask(&spare);
    for q in &nic.rx_queues {
        writes.push(IrqWrite {
            path: host.under_sys(&format!("class/net/{}/queues/{q}/rps_cpus", nic.name)),
            value: mask.clone(),
        });
    }
    for (i, q) in nic.tx_queues.iter().enumerate() {
        writes.push(IrqWrite {
            path: host.under_sys(&format!("class/net/{}/queues/{q}/xps_cpus", nic.name)),
            value: cpu_mask(&[spare[i % spare.len()]]),
        });
    }
    Ok(writes)
}

pub fn apply(writes: &[IrqWrite]) -> Result<(), IrqError> {
    for w in writes {
        std::fs::write(&w.path, format!("{}\n", w.value)).map_err(|source| IrqError::Write {
            path: w.path.clone(),
            source,
        })?;
    }
    Ok(())
}
