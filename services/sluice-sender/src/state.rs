//! Saving and restoring the shaping engine's state, so that daily caps,
//! warm-up progress and backoff survive a restart.
//!
//! The file is replaced atomically (write a temporary file, fsync, rename,
//! fsync the directory): a crash leaves either the old or the new state,
//! never a torn one.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use sluice_shaping::{Engine, EngineConfig, Snapshot};

use crate::SenderError;

/// The engine for `cfg`, carrying over the state saved in `file` if it exists.
pub fn load(file: Option<&Path>, cfg: EngineConfig) -> Result<Engine, SenderError> {
    let Some(file) = file else {
        return Engine::new(cfg).map_err(SenderError::Shaping);
    };
    let text = match fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            tracing::info!(file = %file.display(), "no saved shaping state: starting fresh");
            return Engine::new(cfg).map_err(SenderError::Shaping);
        }
        Err(e) => return Err(state_error(file, e.to_string())),
    };
    let snapshot: Snapshot = serde_json::from_str(&text).map_err(|e| {
        state_error(
            file,
            format!("not a shaping state file: {e}; move it away to start fresh"),
        )
    })?;
    tracing::info!(file = %file.display(), "restored shaping state");
    Engine::restore(cfg, &snapshot).map_err(SenderError::Shaping)
}

/// Writes `snapshot` to `file` atomically.
pub fn save(file: &Path, snapshot: &Snapshot) -> io::Result<()> {
    let bytes = serde_json::to_vec(snapshot).map_err(io::Error::other)?;
    let tmp = file.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, file)?;
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn state_error(file: &Path, reason: String) -> SenderError {
    SenderError::State {
        file: file.display().to_string(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_starts_fresh_and_a_saved_state_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("state.json");
        let engine = load(Some(&file), EngineConfig::default()).unwrap();
        save(&file, &engine.snapshot()).unwrap();
        let again = load(Some(&file), EngineConfig::default()).unwrap();
        assert_eq!(again.snapshot().ips, engine.snapshot().ips);
    }

    #[test]
    fn a_corrupt_file_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("state.json");
        fs::write(&file, "{ not json").unwrap();
        let err = load(Some(&file), EngineConfig::default())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("state.json"), "{err}");
        assert!(err.contains("not a shaping state file"), "{err}");
    }
}
