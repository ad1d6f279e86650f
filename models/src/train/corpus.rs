//! A seeded synthetic corpus with structure a 1 M-parameter model learns well and a
//! 0.15 M-parameter model only partly: templated stories whose characters recur,
//! counting, key-value recall and copying. The local grammar is easy (both models agree
//! there); recall and copying need attention over long spans (where the draft falls
//! behind the target). That gap is what speculative decoding measures.

use tandem_decoding::SessionRng;

const NAMES: &[&str] = &[
    "Mia", "Leo", "Ada", "Sam", "Ivy", "Tom", "Zoe", "Max", "Lily", "Ben", "Nora", "Finn", "Ruby",
    "Owen", "Ella", "Jack",
];
const ANIMALS: &[&str] = &[
    "cat", "dog", "fox", "owl", "bear", "frog", "duck", "mouse", "rabbit", "horse",
];
const ADJECTIVES: &[&str] = &[
    "little", "happy", "brave", "sleepy", "clever", "tiny", "curious", "kind", "quiet", "funny",
];
const PLACES: &[&str] = &[
    "forest", "garden", "park", "river", "house", "meadow", "town", "hill", "lake", "farm",
];
const OBJECTS: &[&str] = &[
    "ball", "hat", "book", "key", "box", "kite", "shell", "stone", "cup", "map", "drum", "bell",
];
const VERBS: &[&str] = &[
    "play", "run", "sing", "jump", "read", "dance", "swim", "draw", "walk", "hide",
];
const COLORS: &[&str] = &[
    "red", "blue", "green", "yellow", "white", "black", "pink", "brown", "gray", "orange",
];
const FEELINGS: &[&str] = &["happy", "glad", "proud", "surprised", "excited", "calm"];

fn pick<'a>(rng: &mut SessionRng, items: &[&'a str]) -> &'a str {
    items[(rng.next_u64() % items.len() as u64) as usize]
}

fn below(rng: &mut SessionRng, n: u64) -> u64 {
    rng.next_u64() % n
}

fn story(rng: &mut SessionRng) -> String {
    let name = pick(rng, NAMES);
    let friend = pick(rng, NAMES);
    let animal = pick(rng, ANIMALS);
    let adj = pick(rng, ADJECTIVES);
    let place = pick(rng, PLACES);
    let object = pick(rng, OBJECTS);
    let color = pick(rng, COLORS);
    let verb = pick(rng, VERBS);
    let feeling = pick(rng, FEELINGS);
    format!(
        "Once upon a time, there was a {adj} {animal} named {name}. {name} lived near the {place} \
and liked to {verb} every day. One day, {name} found a {color} {object} in the {place}. \
{name} showed the {color} {object} to {friend}. {friend} said, \"What a nice {object}!\" \
{name} and {friend} liked to {verb} with the {object}. {name} felt {feeling}. The end."
    )
}

fn counting(rng: &mut SessionRng) -> String {
    let start = below(rng, 90);
    let step = 1 + below(rng, 3);
    let len = 6 + below(rng, 8);
    let nums: Vec<String> = (0..len).map(|i| (start + i * step).to_string()).collect();
    format!("Count by {step} from {start}: {}.", nums.join(" "))
}

fn recall(rng: &mut SessionRng) -> String {
    let n = 3 + below(rng, 3) as usize;
    let mut colors: Vec<&str> = Vec::new();
    while colors.len() < n {
        let c = pick(rng, COLORS);
        if !colors.contains(&c) {
            colors.push(c);
        }
    }
    let values: Vec<&str> = (0..n).map(|_| pick(rng, OBJECTS)).collect();
    let facts: Vec<String> = colors
        .iter()
        .zip(&values)
        .map(|(c, v)| format!("The {c} box has a {v}."))
        .collect();
    let q = below(rng, n as u64) as usize;
    format!(
        "{} Question: what is in the {} box? Answer: a {}.",
        facts.join(" "),
        colors[q],
        values[q]
    )
}

fn copying(rng: &mut SessionRng) -> String {
    let len = 3 + below(rng, 5);
    let words: Vec<&str> = (0..len)
        .map(|_| match below(rng, 3) {
            0 => pick(rng, ANIMALS),
            1 => pick(rng, OBJECTS),
            _ => pick(rng, COLORS),
        })
        .collect();
    let list = words.join(" ");
    format!("Repeat after me: {list}. Again: {list}.")
}

/// `n` documents drawn from the four kinds (stories most often), deterministic in
/// `seed`.
pub fn documents(seed: u64, n: usize) -> Vec<String> {
    let mut rng = SessionRng::new(seed);
    (0..n)
        .map(|_| match below(&mut rng, 10) {
            0..=3 => story(&mut rng),
            4..=5 => counting(&mut rng),
            6..=7 => recall(&mut rng),
            _ => copying(&mut rng),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_varied() {
        let a = documents(7, 200);
        assert_eq!(a, documents(7, 200));
        assert_ne!(a, documents(8, 200));
        for prefix in ["Once upon", "Count by", "The ", "Repeat after"] {
            assert!(
                a.iter().any(|d| d.starts_with(prefix)),
                "no {prefix:?} document"
            );
        }
        // Recall answers are right: the asked color's object is the one stated.
        for d in a.iter().filter(|d| d.contains("Question:")) {
            let (facts, q) = d.split_once(" Question: what is in the ").unwrap();
            let (color, answer) = q.split_once(" box? Answer: a ").unwrap();
            let object = answer.trim_end_matches('.');
            assert!(
                facts.contains(&format!("The {color} box has a {object}.")),
                "{d}"
            );
        }
    }
}
