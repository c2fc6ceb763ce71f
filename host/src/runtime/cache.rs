//! Compiled components on disk, keyed by content hash and the engine's
//! compatibility hash, so a restart loads in a millisecond what took tens of
//! milliseconds (Rust) or seconds (Python, JS) to compile.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;

use wasmtime::Engine;
use wasmtime::component::Component;

use super::{RuntimeError, ValidationError};

pub(super) struct ComponentCache {
    dir: Option<PathBuf>,
    engine_key: String,
}

impl ComponentCache {
    pub(super) fn new(engine: &Engine, dir: Option<PathBuf>) -> Result<Self, RuntimeError> {
        if let Some(dir) = &dir {
            std::fs::create_dir_all(dir)
                .map_err(|e| RuntimeError::Cache(format!("{}: {e}", dir.display())))?;
        }
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Self {
            dir,
            engine_key: format!("{:016x}", hasher.finish()),
        })
    }

    /// Delete the compiled code of `sha256` (its version was pruned).
    pub(super) fn remove(&self, sha256: &str) {
        if let Some(dir) = &self.dir {
            let path = dir.join(format!("{sha256}-{}.cwasm", self.engine_key));
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), error = %e, "cannot delete a pruned version's compiled code");
            }
        }
    }

    /// The compiled component for `wasm`, from the cache or freshly compiled.
    pub(super) fn compile(
        &self,
        engine: &Engine,
        sha256: &str,
        wasm: &[u8],
    ) -> Result<Component, ValidationError> {
        let Some(dir) = &self.dir else {
            return Component::new(engine, wasm)
                .map_err(|e| ValidationError::Invalid(format!("{e:#}")));
        };
        let path = dir.join(format!("{sha256}-{}.cwasm", self.engine_key));
        if path.exists() {
            // SAFETY: only files this host wrote are in the cache directory, named
            // by the content hash and this engine's compatibility hash; wasmtime
            // also checks the header. A bad file is dropped and rebuilt below.
            #[allow(unsafe_code)]
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "dropping unusable cached component");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let component =
            Component::new(engine, wasm).map_err(|e| ValidationError::Invalid(format!("{e:#}")))?;
        match component.serialize() {
            Ok(bytes) => {
                // Write beside and rename, so a crash never leaves a half file.
                let tmp = path.with_extension(format!("tmp{}", std::process::id()));
                if let Err(e) =
                    std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, &path))
                {
                    tracing::warn!(path = %path.display(), error = %e, "cannot cache compiled component");
                    let _ = std::fs::remove_file(&tmp);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot serialise compiled component"),
        }
        Ok(component)
    }
}
