//! Credentials read from files, again on every use, so a file that changes (a rotated Secret that
//! the kubelet updates in place, an edited credentials file) is picked up without a restart:
//!
//! - [`SecretDir`]: a mounted Secret with the same keys as a `credentialsRef` Secret, one file per
//!   key (`accessKeyId`, `accessKeySecret`, optional `securityToken`). What `deploy/` mounts.
//! - [`ProfileFile`]: the official SDKs' credentials file (`ALIBABA_CLOUD_CREDENTIALS_FILE`, else
//!   `~/.alibabacloud/credentials`): INI sections, one per profile, chosen by
//!   `ALIBABA_CLOUD_PROFILE` (default `default`).
//!
//! Reading three small files per SAE call (at most about one a second) costs nothing next to the
//! call; caching them would need change detection that Secret volumes (a symlink swap) make subtle.
//! Errors name files and keys, never values.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::Credentials;

pub const ENV_CREDENTIALS_FILE: &str = "ALIBABA_CLOUD_CREDENTIALS_FILE";
pub const ENV_PROFILE: &str = "ALIBABA_CLOUD_PROFILE";
pub const DEFAULT_PROFILE: &str = "default";
/// Larger files are refused: a credentials file is a few hundred bytes.
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// Reads a small text file; `Ok(None)` when it does not exist.
fn read_small(path: &Path) -> Result<Option<String>, String> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        Ok(meta) if meta.len() > MAX_FILE_BYTES => {
            return Err(format!(
                "{} is larger than {MAX_FILE_BYTES} bytes; it is not a credentials file",
                path.display()
            ));
        }
        Ok(_) => {}
    }
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| format!("{} is not UTF-8 text", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// A mounted Secret: `<dir>/accessKeyId`, `<dir>/accessKeySecret`, optional `<dir>/securityToken`.
#[derive(Clone, Debug)]
pub struct SecretDir {
    dir: PathBuf,
}

impl SecretDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The credentials as the files say now; `Ok(None)` when there is no `accessKeyId` (the
    /// optional Secret does not exist, so the volume is empty).
    pub fn read(&self) -> Result<Option<Credentials>, String> {
        let value = |key: &str| -> Result<Option<String>, String> {
            Ok(read_small(&self.dir.join(key))?
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty()))
        };
        let Some(id) = value("accessKeyId")? else {
            return Ok(None);
        };
        let secret = value("accessKeySecret")?.ok_or_else(|| {
            format!(
                "{} has accessKeyId but no accessKeySecret",
                self.dir.display()
            )
        })?;
        Ok(Some(Credentials::new(id, secret, value("securityToken")?)))
    }
}

/// One profile of a credentials file, as the SDKs define them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Profile {
    /// `type = access_key`: `access_key_id`, `access_key_secret` (and, beyond the SDKs, an optional
    /// `security_token` for a static STS key).
    AccessKey(Credentials),
    /// `type = ecs_ram_role`: `role_name` (optional: the attached role).
    EcsRamRole { role_name: Option<String> },
}

/// The SDKs' credentials file and the profile to use from it.
#[derive(Clone, Debug)]
pub struct ProfileFile {
    path: PathBuf,
    profile: String,
    /// Named by `ALIBABA_CLOUD_CREDENTIALS_FILE`: then a missing file is an error, not "no file".
    explicit: bool,
}

impl ProfileFile {
    pub fn new(path: impl Into<PathBuf>, profile: impl Into<String>, explicit: bool) -> Self {
        Self {
            path: path.into(),
            profile: profile.into(),
            explicit,
        }
    }

