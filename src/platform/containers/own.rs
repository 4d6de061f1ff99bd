//! Which container autoredeploy itself runs in, if any: it must never stop it.

/// The id of the container this process runs in, read from the mounts the engine gives
/// every container (`/var/lib/docker/containers/<id>/hostname` and its siblings), or
/// `None` outside a container.
pub(super) fn own_container_id() -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    container_id_in(&mounts)
}

/// The container id in a `mountinfo` listing.
fn container_id_in(mounts: &str) -> Option<String> {
    mounts.lines().find_map(|line| {
        let (_, rest) = line.split_once("/containers/")?;
        let id = rest.split('/').next()?;
        (id.len() == 64 && id.bytes().all(|byte| byte.is_ascii_hexdigit())).then(|| id.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_read_from_the_mounts_of_the_engine_files() {
        let id = "4f1c9e0a2b3d4e5f60718293a4b5c6d7e8f9012345678901234567890abcdef1";
        let mounts = format!(
            "620 600 0:52 / / rw,relatime - overlay overlay rw\n\
             633 620 254:1 /var/lib/docker/containers/{id}/hostname /etc/hostname rw - ext4 /dev/vda1 rw\n"
        );
        assert_eq!(container_id_in(&mounts).as_deref(), Some(id));
        assert_eq!(
            container_id_in("620 600 0:52 / / rw - overlay overlay rw\n"),
            None
        );
    }
}
