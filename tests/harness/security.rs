//! securityContext as the kubelet and the container runtime apply it: the user, groups,
//! no_new_privs and capabilities a container's processes run with, through `setpriv`.

use anyhow::{Result, bail, ensure};

use super::manifest::{PodSecurityContext, SecurityContext};

/// What containerd and CRI-O give a container that drops and adds nothing.
const RUNTIME_DEFAULT_CAPS: [&str; 14] = [
    "chown",
    "dac_override",
    "fsetid",
    "fowner",
    "mknod",
    "net_raw",
    "setgid",
    "setuid",
    "setfcap",
    "setpcap",
    "net_bind_service",
    "sys_chroot",
    "kill",
    "audit_write",
];

/// How a container's processes run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
    /// fsGroup, then supplementalGroups.
    pub groups: Vec<u32>,
    /// allowPrivilegeEscalation: false.
    pub no_new_privs: bool,
    /// The bounding set, as setpriv names them; empty for a non-root user.
    pub capabilities: Vec<String>,
}

impl RunAs {
    /// A container of a template without any securityContext: root with the runtime's defaults.
    pub fn runtime_default() -> RunAs {
        RunAs::resolve(None, None).expect("no securityContext is always runnable")
    }

    /// The container's fields win over the pod's. Refuses what the kubelet refuses to start:
    /// runAsNonRoot with no runAsUser (it cannot prove the image's user non-root) or with 0.
    pub fn resolve(
        pod: Option<&PodSecurityContext>,
        container: Option<&SecurityContext>,
    ) -> Result<RunAs> {
        let pod = pod.cloned().unwrap_or_default();
        let container = container.cloned().unwrap_or_default();
        ensure!(
            pod.other.is_empty() && container.other.is_empty(),
            "securityContext fields {:?} are not simulated",
            pod.other
                .keys()
                .chain(container.other.keys())
                .collect::<Vec<_>>()
        );
        ensure!(
            container.privileged != Some(true),
            "privileged containers are not simulated"
        );
        let uid = container.run_as_user.or(pod.run_as_user);
        let non_root = container.run_as_non_root.or(pod.run_as_non_root) == Some(true);
        let uid = match (non_root, uid) {
            (true, None) => bail!(
                "runAsNonRoot without runAsUser: the kubelet cannot verify that the image's user \
                 is not root and refuses to start the container"
            ),
            (true, Some(0)) => bail!("runAsNonRoot with runAsUser 0: the kubelet refuses it"),
            // The database images declare no USER: root.
            (_, uid) => uid.unwrap_or(0),
        };
        let capabilities = if uid == 0 {
            let caps = container.capabilities.unwrap_or_default();
            let names = |list: &[String]| -> Vec<String> {
                list.iter()
                    .map(|cap| {
                        cap.to_ascii_lowercase()
                            .trim_start_matches("cap_")
                            .to_owned()
                    })
                    .collect()
            };
            let (add, drop) = (names(&caps.add), names(&caps.drop));
            RUNTIME_DEFAULT_CAPS
                .iter()
                .map(|cap| (*cap).to_owned())
                .filter(|cap| !drop.iter().any(|d| d == "all" || d == cap))
                .chain(add)
                .collect()
        } else {
            Vec::new()
        };
        Ok(RunAs {
            uid,
            gid: container.run_as_group.or(pod.run_as_group).unwrap_or(0),
            groups: pod
                .fs_group
                .into_iter()
                .chain(pod.supplemental_groups)
                .collect(),
            no_new_privs: container.allow_privilege_escalation == Some(false),
            capabilities,
        })
    }

    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// `setpriv` options that switch a root process to this, before `-- PROGRAM`.
    pub fn setpriv_args(&self) -> Vec<String> {
        let mut args = vec![
            "--reuid".to_owned(),
            self.uid.to_string(),
            "--regid".to_owned(),
            self.gid.to_string(),
        ];
        if self.groups.is_empty() {
            args.push("--clear-groups".to_owned());
        } else {
            let groups: Vec<String> = self.groups.iter().map(u32::to_string).collect();
            args.extend(["--groups".to_owned(), groups.join(",")]);
        }
        if self.no_new_privs {
            args.push("--no-new-privs".to_owned());
        }
        let bounding = std::iter::once("-all".to_owned())
            .chain(self.capabilities.iter().map(|cap| format!("+{cap}")))
            .collect::<Vec<_>>()
            .join(",");
        args.extend([
            "--inh-caps".to_owned(),
            "-all".to_owned(),
            "--bounding-set".to_owned(),
            bounding,
        ]);
        args
    }
}
