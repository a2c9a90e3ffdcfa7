//! What configMap, secret, downwardAPI and projected volumes contain, as pure functions from
//! the objects to a payload of files (the kubelet's `MakePayload` functions).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, DownwardAPIVolumeFile, KeyToPath, Pod, Secret};

/// The mode of files when the volume sets no `defaultMode` (0644).
pub(super) const DEFAULT_MODE: u32 = 0o644;

/// One file of a volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct FileProjection {
    /// The content.
    pub(super) data: Vec<u8>,
    /// The permission bits.
    pub(super) mode: u32,
}

/// Files by path relative to the volume directory.
pub(super) type Payload = BTreeMap<String, FileProjection>;

/// A `mode` or `defaultMode` field: unset is `default`; it must fit in 0..=0777.
pub(super) fn file_mode(field: &str, mode: Option<i32>, default: u32) -> Result<u32, String> {
    match mode {
        None => Ok(default),
        Some(m) => u32::try_from(m)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| format!("{field} {m} is not a file mode between 0 and 0777 (511)")),
    }
}

/// Projects `data` (every key, or `items`) into files. `what` names the object in errors.
fn project(
    what: &str,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: u32,
    optional: bool,
) -> Result<Payload, String> {
    let mut payload = Payload::new();
    match items {
        None | Some([]) => {
            for (key, value) in data {
                payload.insert(key.clone(), FileProjection { data: value.clone(), mode: default_mode });
            }
        }
        Some(items) => {
            for item in items {
                let Some(value) = data.get(&item.key) else {
                    if optional {
                        continue;
                    }
                    return Err(format!("{what} has no key {:?}", item.key));
                };
                let mode = file_mode(&format!("mode of item {:?}", item.key), item.mode, default_mode)?;
                payload.insert(item.path.clone(), FileProjection { data: value.clone(), mode });
            }
        }
    }
    Ok(payload)
}

/// The files of a configMap volume or projection; `config_map` is `None` when it does not exist.
pub(super) fn config_map(
    name: &str,
    config_map: Option<&ConfigMap>,
    items: Option<&[KeyToPath]>,
    default_mode: u32,
    optional: bool,
) -> Result<Payload, String> {
    let what = format!("configmap {name:?}");
    let Some(cm) = config_map else {
        return if optional { Ok(Payload::new()) } else { Err(format!("{what} not found")) };
    };
    let mut data: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (k, v) in cm.data.iter().flatten() {
        data.insert(k.clone(), v.clone().into_bytes());
    }
    for (k, v) in cm.binary_data.iter().flatten() {
        data.insert(k.clone(), v.0.clone());
    }
    project(&what, &data, items, default_mode, optional)
}

/// The files of a secret volume or projection; `secret` is `None` when it does not exist.
pub(super) fn secret(
    name: &str,
    secret: Option<&Secret>,
    items: Option<&[KeyToPath]>,
    default_mode: u32,
    optional: bool,
) -> Result<Payload, String> {
    let what = format!("secret {name:?}");
    let Some(secret) = secret else {
        return if optional { Ok(Payload::new()) } else { Err(format!("{what} not found")) };
    };
    // `stringData` is write-only and merged into `data` by the API server; a store that kept
    // it is read as a fallback.
    let mut data: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (k, v) in secret.string_data.iter().flatten() {
        data.insert(k.clone(), v.clone().into_bytes());
    }
    for (k, v) in secret.data.iter().flatten() {
        data.insert(k.clone(), v.0.clone());
    }
    project(&what, &data, items, default_mode, optional)
}

/// The files of a downwardAPI volume or projection (`metadata` fields only).
pub(super) fn downward_api(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: u32,
) -> Result<Payload, String> {
    let mut payload = Payload::new();
    for item in items {
        let value = match (&item.field_ref, &item.resource_field_ref) {
            (Some(field), None) => field_value(pod, &field.field_path)?,
            (None, Some(r)) => {
                return Err(format!(
                    "item {:?}: resourceFieldRef {:?} is not supported",
                    item.path, r.resource
                ));
            }
            _ => {
                return Err(format!(
                    "item {:?} needs exactly one of fieldRef and resourceFieldRef",
                    item.path
                ));
            }
        };
        let mode = file_mode(&format!("mode of item {:?}", item.path), item.mode, default_mode)?;
        payload.insert(item.path.clone(), FileProjection { data: value.into_bytes(), mode });
    }
    Ok(payload)
}

/// A downward API field of the pod's metadata, formatted as the kubelet does.
fn field_value(pod: &Pod, path: &str) -> Result<String, String> {
    let meta = &pod.metadata;
    let map_key = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix("['"))
            .and_then(|rest| rest.strip_suffix("']"))
            .map(str::to_string)
    };
    let value = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        _ => {
            if let Some(key) = map_key("metadata.labels") {
                meta.labels.as_ref().and_then(|l| l.get(&key)).cloned().unwrap_or_default()
            } else if let Some(key) = map_key("metadata.annotations") {
                meta.annotations.as_ref().and_then(|a| a.get(&key)).cloned().unwrap_or_default()
            } else {
                return Err(format!("fieldRef {path:?} is not supported in volumes"));
            }
        }
    };
    Ok(value)
}

