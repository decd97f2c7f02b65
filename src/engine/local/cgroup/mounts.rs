//! Where this process's cgroups are: its own directory in a hierarchy, read from
//! `/proc/self/mountinfo` and `/proc/self/cgroup`.

use std::path::{Path, PathBuf};

use super::Version;

/// The directory of this process's cgroup in the hierarchy of `version` (for v1, the one of
/// `controller`), from `/proc/self/mountinfo` and `/proc/self/cgroup`.
pub(super) fn own_dir(
    mountinfo: &str,
    cgroups: &str,
    version: Version,
    controller: &str,
) -> Option<PathBuf> {
    let own_path = cgroups.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = match version {
            Version::V2 => id == "0" && controllers.is_empty(),
            Version::V1 => controllers.split(',').any(|c| c == controller),
        };
        matches.then(|| path.to_string())
    })?;
    mountinfo.lines().find_map(|line| {
        let (mount, fs) = line.split_once(" - ")?;
        let mut fs_fields = fs.split_whitespace();
        let fstype = fs_fields.next()?;
        let super_options = fs_fields.nth(1).unwrap_or("");
        let matches = match version {
            Version::V2 => fstype == "cgroup2",
            Version::V1 => fstype == "cgroup" && super_options.split(',').any(|o| o == controller),
        };
        if !matches {
            return None;
        }
        let fields: Vec<&str> = mount.split_whitespace().collect();
        let (root, mount_point) = (*fields.get(3)?, *fields.get(4)?);
        // The mount may show a subtree (a container's view): the path is relative to it.
        let relative = if root == "/" {
            own_path.as_str()
        } else {
            own_path
                .strip_prefix(root)
                .filter(|rest| rest.is_empty() || rest.starts_with('/'))?
        };
        let dir = Path::new(mount_point).join(relative.trim_start_matches('/'));
        dir.is_dir().then_some(dir)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn the_servers_own_cgroup_is_found_per_version() {
        let cgroups = "4:memory:/\n1:cpu:/\n0::/\n";
        assert_eq!(
            own_dir(MOUNTINFO, cgroups, Version::V1, "memory"),
            Some(PathBuf::from("/sys/fs/cgroup/memory"))
        );
        // Only found where the directory exists on this machine: the parsing is what is
        // tested here, so the v2 mount is checked through a path every machine has.
        let mounted_at_root = "41 31 0:38 / / rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            own_dir(mounted_at_root, "0::/tmp\n", Version::V2, "memory"),
            Some(PathBuf::from("/tmp"))
        );
        assert_eq!(
            own_dir(mounted_at_root, "0::/tmp\n", Version::V1, "memory"),
            None
        );
        assert_eq!(own_dir("", cgroups, Version::V1, "memory"), None);
    }

    #[test]
    fn a_v1_hierarchy_is_found_by_its_controller() {
        let mountinfo = "\
35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
39 31 0:36 / / rw - cgroup cgroup rw,pids
";
        let cgroups = "8:pids:/tmp\n4:memory:/elsewhere\n0::/\n";
        assert_eq!(
            own_dir(mountinfo, cgroups, Version::V1, "pids"),
            Some(PathBuf::from("/tmp"))
        );
        assert_eq!(own_dir(mountinfo, cgroups, Version::V1, "cpu"), None);
    }

    #[test]
    fn a_mount_of_a_subtree_is_followed() {
        let mountinfo = "41 31 0:38 /outer / rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            own_dir(mountinfo, "0::/outer/tmp\n", Version::V2, "memory"),
            Some(PathBuf::from("/tmp"))
        );
        assert_eq!(
            own_dir(mountinfo, "0::/elsewhere\n", Version::V2, "memory"),
            None
        );
        assert_eq!(
            own_dir(mountinfo, "0::/outerx/tmp\n", Version::V2, "memory"),
            None
        );
    }
}
