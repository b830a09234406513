//! ConfigMaps and Secrets referenced by the target's pod template. A change to one is a new
//! revision; the primary runs on `-primary` copies, so a rollout never changes what the primary
//! reads until promotion.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{ConfigMap, PodSpec, PodTemplateSpec, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use sha2::{Digest, Sha256};

use crate::api::Canary;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConfigKind {
    ConfigMap,
    Secret,
}

impl ConfigKind {
    fn prefix(self) -> &'static str {
        match self {
            ConfigKind::ConfigMap => "configmap",
            ConfigKind::Secret => "secret",
        }
    }
}

/// Every ConfigMap and Secret the pod spec reads, through volumes, envFrom and env.
pub fn referenced(template: &PodTemplateSpec) -> BTreeSet<(ConfigKind, String)> {
    let mut found = BTreeSet::new();
    let Some(spec) = &template.spec else {
        return found;
    };
    visit(spec, |kind, name| {
        found.insert((kind, name.clone()));
    });
    found
}

/// Calls `each` on every reference in the pod spec (read-only walk).
fn visit(spec: &PodSpec, mut each: impl FnMut(ConfigKind, &String)) {
    for volume in spec.volumes.iter().flatten() {
        if let Some(name) = volume.config_map.as_ref().map(|c| &c.name) {
            each(ConfigKind::ConfigMap, name);
        }
        if let Some(name) = volume.secret.as_ref().and_then(|s| s.secret_name.as_ref()) {
            each(ConfigKind::Secret, name);
        }
        for source in volume
            .projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten())
        {
            if let Some(name) = source.config_map.as_ref().map(|c| &c.name) {
                each(ConfigKind::ConfigMap, name);
            }
            if let Some(name) = source.secret.as_ref().map(|s| &s.name) {
                each(ConfigKind::Secret, name);
            }
        }
    }
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for container in containers {
        for from in container.env_from.iter().flatten() {
            if let Some(name) = from.config_map_ref.as_ref().map(|c| &c.name) {
                each(ConfigKind::ConfigMap, name);
            }
            if let Some(name) = from.secret_ref.as_ref().map(|s| &s.name) {
                each(ConfigKind::Secret, name);
            }
        }
        for var in container.env.iter().flatten() {
            let Some(source) = &var.value_from else {
                continue;
            };
            if let Some(name) = source.config_map_key_ref.as_ref().map(|c| &c.name) {
                each(ConfigKind::ConfigMap, name);
            }
            if let Some(name) = source.secret_key_ref.as_ref().map(|s| &s.name) {
                each(ConfigKind::Secret, name);
            }
        }
    }
}

/// Points every reference at the `-primary` copy.
pub fn rewrite_for_primary(template: &mut PodTemplateSpec) {
    let Some(spec) = template.spec.as_mut() else {
        return;
    };
    let primary = |name: &mut String| *name = crate::naming::primary(name);
    for volume in spec.volumes.iter_mut().flatten() {
        if let Some(c) = volume.config_map.as_mut() {
            primary(&mut c.name);
        }
        if let Some(name) = volume.secret.as_mut().and_then(|s| s.secret_name.as_mut()) {
            primary(name);
        }
        for source in volume
            .projected
            .iter_mut()
            .flat_map(|p| p.sources.iter_mut().flatten())
        {
            if let Some(c) = source.config_map.as_mut() {
                primary(&mut c.name);
            }
            if let Some(s) = source.secret.as_mut() {
                primary(&mut s.name);
            }
        }
    }
    let containers = spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten());
    for container in containers {
        for from in container.env_from.iter_mut().flatten() {
            if let Some(c) = from.config_map_ref.as_mut() {
                primary(&mut c.name);
            }
            if let Some(s) = from.secret_ref.as_mut() {
                primary(&mut s.name);
            }
        }
        for var in container.env.iter_mut().flatten() {
            let Some(source) = var.value_from.as_mut() else {
                continue;
            };
            if let Some(c) = source.config_map_key_ref.as_mut() {
                primary(&mut c.name);
            }
            if let Some(s) = source.secret_key_ref.as_mut() {
                primary(&mut s.name);
            }
        }
    }
}

/// The configs as they are now, from the watch-fed stores.
pub struct Configs<'a> {
    pub config_maps: &'a Store<ConfigMap>,
    pub secrets: &'a Store<Secret>,
    pub namespace: &'a str,
}

fn digest(parts: impl IntoIterator<Item = Vec<u8>>) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hasher
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The key of one config in a revision's checksums.
pub fn checksum_key(kind: ConfigKind, name: &str) -> String {
    format!("{}/{name}", kind.prefix())
}

