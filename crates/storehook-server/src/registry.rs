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
    /// Two plugins registering one id is refused before anything is built.
    pub fn build(
        config: &Config,
        env: &(dyn Fn(&str) -> Option<String> + Sync),
    ) -> Result<Self, ConfigError> {
        Self::from_registrations(registrations(), config, env)
    }

    fn from_registrations(
        known: Vec<&'static StoreRegistration>,
        config: &Config,
        env: &(dyn Fn(&str) -> Option<String> + Sync),
    ) -> Result<Self, ConfigError> {
        check_unique(&known)?;
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

/// Every store id registered once, and none empty: otherwise the registry
/// and `find_registration` could disagree about which plugin serves an id.
fn check_unique(known: &[&'static StoreRegistration]) -> Result<(), ConfigError> {
    let mut by_id: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in known {
        by_id.entry(r.id).or_default().push(r.name);
    }
    let mut problems = Vec::new();
    for (id, names) in &by_id {
        if id.is_empty() {
            problems.push(format!(
                "a plugin registers a store without an id ({})",
                names.join(", ")
            ));
        } else if names.len() > 1 {
            problems.push(format!(
                "the store id `{id}` is registered by {} plugins ({}): link only one of them",
                names.len(),
                names.join(", ")
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ConfigError::Plugins(problems.join("\n")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(
        _: &toml::Table,
        _: &FactoryContext<'_>,
    ) -> Result<Box<dyn StoreAdapter>, storehook_core::ConfigError> {
        Err(storehook_core::ConfigError::new("not built in this test"))
    }

    static ONE: StoreRegistration = StoreRegistration::new("one", "One", "ONE", build);
    static TWO: StoreRegistration = StoreRegistration::new("two", "Two", "TWO", build);
    static ANOTHER_ONE: StoreRegistration =
        StoreRegistration::new("one", "Another One", "ONE", build);
    static NO_ID: StoreRegistration = StoreRegistration::new("", "Nameless", "X", build);

    #[test]
    fn duplicate_store_ids_are_refused_at_start_up() {
        let config = Config::parse("", std::path::PathBuf::from(".")).expect("config");
        let env = |_: &str| None;
        let registry = Registry::from_registrations(vec![&ONE, &TWO], &config, &env)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(registry.iter().count(), 2);

        let Err(e) = Registry::from_registrations(vec![&ONE, &TWO, &ANOTHER_ONE], &config, &env)
        else {
            panic!("a duplicate id was accepted");
        };
        assert!(matches!(e, ConfigError::Plugins(_)), "{e:?}");
        assert_eq!(
            e.to_string(),
            "the store id `one` is registered by 2 plugins (One, Another One): link only one of them"
        );

        let Err(e) = Registry::from_registrations(vec![&ONE, &NO_ID], &config, &env) else {
            panic!("an empty id was accepted");
        };
        assert!(e.to_string().contains("without an id (Nameless)"), "{e}");
    }
}
