//! What `switchboard providers check` checks: the providers an assistant's calls would use,
//! resolved exactly like a call resolves them (`call::resolve`: the assistant's keys, then its
//! organisation's, then the environment's; names to ids; base URLs), or, without an assistant,
//! every provider the operator's environment holds a key for. Each target becomes one row of
//! the report through `switchboard_providers::check`; a stage that cannot be resolved (a
//! provider the engine does not run, a key bound to another host) is a row saying why.

use std::time::Duration;

use serde_json::Map;
use switchboard_assistant::{AssistantConfig, deserialize_config};
use switchboard_netguard::OutboundPolicy;
pub use switchboard_providers::check::{CheckRow, Checker, Verdict, table};
use switchboard_providers::error::ProviderError;
use switchboard_providers::llm::{LlmConfig, LlmProvider};
use switchboard_providers::registry::{self, ProviderKind, Support};
use switchboard_providers::stt::SttConfig;
use switchboard_providers::tts::TtsConfig;
use switchboard_store::{Store, StoreError};

use crate::call::resolve::{self, KeySources};
use crate::config::{EnvKeys, Settings};

/// Why the check could not start.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The database could not be read.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// No assistant has this id.
    #[error("no assistant with id {0}")]
    NoAssistant(i64),
    /// The stored record does not parse.
    #[error("assistant {id} does not parse: {message}")]
    Record {
        /// The assistant.
        id: i64,
        /// What is wrong.
        message: String,
    },
    /// Without an assistant, the environment holds no provider key.
    #[error(
        "nothing to check: no --assistant given and no provider key in the environment (DEEPGRAM_API_KEY, OPENAI_API_KEY, …)"
    )]
    NothingToCheck,
    /// The HTTP client could not be built.
    #[error("{0}")]
    Client(#[from] ProviderError),
}

/// The providers of assistant `id` (any organisation: the operator's command), resolved with
/// its organisation's keys and, when `[providers] env_key_orgs` names that organisation, the
/// environment's.
pub async fn targets_of_assistant(
    store: &Store,
    settings: &Settings,
    id: i64,
) -> Result<Vec<Target>, CheckError> {
    let row = store
        .get_assistant_any_org(id)
        .await?
        .ok_or(CheckError::NoAssistant(id))?;
    let config = deserialize_config(row.config).map_err(|e| CheckError::Record {
        id,
        message: e.to_string(),
    })?;
    let org_name = store
        .get_organization(row.organization_id)
        .await?
        .map(|o| o.name)
        .unwrap_or_default();
    let org_keys = store.get_org_provider_keys(row.organization_id).await?;
    let keys = KeySources::for_organization(&org_name, org_keys, &settings.providers);
    Ok(assistant_targets(&config, &keys, &outbound(settings)))
}

/// The providers the operator's environment holds keys for, or [`CheckError::NothingToCheck`].
pub fn targets_of_environment(settings: &Settings) -> Result<Vec<Target>, CheckError> {
    let targets = environment_targets(&settings.providers.environment_keys, &outbound(settings));
    if targets.is_empty() {
        return Err(CheckError::NothingToCheck);
    }
    Ok(targets)
}

/// Checks `targets` with requests held to the configured outbound policy, each within
/// `timeout`.
pub async fn check(
    settings: &Settings,
    targets: Vec<Target>,
    timeout: Duration,
) -> Result<Vec<CheckRow>, CheckError> {
    let checker = Checker::new(outbound(settings), timeout)?;
    Ok(run(targets, &checker).await)
}

/// The outbound policy calls use (`[outbound] allow_hosts`, `[tls]` roots).
fn outbound(settings: &Settings) -> OutboundPolicy {
    settings.outbound_policy()
}

/// One provider to check, as a call would configure it.
#[derive(Debug, Clone)]
pub enum Target {
    /// The STT stage.
    Stt(Box<SttConfig>),
    /// The TTS stage.
    Tts(Box<TtsConfig>),
    /// The primary LLM or one fallback.
    Llm(Box<LlmConfig>),
    /// A stage that cannot be resolved: its row says why.
    Unresolved(CheckRow),
}

/// The providers a call of `a` would use, with the keys of `keys`, each held to `outbound`.
pub fn assistant_targets(
    a: &AssistantConfig,
    keys: &KeySources,
    outbound: &OutboundPolicy,
) -> Vec<Target> {
    let mut targets = Vec::new();
    let stt_name = a.stt_settings.provider.as_deref().unwrap_or("deepgram");
    targets.push(match resolve::stt_config(a, keys) {
        Ok(mut cfg) => {
            cfg.outbound = outbound.clone();
            Target::Stt(Box::new(cfg))
        }
        Err(e) => Target::Unresolved(CheckRow::unchecked(
            ProviderKind::Stt,
            stt_name,
            e.to_string(),
        )),
    });
    targets.push(match resolve::tts_config(a, keys) {
        Ok(mut cfg) => {
            cfg.outbound = outbound.clone();
            Target::Tts(Box::new(cfg))
        }
        Err(e) => Target::Unresolved(CheckRow::unchecked(
            ProviderKind::Tts,
            &a.tts_settings.provider,
            e.to_string(),
        )),
    });
    match resolve::llm_configs(a, keys) {
        Ok((primary, fallbacks)) => targets.extend(
            std::iter::once(primary)
                .chain(fallbacks)
                .map(|cfg| Target::Llm(Box::new(cfg))),
        ),
        Err(e) => targets.push(Target::Unresolved(CheckRow::unchecked(
            ProviderKind::Llm,
            a.llm_provider.as_deref().unwrap_or("openai"),
            e.to_string(),
        ))),
    }
    targets
}