/// What a ConfigMap contributes to a revision.
pub fn config_map_checksum(map: &ConfigMap) -> String {
    digest([serde_json::to_vec(&(&map.data, &map.binary_data)).unwrap_or_default()])
}

/// What a Secret contributes to a revision.
pub fn secret_checksum(secret: &Secret) -> String {
    digest([serde_json::to_vec(&(&secret.data, &secret.string_data)).unwrap_or_default()])
}

impl Configs<'_> {
    /// `configmap/name` or `secret/name` → checksum of its data; missing objects are left out.
    pub fn checksums(&self, refs: &BTreeSet<(ConfigKind, String)>) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (kind, name) in refs {
            let checksum = match kind {
                ConfigKind::ConfigMap => self
                    .config_maps
                    .get(&ObjectRef::new(name).within(self.namespace))
                    .map(|c| config_map_checksum(&c)),
                ConfigKind::Secret => self
                    .secrets
                    .get(&ObjectRef::new(name).within(self.namespace))
                    .map(|s| secret_checksum(&s)),
            };
            if let Some(checksum) = checksum {
                out.insert(checksum_key(*kind, name), checksum);
            }
        }
        out
    }

    /// `-primary` copies of the referenced objects, owned by the Canary.
    pub fn primary_copies(
        &self,
        canary: &Canary,
        refs: &BTreeSet<(ConfigKind, String)>,
    ) -> (Vec<ConfigMap>, Vec<Secret>) {
        let owner = super::objects::owner_reference(canary).ok();
        let meta = |name: &str| ObjectMeta {
            name: Some(crate::naming::primary(name)),
            namespace: Some(self.namespace.to_string()),
            owner_references: owner.clone().map(|o| vec![o]),
            ..ObjectMeta::default()
        };
        let mut maps = Vec::new();
        let mut secrets = Vec::new();
        for (kind, name) in refs {
            match kind {
                ConfigKind::ConfigMap => {
                    if let Some(found) = self
                        .config_maps
                        .get(&ObjectRef::new(name).within(self.namespace))
                    {
                        maps.push(ConfigMap {
                            metadata: meta(name),
                            data: found.data.clone(),
                            binary_data: found.binary_data.clone(),
                            immutable: None,
                        });
                    }
                }
                ConfigKind::Secret => {
                    if let Some(found) = self
                        .secrets
                        .get(&ObjectRef::new(name).within(self.namespace))
                    {
                        secrets.push(Secret {
                            metadata: meta(name),
                            data: found.data.clone(),
                            type_: found.type_.clone(),
                            ..Secret::default()
                        });
                    }
                }
            }
        }
        (maps, secrets)
    }
}

/// The revision of a target: its template, and the data of every config it reads.
pub fn combined_revision(template_revision: &str, checksums: &BTreeMap<String, String>) -> String {
    if checksums.is_empty() {
        return template_revision.to_string();
    }
    let parts = std::iter::once(template_revision.as_bytes().to_vec()).chain(
        checksums
            .iter()
            .map(|(k, v)| format!("{k}={v}").into_bytes()),
    );
    digest(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> PodTemplateSpec {
        serde_json::from_value(serde_json::json!({
            "spec": {
                "volumes": [{ "name": "cfg", "configMap": { "name": "settings" } },
                            { "name": "tls", "secret": { "secretName": "certs" } }],
                "containers": [{
                    "name": "app", "image": "x",
                    "envFrom": [{ "secretRef": { "name": "creds" } }],
                    "env": [{ "name": "A", "valueFrom": { "configMapKeyRef": { "name": "flags", "key": "a" } } }]
                }]
            }
        }))
        .unwrap()
    }

    #[test]
    fn finds_and_rewrites_every_reference() {
        let mut template = template();
        let refs: Vec<_> = referenced(&template).into_iter().map(|(_, n)| n).collect();
        assert_eq!(refs, vec!["flags", "settings", "certs", "creds"]);
        rewrite_for_primary(&mut template);
        let renamed: Vec<_> = referenced(&template).into_iter().map(|(_, n)| n).collect();
        assert!(
            renamed.iter().all(|n| n.ends_with("-primary")),
            "{renamed:?}"
        );
    }

    #[test]
    fn revision_changes_with_config_data() {
        let a = BTreeMap::from([("configmap/settings".to_string(), "1".to_string())]);
        let b = BTreeMap::from([("configmap/settings".to_string(), "2".to_string())]);
        assert_eq!(combined_revision("t", &BTreeMap::new()), "t");
        assert_ne!(combined_revision("t", &a), combined_revision("t", &b));
    }
}
