//! The stores this process knows, built from `inventory` at start-up. No
//! store is named here: a plugin crate linked into the binary is a store.

use std::collections::BTreeMap;
use std::sync::Arc;

use storehook_core::{registrations, FactoryContext, StoreAdapter, StoreRegistration};

use crate::config::{Config, ConfigError};

pub struct StoreEntry {
    pub registration: &'static StoreRegistration,
    pub enabled: bool,
    /// Built for enabled, supported stores only.
    pub adapter: Option<Arc<dyn StoreAdapter>>,
}

pub struct Registry {
    stores: BTreeMap<&'static str, StoreEntry>,
    pub warnings: Vec<String>,
}

impl Registry {
    /// Builds every enabled store's adapter from its `[stores.<id>]` table.
    /// Unknown store ids and misconfigured enabled stores are errors.
    pub fn build(
        config: &Config,
        env: &(dyn Fn(&str) -> Option<String> + Sync),
    ) -> Result<Self, ConfigError> {
        let known = registrations();
        let mut problems = Vec::new();
        for id in config.stores.keys() {
            if !known.iter().any(|r| r.id == id) {
                let ids: Vec<_> = known.iter().map(|r| r.id).collect();
                problems.push(format!(
                    "[stores.{id}]: no store with id `{id}` is registered (known: {})",
                    ids.join(", ")
                ));
            }
        }
        let ctx = FactoryContext {
            config_dir: config.base_dir.clone(),
            env,
        };
        let mut stores = BTreeMap::new();
        let mut warnings = Vec::new();
        for registration in known {
            let mut table = match config.stores.get(registration.id) {
                None => toml::Table::new(),
                Some(toml::Value::Table(t)) => t.clone(),
                Some(_) => {
                    problems.push(format!("stores.{}: must be a table", registration.id));
                    continue;
                }
            };
            let enabled = match table.remove("enabled") {
                None => false,
                Some(toml::Value::Boolean(b)) => b,
                Some(_) => {
                    problems.push(format!(
                        "stores.{}.enabled: must be true or false",
                        registration.id
                    ));
                    continue;
                }
            };
            let mut adapter = None;
            if enabled && !registration.supported {
                warnings.push(format!(
                    "{} ({}) is enabled in the config, but storehook does not support it yet: \
                     its notifications will be answered 501 and nothing will be stored",
                    registration.name, registration.id
                ));
            } else if enabled {
                match (registration.build)(&table, &ctx) {
                    Ok(built) => {
                        for w in built.startup_warnings() {
                            warnings.push(format!("{}: {w}", registration.id));
                        }
                        adapter = Some(Arc::from(built));
                    }
                    Err(e) => problems.push(e.to_string()),
                }
            }
            stores.insert(
                registration.id,
                StoreEntry {
                    registration,
                    enabled,
                    adapter,
                },
            );
        }
        if !problems.is_empty() {
            return Err(ConfigError::Invalid(problems.join("\n")));
        }
        Ok(Self { stores, warnings })
    }

    pub fn get(&self, id: &str) -> Option<&StoreEntry> {
        self.stores.get(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &StoreEntry> {
        self.stores.values()
    }
}
