//! The errors this crate can produce.

/// Why a fault string could not be parsed (see [`crate::Fault`]'s `FromStr`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad fault {input:?}: {reason} (expected `<service>:down`, `<service>:error=<0..1>` or `<service>:latency=+<n>ms`)")]
pub struct FaultParseError {
    /// The text that was given.
    pub input: String,
    /// What was wrong with it.
    pub reason: String,
}

/// Why building a world, generating traces or writing them failed.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// A parameter of a world (or of [`crate::RandomWorldParams`]) is out of range; bad input.
    #[error("invalid world parameter `{param}`: {reason}")]
    InvalidParam {
        /// The parameter (or world field) that is wrong.
        param: String,
        /// Why it is wrong.
        reason: String,
    },
    /// A fault could not be parsed.
    #[error(transparent)]
    Fault(#[from] FaultParseError),
    /// A fault names a service or peer the world does not have.
    #[error(
        "fault {fault:?} targets {target:?}, which is neither a service nor a peer of this world"
    )]
    UnknownTarget {
        /// The fault, as text.
        fault: String,
        /// The unknown service.
        target: String,
    },
    /// Writing to the output failed.
    #[error("writing traces failed: {0}")]
    Io(#[from] std::io::Error),
    /// Writing Parquet (through `augur-ingest`) failed.
    #[error("writing Parquet failed: {0}")]
    Parquet(#[from] augur_ingest::IngestError),
}
