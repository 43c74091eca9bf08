//! The llm plugin's settings from its `[[plugin]]` entry, checked whole: each mistake is
//! named (the configuration adds the plugin's name), and no message ever carries the API
//! key, only the name of the variable or file that holds it. Kept apart from `config` so
//! that the generic configuration stays short.

use super::config::PluginConfig;
use super::llm::{self, ApiKey, LlmOptions};
use std::path::Path;
use std::time::Duration;

/// The llm plugin's settings, checked; an error says what is wrong, never the key.
pub(super) fn llm_options(
    p: &PluginConfig,
    base: &Path,
    deadline_ms: u64,
) -> Result<LlmOptions, String> {
    let base_url = p.base_url.as_deref().ok_or("base_url is required")?;
    let url = reqwest::Url::parse(base_url).map_err(|e| format!("base_url: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("base_url must be http:// or https://".into());
    }
    let model = p.model.as_deref().unwrap_or_default();
    if model.trim().is_empty() {
        return Err("model is required".into());
    }
    let api_key = match (&p.api_key_env, &p.api_key_file) {
        (Some(_), Some(_)) => return Err("api_key_env and api_key_file: give one".into()),
        (Some(var), None) => Some(
            std::env::var(var)
                .ok()
                .and_then(|k| ApiKey::new(&k))
                .ok_or_else(|| {
                    format!("api_key_env: the environment variable {var} is not set or empty")
                })?,
        ),
        (None, Some(file)) => {
            let text = std::fs::read_to_string(base.join(file))
                .map_err(|e| format!("api_key_file {}: {e}", file.display()))?;
            Some(
                ApiKey::new(&text)
                    .ok_or_else(|| format!("api_key_file {}: empty", file.display()))?,
            )
        }
        (None, None) => None,
    };
    let mut o = LlmOptions::new(base_url, model);
    o.api_key = api_key;
    o.mode = p.mode.unwrap_or_default();
    o.max_tokens = p.max_tokens.unwrap_or(o.max_tokens);
    if o.max_tokens == 0 {
        return Err("max_tokens must be at least 1".into());
    }
    let max = u64::from(o.max_tokens);
    o.conversation_tokens = p
        .conversation_tokens
        .unwrap_or(o.conversation_tokens.max(max));
    o.tokens_per_minute = p.tokens_per_minute.unwrap_or(o.tokens_per_minute.max(max));
    if o.conversation_tokens < max || o.tokens_per_minute < max {
        return Err("conversation_tokens and tokens_per_minute must be at least max_tokens".into());
    }
    if let Some(t) = p.temperature {
        if !(0.0..=2.0).contains(&t) {
            return Err("temperature must be 0..=2".into());
        }
        o.temperature = Some(t);
    }
    if let Some(prompt) = &p.system_prompt {
        if prompt.trim().is_empty() {
            return Err("system_prompt is empty".into());
        }
        o.system_prompt = prompt.clone();
    }
    // Below the deadline, or the two race to say the same thing.
    o.timeout = match p.timeout_ms {
        Some(t) if t == 0 || t >= deadline_ms => {
            return Err(format!(
                "timeout_ms must be 1..{deadline_ms} (below the deadline)"
            ))
        }
        Some(t) => Some(Duration::from_millis(t)),
        None => (llm::DEFAULT_TIMEOUT_MS < deadline_ms)
            .then(|| Duration::from_millis(llm::DEFAULT_TIMEOUT_MS)),
    };
    o.memory = p.memory.unwrap_or(o.memory);
    if o.memory > 50 {
        return Err("memory must be 0..=50 turns".into());
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use crate::ai::config::AiConfig;

    #[test]
    fn llm_mistakes_are_named_and_never_show_the_key() {
        let dir = std::env::temp_dir().join(format!("sb-ai-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("llm.key"), "sk-config-secret-77\n").unwrap();
        std::fs::write(dir.join("empty.key"), "\n").unwrap();
        std::fs::write(dir.join("faq.toml"), crate::ai::kb::EXAMPLE_KB).unwrap();
        let build = |text: &str| {
            AiConfig::from_toml(&format!("mode = \"bot_first\"\n{text}"))
                .and_then(|c| c.chain(&dir).map(|_| ()))
        };
        let err = |text: &str| build(text).unwrap_err().to_string();
        let llm = "[[plugin]]\nname = \"llm\"\n";
        let url = "base_url = \"http://127.0.0.1:9/v1\"\n";
        let model = "model = \"m\"\n";
        let ok = format!("{llm}{url}{model}");
        for (text, want) in [
            (format!("{llm}{model}"), "base_url is required"),
            (format!("{llm}{url}"), "model is required"),
            (
                format!("{llm}base_url = \"ftp://x\"\n{model}"),
                "http:// or https://",
            ),
            (
                format!("{llm}base_url = \"not a url\"\n{model}"),
                "base_url",
            ),
            (
                format!("{ok}api_key_env = \"SB_AI_TEST_UNSET_KEY\"\napi_key_file = \"llm.key\"\n"),
                "give one",
            ),
            (
                format!("{ok}api_key_env = \"SB_AI_TEST_UNSET_KEY\"\n"),
                "SB_AI_TEST_UNSET_KEY is not set",
            ),
            (
                format!("{ok}api_key_file = \"missing.key\"\n"),
                "missing.key",
            ),
            (format!("{ok}api_key_file = \"empty.key\"\n"), "empty"),
            (format!("{ok}mode = \"sometimes\"\n"), "unknown variant"),
            (format!("{ok}max_tokens = 0\n"), "max_tokens"),
            (
                format!("{ok}max_tokens = 500\nconversation_tokens = 400\n"),
                "at least max_tokens",
            ),
            (format!("{ok}temperature = 3.5\n"), "temperature"),
            (
                format!("{ok}deadline_ms = 300\ntimeout_ms = 400\n"),
                "timeout_ms must be 1..300",
            ),
            (format!("{ok}kb_context = true\n"), "kb_context needs a kb"),
            (format!("{ok}system_prompt = \" \"\n"), "system_prompt"),
            (format!("{ok}memory = 51\n"), "memory"),
            (format!("{ok}threshold = 0.5\n"), "threshold does not apply"),
            (
                "[[plugin]]\nname = \"kb\"\nfile = \"faq.toml\"\nmode = \"draft\"\n".into(),
                "mode does not apply",
            ),
            (
                "[[plugin]]\nname = \"handoff\"\nmax_tokens = 10\n".into(),
                "max_tokens does not apply",
            ),
            (format!("{ok}{llm}{url}{model}"), "listed twice"),
        ] {
            let e = err(&text);
            assert!(e.contains(want), "{text:?}: {e:?}, want {want:?}");
            assert!(!e.contains("sk-config-secret"), "{e}");
        }
        // Every setting, the key from a file, the kb after the llm (built for its context).
        let full = format!(
            "{ok}api_key_file = \"llm.key\"\nmode = \"draft\"\ntimeout_ms = 1000\nmax_tokens = 100\n\
             conversation_tokens = 1000\ntokens_per_minute = 5000\ntemperature = 0.2\n\
             system_prompt = \"Be brief.\"\nkb_context = true\nmemory = 2\n\
             [[plugin]]\nname = \"kb\"\nfile = \"faq.toml\"\n[[plugin]]\nname = \"handoff\"\n"
        );
        build(&full).unwrap();
        let cfg = AiConfig::from_toml(&full).unwrap();
        assert!(!format!("{cfg:?}").contains("sk-config-secret"));
        std::env::set_var("SB_AI_TEST_SET_KEY", "sk-env-secret");
        build(&format!("{ok}api_key_env = \"SB_AI_TEST_SET_KEY\"\n")).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
