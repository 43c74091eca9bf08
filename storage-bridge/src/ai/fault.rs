//! A plugin that fails on purpose, for drills and tests: it panics, hangs past any deadline
//! or returns an error on every message. It shows, with real processes, that a broken plugin
//! changes nothing for the human path. Never configure it in production.

use super::plugin::{Plugin, PluginFuture, Turn};

/// How the fault plugin fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    Panic,
    Hang,
    Error,
}

pub struct FaultPlugin(pub Fault);

impl Plugin for FaultPlugin {
    fn name(&self) -> &str {
        "fault"
    }

    fn process<'a>(&'a self, _turn: &'a Turn<'a>) -> PluginFuture<'a> {
        let fault = self.0;
        Box::pin(async move {
            match fault {
                Fault::Panic => panic!("fault plugin: panic on purpose"),
                Fault::Hang => std::future::pending().await,
                Fault::Error => anyhow::bail!("fault plugin: error on purpose"),
            }
        })
    }
}
