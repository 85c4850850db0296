//! Where this machine's PAT lives: the file `pat` in the data dir (mode 0600, written
//! atomically), unless `LATCHKEY_PAT` or the config's `pat` gives one.
//!
//! The PAT never prints: it stays in a [`Pat`], whose `Debug` shows `[redacted]`.

use crate::error::{Error, Result};
use latchkey_shared::secret::SecretString;
use latchkey_shared::Pat;
use std::path::{Path, PathBuf};

/// The environment variable that overrides the stored PAT.
pub const ENV: &str = "LATCHKEY_PAT";
/// The file's name in the data dir.
pub const FILE_NAME: &str = "pat";

/// Where the PAT in use came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PatSource {
    Env,
    Config,
    File(PathBuf),
}

impl std::fmt::Display for PatSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PatSource::Env => write!(f, "the {ENV} environment variable"),
            PatSource::Config => f.write_str("`pat` in the config file"),
            PatSource::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// The `pat` file in the data dir.
#[derive(Clone, Debug)]
pub struct PatStore {
    path: PathBuf,
}

impl PatStore {
    pub fn new(data_dir: &Path) -> Self {
        Self { path: data_dir.join(FILE_NAME) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored PAT, if there is one.
    pub fn load(&self) -> Result<Option<Pat>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&self.path, e)),
        };
        let text = SecretString::new(text);
        Pat::parse(text.expose().trim()).map(Some).map_err(|e| {
            Error::Pairing(format!(
                "the token stored in {} is damaged ({e}); run `latchkey login` to pair again",
                self.path.display()
            ))
        })
    }

    /// Stores `pat` with mode 0600 (created under a temporary name, then renamed, so a
    /// crash never leaves half a token).
    pub fn save(&self, pat: &Pat) -> Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        create_private_dir(dir)?;
        crate::private_file::write(&self.path, &[pat.secret().expose().as_bytes(), b"\n"])
    }

    /// Deletes the stored PAT; `false` when there was none.
    pub fn delete(&self) -> Result<bool> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(&self.path, e)),
        }
    }
}

/// The PAT to use: `LATCHKEY_PAT` (`env`), then the config's `pat`, then the file.
pub fn resolve(
    env: Option<String>,
    config: Option<&SecretString>,
    store: &PatStore,
) -> Result<Option<(Pat, PatSource)>> {
    if let Some(value) = env.map(SecretString::new).filter(|v| !v.expose().trim().is_empty()) {
        let pat = Pat::parse(value.expose().trim()).map_err(|e| {
            Error::Usage(format!("{ENV} does not hold a Latchkey personal access token ({e}); fix or unset it"))
        })?;
        return Ok(Some((pat, PatSource::Env)));
    }
    if let Some(value) = config {
        let pat = Pat::parse(value.expose().trim())
            .map_err(|e| Error::Config(format!("`pat` in the config is not a Latchkey personal access token ({e})")))?;
        return Ok(Some((pat, PatSource::Config)));
    }
    Ok(store.load()?.map(|pat| (pat, PatSource::File(store.path.clone()))))
}

/// Creates `dir` (and its parents) readable by the owner only where it is new.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|e| Error::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_delete_with_0600() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = PatStore::new(&dir.path().join("nested/data"));
        assert!(store.load().unwrap_or_else(|e| panic!("{e}")).is_none());
        let pat = Pat::generate();
        store.save(&pat).unwrap_or_else(|e| panic!("{e}"));
        let loaded = store.load().unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|| panic!("stored"));
        assert_eq!(loaded.secret().expose(), pat.secret().expose());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(store.path()).map(|m| m.permissions().mode() & 0o777).unwrap_or(0);
            assert_eq!(mode, 0o600);
            let dir_mode = std::fs::metadata(dir.path().join("nested/data")).map(|m| m.permissions().mode() & 0o777);
            assert_eq!(dir_mode.unwrap_or(0), 0o700);
        }
        // Saving again replaces it.
        let second = Pat::generate();
        store.save(&second).unwrap_or_else(|e| panic!("{e}"));
        let loaded = store.load().unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|| panic!("stored"));
        assert_eq!(loaded.secret().expose(), second.secret().expose());
        assert!(store.delete().unwrap_or(false));
        assert!(!store.delete().unwrap_or(true));
        assert!(store.load().unwrap_or_else(|e| panic!("{e}")).is_none());
    }

    #[test]
    fn a_damaged_file_says_to_log_in_and_does_not_echo_it() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = PatStore::new(dir.path());
        std::fs::write(store.path(), "lk_pat_not-really-a-token").unwrap_or_else(|e| panic!("{e}"));
        let e = store.load().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("latchkey login") && !e.contains("not-really"), "{e}");
    }

    #[test]
    fn env_beats_config_beats_file() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store = PatStore::new(dir.path());
        let (file, config, env) = (Pat::generate(), Pat::generate(), Pat::generate());
        store.save(&file).unwrap_or_else(|e| panic!("{e}"));
        let config_value = config.secret().clone();
        let pick = |env: Option<&Pat>, config: Option<&SecretString>| {
            resolve(env.map(|p| p.secret().expose().clone()), config, &store)
                .unwrap_or_else(|e| panic!("{e}"))
                .map(|(p, source)| (p.secret().expose().clone(), source))
        };
        assert_eq!(pick(Some(&env), Some(&config_value)), Some((env.secret().expose().clone(), PatSource::Env)));
        assert_eq!(pick(None, Some(&config_value)), Some((config.secret().expose().clone(), PatSource::Config)));
        assert_eq!(
            pick(None, None),
            Some((file.secret().expose().clone(), PatSource::File(store.path().to_path_buf())))
        );
        let bad = resolve(Some("nope".into()), None, &store).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(bad.contains("LATCHKEY_PAT"), "{bad}");
        store.delete().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(pick(None, None), None);
    }
}