    /// From `ALIBABA_CLOUD_CREDENTIALS_FILE` (else `$HOME/.alibabacloud/credentials`) and
    /// `ALIBABA_CLOUD_PROFILE`. `None` without either variable or a home directory.
    pub fn from_env() -> Option<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let profile = var(ENV_PROFILE).unwrap_or_else(|| DEFAULT_PROFILE.to_owned());
        match var(ENV_CREDENTIALS_FILE) {
            Some(path) => Some(Self::new(path, profile, true)),
            None => {
                let home = var("HOME")?;
                Some(Self::new(
                    Path::new(&home).join(".alibabacloud/credentials"),
                    profile,
                    false,
                ))
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn profile(&self) -> &str {
        &self.profile
    }

    /// The profile as the file says now; `Ok(None)` when the (default-path) file does not exist.
    pub fn read(&self) -> Result<Option<Profile>, String> {
        let text = match read_small(&self.path)? {
            Some(text) => text,
            None if self.explicit => {
                return Err(format!(
                    "{ENV_CREDENTIALS_FILE} names {}, which does not exist",
                    self.path.display()
                ));
            }
            None => return Ok(None),
        };
        let sections = parse_ini(&text).map_err(|why| format!("{}: {why}", self.path.display()))?;
        let section = sections.get(&self.profile).ok_or_else(|| {
            format!(
                "{} has no profile [{}] (choose one with {ENV_PROFILE})",
                self.path.display(),
                self.profile
            )
        })?;
        profile(section)
            .map(Some)
            .map_err(|why| format!("{} profile [{}]: {why}", self.path.display(), self.profile))
    }
}

fn profile(section: &BTreeMap<String, String>) -> Result<Profile, String> {
    let get = |key: &str| section.get(key).map(|v| v.trim()).filter(|v| !v.is_empty());
    if get("enable").is_some_and(|v| v.eq_ignore_ascii_case("false")) {
        return Err("the profile is disabled (enable = false)".into());
    }
    match get("type") {
        Some("access_key") => {
            let id = get("access_key_id").ok_or("access_key_id is missing")?;
            let secret = get("access_key_secret").ok_or("access_key_secret is missing")?;
            Ok(Profile::AccessKey(Credentials::new(
                id,
                secret,
                get("security_token").map(str::to_owned),
            )))
        }
        Some("ecs_ram_role") => Ok(Profile::EcsRamRole {
            role_name: get("role_name").map(str::to_owned),
        }),
        Some(other @ ("ram_role_arn" | "oidc_role_arn" | "rsa_key_pair" | "bearer")) => {
            Err(format!(
                "type {other} is not supported by sae-controller; use access_key or ecs_ram_role here, or RRSA (ALIBABA_CLOUD_ROLE_ARN, ...) for an OIDC role"
            ))
        }
        Some(other) => Err(format!("unknown type {other:?}")),
        None => Err("type is missing (access_key or ecs_ram_role)".into()),
    }
}

/// `[section]` headers and `key = value` lines; `#` and `;` start comment lines. Values may be
/// wrapped in double quotes. Keys are lower-cased, as the SDKs' INI readers treat them.
pub fn parse_ini(text: &str) -> Result<BTreeMap<String, BTreeMap<String, String>>, String> {
    let mut sections: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[') {
            let name = name
                .strip_suffix(']')
                .ok_or_else(|| format!("line {}: a section header without `]`", number + 1))?
                .trim();
            sections.entry(name.to_owned()).or_default();
            current = Some(name.to_owned());
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("line {}: neither `[section]` nor `key = value`", number + 1))?;
        let section = current
            .as_ref()
            .ok_or_else(|| format!("line {}: a key before any [section]", number + 1))?;
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        sections
            .entry(section.clone())
            .or_default()
            .insert(key.trim().to_lowercase(), value.to_owned());
    }
    Ok(sections)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# shared by the team
[default]
enable = true
type = access_key
access_key_id = LTAIdefault
access_key_secret = \"default-secret\"

[sts]
type = access_key
access_key_id = STS.key
access_key_secret = sts-secret
security_token = sts-token

[node]
type = ecs_ram_role
role_name = node-role

[assume]
type = ram_role_arn
role_arn = acs:ram::1:role/x
";

    #[test]
    fn profiles_are_chosen_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        std::fs::write(&path, FILE).unwrap();
        let read = |name: &str| ProfileFile::new(&path, name, true).read();
        assert_eq!(
            read("default").unwrap(),
            Some(Profile::AccessKey(Credentials::new(
                "LTAIdefault",
                "default-secret",
                None
            )))
        );
        assert_eq!(
            read("sts").unwrap(),
            Some(Profile::AccessKey(Credentials::new(
                "STS.key",
                "sts-secret",
                Some("sts-token".into())
            )))
        );
        assert_eq!(
            read("node").unwrap(),
            Some(Profile::EcsRamRole {
                role_name: Some("node-role".into())
            })
        );
        let err = read("assume").unwrap_err();
        assert!(err.contains("ram_role_arn is not supported"), "{err}");
        let err = read("missing").unwrap_err();
        assert!(
            err.contains("no profile [missing]") && err.contains(ENV_PROFILE),
            "{err}"
        );
        for err in [read("default"), read("sts")].map(|r| format!("{r:?}")) {
            assert!(
                !err.contains("default-secret") && !err.contains("sts-token"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_missing_file_is_an_error_only_when_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope");
        assert_eq!(ProfileFile::new(&path, "default", false).read(), Ok(None));
        let err = ProfileFile::new(&path, "default", true).read().unwrap_err();
        assert!(err.contains("does not exist"), "{err}");
    }

    #[test]
    fn bad_files_are_refused_with_the_line() {
        for (text, want) in [
            ("key = v\n", "line 1: a key before any [section]"),
            ("[a\n", "line 1: a section header without `]`"),
            ("[a]\njunk\n", "line 2: neither"),
        ] {
            assert!(parse_ini(text).unwrap_err().starts_with(want), "{text:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        std::fs::write(&path, "[default]\naccess_key_id = a\n").unwrap();
        let err = ProfileFile::new(&path, "default", true).read().unwrap_err();
        assert!(err.contains("type is missing"), "{err}");
    }

    #[test]
    fn a_secret_dir_is_read_again_each_time() {
        let dir = tempfile::tempdir().unwrap();
        let secret_dir = SecretDir::new(dir.path());
        assert_eq!(secret_dir.read(), Ok(None), "an empty volume: no Secret");
        std::fs::write(dir.path().join("accessKeyId"), "LTAIone\n").unwrap();
        let err = secret_dir.read().unwrap_err();
        assert!(err.contains("no accessKeySecret"), "{err}");
        std::fs::write(dir.path().join("accessKeySecret"), "one-secret").unwrap();
        assert_eq!(
            secret_dir.read(),
            Ok(Some(Credentials::new("LTAIone", "one-secret", None)))
        );
        // Rotated in place: the next read sees the new key.
        std::fs::write(dir.path().join("accessKeyId"), "LTAItwo").unwrap();
        std::fs::write(dir.path().join("accessKeySecret"), "two-secret").unwrap();
        std::fs::write(dir.path().join("securityToken"), "two-token").unwrap();
        assert_eq!(
            secret_dir.read(),
            Ok(Some(Credentials::new(
                "LTAItwo",
                "two-secret",
                Some("two-token".into())
            )))
        );
    }
}
