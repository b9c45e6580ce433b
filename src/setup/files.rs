//! Writing files the way an installer must: atomically (temp file, fsync, rename), only when
//! the content differs (so a second run changes nothing), with the mode and owner asked for,
//! and with a dated backup before changing a file that is not ours.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{path}: {action}: {source}")]
    Io { path: PathBuf, action: &'static str, source: std::io::Error },
}

fn io<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(std::io::Error) -> FileError + 'a {
    move |source| FileError::Io { path: path.to_path_buf(), action, source }
}

/// Give an existing file or folder `mode`, and `owner` when asked, changing only what differs.
fn set_mode_and_owner(path: &Path, mode: u32, owner: Option<(u32, u32)>) -> Result<(), FileError> {
    let meta = fs::metadata(path).map_err(io(path, "reading"))?;
    if meta.permissions().mode() & 0o7777 != mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io(path, "setting the mode"))?;
    }
    if let Some((uid, gid)) = owner {
        if meta.uid() != uid || meta.gid() != gid {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(io(path, "changing the owner"))?;
        }
    }
    Ok(())
}

/// Create a folder (and its parents) with `mode`, and give it `owner` when asked.
pub fn ensure_dir(path: &Path, mode: u32, owner: Option<(u32, u32)>) -> Result<(), FileError> {
    fs::create_dir_all(path).map_err(io(path, "creating the folder"))?;
    set_mode_and_owner(path, mode, owner)?;
    Ok(())
}

/// Write `content` to `path` atomically unless it already holds exactly that, then make sure
/// of mode and owner. Returns whether the content changed.
pub fn write_if_changed(path: &Path, content: &[u8], mode: u32, owner: Option<(u32, u32)>) -> Result<bool, FileError> {
    let changed = fs::read(path).map(|old| old != content).unwrap_or(true);
    if changed {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(io(dir, "creating the folder"))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let result = (|| {
            let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp).map_err(io(&tmp, "creating"))?;
            f.write_all(content).map_err(io(&tmp, "writing"))?;
            f.sync_all().map_err(io(&tmp, "syncing"))?;
            fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)).map_err(io(&tmp, "setting the mode"))?;
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(&tmp, Some(uid), Some(gid)).map_err(io(&tmp, "changing the owner"))?;
            }
            fs::rename(&tmp, path).map_err(io(path, "replacing"))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result?;
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        return Ok(true);
    }
    set_mode_and_owner(path, mode, owner)?;
    Ok(false)
}

/// Copy `path` into `backup_dir` as `NAME.YYYYmmddTHHMMSS.bak` (mode 0600), returning the copy.
pub fn backup(path: &Path, backup_dir: &Path) -> Result<PathBuf, FileError> {
    fs::create_dir_all(backup_dir).map_err(io(backup_dir, "creating the folder"))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "file".into());
    let stamp = utc_stamp(std::time::SystemTime::now());
    let mut target = backup_dir.join(format!("{name}.{stamp}.bak"));
    let mut n = 1;
    while target.exists() {
        target = backup_dir.join(format!("{name}.{stamp}-{n}.bak"));
        n += 1;
    }
    let content = fs::read(path).map_err(io(path, "reading for a backup"))?;
    write_if_changed(&target, &content, 0o600, None)?;
    Ok(target)
}

/// `YYYYmmddTHHMMSSZ` for a time (civil-from-days, no time zone database needed).
pub fn utc_stamp(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86400, secs % 86400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_only_on_change_with_mode() {
        let dir = std::env::temp_dir().join(format!("vmtp-files-{}", std::process::id()));
        let f = dir.join("a.toml");
        assert!(write_if_changed(&f, b"x", 0o600, None).unwrap());
        assert_eq!(fs::metadata(&f).unwrap().permissions().mode() & 0o777, 0o600);
        let ino = fs::metadata(&f).unwrap().ino();
        assert!(!write_if_changed(&f, b"x", 0o600, None).unwrap());
        assert_eq!(fs::metadata(&f).unwrap().ino(), ino, "unchanged content must not be rewritten");
        assert!(write_if_changed(&f, b"y", 0o640, None).unwrap());
        assert_eq!(fs::read(&f).unwrap(), b"y");
        let b = backup(&f, &dir.join("bk")).unwrap();
        assert_eq!(fs::read(&b).unwrap(), b"y");
        assert_ne!(backup(&f, &dir.join("bk")).unwrap(), b);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stamps() {
        assert_eq!(utc_stamp(std::time::UNIX_EPOCH), "19700101T000000Z");
        assert_eq!(utc_stamp(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_764_115_200 + 3661)), "20251126T010101Z");
    }
}
