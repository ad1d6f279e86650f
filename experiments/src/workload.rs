//! The requests of an experiment: prompts (built-in sets or a JSONL file), each with a
//! data-class tag, and when each request starts (closed loop or Poisson arrivals).

use std::path::Path;

use serde::Deserialize;
use tandem_decoding::SessionRng;
use tandem_models::{Message, Tokenizer};

/// One prompt of a workload: raw text, or a conversation rendered by the target's chat
/// template.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prompt {
    /// The text (for a conversation: its last message, for display and routing).
    #[serde(default)]
    pub prompt: String,
    /// A conversation (`[{"role": "user", "content": …}]`), sent through the target's
    /// chat template with the assistant's turn opened.
    #[serde(default)]
    pub messages: Option<Vec<Message>>,
    /// Its tags, comma-separated: a data class (`public`, `private`), a task
    /// (`classification`, `synthesis`, ...), for routing and the records.
    #[serde(default = "public")]
    pub tag: String,
    /// Its latency SLO, ms, for routing (`tight_slo_ms`).
    #[serde(default)]
    pub slo_ms: Option<f64>,
}

impl Prompt {
    /// The prompt's token ids for `tokenizer`: a conversation rendered by its chat
    /// template (which places any BOS itself), or the text after `bos`.
    pub fn ids(&self, tokenizer: &Tokenizer, bos: Option<u32>) -> Result<Vec<u32>, String> {
        let fail = |e: tandem_models::ModelError| format!("tokenizing {:?}: {e}", self.prompt);
        if let Some(messages) = &self.messages {
            return tokenizer.encode_chat(messages).map_err(fail);
        }
        let mut ids: Vec<u32> = bos.into_iter().collect();
        ids.extend(tokenizer.encode(&self.prompt).map_err(fail)?);
        Ok(ids)
    }
}

fn public() -> String {
    "public".into()
}

/// Built-in prompt sets, written in the shapes the shipped tiny pair was trained on:
/// `stories` (long-range names and objects), `counting` (arithmetic runs), `recall`
/// (key-value lookups), `copying`, and `mixed` (all four in turn).
pub const BUILTIN_SETS: &[&str] = &["stories", "counting", "recall", "copying", "mixed"];

const STORIES: &[&str] = &[
    "Once upon a time, there was a kind owl named",
    "Once upon a time, there was a little fox named Mia. Mia lived near the river and liked to",
    "Once upon a time, there was a brave bear named Leo. Leo lived near the forest and liked to sing every day. One day, Leo found a",
    "Once upon a time, there was a sleepy cat named Ada. Ada lived near the garden and liked to read every day. One day, Ada found a blue kite in the garden. Ada showed the blue kite to",
    "Once upon a time, there was a curious duck named Finn.",
    "Once upon a time, there was a happy frog named Ruby. Ruby lived near the lake and",
];
const COUNTING: &[&str] = &[
    "Count by 3 from 12: 12 15",
    "Count by 1 from 40: 40 41 42",
    "Count by 2 from 7: 7 9",
    "Count by 3 from 60:",
    "Count by 2 from 31: 31 33 35 37",
    "Count by 1 from 5: 5",
];
const RECALL: &[&str] = &[
    "The green box has a kite. The red box has a bell. The pink box has a map. Question: what is in the red box? Answer:",
    "The blue box has a cup. The white box has a drum. Question: what is in the white box? Answer:",
    "The yellow box has a key. The black box has a shell. The gray box has a hat. The brown box has a ball. Question: what is in the yellow box? Answer:",
    "The orange box has a stone. The green box has a book. Question: what is in the green box? Answer:",
];
const COPYING: &[&str] = &[
    "Repeat after me: fox blue drum cup. Again:",
    "Repeat after me: owl map red. Again:",
    "Repeat after me: kite bear green shell horse. Again:",
    "Repeat after me: bell yellow frog. Again: bell",
];

