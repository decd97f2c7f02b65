//! The free-space guard: deploys and job submissions are refused (507) while the data directory's disk has less
//! free space than the operator allowed (`cortex server --min-free-disk-mb`).

use std::path::PathBuf;

use super::error::ApiError;

#[derive(Debug, Clone)]
pub struct DiskGuard {
    dir: PathBuf,
    min_free_bytes: u64,
}

impl DiskGuard {
    pub fn new(dir: PathBuf, min_free_mb: u64) -> DiskGuard {
        DiskGuard {
            dir,
            min_free_bytes: min_free_mb.saturating_mul(1024 * 1024),
        }
    }

    /// 507 when the disk is below the threshold (a disk that cannot be asked passes).
    pub fn check(&self) -> Result<(), ApiError> {
        let Some(free) = crate::free_space::free_bytes(&self.dir) else {
            return Ok(());
        };
        if free >= self.min_free_bytes {
            return Ok(());
        }
        Err(ApiError::InsufficientStorage(format!(
            "the server's disk has {} MiB free for its data, below the {} MiB it keeps free; free some space (or start the server with a lower --min-free-disk-mb) and try again",
            free / (1024 * 1024),
            self.min_free_bytes / (1024 * 1024)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_threshold_above_the_free_space_refuses() {
        let dir = std::env::temp_dir();
        assert!(DiskGuard::new(dir.clone(), 0).check().is_ok());
        let err = DiskGuard::new(dir, u64::MAX / (1024 * 1024))
            .check()
            .unwrap_err();
        assert!(matches!(err, ApiError::InsufficientStorage(_)));
        assert!(err.to_string().contains("--min-free-disk-mb"), "{err}");
    }
}
