//! One error type for every failure a user can act on.

use thiserror::Error;

/// Every user-facing failure of vqgpu, each with a message that says what to do.
#[derive(Debug, Error)]
pub enum Error {
    /// No GPU adapter at all was found for the requested backends.
    #[error(
        "no GPU adapter found for backend(s) {backends}. On Linux without a GPU install the software \
         Vulkan driver: `apt-get install mesa-vulkan-drivers`; otherwise install your GPU's Vulkan/Metal/DX12 driver"
    )]
    NoAdapter {
        /// The backends that were searched.
        backends: String,
    },
    /// An adapter name filter (`--adapter` / `VQGPU_ADAPTER`) matched nothing.
    #[error("no GPU adapter matches {wanted:?}; available: {available}. Run `vqgpu info` to list adapters")]
    AdapterNotFound {
        /// The requested substring.
        wanted: String,
        /// Names of the adapters that exist.
        available: String,
    },
    /// The backend name given on the command line is unknown.
    #[error("unknown backend {0:?}: use one of vulkan, metal, dx12, gl")]
    UnknownBackend(String),
    /// The adapter refused to create a device.
    #[error("could not open the GPU device: {0}")]
    RequestDevice(String),
    /// A buffer larger than the adapter allows was requested.
    #[error(
        "a buffer of {requested} bytes exceeds this adapter's limit of {limit} bytes ({which}); \
         use a smaller batch or model"
    )]
    BufferTooLarge {
        /// Requested size in bytes.
        requested: u64,
        /// The adapter's limit in bytes.
        limit: u64,
        /// Which limit was hit.
        which: &'static str,
    },
    /// The GPU reported a validation error, ran out of memory or was lost.
    #[error("GPU error: {0}")]
    Gpu(String),
    /// Reading a result back from the GPU failed.
    #[error("reading back from the GPU failed: {0}")]
    Readback(String),
    /// Data handed to a tensor does not match its shape.
    #[error("shape {shape:?} needs {expected} values, got {got}")]
    ShapeData {
        /// The requested shape.
        shape: Vec<usize>,
        /// Number of elements the shape holds.
        expected: usize,
        /// Number of values supplied.
        got: usize,
    },
    /// An argument a user supplied is out of range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A dataset file is missing, truncated or malformed.
    #[error("dataset: {0}")]
    Dataset(String),
    /// A checkpoint is malformed or belongs to another model.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint file.
        path: String,
        /// What is wrong with it.
        message: String,
    },
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

/// Result type used across vqgpu.
pub type Result<T> = std::result::Result<T, Error>;
