//! Finding the worker's own cgroup v2 directory, and whether the worker may
//! create cgroups below it: the `cgroup2` mount from `/proc/self/mountinfo`
//! (no hard-coded path: hybrid hosts mount it at `/sys/fs/cgroup/unified`),
//! the `0::` line of `/proc/self/cgroup`, and a test directory created and
//! removed again. Looked up once per worker.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The environment variable that turns the cgroup path off (`off`), so the
/// subreaper + sweep path contains cli runs even where cgroups work.
pub const CGROUP_VAR: &str = "BAMBOO_CGROUP";

/// The worker's own cgroup directory when cli runs can get a leaf below it;
/// `None` (with a debug line saying why) when they cannot or must not.
pub fn own_cgroup() -> Option<&'static Path> {
    static OWN: OnceLock<Option<PathBuf>> = OnceLock::new();
    OWN.get_or_init(|| match find() {
        Ok(dir) => {
            tracing::debug!(cgroup = %dir.display(), "cli runs each get a cgroup v2 leaf");
            Some(dir)
        }
        Err(why) => {
            tracing::debug!(%why, "no cgroup v2 leaf per cli run; the subreaper and /proc sweep contain them");
            None
        }
    })
    .as_deref()
}

fn find() -> Result<PathBuf, String> {
    if std::env::var(CGROUP_VAR).is_ok_and(|v| v.trim().eq_ignore_ascii_case("off")) {
        return Err(format!("{CGROUP_VAR}=off"));
    }
    let read =
        |path: &str| std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"));
    let dir = resolve(&read("/proc/self/mountinfo")?, &read("/proc/self/cgroup")?)?;
    probe(&dir)?;
    Ok(dir)
}

/// Creates and removes a test leaf: the only sure way to know we may.
fn probe(dir: &Path) -> Result<(), String> {
    let test = dir.join(super::leaf_name());
    std::fs::create_dir(&test)
        .map_err(|e| format!("cannot create a cgroup in {}: {e}", dir.display()))?;
    std::fs::remove_dir(&test)
        .map_err(|e| format!("cannot remove the test cgroup {}: {e}", test.display()))
}

/// The directory of the cgroup `proc_cgroup` (a `/proc/<pid>/cgroup` image)
/// names in the unified hierarchy, under the `cgroup2` mount of `mountinfo`
/// whose root contains it.
fn resolve(mountinfo: &str, proc_cgroup: &str) -> Result<PathBuf, String> {
    let own = proc_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("no cgroup v2 membership (no `0::` line in /proc/self/cgroup)")?;
    if own.ends_with(" (deleted)") {
        return Err(format!("the worker's cgroup {own} was removed"));
    }
    let mounts = cgroup2_mounts(mountinfo);
    if mounts.is_empty() {
        return Err("no cgroup2 file system is mounted".into());
    }
    mounts
        .iter()
        .find_map(|(root, point)| {
            let rel = if root == "/" {
                own.strip_prefix('/')
            } else {
                own.strip_prefix(root.as_str())
                    .and_then(|r| r.strip_prefix('/').or(r.is_empty().then_some("")))
            }?;
            Some(if rel.is_empty() {
                PathBuf::from(point)
            } else {
                Path::new(point).join(rel)
            })
        })
        .ok_or_else(|| format!("the worker's cgroup {own} is under no cgroup2 mount"))
}

/// `(root, mount point)` of each `cgroup2` mount: mountinfo's fields 4 and 5,
/// the file system type being the first field after the ` - ` separator.
fn cgroup2_mounts(mountinfo: &str) -> Vec<(String, String)> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (mount, fs) = line.split_once(" - ")?;
            if fs.split_whitespace().next()? != "cgroup2" {
                return None;
            }
            let mut fields = mount.split_whitespace().skip(3);
            let root = unescape(fields.next()?);
            let point = unescape(fields.next()?);
            Some((root, point))
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let code = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], code) {
            (b'\\', Some(c)) => {
                out.push(c);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 30 0:23 / /sys rw,nosuid shared:7 - sysfs sysfs rw
31 25 0:27 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:10 - cgroup2 cgroup2 rw
42 31 0:39 / /sys/fs/cgroup/memory rw,relatime shared:11 - cgroup cgroup rw,memory
";

    #[test]
    fn the_cgroup2_mount_is_found_wherever_it_is() {
        let dir = resolve(HYBRID, "4:memory:/x\n0::/\n").expect("hybrid root");
        assert_eq!(dir, PathBuf::from("/sys/fs/cgroup/unified"));
        let pure = "30 25 0:26 / /sys/fs/cgroup rw shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        let dir = resolve(pure, "0::/user.slice/app.service\n").expect("pure v2");
        assert_eq!(dir, PathBuf::from("/sys/fs/cgroup/user.slice/app.service"));
    }

    #[test]
    fn a_mount_of_a_subtree_and_escaped_mount_points_are_understood() {
        let sub = "50 25 0:26 /a/b /mnt/my\\040cg rw - cgroup2 none rw\n";
        assert_eq!(
            resolve(sub, "0::/a/b/c\n").expect("inside"),
            PathBuf::from("/mnt/my cg/c")
        );
        assert_eq!(
            resolve(sub, "0::/a/b\n").expect("at the root"),
            PathBuf::from("/mnt/my cg")
        );
        assert!(resolve(sub, "0::/a/bc\n").is_err(), "a sibling, not inside");
    }

    #[test]
    fn without_a_cgroup2_mount_or_membership_there_is_none() {
        let v1 = "42 31 0:39 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        assert!(resolve(v1, "0::/\n").is_err());
        assert!(resolve(HYBRID, "4:memory:/x\n").is_err());
        assert!(resolve(HYBRID, "0::/gone (deleted)\n").is_err());
    }
}