/// `key="value"` lines sorted by key, values quoted (the kubelet's `FormatMap`).
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", serde_json::Value::String(v.clone())))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::ObjectFieldSelector;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn cm() -> ConfigMap {
        ConfigMap {
            data: Some([("a".to_string(), "A".to_string()), ("b".to_string(), "B".to_string())].into()),
            binary_data: Some([("bin".to_string(), ByteString(vec![0, 1, 2]))].into()),
            ..Default::default()
        }
    }

    fn item(key: &str, path: &str, mode: Option<i32>) -> KeyToPath {
        KeyToPath { key: key.into(), path: path.into(), mode }
    }

    fn file(data: &[u8], mode: u32) -> FileProjection {
        FileProjection { data: data.to_vec(), mode }
    }

    #[test]
    fn every_key_without_items() {
        let p = config_map("cm", Some(&cm()), None, 0o600, false).expect("a present configmap");
        let want: Payload = [
            ("a".to_string(), file(b"A", 0o600)),
            ("b".to_string(), file(b"B", 0o600)),
            ("bin".to_string(), file(&[0, 1, 2], 0o600)),
        ]
        .into();
        assert_eq!(p, want);
    }

    #[test]
    fn items_choose_keys_paths_and_modes() {
        let items = [item("a", "dir/a.txt", Some(0o400)), item("bin", "b", None)];
        let p = config_map("cm", Some(&cm()), Some(&items), DEFAULT_MODE, false).expect("keys exist");
        let want: Payload =
            [("dir/a.txt".to_string(), file(b"A", 0o400)), ("b".to_string(), file(&[0, 1, 2], 0o644))].into();
        assert_eq!(p, want);
    }

    #[test]
    fn missing_objects_and_keys_fail_unless_optional() {
        let err = config_map("cm", None, None, DEFAULT_MODE, false).expect_err("missing configmap");
        assert_eq!(err, "configmap \"cm\" not found");
        assert_eq!(config_map("cm", None, None, DEFAULT_MODE, true), Ok(Payload::new()));
        let items = [item("nope", "x", None), item("a", "a", None)];
        let err = config_map("cm", Some(&cm()), Some(&items), DEFAULT_MODE, false).expect_err("missing key");
        assert_eq!(err, "configmap \"cm\" has no key \"nope\"");
        let p = config_map("cm", Some(&cm()), Some(&items), DEFAULT_MODE, true).expect("optional");
        assert_eq!(p.keys().collect::<Vec<_>>(), vec!["a"]);
        let err = secret("s", None, None, DEFAULT_MODE, false).expect_err("missing secret");
        assert_eq!(err, "secret \"s\" not found");
    }

    #[test]
    fn secret_bytes_and_bad_modes() {
        let s = Secret {
            data: Some([("tls.key".to_string(), ByteString(vec![0xff, 0x00]))].into()),
            ..Default::default()
        };
        let p = secret("s", Some(&s), None, 0o400, false).expect("a present secret");
        assert_eq!(p.get("tls.key"), Some(&file(&[0xff, 0x00], 0o400)));
        let items = [item("tls.key", "k", Some(0o1000))];
        let err = secret("s", Some(&s), Some(&items), DEFAULT_MODE, false).expect_err("mode too large");
        assert!(err.contains("512"), "{err}");
        assert!(file_mode("defaultMode", Some(-1), DEFAULT_MODE).is_err());
        assert_eq!(file_mode("defaultMode", None, DEFAULT_MODE), Ok(0o644));
    }

    #[test]
    fn downward_api_metadata_fields() {
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                labels: Some(
                    [("app".to_string(), "web".to_string()), ("tier".to_string(), "a\"b".to_string())].into(),
                ),
                ..Default::default()
            },
            ..Default::default()
        };
        let field = |path: &str, field_path: &str| DownwardAPIVolumeFile {
            path: path.into(),
            field_ref: Some(ObjectFieldSelector { field_path: field_path.into(), api_version: None }),
            ..Default::default()
        };
        let items = [
            field("name", "metadata.name"),
            field("labels", "metadata.labels"),
            field("app", "metadata.labels['app']"),
        ];
        let p = downward_api(&pod, &items, DEFAULT_MODE).expect("supported fields");
        assert_eq!(p["name"].data, b"web");
        assert_eq!(String::from_utf8_lossy(&p["labels"].data), "app=\"web\"\ntier=\"a\\\"b\"");
        assert_eq!(p["app"].data, b"web");
        let err = downward_api(&pod, &[field("x", "spec.nodeName")], DEFAULT_MODE).expect_err("unsupported");
        assert!(err.contains("spec.nodeName"), "{err}");
    }
}