/// Every provider the engine runs for which `env` holds a key (`DEEPGRAM_API_KEY`, …), with its
/// default model and voice; LLMs that need a base URL of their own (Azure, custom) are left out.
pub fn environment_targets(env: &EnvKeys, outbound: &OutboundPolicy) -> Vec<Target> {
    let keys = KeySources {
        organization: Map::new(),
        environment: env.clone(),
    };
    let has_key = |name: &str| {
        let upper = name.to_ascii_uppercase();
        env.get(&format!("{upper}_API_KEY")).is_some() || env.get(&format!("{upper}_KEY")).is_some()
    };
    let runnable = |kind| {
        registry::providers(kind)
            .into_iter()
            .filter(|p| p.support == Support::Runs && has_key(p.name))
            .map(|p| p.name)
            .collect::<Vec<_>>()
    };
    let mut targets = Vec::new();
    for name in runnable(ProviderKind::Stt) {
        let mut a = AssistantConfig::new("environment");
        a.stt_settings.provider = Some(name.to_owned());
        targets.extend(
            assistant_targets(&a, &keys, outbound)
                .into_iter()
                .filter(|t| matches!(t, Target::Stt(_))),
        );
    }
    for name in runnable(ProviderKind::Tts) {
        let mut a = AssistantConfig::new("environment");
        a.tts_settings.provider = name.to_owned();
        targets.extend(
            assistant_targets(&a, &keys, outbound)
                .into_iter()
                .filter(|t| matches!(t, Target::Tts(_))),
        );
    }
    for name in runnable(ProviderKind::Llm) {
        let needs_base = LlmProvider::parse(name).is_none_or(|p| p.default_base_url().is_none());
        if needs_base {
            continue;
        }
        let mut a = AssistantConfig::new("environment");
        a.llm_provider = Some(name.to_owned());
        targets.extend(
            assistant_targets(&a, &keys, outbound)
                .into_iter()
                .filter(|t| matches!(t, Target::Llm(_))),
        );
    }
    targets
}

/// Checks every target in order, one at a time (a handful of tiny requests).
pub async fn run(targets: Vec<Target>, checker: &Checker) -> Vec<CheckRow> {
    let mut rows = Vec::with_capacity(targets.len());
    for target in targets {
        rows.push(match target {
            Target::Stt(cfg) => checker.stt(&cfg).await,
            Target::Tts(cfg) => checker.tts(&cfg).await,
            Target::Llm(cfg) => checker.llm(&cfg).await,
            Target::Unresolved(row) => row,
        });
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> EnvKeys {
        let vars: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        EnvKeys::from_vars(&vars)
    }

    #[test]
    fn the_environment_checks_what_it_has_keys_for() {
        let targets = environment_targets(
            &env(&[("DEEPGRAM_API_KEY", "dg"), ("ANTHROPIC_API_KEY", "ant")]),
            &OutboundPolicy::default(),
        );
        let names: Vec<String> = targets
            .iter()
            .map(|t| match t {
                Target::Stt(c) => format!("stt:{}:{}", c.provider, c.api_key),
                Target::Tts(c) => format!("tts:{}:{}:{}", c.provider, c.api_key, c.voice_id),
                Target::Llm(c) => format!("llm:{}:{}:{}", c.provider, c.api_key, c.model),
                Target::Unresolved(r) => format!("x:{}", r.provider),
            })
            .collect();
        let claude = registry::info(ProviderKind::Llm, "anthropic")
            .and_then(|p| p.default_model)
            .expect("default");
        assert_eq!(
            names,
            vec![
                "stt:deepgram:dg".to_owned(),
                "tts:deepgram:dg:aura-2-thalia-en".to_owned(),
                format!("llm:anthropic:ant:{claude}"),
            ]
        );
    }

    #[test]
    fn an_assistant_checks_each_stage_and_says_why_one_cannot_run() {
        let mut a = AssistantConfig::new("a");
        a.stt_settings.provider = Some("azure".into());
        let targets = assistant_targets(&a, &KeySources::default(), &OutboundPolicy::default());
        assert_eq!(targets.len(), 3);
        match &targets[0] {
            Target::Unresolved(row) => {
                assert_eq!(row.provider, "azure");
                assert!(
                    row.detail.contains("not run by this engine"),
                    "{}",
                    row.detail
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(&targets[1], Target::Tts(c) if c.voice_id == "21m00Tcm4TlvDq8ikWAM"));
        assert!(matches!(&targets[2], Target::Llm(c) if c.model == "gpt-4o-mini"));
    }
}
