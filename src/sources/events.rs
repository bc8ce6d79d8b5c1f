//! CNCF Distribution's notification event (`notifications/event.go`), the fields read here, which
//! Azure Container Registry and GitLab's registry reuse; and one change per image however many
//! events name it.

use serde::Deserialize;

use super::{image_change, Changes, Rejection};
use crate::change::Change;

/// Media types of image manifests and indexes: the pushes that name an image (a blob or a
/// config push does not).
pub(crate) const MANIFEST_TYPES: [&str; 6] = [
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// One event in Distribution's shape (`notifications/event.go`), the fields read here.
#[derive(Debug, Deserialize)]
pub(crate) struct Event {
    /// Absent only in bodies nobody documents (ACR's ping); such a delivery is acknowledged.
    #[serde(default)]
    pub(crate) action: String,
    #[serde(default)]
    pub(crate) target: Target,
    #[serde(default)]
    pub(crate) request: Request,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Target {
    #[serde(rename = "mediaType", default)]
    pub(crate) media_type: String,
    #[serde(default)]
    pub(crate) repository: String,
    #[serde(default)]
    pub(crate) tag: String,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Request {
    #[serde(default)]
    pub(crate) host: String,
}

/// What an event says was pushed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// A tag push of a manifest: `host/repository`.
    Image(String),
    /// A tag push, but neither the event nor the endpoint (`registryHost`) names a host: fluxd
    /// would read a bare name as Docker Hub's, an image nobody pushed.
    NoHost,
    /// Anything else: pulls, deletes, mounts, blobs, pushes by digest only.
    Nothing,
}

/// The reason given for a push that names no host.
pub(crate) const NO_HOST: &str =
    "the event names no registry host; set registryHost on the endpoint to the host workloads pull from";

impl Event {
    /// The image a tag push of a manifest names: `registry_host` (when set) or the request's
    /// host, then the repository.
    pub(crate) fn pushed_image(&self, registry_host: Option<&str>) -> Pushed {
        let tag_push = self.action == "push"
            && !self.target.tag.is_empty()
            && MANIFEST_TYPES.contains(&self.target.media_type.as_str());
        if !tag_push {
            return Pushed::Nothing;
        }
        let host = registry_host.unwrap_or(&self.request.host);
        match host.trim_end_matches('/') {
            "" => Pushed::NoHost,
            host => Pushed::Image(format!("{host}/{}", self.target.repository)),
        }
    }
}

/// One change per distinct image, in first-seen order.
pub(crate) fn distinct_changes(references: &[String]) -> Result<Vec<Change>, Rejection> {
    let mut changes = Changes::default();
    for reference in references {
        changes.push(image_change(reference)?)?;
    }
    Ok(changes.into_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tag_pushes_of_manifests_name_an_image() {
        let event = |action: &str, media_type: &str, tag: &str| Event {
            action: action.into(),
            target: Target {
                media_type: media_type.into(),
                repository: "team/app".into(),
                tag: tag.into(),
            },
            request: Request {
                host: "mirror.internal:5000".into(),
            },
        };
        let oci = "application/vnd.oci.image.manifest.v1+json";
        let image = |name: &str| Pushed::Image(name.into());
        assert_eq!(
            event("push", oci, "1.0").pushed_image(None),
            image("mirror.internal:5000/team/app")
        );
        assert_eq!(
            event("push", oci, "1.0").pushed_image(Some("registry.example.com/")),
            image("registry.example.com/team/app")
        );
        assert_eq!(event("push", oci, "").pushed_image(None), Pushed::Nothing);
        assert_eq!(
            event("pull", oci, "1.0").pushed_image(None),
            Pushed::Nothing
        );
        assert_eq!(
            event("push", "application/octet-stream", "1.0").pushed_image(None),
            Pushed::Nothing
        );
        let mut hostless = event("push", oci, "1.0");
        hostless.request.host.clear();
        assert_eq!(hostless.pushed_image(None), Pushed::NoHost);
        assert_eq!(
            hostless.pushed_image(Some("registry.example.com")),
            image("registry.example.com/team/app")
        );
    }

    #[test]
    fn one_change_per_image() {
        let refs: Vec<String> = ["r/a:1", "r/b", "r/a:2", "r/a@sha256:00"]
            .iter()
            .map(|r| r.to_string())
            .collect();
        assert_eq!(distinct_changes(&refs).unwrap().len(), 2);
    }
}
