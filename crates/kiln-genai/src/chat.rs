//! Chat prompts: a model folder's chat template (`chat_template.jinja`, or `chat_template` in
//! `tokenizer_config.json`, as Hugging Face's tokenizers keep it) rendered with `minijinja` over
//! the conversation, as `transformers`' `apply_chat_template` renders it.
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::GenError;

/// One turn of a conversation.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// The folder's chat template and the special tokens templates refer to.
#[derive(Clone, Debug, Default)]
pub struct ChatTemplate {
    pub source: Option<String>,
    pub bos_token: String,
    pub eos_token: String,
}

/// A special token as tokenizer_config.json writes it: a string, or `{"content": ...}`.
fn token_text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(o)) => o
            .get("content")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        _ => String::new(),
    }
}

impl ChatTemplate {
    pub fn load(dir: &Path) -> Result<ChatTemplate, GenError> {
        let cfg: Value = match std::fs::read_to_string(dir.join("tokenizer_config.json")) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| GenError::Tokenizer(format!("tokenizer_config.json: {e}")))?,
            Err(_) => Value::Null,
        };
        let inline = match cfg.get("chat_template") {
            Some(Value::String(s)) => Some(s.clone()),
            // A list of named templates: the default one.
            Some(Value::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .or(list.first())
                .and_then(|t| t.get("template"))
                .and_then(Value::as_str)
                .map(str::to_string),
            _ => None,
        };
        let file = std::fs::read_to_string(dir.join("chat_template.jinja")).ok();
        Ok(ChatTemplate {
            source: file.or(inline),
            bos_token: token_text(cfg.get("bos_token")),
            eos_token: token_text(cfg.get("eos_token")),
        })
    }

    /// The prompt text for `messages`, ending with the assistant's cue when
    /// `add_generation_prompt`. `template` overrides the folder's.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        template: Option<&str>,
    ) -> Result<String, GenError> {
        let src = template.or(self.source.as_deref()).ok_or_else(|| {
            GenError::Usage(
                "the model folder has no chat template (chat_template.jinja or tokenizer_config.json)"
                    .into(),
            )
        })?;
        let mut env = minijinja::Environment::new();
        minijinja_contrib::add_to_environment(&mut env);
        // Python's str methods (.strip(), .startswith()) that Hugging Face templates call.
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    msg,
                ))
            },
        );
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        let tmpl = env
            .template_from_str(src)
            .map_err(|e| GenError::Usage(format!("chat template: {e}")))?;
        tmpl.render(minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        })
        .map_err(|e| GenError::Usage(format!("chat template: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs() -> Vec<Message> {
        vec![
            Message {
                role: "system".into(),
                content: " Be brief. ".into(),
            },
            Message {
                role: "user".into(),
                content: "Hi".into(),
            },
        ]
    }

    #[test]
    fn renders_python_style_templates() {
        let t = ChatTemplate {
            source: Some(
                "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}[{{ m['content'].strip() }}]{% else %}<{{ m.role }}>{{ m.content }}{% endif %}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}".into(),
            ),
            bos_token: "<s>".into(),
            eos_token: "</s>".into(),
        };
        assert_eq!(
            t.render(&msgs(), true, None).unwrap(),
            "<s>[Be brief.]<user>Hi<assistant>"
        );
        assert_eq!(
            t.render(&msgs(), false, None).unwrap(),
            "<s>[Be brief.]<user>Hi"
        );
    }

    #[test]
    fn errors_name_the_problem() {
        let none = ChatTemplate::default();
        assert!(none
            .render(&msgs(), true, None)
            .unwrap_err()
            .to_string()
            .contains("no chat template"));
        let t = ChatTemplate {
            source: Some("{{ raise_exception('roles must alternate') }}".into()),
            ..Default::default()
        };
        assert!(t
            .render(&msgs(), true, None)
            .unwrap_err()
            .to_string()
            .contains("roles must alternate"));
        let bad = ChatTemplate {
            source: Some("{% for %}".into()),
            ..Default::default()
        };
        assert!(bad
            .render(&msgs(), true, None)
            .unwrap_err()
            .to_string()
            .contains("chat template"));
    }
}
