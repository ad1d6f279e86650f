//! Chat templates: a checkpoint's Jinja template (`tokenizer.chat_template` in GGUF,
//! `chat_template` in `tokenizer_config.json`, or `chat_template.jinja`), rendered with
//! minijinja the way transformers' `apply_chat_template` renders it (trimmed blocks,
//! Python string methods, `raise_exception`, `bos_token`/`eos_token` in scope).

use minijinja::syntax::SyntaxConfig;
use minijinja::value::Serde;
use minijinja::{Environment, ErrorKind, context};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::tokenizer::SpecialTokens;

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl Message {
    /// A message from `role`.
    pub fn new(role: &str, content: &str) -> Self {
        Message {
            role: role.to_string(),
            content: content.to_string(),
        }
    }

    /// The conversation `--chat` makes of a prompt: an optional system message, then the
    /// prompt as the user's.
    pub fn conversation(system: Option<&str>, user: &str) -> Vec<Message> {
        system
            .map(|s| Message::new("system", s))
            .into_iter()
            .chain([Message::new("user", user)])
            .collect()
    }
}

/// A checkpoint's chat template with the token texts it refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatTemplate {
    source: String,
    bos_token: String,
    eos_token: String,
}

impl ChatTemplate {
    /// The template `source`, with BOS/EOS texts looked up in `tokens` (id → text).
    pub fn new(source: &str, special: &SpecialTokens, tokens: &[&str]) -> Self {
        let text = |id: Option<u32>| {
            id.and_then(|i| tokens.get(i as usize))
                .map(|t| t.to_string())
                .unwrap_or_default()
        };
        ChatTemplate {
            source: source.to_string(),
            bos_token: text(special.bos),
            eos_token: text(special.eos),
        }
    }

    /// A template whose BOS/EOS texts are known.
    pub fn with_tokens(source: &str, bos_token: &str, eos_token: &str) -> Self {
        ChatTemplate {
            source: source.to_string(),
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
        }
    }

    /// The Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders `messages`, ending with the assistant's turn opened when
    /// `add_generation_prompt` is set.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let mut env = Environment::new();
        let bad = |e: minijinja::Error| ModelError::Tokenizer(format!("chat template: {e:#}"));
        env.set_syntax(
            SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .map_err(bad)?,
        );
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
        env.add_template("chat", &self.source).map_err(bad)?;
        env.get_template("chat")
            .map_err(bad)?
            .render(context! {
                messages => Serde(messages),
                add_generation_prompt => add_generation_prompt,
                bos_token => &self.bos_token,
                eos_token => &self.eos_token,
            })
            .map_err(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn renders_chatml_with_generation_prompt() {
        let t = ChatTemplate::with_tokens(CHATML, "", "<|im_end|>");
        let out = t
            .render(&Message::conversation(Some("Be brief."), "Hi"), true)
            .unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn python_methods_and_raise_exception() {
        let src = "{% if messages[0].role != 'user' %}{{ raise_exception('first must be user') }}{% endif %}{{ bos_token }}{{ messages[0].content.strip().upper() }}";
        let t = ChatTemplate::with_tokens(src, "<s>", "</s>");
        assert_eq!(
            t.render(&[Message::new("user", "  hi ")], false).unwrap(),
            "<s>HI"
        );
        let err = t.render(&[Message::new("system", "x")], false).unwrap_err();
        assert!(err.to_string().contains("first must be user"), "{err}");
    }
}