/// A prompt set: `builtin:NAME`, or a JSONL file (relative paths from `base`) of
/// `{"prompt": …}` or `{"messages": [{"role": …, "content": …}, …]}` lines, each with an
/// optional `"tag"`.
pub fn load_prompts(spec: &str, base: &Path) -> Result<Vec<Prompt>, String> {
    if let Some(name) = spec.strip_prefix("builtin:") {
        let sets: Vec<&[&str]> = match name {
            "stories" => vec![STORIES],
            "counting" => vec![COUNTING],
            "recall" => vec![RECALL],
            "copying" => vec![COPYING],
            "mixed" => vec![STORIES, COUNTING, RECALL, COPYING],
            _ => {
                return Err(format!(
                    "unknown prompt set {spec:?}: built-in sets are {}",
                    BUILTIN_SETS
                        .iter()
                        .map(|s| format!("builtin:{s}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        };
        // `mixed` interleaves the sets so that any prefix of it is mixed too.
        let longest = sets.iter().map(|s| s.len()).max().unwrap_or(0);
        let prompts = (0..longest)
            .flat_map(|i| sets.iter().filter_map(move |s| s.get(i)))
            .map(|p| Prompt {
                prompt: (*p).into(),
                messages: None,
                tag: public(),
                slo_ms: None,
            })
            .collect();
        return Ok(prompts);
    }
    let path = base.join(spec);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read the prompt file {}: {e}", path.display()))?;
    let mut prompts = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut p: Prompt =
            serde_json::from_str(line).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))?;
        match &p.messages {
            Some(_) if !p.prompt.is_empty() => {
                return Err(format!(
                    "{}:{}: give \"prompt\" or \"messages\", not both",
                    path.display(),
                    i + 1
                ));
            }
            Some(m) if m.is_empty() => {
                return Err(format!(
                    "{}:{}: \"messages\" is empty",
                    path.display(),
                    i + 1
                ));
            }
            Some(m) => p.prompt = m.last().map(|m| m.content.clone()).unwrap_or_default(),
            None if p.prompt.is_empty() => {
                return Err(format!("{}:{}: the prompt is empty", path.display(), i + 1));
            }
            None => {}
        }
        if let Some(slo) = p.slo_ms
            && !(slo.is_finite() && slo > 0.0)
        {
            return Err(format!(
                "{}:{}: \"slo_ms\" must be > 0, got {slo}",
                path.display(),
                i + 1
            ));
        }
        prompts.push(p);
    }
    if prompts.is_empty() {
        return Err(format!("{} holds no prompts", path.display()));
    }
    Ok(prompts)
}

/// Start offsets (seconds from the cell's start) of `n` Poisson arrivals at `rate`
/// per second, deterministic in `seed`.
pub fn poisson_arrivals(n: usize, rate: f64, seed: u64) -> Vec<f64> {
    let mut rng = SessionRng::new(seed ^ 0x5eed_a11e);
    let mut t = 0.0;
    (0..n)
        .map(|_| {
            // Exponential gaps: -ln(U) / rate, with U in (0, 1].
            let u = 1.0 - rng.uniform();
            t += -u.ln() / rate;
            t
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_sets_load_and_unknown_ones_are_named() {
        for set in BUILTIN_SETS {
            let p = load_prompts(&format!("builtin:{set}"), Path::new(".")).unwrap();
            assert!(!p.is_empty(), "{set}");
        }
        let mixed = load_prompts("builtin:mixed", Path::new(".")).unwrap();
        assert_eq!(mixed[0].prompt, STORIES[0]);
        assert_eq!(mixed[1].prompt, COUNTING[0]);
        let e = load_prompts("builtin:poems", Path::new(".")).unwrap_err();
        assert!(e.contains("builtin:stories"), "{e}");
    }

    #[test]
    fn prompts_may_carry_an_slo_and_a_bad_one_names_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.jsonl");
        std::fs::write(
            &path,
            "{\"prompt\": \"a\", \"tag\": \"classification,public\", \"slo_ms\": 80}\n{\"prompt\": \"b\"}\n",
        )
        .unwrap();
        let p = load_prompts("p.jsonl", dir.path()).unwrap();
        assert_eq!((p[0].slo_ms, p[1].slo_ms), (Some(80.0), None));
        std::fs::write(
            &path,
            "{\"prompt\": \"a\"}\n{\"prompt\": \"b\", \"slo_ms\": -1}\n",
        )
        .unwrap();
        let err = load_prompts("p.jsonl", dir.path()).unwrap_err();
        assert!(err.contains("p.jsonl:2") && err.contains("slo_ms"), "{err}");
    }

    #[test]
    fn jsonl_prompts_carry_tags_and_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.jsonl");
        std::fs::write(
            &f,
            "{\"prompt\": \"a\"}\n\n{\"prompt\": \"b\", \"tag\": \"private\"}\n",
        )
        .unwrap();
        let p = load_prompts("p.jsonl", dir.path()).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(
            (p[0].tag.as_str(), p[1].tag.as_str()),
            ("public", "private")
        );
        std::fs::write(&f, "{\"prompt\": \"a\"}\n{\"text\": \"b\"}\n").unwrap();
        let e = load_prompts("p.jsonl", dir.path()).unwrap_err();
        assert!(e.contains("p.jsonl:2") && e.contains("text"), "{e}");
    }

    #[test]
    fn conversations_take_the_last_message_as_their_text_and_refuse_ambiguity() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.jsonl");
        let line = r#"{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], "tag": "private"}"#;
        std::fs::write(&f, format!("{line}\n")).unwrap();
        let p = load_prompts("c.jsonl", dir.path()).unwrap();
        assert_eq!((p[0].prompt.as_str(), p[0].tag.as_str()), ("Hi", "private"));
        assert_eq!(
            p[0].messages.as_ref().unwrap()[0],
            Message::new("system", "Be brief.")
        );
        // The tiny pair has no chat template: a conversation is refused, naming why.
        let tiny = "builtin:tiny-target"
            .parse::<tandem_models::ModelSpec>()
            .unwrap()
            .load(&tandem_models::LoadOptions::default())
            .unwrap();
        let e = p[0].ids(&tiny.tokenizer, Some(0)).unwrap_err();
        assert!(e.contains("chat template"), "{e}");
        for (bad, why) in [
            (
                r#"{"prompt": "a", "messages": [{"role": "user", "content": "b"}]}"#,
                "not both",
            ),
            (r#"{"messages": []}"#, "empty"),
        ] {
            std::fs::write(&f, format!("{bad}\n")).unwrap();
            let e = load_prompts("c.jsonl", dir.path()).unwrap_err();
            assert!(e.contains("c.jsonl:1") && e.contains(why), "{e}");
        }
    }

    #[test]
    fn poisson_gaps_average_one_over_the_rate() {
        let rate = 4.0;
        let t = poisson_arrivals(20_000, rate, 1);
        assert!(t.windows(2).all(|w| w[1] > w[0]));
        let mean_gap = t.last().unwrap() / t.len() as f64;
        // The mean of n exponential gaps has sd (1/rate)/sqrt(n): 4 sd is 0.007 s.
        let sd = 1.0 / rate / (t.len() as f64).sqrt();
        assert!((mean_gap - 1.0 / rate).abs() < 4.0 * sd, "{mean_gap}");
        assert_eq!(t, poisson_arrivals(20_000, rate, 1));
    }
}
