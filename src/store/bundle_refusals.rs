//! Why a bundle cannot be unpacked safely (`unpack_limits.rs` reads an archive's entries,
//! `bundle_tree.rs` follows its links), each reason saying what to change.

/// The most links one path may go through, as Linux's `MAXSYMLINKS`.
pub const MAX_HOPS: u32 = 40;

/// The longest target a link may have (Linux's `PATH_MAX`, less its final NUL).
pub const MAX_TARGET_BYTES: usize = 4095;

/// Why an archive cannot be unpacked safely.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    #[error("the bundle is not a valid tar.gz archive ({0}); run `cortex deploy` again")]
    NotAnArchive(String),
    #[error("the bundle unpacks to more than {limit} MiB; leave large files out of the project (.cortexignore) and load them at start-up")]
    TooBig { limit: u64 },
    #[error("the bundle holds more than {limit} files; leave generated files out of the project (.cortexignore)")]
    TooManyFiles { limit: u64 },
    #[error("the bundle's entry {0:?} has an absolute path or climbs out of the project with `..`; bundles hold relative paths only")]
    Escapes(String),
    #[error("the bundle's entry {entry:?} links to {target:?}, which leads outside the project{}; bundles may only link inside the project: point {entry:?} at a path inside it, or replace it with the files it should hold", through(.via))]
    LinksOut {
        entry: String,
        target: String,
        /// The link of the bundle after which it leads out, when it leads out through one.
        via: Option<String>,
    },
    #[error("the bundle's entry {entry:?} links to {target:?}, which goes through more than {MAX_HOPS} links (a loop of links?); point {entry:?} at a file or directory of the project")]
    LinkLoop { entry: String, target: String },
    #[error("the bundle's entry {entry:?} is under {parent:?}, which the bundle holds as a {what}; bundles put entries under real directories only: move {entry:?} to the directory it belongs in, or make {parent:?} a directory")]
    UnderNonDirectory {
        entry: String,
        parent: String,
        what: &'static str,
    },
    #[error("the bundle's entry {entry:?} is a {now} where the project already has a {was} of that name (an earlier entry, or the files it is unpacked over); give one of them another name")]
    Replaces {
        entry: String,
        was: &'static str,
        now: &'static str,
    },
    #[error("the bundle's entry {entry:?} links to a path longer than {MAX_TARGET_BYTES} bytes, more than a link can hold; point it at a shorter path")]
    LongTarget { entry: String },
    #[error("the bundle's links name more than {limit} MiB of paths; leave generated links out of the project (.cortexignore)")]
    TooManyTargets { limit: usize },
    #[error("the bundle's paths make more than {limit} directories that no entry lists; leave generated files out of the project (.cortexignore)")]
    TooManyDirectories { limit: u64 },
    #[error("the bundle's entry {entry:?} is a hard link to {target:?}, which is not a file of the project before it; hard links may only name a file that comes earlier")]
    HardLinkToNoFile { entry: String, target: String },
    #[error("the bundle's entry {0:?} is a hard link to .env, which a copy saved without the base's secrets does not have; remove {0:?}")]
    HardLinkToSecrets(String),
    #[error(
        "the bundle's entry {entry:?} is a {kind}; bundles hold only files, directories and links"
    )]
    Unsupported { entry: String, kind: &'static str },
}

/// How a link that leads out through another link of the bundle says so.
fn through(via: &Option<String>) -> String {
    via.as_ref()
        .map(|v| format!(" once {v:?}, a link of the bundle, is followed"))
        .unwrap_or_default()
}
